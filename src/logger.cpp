#include <serialserver/logger.hpp>

#include <stdexcept>

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

class NullLogger final : public Logger {
 public:
  bool enabled(LogLevel /*level*/) const noexcept override { return false; }
  void write(LogLevel /*level*/, std::string_view /*message*/) noexcept override {}
};

}  // namespace

SpdlogLogger::SpdlogLogger(std::shared_ptr<spdlog::logger> logger) : logger_(std::move(logger)) {
  if (!logger_) {
    throw std::invalid_argument("SpdlogLogger: null spdlog logger");
  }
}

bool SpdlogLogger::enabled(LogLevel level) const noexcept {
  return level != LogLevel::off && logger_->should_log(to_spdlog(level));
}

void SpdlogLogger::write(LogLevel level, std::string_view message) noexcept {
  try {
    logger_->log(to_spdlog(level), message);
  } catch (...) {  // a failing sink must not take the server down
  }
}

std::shared_ptr<Logger> make_stderr_logger(LogLevel level) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("serialserver", std::move(sink));
  logger->set_level(to_spdlog(level));
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  return std::make_shared<SpdlogLogger>(std::move(logger));
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
