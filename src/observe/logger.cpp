#include <serialserver/logger.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iterator>
#include <stdexcept>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/formatter.h>
#include <spdlog/logger.h>

namespace serialserver {

namespace {

using Json = nlohmann::ordered_json;

spdlog::level::level_enum to_spdlog(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::trace:
      return spdlog::level::trace;
    case LogLevel::debug:
      return spdlog::level::debug;
    case LogLevel::info:
      return spdlog::level::info;
    case LogLevel::warn:
      return spdlog::level::warn;
    case LogLevel::error:
      return spdlog::level::err;
    case LogLevel::off:
      break;
  }
  return spdlog::level::off;
}

/// Serializes `value` as JSON, the project's one rule: nlohmann-json's escaping, with bytes
/// that are not valid UTF-8 replaced by U+FFFD rather than an exception.
std::string dump(const Json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// Appends the members of the JSON object `object` (its text without the braces) to `out`.
void append_members(std::string& out, const Json& object) {
  const std::string text = dump(object);
  out.append(text, 1, text.size() - 2);
}

/// `field`'s value as JSON.
Json json_value(const LogField& field) {
  switch (field.kind()) {
    case LogField::Kind::string:
      return field.string_value();
    case LogField::Kind::int64:
      return field.int_value();
    case LogField::Kind::uint64:
      return field.uint_value();
    case LogField::Kind::floating:
      return field.double_value();  // non-finite values are dumped as null
    case LogField::Kind::boolean:
      return field.bool_value();
  }
  return nullptr;
}

/// `message` and `fields` as one JSON object, after the members already in `object`.
void add_members(Json& object, std::string_view message, std::span<const LogField> fields) {
  object["msg"] = message;
  for (const auto& field : fields) {
    object[std::string(field.key())] = json_value(field);
  }
}

/// Appends `value` quoted, with quotes, backslashes and control characters escaped.
void append_quoted(std::string& out, std::string_view value) {
  out += '"';
  for (const char ch : value) {
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned char>(ch));
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

/// logfmt quotes a value that is empty or holds a space, '=', a quote or a control character.
bool needs_quotes(std::string_view value) noexcept {
  if (value.empty()) {
    return true;
  }
  for (const char ch : value) {
    if (ch == ' ' || ch == '=' || ch == '"' || ch == '\\' ||
        static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) {
      return true;
    }
  }
  return false;
}

/// Appends ` key=value` for each field (logfmt).
void append_text_fields(std::string& out, std::span<const LogField> fields) {
  for (const auto& field : fields) {
    out += ' ';
    out += field.key();
    out += '=';
    auto it = std::back_inserter(out);
    switch (field.kind()) {
      case LogField::Kind::string:
        if (needs_quotes(field.string_value())) {
          append_quoted(out, field.string_value());
        } else {
          out += field.string_value();
        }
        break;
      case LogField::Kind::int64:
        fmt::format_to(it, "{}", field.int_value());
        break;
      case LogField::Kind::uint64:
        fmt::format_to(it, "{}", field.uint_value());
        break;
      case LogField::Kind::floating:
        if (std::isfinite(field.double_value())) {
          fmt::format_to(it, "{}", field.double_value());
        } else {
          out += "NaN";
        }
        break;
      case LogField::Kind::boolean:
        out += field.bool_value() ? "true" : "false";
        break;
    }
  }
}

/// `time` in UTC with microseconds: 2024-01-02T03:04:05.678901Z.
std::string utc_timestamp(std::chrono::system_clock::time_point time) {
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch()).count();
  auto seconds = micros / 1'000'000;
  auto fraction = micros % 1'000'000;
  if (fraction < 0) {  // before 1970
    fraction += 1'000'000;
    --seconds;
  }
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:06}Z", fmt::gmtime(static_cast<std::time_t>(seconds)),
                     fraction);
}

/// The level names of the built-in logger and of json_formatter(): spdlog's.
std::string_view level_name(spdlog::level::level_enum level) noexcept {
  const auto name = spdlog::level::to_string_view(level);
  return {name.data(), name.size()};
}

/// Marks a record whose payload SpdlogLogger rendered as JSON members (by the identity of the
/// pointer in its source_loc, which keeps line 0 so patterns print no source location).
constexpr const char* kJsonMembersTag = "serialserver-json-members";

/// SpdlogLogger::json_formatter().
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    Json head = {{"ts", utc_timestamp(msg.time)}, {"level", level_name(msg.level)}};
    if (msg.logger_name.size() != 0) {
      head["logger"] = std::string_view(msg.logger_name.data(), msg.logger_name.size());
    }
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    std::string line = "{";
    append_members(line, head);
    line += ',';
    if (msg.source.filename == kJsonMembersTag) {
      line += payload;
    } else {
      append_members(line, Json{{"msg", payload}});
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

/// make_stderr_logger(): renders whole lines itself.
class StderrLogger final : public Logger {
 public:
  StderrLogger(LogLevel level, LogFormat format) : level_(level), format_(format) {}
  bool enabled(LogLevel level) const noexcept override {
    return level != LogLevel::off && level >= level_;
  }
  void write(LogLevel level, std::string_view message) noexcept override {
    write_fields(level, message, {});
  }
  void write_fields(LogLevel level, std::string_view message,
                    std::span<const LogField> fields) noexcept override {
    try {
      const std::string ts = utc_timestamp(std::chrono::system_clock::now());
      const std::string_view name = level_name(to_spdlog(level));
      std::string line;
      if (format_ == LogFormat::json) {
        Json object = {{"ts", ts}, {"level", name}};
        add_members(object, message, fields);
        line = dump(object);
      } else {
        line = fmt::format("ts={} level={} ", ts, name);
        append_log_fields(line, LogFormat::text, message, fields);
      }
      line += '\n';
      // stderr is unbuffered: one fwrite is one locked write of the whole line.
      std::fwrite(line.data(), 1, line.size(), stderr);
    } catch (...) {  // out of memory: a log line is not worth a crash
    }
  }

 private:
  LogLevel level_;
  LogFormat format_;
};

class NullLogger final : public Logger {
 public:
  bool enabled(LogLevel /*level*/) const noexcept override { return false; }
  void write(LogLevel /*level*/, std::string_view /*message*/) noexcept override {}
};

}  // namespace

void append_log_fields(std::string& out, LogFormat format, std::string_view message,
                       std::span<const LogField> fields) {
  if (format == LogFormat::json) {
    Json object = Json::object();
    add_members(object, message, fields);
    append_members(out, object);
    return;
  }
  out += "msg=";
  append_quoted(out, message);
  append_text_fields(out, fields);
}

void Logger::write_fields(LogLevel level, std::string_view message,
                          std::span<const LogField> fields) noexcept {
  try {
    std::string line;
    append_log_fields(line, LogFormat::text, message, fields);
    write(level, line);
  } catch (...) {  // out of memory: a log line is not worth a crash
  }
}

LogFormat parse_log_format(std::string_view text) {
  if (text == "text") return LogFormat::text;
  if (text == "json") return LogFormat::json;
  throw std::invalid_argument("unknown log format '" + std::string(text) + "' (text, json)");
}

SpdlogLogger::SpdlogLogger(std::shared_ptr<spdlog::logger> logger, LogFormat format)
    : logger_(std::move(logger)), format_(format) {
  if (!logger_) {
    throw std::invalid_argument("SpdlogLogger: null spdlog logger");
  }
}

bool SpdlogLogger::enabled(LogLevel level) const noexcept {
  return level != LogLevel::off && logger_->should_log(to_spdlog(level));
}

void SpdlogLogger::write(LogLevel level, std::string_view message) noexcept {
  write_fields(level, message, {});
}

void SpdlogLogger::write_fields(LogLevel level, std::string_view message,
                                std::span<const LogField> fields) noexcept {
  try {
    if (format_ == LogFormat::json) {
      std::string members;
      append_log_fields(members, LogFormat::json, message, fields);
      logger_->log(spdlog::source_loc{kJsonMembersTag, 0, ""}, to_spdlog(level),
                   std::string_view(members));
    } else if (fields.empty()) {
      logger_->log(to_spdlog(level), message);
    } else {
      // Most lines fit here without a heap allocation.
      std::string line;
      line.reserve(256);
      line += message;
      append_text_fields(line, fields);
      logger_->log(to_spdlog(level), std::string_view(line));
    }
  } catch (...) {  // a failing sink must not take the server down
  }
}

std::unique_ptr<spdlog::formatter> SpdlogLogger::json_formatter() {
  return std::make_unique<JsonFormatter>();
}

std::shared_ptr<Logger> make_stderr_logger(LogLevel level, LogFormat format) {
  return std::make_shared<StderrLogger>(level, format);
}

std::shared_ptr<Logger> make_null_logger() { return std::make_shared<NullLogger>(); }

LogLevel parse_log_level(std::string_view text) {
  if (text == "trace") return LogLevel::trace;
  if (text == "debug") return LogLevel::debug;
  if (text == "info") return LogLevel::info;
  if (text == "warn" || text == "warning") return LogLevel::warn;
  if (text == "error") return LogLevel::error;
  if (text == "off") return LogLevel::off;
  throw std::invalid_argument("unknown log level '" + std::string(text) +
                              "' (trace, debug, info, warn, error, off)");
}

}  // namespace serialserver
