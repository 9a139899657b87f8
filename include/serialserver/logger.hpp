#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace spdlog {
class formatter;
class logger;
}  // namespace spdlog

namespace serialserver {

/// Severity of a log line.
enum class LogLevel : int { trace, debug, info, warn, error, off };

/// How lines are rendered.
enum class LogFormat : std::uint8_t {
  /// logfmt-style key=value text: `msg="connection closed" client=... tasks=3`.
  text,
  /// JSON lines: `{"ts":...,"level":...,"msg":"connection closed","client":...,"tasks":3}`.
  json,
};

/// Parses "text" or "json"; throws std::invalid_argument.
LogFormat parse_log_format(std::string_view text);

/// One field of a structured log line: a key and a string, integer, floating-point or boolean
/// value. A view: the key and a string value must outlive the call it is passed to.
/// Thread-safety: an immutable value.
class LogField {
 public:
  /// Which of the value accessors holds the value.
  enum class Kind : std::uint8_t { string, int64, uint64, floating, boolean };

  // Each constructor sets the one union member that kind_ names, and each accessor reads the
  // member its kind names (the tagged union below).
  // NOLINTBEGIN(cppcoreguidelines-pro-type-member-init,cppcoreguidelines-pro-type-union-access)
  /// A string field (the view must outlive the call the field is passed to).
  LogField(std::string_view key, std::string_view value) noexcept
      : key_(key), kind_(Kind::string), string_(value) {}
  /// A string field viewing `value`.
  LogField(std::string_view key, const std::string& value) noexcept
      : LogField(key, std::string_view(value)) {}
  /// A string field viewing the NUL-terminated `value`.
  LogField(std::string_view key, const char* value) noexcept
      : LogField(key, std::string_view(value)) {}
  /// A boolean field (rendered true or false).
  LogField(std::string_view key, bool value) noexcept
      : key_(key), kind_(Kind::boolean), uint_(value ? 1 : 0) {}
  /// A signed integer field.
  template <std::signed_integral T>
  LogField(std::string_view key, T value) noexcept : key_(key), kind_(Kind::int64), int_(value) {}
  /// An unsigned integer field.
  template <std::unsigned_integral T>
  requires(!std::same_as<T, bool>) LogField(std::string_view key, T value)
  noexcept : key_(key), kind_(Kind::uint64), uint_(value) {}
  /// A floating-point field.
  LogField(std::string_view key, double value) noexcept
      : key_(key), kind_(Kind::floating), double_(value) {}

  /// The field's name.
  std::string_view key() const noexcept { return key_; }
  /// Which accessor below holds the value.
  Kind kind() const noexcept { return kind_; }
  /// The value of a Kind::string field.
  std::string_view string_value() const noexcept { return string_; }
  /// The value of a Kind::int64 field.
  std::int64_t int_value() const noexcept { return int_; }
  /// The value of a Kind::uint64 field.
  std::uint64_t uint_value() const noexcept { return uint_; }
  /// The value of a Kind::floating field.
  double double_value() const noexcept { return double_; }
  /// The value of a Kind::boolean field.
  bool bool_value() const noexcept { return uint_ != 0; }
  // NOLINTEND(cppcoreguidelines-pro-type-member-init,cppcoreguidelines-pro-type-union-access)

 private:
  std::string_view key_;
  Kind kind_;
  std::string_view string_;
  // A tagged union (kind_ says which member holds the value) rather than std::variant: a field
  // is built for every structured log call, and this keeps it a few trivially copied words.
  // NOLINTBEGIN(readability-identifier-naming)
  union {
    std::int64_t int_;
    std::uint64_t uint_ = 0;
    double double_;
  };
  // NOLINTEND(readability-identifier-naming)
};

/// Appends `message` and `fields` to `out` in `format`: for text, `msg="..." key=value ...`
/// (values quoted and escaped when they hold spaces, quotes, '=' or control characters); for
/// JSON, the members `"msg":"...","key":value,...` without the enclosing braces, so that a
/// line can add the time and level around them. JSON is written by nlohmann-json: control
/// characters are escaped, and bytes that are not valid UTF-8 are replaced by U+FFFD, so the
/// line is valid JSON whatever the values hold; non-finite numbers are written as null.
/// Thread-safety: a pure function.
void append_log_fields(std::string& out, LogFormat format, std::string_view message,
                       std::span<const LogField> fields);

/// Where the library and task functions write their feedback (Go: log.Interface). The
/// application passes one in; the default writes to stderr at info level.
/// Thread-safety: implementations must be safe to call from any thread at once.
/// Lifetime: held by std::shared_ptr; the server and each client keep theirs alive.
class Logger {
 public:
  virtual ~Logger() = default;
  /// True if a line at `level` would be written; callers check it before formatting.
  virtual bool enabled(LogLevel level) const noexcept = 0;
  /// Writes one line. Must not throw.
  virtual void write(LogLevel level, std::string_view message) noexcept = 0;
  /// Writes one structured line: a message and its fields. The default renders them as text
  /// (append_log_fields with LogFormat::text) and passes the result to write(); the stderr
  /// logger and SpdlogLogger render their own forms. Must not throw.
  virtual void write_fields(LogLevel level, std::string_view message,
                            std::span<const LogField> fields) noexcept;

  /// Writes a structured line if `level` is enabled. The fields are built before the call, so
  /// on a hot path check enabled() first.
  void event(LogLevel level, std::string_view message,
             std::initializer_list<LogField> fields) noexcept {
    if (enabled(level)) {
      write_fields(level, message, std::span<const LogField>(fields.begin(), fields.size()));
    }
  }

  /// Formats and writes a line if `level` is enabled.
  template <class... Args>
  void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) noexcept {
    if (!enabled(level)) {
      return;
    }
    try {
      write(level, fmt::format(format, std::forward<Args>(args)...));
    } catch (...) {  // formatting failed (out of memory): a log line is not worth a crash
    }
  }
  /// log() at LogLevel::debug.
  template <class... Args>
  void debug(fmt::format_string<Args...> format, Args&&... args) noexcept {
    log(LogLevel::debug, format, std::forward<Args>(args)...);
  }
  /// log() at LogLevel::info.
  template <class... Args>
  void info(fmt::format_string<Args...> format, Args&&... args) noexcept {
    log(LogLevel::info, format, std::forward<Args>(args)...);
  }
  /// log() at LogLevel::warn.
  template <class... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) noexcept {
    log(LogLevel::warn, format, std::forward<Args>(args)...);
  }
  /// log() at LogLevel::error.
  template <class... Args>
  void error(fmt::format_string<Args...> format, Args&&... args) noexcept {
    log(LogLevel::error, format, std::forward<Args>(args)...);
  }
};

/// A Logger that writes through an spdlog logger (the adapter for applications that use
/// spdlog). spdlog owns the line: its pattern (or formatter) adds the time, level and logger
/// name, and this adapter only supplies the message.
///
/// - LogFormat::text (the default): the message as it is, and a structured line's fields after
///   it as ` key=value` (quoted as append_log_fields does). With spdlog's default pattern:
///   `[2024-01-02 03:04:05.678] [app] [info] connection opened client=... id=1`.
/// - LogFormat::json: for a logger (or sinks) whose formatter is json_formatter(). Each record
///   becomes one JSON object with the time, level, logger name, message and fields as members;
///   records the application logs straight through spdlog get the same form, with only "msg".
///
/// Thread-safety: as safe as the spdlog logger given (the _mt sinks are).
class SpdlogLogger final : public Logger {
 public:
  /// Writes through `logger`, at the levels that logger has enabled, in `format` (see above).
  explicit SpdlogLogger(std::shared_ptr<spdlog::logger> logger, LogFormat format = LogFormat::text);
  bool enabled(LogLevel level) const noexcept override;
  void write(LogLevel level, std::string_view message) noexcept override;
  void write_fields(LogLevel level, std::string_view message,
                    std::span<const LogField> fields) noexcept override;
  /// The format given to the constructor.
  LogFormat format() const noexcept { return format_; }
  /// An spdlog formatter that writes each record as a JSON line, in UTC:
  /// `{"ts":"2024-01-02T03:04:05.678901Z","level":"info","logger":"app","msg":"...",...}`
  /// (levels as spdlog names them: trace, debug, info, warning, error, critical). Give it to
  /// the logger (`logger->set_formatter(SpdlogLogger::json_formatter())`) or to some of its
  /// sinks, and use LogFormat::json for the SpdlogLogger. Strings are escaped as
  /// append_log_fields does.
  static std::unique_ptr<spdlog::formatter> json_formatter();
  /// The wrapped spdlog logger.
  const std::shared_ptr<spdlog::logger>& spdlog_logger() const noexcept { return logger_; }

 private:
  std::shared_ptr<spdlog::logger> logger_;
  LogFormat format_;
};

/// The default logger: stderr, lines at `level` and above, in `format`: text lines read
/// `ts=2024-01-02T03:04:05.678901Z level=info msg="connection opened" id=1 ...` (logfmt), JSON
/// lines `{"ts":"2024-01-02T03:04:05.678901Z","level":"info","msg":"connection opened","id":1}`
/// (times in UTC; levels trace, debug, info, warning, error). Each line is written with one
/// fwrite(), so lines from several threads do not interleave. Thread-safe.
std::shared_ptr<Logger> make_stderr_logger(LogLevel level = LogLevel::info,
                                           LogFormat format = LogFormat::text);

/// A logger that discards everything. Thread-safe.
std::shared_ptr<Logger> make_null_logger();

/// Parses "trace", "debug", "info", "warn", "error" or "off"; throws std::invalid_argument.
LogLevel parse_log_level(std::string_view text);

}  // namespace serialserver
