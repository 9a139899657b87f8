// serialserver-log: the command-line client of serialserver-logd (docs/logd-protocol.md,
// section 7). The command line is checked in full before anything is sent: a usage error exits
// 64 having sent nothing.

#include <serialserver/duration.hpp>
#include "cli_format.hpp"
#include "cli_options.hpp"
#include "cli_send.hpp"
#include "cli_tail.hpp"
#include "cli_time.hpp"
#include "common/guarded_main.hpp"
#include "common/program.hpp"
#include "logd_client.hpp"
#include "logd_protocol.hpp"

#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace {

using logd::cli::Arguments;
using logd::cli::Subcommands;

using serialserver::apps::kExitUsage;

constexpr const char* kProgram = "serialserver-log";

/// The exit status after the server answered Error.
constexpr int kExitErrorAnswer = 2;

/// Standard output failed while records were printed.
struct StdoutFailed {};

/// A usage error found after parsing: one line, then the hint, as parse_command_line prints.
int usage_error(const std::string& what) {
  std::fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", kProgram, what.c_str(), kProgram);
  return kExitUsage;
}

/// The meaning of logd's own Error codes (docs/logd-protocol.md section 4).
std::string_view error_meaning(serialserver::ErrorCode code) {
  switch (code) {
    case logd::kErrMalformed:
      return "malformed payload";
    case logd::kErrBadName:
      return "bad log name";
    case logd::kErrBadLevel:
      return "bad level";
    case logd::kErrTooLarge:
      return "too large";
    case logd::kErrBadArgument:
      return "bad argument";
    case logd::kErrStorage:
      return "storage error";
    case logd::kErrShuttingDown:
      return "server shutting down";
    case logd::kErrBusy:
      return "server busy";
    default:
      return {};
  }
}

// ---- output ---------------------------------------------------------------------------------

/// Prints records as text or JSON lines; throws StdoutFailed once standard output fails.
class Printer {
 public:
  Printer(std::string log, bool json) : log_(std::move(log)), json_(json) {}

  bool operator()(const logd::Record& record) const {
    const std::string line =
        json_ ? logd::cli::format_json_line(log_, record) : logd::cli::format_text_line(record);
    return write(line);
  }

  static bool write(std::string_view text) {
    return std::fwrite(text.data(), 1, text.size(), stdout) == text.size() &&
           std::ferror(stdout) == 0;
  }

 private:
  std::string log_;
  bool json_;
};

void write_or_throw(std::string_view text) {
  if (!Printer::write(text)) {
    throw StdoutFailed{};
  }
}

logd::Message message_of(const Arguments& a, std::int64_t now) {
  logd::Message m;
  m.log = a.name;
  m.level = *logd::parse_level(a.level);
  m.text = a.text;
  m.time_ns = a.time.empty() ? 0 : logd::cli::parse_time(a.time, now);
  for (const auto& f : a.fields) {
    const auto eq = f.find('=');
    m.fields.push_back({f.substr(0, eq), f.substr(eq + 1)});
  }
  return m;
}

int run_send(const Arguments& a, std::int64_t now) {
  logd::Message m = message_of(a, now);
  if (a.stdin_whole) {
    m.text = logd::cli::read_whole(stdin);
  }
  logd::Client client(a.client);
  if (!a.from_stdin) {
    write_or_throw(std::to_string(client.append(m)) + "\n");
    return 0;
  }
  std::uint64_t stored = 0;
  try {
    logd::cli::send_lines(client, m, stdin, stored);
  } catch (const logd::ServerError& e) {
    std::fprintf(
        stderr, "%s: %s, after %llu messages stored\n", kProgram,
        serialserver::apps::describe_error_answer(e.code(), error_meaning(e.code())).c_str(),
        static_cast<unsigned long long>(stored));
    return kExitErrorAnswer;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s, after %llu messages stored\n", kProgram, e.what(),
                 static_cast<unsigned long long>(stored));
    return 1;
  }
  write_or_throw(std::to_string(stored) + "\n");
  return 0;
}

int run_command(const Arguments& a, const Subcommands& s, std::int64_t now) {
  if (s.send->parsed()) {
    return run_send(a, now);
  }
  if (s.read->parsed()) {
    logd::ReadQuery q;
    q.log = a.name;
    if (!a.since.empty()) {
      q.since_ns = logd::cli::parse_time(a.since, now);
    }
    if (!a.until.empty()) {
      q.until_ns = logd::cli::parse_time(a.until, now);
    }
    q.min_level = *logd::parse_level(a.level);
    q.max_level = *logd::parse_level(a.max_level);
    q.limit = a.limit;
    const Printer print(a.name, a.output == "json");
    logd::Client client(a.client);
    client.read(q, [&](logd::Record&& r) {
      if (!print(r)) {
        throw StdoutFailed{};
      }
    });
    return 0;
  }
  if (s.tail->parsed()) {
    logd::cli::TailOptions t;
    t.log = a.name;
    t.last = a.last;
    t.follow = a.follow;
    logd::cli::run_tail(a.client, t, Printer(a.name, a.output == "json"));
    return 0;
  }
  if (s.list->parsed()) {
    logd::Client client(a.client);
    for (const auto& info : client.list()) {
      write_or_throw(logd::cli::escape_text(info.name) + "\t" + std::to_string(info.count) + "\t" +
                     std::to_string(info.last_id) + "\n");
    }
    return 0;
  }
  logd::DeleteQuery q;
  q.log = a.name;
  if (!a.before.empty()) {
    q.before_ns = logd::cli::parse_time(a.before, now);
  }
  logd::Client client(a.client);
  write_or_throw(std::to_string(client.delete_messages(q)) + "\n");
  return 0;
}

int run_main(int argc, char** argv) {
  CLI::App app{"serialserver-log: send to and read from serialserver-logd."};
  Arguments a;
  const Subcommands s = logd::cli::define(app, a);
  if (auto status = serialserver::apps::parse_command_line(app, kProgram, argc, argv)) {
    return *status;
  }
  if (s.read->parsed() && s.read->count("--level") == 0) {
    a.level = "trace";
  }
  const std::int64_t now = logd::cli::now_ns();
  if (auto error = logd::cli::cross_check(a, s, now)) {
    return usage_error(*error);
  }
  if (a.token_file.empty()) {
    a.token_file = serialserver::apps::env_or("LOGD_TOKEN_FILE", "");
    if (!a.token_file.empty() && ::access(a.token_file.c_str(), R_OK) != 0) {
      return usage_error("LOGD_TOKEN_FILE: " + a.token_file + ": " + std::strerror(errno));
    }
  }
  try {
    a.client.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
        serialserver::parse_duration(a.timeout));
    if (a.byte_order == "big" ||
        (a.byte_order == "native" && std::endian::native == std::endian::big)) {
      a.client.byte_order = serialserver::ByteOrder::big_endian;
    } else {
      a.client.byte_order = serialserver::ByteOrder::little_endian;
    }
    if (!a.token_file.empty()) {
      a.client.token = logd::read_token_file(a.token_file);
    }
  } catch (const std::exception& e) {
    return usage_error(e.what());
  }
  if (a.tls) {
    a.client.tls = a.tls_options;
  }

  int status = 0;
  try {
    status = run_command(a, s, now);
  } catch (const StdoutFailed&) {
    status = 1;  // finish_stdout says why
  } catch (const logd::ServerError& e) {
    std::fprintf(
        stderr, "%s: %s\n", kProgram,
        serialserver::apps::describe_error_answer(e.code(), error_meaning(e.code())).c_str());
    status = kExitErrorAnswer;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
    status = 1;
  }
  return serialserver::apps::finish_stdout(kProgram, status);
}

}  // namespace

int main(int argc, char** argv) {
  // Any other exception is a local failure too: status 1.
  return serialserver::apps::guarded_main("serialserver-log", 1, run_main, argc, argv);
}
