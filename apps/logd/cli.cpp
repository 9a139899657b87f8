// serialserver-log: the command-line client of serialserver-logd.
//
//   serialserver-log [--addr A] [--token-file F] send NAME [--level L] [--field K=V]... TEXT
//   serialserver-log read NAME [--since T] [--until T] [--level L] [--limit N]
//   serialserver-log tail NAME [-n N] [--follow]
//   serialserver-log list

#include <serialserver/duration.hpp>
#include "common/guarded_main.hpp"
#include "logd_client.hpp"
#include "logd_protocol.hpp"

#include <bit>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>

namespace {

using Clock = std::chrono::system_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

/// Parses a time: "now", a duration meaning that long ago ("10m", "1h30m"), "@SECONDS" since
/// the Unix epoch, or RFC 3339 ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00.5+02:00").
std::int64_t parse_time(const std::string& text) {
  if (text == "now") {
    return now_ns();
  }
  if (!text.empty() && text[0] == '@') {
    std::size_t used = 0;
    const double seconds = std::stod(text.substr(1), &used);
    if (used + 1 != text.size()) {
      throw std::invalid_argument("bad time " + text);
    }
    return static_cast<std::int64_t>(seconds * 1e9);
  }
  if (text.size() >= 19 && text[4] == '-' && text[10] == 'T') {
    std::tm tm{};
    int consumed = 0;
    if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                    &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6 ||
        consumed != 19) {
      throw std::invalid_argument("bad time " + text);
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    std::int64_t ns = static_cast<std::int64_t>(timegm(&tm)) * 1000000000;
    std::size_t pos = 19;
    if (pos < text.size() && text[pos] == '.') {
      std::int64_t scale = 100000000;
      for (++pos; pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos])); ++pos) {
        ns += (text[pos] - '0') * scale;
        scale /= 10;
      }
    }
    const std::string zone = text.substr(pos);
    if (zone == "Z" || zone == "z") {
      return ns;
    }
    int hours = 0;
    int minutes = 0;
    if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') &&
        std::sscanf(zone.c_str() + 1, "%2d:%2d", &hours, &minutes) == 2) {
      const std::int64_t offset = (hours * 3600LL + minutes * 60LL) * 1000000000LL;
      return zone[0] == '+' ? ns - offset : ns + offset;
    }
    throw std::invalid_argument("bad time zone in " + text + " (want Z or +hh:mm)");
  }
  return now_ns() - serialserver::parse_duration(text).count();
}

std::string format_time(std::int64_t ns) {
  const std::int64_t seconds = ns >= 0 ? ns / 1000000000 : (ns - 999999999) / 1000000000;
  const auto frac = static_cast<long>(ns - seconds * 1000000000);
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  return buf;
}

std::uint8_t level_option(const std::string& text) {
  auto level = logd::parse_level(text);
  if (!level) {
    throw std::invalid_argument("unknown level " + text +
                                " (trace, debug, info, warn, error, fatal or 0..5)");
  }
  return *level;
}

void print_record(const logd::Record& r) {
  std::string line = std::to_string(r.id) + " " + format_time(r.time_ns) + " " +
                     logd::level_name(r.level) + " " + r.text;
  for (const auto& f : r.fields) {
    line += " " + f.key + "=" + f.value;
  }
  line += "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
}

std::string error_name(serialserver::ErrorCode code) {
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
    case serialserver::kMessageTooLargeErrorCode:
      return "request too large";
    case serialserver::kUnknownTaskErrorCode:
      return "unknown task";
    default:
      return "unknown error";
  }
}

int run_main(int argc, char** argv) {
  CLI::App app{"serialserver-log: send to and read from serialserver-logd."};
  app.require_subcommand(1);
  logd::ClientOptions options;
  std::string token_file;
  std::string byte_order = "native";
  std::string timeout = "30s";
  app.add_option("--addr", options.address, "the server: host:port, [v6]:port or a socket path")
      ->capture_default_str();
  app.add_option("--token-file", token_file, "file holding the server's token");
  app.add_option("--byte-order", byte_order, "byte order to negotiate: big, little or native")
      ->check(CLI::IsMember({"big", "little", "native"}))
      ->capture_default_str();
  app.add_option("--timeout", timeout, "I/O timeout")->capture_default_str();

  std::string name;
  std::string text;
  std::string level = "info";
  std::string time;
  std::vector<std::string> fields;
  auto* send = app.add_subcommand("send", "append a message to a log; prints its id");
  send->add_option("NAME", name, "the log")->required();
  send->add_option("TEXT", text, "the message")->required();
  send->add_option("--level", level, "trace, debug, info, warn, error, fatal")
      ->capture_default_str();
  send->add_option("--field", fields, "a K=V field (repeatable)");
  send->add_option("--time", time, "the message time (default: the server's clock)");

  std::string since;
  std::string until;
  std::string max_level = "fatal";
  std::uint32_t limit = 0;
  auto* read = app.add_subcommand("read", "print a log's messages in a time and level range");
  read->add_option("NAME", name, "the log")->required();
  read->add_option("--since", since, "from this time: RFC 3339, @SECONDS, now, or a duration ago");
  read->add_option("--until", until, "up to this time (same forms)");
  read->add_option("--level", level, "the lowest level shown")->default_str("trace");
  read->add_option("--max-level", max_level, "the highest level shown")->capture_default_str();
  read->add_option("--limit", limit, "at most this many messages; 0: all")->capture_default_str();

  std::uint32_t last = 10;
  bool follow = false;
  auto* tail = app.add_subcommand("tail", "print a log's last messages, and follow it");
  tail->add_option("NAME", name, "the log")->required();
  tail->add_option("-n,--lines", last, "how many of the last messages")->capture_default_str();
  tail->add_flag("-f,--follow", follow, "keep printing new messages until interrupted");

  auto* list = app.add_subcommand("list", "print every log with its message count and last id");

  CLI11_PARSE(app, argc, argv);
  if (read->parsed() && read->count("--level") == 0) {
    level = "trace";
  }

  try {
    options.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
        serialserver::parse_duration(timeout));
    if (byte_order == "big" ||
        (byte_order == "native" && std::endian::native == std::endian::big)) {
      options.byte_order = serialserver::ByteOrder::big_endian;
    } else {
      options.byte_order = serialserver::ByteOrder::little_endian;
    }
    if (!token_file.empty()) {
      options.token = logd::read_token_file(token_file);
    }
    logd::Client client(options);
    if (send->parsed()) {
      logd::Message m;
      m.log = name;
      m.level = level_option(level);
      m.text = text;
      m.time_ns = time.empty() ? 0 : parse_time(time);
      for (const auto& f : fields) {
        const auto eq = f.find('=');
        if (eq == std::string::npos) {
          throw std::invalid_argument("--field wants K=V, got " + f);
        }
        m.fields.push_back({f.substr(0, eq), f.substr(eq + 1)});
      }
      std::cout << client.append(m) << "\n";
    } else if (read->parsed()) {
      logd::ReadQuery q;
      q.log = name;
      if (!since.empty()) {
        q.since_ns = parse_time(since);
      }
      if (!until.empty()) {
        q.until_ns = parse_time(until);
      }
      q.min_level = level_option(level);
      q.max_level = level_option(max_level);
      q.limit = limit;
      client.read(q, [](logd::Record&& r) { print_record(r); });
    } else if (tail->parsed()) {
      logd::TailQuery q;
      q.log = name;
      q.after_id = logd::kTailLast;
      q.limit = std::max<std::uint32_t>(1, std::min(last, logd::kMaxTailLimit));
      std::uint64_t cursor = 0;
      if (last > 0) {
        for (const auto& r : client.tail(q)) {
          print_record(r);
          cursor = r.id;
        }
      } else {
        // Only new messages: start after the log's current last id.
        for (const auto& info : client.list()) {
          if (info.name == name) {
            cursor = info.last_id;
          }
        }
      }
      std::fflush(stdout);
      while (follow) {  // NOLINT(bugprone-infinite-loop): --follow runs until interrupted
        q.after_id = cursor;
        q.limit = 1000;
        q.wait_ms = 10000;
        for (const auto& r : client.tail(q)) {
          print_record(r);
          cursor = r.id;
        }
        std::fflush(stdout);
      }
    } else if (list->parsed()) {
      for (const auto& info : client.list()) {
        std::cout << info.name << "\t" << info.count << "\t" << info.last_id << "\n";
      }
    }
  } catch (const logd::ServerError& e) {
    std::cerr << "serialserver-log: server error " << static_cast<int>(e.code()) << " ("
              << error_name(e.code()) << ")\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "serialserver-log: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Any other exception is a local failure too: status 1.
  return serialserver::apps::guarded_main("serialserver-log", 1, run_main, argc, argv);
}
