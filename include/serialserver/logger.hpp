#pragma once

#include <memory>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace spdlog {
class logger;
}

namespace serialserver {

/// Severity of a log line.
enum class LogLevel : int { trace, debug, info, warn, error, off };

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
/// spdlog). Thread-safety: as safe as the spdlog logger given (the _mt sinks are).
class SpdlogLogger final : public Logger {
 public:
  /// Writes through `logger`, at the levels that logger has enabled.
  explicit SpdlogLogger(std::shared_ptr<spdlog::logger> logger);
  bool enabled(LogLevel level) const noexcept override;
  void write(LogLevel level, std::string_view message) noexcept override;
  /// The wrapped spdlog logger.
  const std::shared_ptr<spdlog::logger>& spdlog_logger() const noexcept { return logger_; }

 private:
  std::shared_ptr<spdlog::logger> logger_;
};

/// The default logger: stderr, lines at `level` and above. Thread-safe.
std::shared_ptr<Logger> make_stderr_logger(LogLevel level = LogLevel::info);

/// A logger that discards everything. Thread-safe.
std::shared_ptr<Logger> make_null_logger();

/// Parses "trace", "debug", "info", "warn", "error" or "off"; throws std::invalid_argument.
LogLevel parse_log_level(std::string_view text);

}  // namespace serialserver
