#include "cli_options.hpp"

#include <serialserver/duration.hpp>
#include "cli_time.hpp"
#include "common/program.hpp"
#include "logd_protocol.hpp"

#include <stdexcept>

namespace logd::cli {

namespace {

constexpr const char* kProgram = "serialserver-log";

// ---- validators: what can be checked before sending -------------------------------------------

CLI::Validator log_name() {
  return {[](std::string& name) -> std::string {
            if (name.empty() || name.size() > kMaxNameBytes) {
              return "a log name has 1.." + std::to_string(kMaxNameBytes) + " bytes";
            }
            return {};
          },
          "LOG", "log name"};
}

CLI::Validator time_value() {
  return {[](std::string& text) -> std::string {
            try {
              parse_time(text, now_ns());
              return {};
            } catch (const std::invalid_argument& e) {
              return e.what();
            }
          },
          "TIME", "time"};
}

CLI::Validator level_value() {
  return {[](std::string& text) -> std::string {
            return parse_level(text) ? std::string()
                                     : "unknown level '" + text +
                                           "' (trace, debug, info, warn, error, fatal or 0..5)";
          },
          "LEVEL", "level"};
}

CLI::Validator field_value() {
  return {[](std::string& text) -> std::string {
            const auto eq = text.find('=');
            if (eq == std::string::npos) {
              return "'" + text + "' is not KEY=VALUE";
            }
            if (eq == 0 || eq > kMaxKeyBytes) {
              return "the key of '" + text + "' must have 1.." + std::to_string(kMaxKeyBytes) +
                     " bytes";
            }
            if (text.size() - eq - 1 > kMaxValueBytes) {
              return "a field value has at most " + std::to_string(kMaxValueBytes) + " bytes";
            }
            return {};
          },
          "KEY=VALUE", "field"};
}

CLI::Validator duration_value() {
  return {[](std::string& text) -> std::string {
            try {
              if (serialserver::parse_duration(text).count() <= 0) {
                return "'" + text + "' is not a positive duration";
              }
              return {};
            } catch (const std::exception& e) {
              return e.what();
            }
          },
          "DURATION", "duration"};
}

// ---- the command line -----------------------------------------------------------------------

constexpr const char* kFooter = R"(
Environment: LOGD_ADDR is the address and LOGD_TOKEN_FILE the token file when the flags are not
given.

TIME is RFC 3339 (2024-05-01T12:00:00Z, 2024-05-01T12:00:00.5+02:00; a space may replace the T;
no offset means UTC), a date (2024-05-01, midnight UTC), @SECONDS[.FRACTION] since the Unix
epoch, now, today, yesterday (midnight UTC), or a duration ago (10m, 1h30m).

Text output: "ID TIME LEVEL TEXT [KEY=VALUE]...", one message a line whatever it holds. In the
text, keys and values a backslash is written \\, newline \n, carriage return \r, tab \t, other
control characters and bytes that are not UTF-8 \xNN. A key or value that is empty or holds a
space, '"' or '=' is quoted, with \" inside: user="john doe".
JSON output (--output json): one object a line with id, time (RFC 3339, nanoseconds, UTC),
level, log, text and fields (an object). Bytes that are not UTF-8 are shown as U+FFFD, and the
record then also carries "raw": {"log", "text", "fields": [[KEY, VALUE]...]} in base64, exact
(so does a record with a repeated field key).

send --stdin prints the number of messages stored (one append-batch commit per batch of up to
10000 lines); send and send --stdin-whole print the new message's id. delete prints the number
of messages removed.
Exit status: 0 done, 1 a local or connection failure, 2 the server answered Error (its code and
meaning on stderr), 64 a usage error (nothing was sent).

Examples:
  serialserver-log send web --level warn --field user="john doe" 'slow request'
  some-program | serialserver-log send web --stdin
  serialserver-log read web --since yesterday --until today --output json | jq .text
  serialserver-log tail web -n 20 --follow
  serialserver-log delete web --before 2024-05-01
  serialserver-log --tls --tls-ca ca.pem --addr logs.example:7070 list)";

}  // namespace

Subcommands define(CLI::App& app, Arguments& a) {
  app.require_subcommand(1);
  app.fallthrough();  // the global flags may come before or after the subcommand
  app.footer(kFooter);
  serialserver::apps::add_version_flag(app, kProgram);
  a.client.address = serialserver::apps::env_or("LOGD_ADDR", "127.0.0.1:7070");
  app.add_option("--addr", a.client.address,
                 "the server: host:port, [v6]:port or a socket path (or $LOGD_ADDR)")
      ->capture_default_str();
  app.add_option("--token-file", a.token_file,
                 "file holding the server's token (or $LOGD_TOKEN_FILE)")
      ->check(serialserver::apps::readable_file());
  app.add_option("--byte-order", a.byte_order, "byte order to negotiate: big, little or native")
      ->check(CLI::IsMember({"big", "little", "native"}))
      ->capture_default_str();
  app.add_option("--timeout", a.timeout, "I/O timeout")
      ->check(duration_value())
      ->capture_default_str();
  auto* tls = app.add_flag("--tls", a.tls,
                           "connect with TLS (1.2 or later); the server's certificate is "
                           "verified and must carry the host of --addr");
  auto* tls_ca = app.add_option("--tls-ca", a.tls_options.ca_file,
                                "CA certificates (PEM) to verify the server with (default: the "
                                "system's)")
                     ->check(serialserver::apps::readable_file());
  auto* tls_cert = app.add_option("--tls-cert", a.tls_options.certificate_file,
                                  "a client certificate (PEM) for servers that require one")
                       ->check(serialserver::apps::readable_file());
  auto* tls_key =
      app.add_option("--tls-key", a.tls_options.private_key_file, "the private key of --tls-cert")
          ->check(serialserver::apps::readable_file());
  auto* tls_name = app.add_option("--tls-server-name", a.tls_options.server_name,
                                  "the name the server's certificate must carry (default: the "
                                  "host of --addr)");
  for (auto* option : {tls_ca, tls_cert, tls_key, tls_name}) {
    option->needs(tls);
  }
  tls_cert->needs(tls_key);
  tls_key->needs(tls_cert);

  Subcommands s;
  s.send = app.add_subcommand("send", "append a message to a log; prints its id");
  s.send->add_option("LOG", a.name, "the log")->required()->check(log_name());
  s.send->add_option("TEXT", a.text, "the message (not '-': see --stdin)");
  s.send->add_option("--level", a.level, "trace, debug, info, warn, error, fatal")
      ->check(level_value())
      ->capture_default_str();
  s.send->add_option("--field", a.fields, "a KEY=VALUE field (repeatable)")
      ->allow_extra_args(false)  // one value each time: "--field k=v TEXT" leaves TEXT alone
      ->check(field_value());
  s.send->add_option("--time", a.time, "the message time (default: the server's clock)")
      ->check(time_value());
  auto* from_stdin = s.send->add_flag(
      "--stdin", a.from_stdin,
      "one message per line of standard input (empty lines skipped), sent in batches on one "
      "connection; prints how many were stored");
  auto* whole =
      s.send->add_flag("--stdin-whole", a.stdin_whole, "all of standard input as one message");
  from_stdin->excludes(whole);

  s.read = app.add_subcommand("read", "print a log's messages in a time and level range");
  s.read->add_option("LOG", a.name, "the log")->required()->check(log_name());
  s.read->add_option("--since", a.since, "from this TIME")->check(time_value());
  s.read->add_option("--until", a.until, "up to this TIME")->check(time_value());
  s.read->add_option("--level", a.level, "the lowest level shown")
      ->check(level_value())
      ->default_str("trace");
  s.read->add_option("--max-level", a.max_level, "the highest level shown")
      ->check(level_value())
      ->capture_default_str();
  s.read->add_option("--limit", a.limit, "at most this many messages; 0: all")
      ->capture_default_str();

  s.tail = app.add_subcommand("tail", "print a log's last messages, and follow it");
  s.tail->add_option("LOG", a.name, "the log")->required()->check(log_name());
  s.tail->add_option("-n,--lines", a.last, "how many of the last messages")
      ->check(CLI::Range(0U, static_cast<unsigned>(kMaxTailLimit)))
      ->capture_default_str();
  s.tail->add_flag("-f,--follow", a.follow,
                   "keep printing new messages until interrupted, reconnecting if the server "
                   "goes away");
  for (auto* sub : {s.read, s.tail}) {
    sub->add_option("-o,--output", a.output, "text or json (one object a line)")
        ->check(CLI::IsMember({"text", "json"}))
        ->capture_default_str();
  }

  s.list = app.add_subcommand("list", "print every log with its message count and last id");

  s.erase = app.add_subcommand("delete", "remove a log's messages (all, or those before a time)");
  s.erase->add_option("LOG", a.name, "the log")->required()->check(log_name());
  s.erase->add_option("--before", a.before, "remove only the messages older than this TIME")
      ->check(time_value());
  return s;
}

/// The checks that involve more than one flag; returns the error, or nothing.
std::optional<std::string> cross_check(const Arguments& a, const Subcommands& s, std::int64_t now) {
  if (s.send->parsed()) {
    const bool from_stdin = a.from_stdin || a.stdin_whole;
    const bool has_text = s.send->count("TEXT") > 0;
    if (has_text && a.text == "-") {
      return "TEXT '-' is not read as standard input: use --stdin (one message a line) or "
             "--stdin-whole (one message)";
    }
    if (from_stdin && has_text) {
      return "TEXT and --stdin/--stdin-whole exclude each other";
    }
    if (!from_stdin && !has_text) {
      return "send: TEXT is required (or --stdin, --stdin-whole)";
    }
    if (a.text.size() > kMaxTextBytes) {
      return "TEXT has more than " + std::to_string(kMaxTextBytes) + " bytes";
    }
    if (!a.time.empty() && parse_time(a.time, now) == 0) {
      return "--time " + a.time +
             ": the epoch itself cannot be sent (time 0 asks the server for its clock)";
    }
    if (a.fields.size() > kMaxFields) {
      return "more than " + std::to_string(kMaxFields) + " --field";
    }
  }
  if (s.read->parsed()) {
    if (!a.since.empty() && !a.until.empty() &&
        parse_time(a.since, now) > parse_time(a.until, now)) {
      return "--since " + a.since + " is after --until " + a.until;
    }
    if (*parse_level(a.level) > *parse_level(a.max_level)) {
      return "--level " + a.level + " is above --max-level " + a.max_level;
    }
  }
  return std::nullopt;
}

}  // namespace logd::cli
