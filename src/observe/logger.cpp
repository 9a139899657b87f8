#include <serialserver/logger.hpp>

#include <cmath>
#include <iterator>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace serialserver {

namespace {

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

/// Appends `value` as a JSON string body (no quotes): escapes quotes, backslashes and control
/// characters. Other bytes pass through (UTF-8 stays UTF-8).
void append_escaped(std::string& out, std::string_view value) {
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
}

void append_quoted(std::string& out, std::string_view value) {
  out += '"';
  append_escaped(out, value);
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

void append_value(std::string& out, LogFormat format, const LogField& field) {
  auto it = std::back_inserter(out);
  switch (field.kind()) {
    case LogField::Kind::string:
      if (format == LogFormat::json || needs_quotes(field.string_value())) {
        append_quoted(out, field.string_value());
      } else {
        out += field.string_value();
      }
      return;
    case LogField::Kind::int64:
      fmt::format_to(it, "{}", field.int_value());
      return;
    case LogField::Kind::uint64:
      fmt::format_to(it, "{}", field.uint_value());
      return;
    case LogField::Kind::floating:
      if (std::isfinite(field.double_value())) {
        fmt::format_to(it, "{}", field.double_value());
      } else {
        out += format == LogFormat::json ? "null" : "NaN";  // JSON has no infinities or NaN
      }
      return;
    case LogField::Kind::boolean:
      out += field.bool_value() ? "true" : "false";
      return;
  }
}

class NullLogger final : public Logger {
 public:
  bool enabled(LogLevel /*level*/) const noexcept override { return false; }
  void write(LogLevel /*level*/, std::string_view /*message*/) noexcept override {}
};

}  // namespace

void append_log_fields(std::string& out, LogFormat format, std::string_view message,
                       std::span<const LogField> fields) {
  if (format == LogFormat::json) {
    out += "\"msg\":";
    append_quoted(out, message);
    for (const auto& field : fields) {
      out += ',';
      append_quoted(out, field.key());
      out += ':';
      append_value(out, format, field);
    }
    return;
  }
  out += "msg=";
  append_quoted(out, message);
  for (const auto& field : fields) {
    out += ' ';
    out += field.key();
    out += '=';
    append_value(out, format, field);
  }
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
    // Most lines fit here without a heap allocation.
    std::string line;
    line.reserve(256);
    append_log_fields(line, format_, message, fields);
    logger_->log(to_spdlog(level), std::string_view(line));
  } catch (...) {  // a failing sink must not take the server down
  }
}

void SpdlogLogger::set_pattern(spdlog::logger& logger, LogFormat format) {
  // spdlog's %l names the levels trace, debug, info, warning, error, critical, off.
  if (format == LogFormat::json) {
    logger.set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l",%v})",
                       spdlog::pattern_time_type::utc);
  } else {
    logger.set_pattern("ts=%Y-%m-%dT%H:%M:%S.%fZ level=%l %v", spdlog::pattern_time_type::utc);
  }
}

std::shared_ptr<Logger> make_stderr_logger(LogLevel level, LogFormat format) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("serialserver", std::move(sink));
  logger->set_level(to_spdlog(level));
  SpdlogLogger::set_pattern(*logger, format);
  return std::make_shared<SpdlogLogger>(std::move(logger), format);
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
