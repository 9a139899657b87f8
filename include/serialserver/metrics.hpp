#pragma once

#include <serialserver/protocol.hpp>

#include <chrono>
#include <cstdint>
#include <string_view>
#include <system_error>

namespace serialserver {

class Client;

/// How a task ended.
enum class TaskOutcome : std::uint8_t {
  ok,       ///< OK and the response were sent
  error,    ///< Error + code was sent
  dropped,  ///< the connection was dropped without a response
  goodbye,  ///< Goodbye was sent instead of running the task
};

/// One finished task, as reported to Metrics::task_finished.
struct TaskRecord {
  /// The task code.
  TaskCode code = 0;
  std::string_view name;  ///< the registered name; empty for unregistered and reserved codes
  /// How the task ended.
  TaskOutcome outcome = TaskOutcome::ok;
  ErrorCode error_code = 0;  ///< meaningful when outcome == error
  /// From the task code's arrival to the task's end.
  std::chrono::nanoseconds duration{0};
  std::uint64_t bytes_read = 0;     ///< request content bytes
  std::uint64_t bytes_written = 0;  ///< response content bytes
};

/// Receives the server's measurements (Go: metrics.Interface). The application passes one in;
/// by default there is none. Every method has an empty default, so an implementation overrides
/// only what it records.
/// Thread-safety: implementations must be safe to call from any thread at once; calls come from
/// the I/O threads, so they must be quick and must not block.
/// Lifetime: held by std::shared_ptr.
class Metrics {
 public:
  virtual ~Metrics() = default;
  /// A connection was handed to the server.
  virtual void connection_opened(const Client& /*client*/) noexcept {}
  /// A connection ended; `reason` says why (an Errc or a transport error).
  virtual void connection_closed(const Client& /*client*/, std::error_code /*reason*/) noexcept {}
  /// A task (including the reserved ones) ended.
  virtual void task_finished(const Client& /*client*/, const TaskRecord& /*record*/) noexcept {}
};

}  // namespace serialserver
