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

/// "ok", "error", "dropped" or "goodbye", for metric labels and log fields.
/// Thread-safety: a pure function.
std::string_view task_outcome_name(TaskOutcome outcome) noexcept;

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

/// Why the listener dropped an accepted connection before the server served it.
enum class DropReason : std::uint8_t {
  max_connections,              ///< ListenerOptions::max_connections was reached
  max_connections_per_address,  ///< ListenerOptions::max_connections_per_address was reached
  handshake_failed,             ///< the TLS handshake failed or the handshake hook threw
  handshake_timeout,            ///< the handshake took longer than handshake_timeout
  shutting_down,                ///< the listener was shutting down when the handshake ended
};

/// A short, stable name for a DropReason ("max_connections", "handshake_timeout", ...), for
/// metric labels and log fields. Thread-safety: a pure function.
std::string_view drop_reason_name(DropReason reason) noexcept;

/// A short, stable name for the reason a connection ended, for metric labels and log fields: the
/// Errc enumerator's name ("peer_closed", "read_timeout", ...) for errors in the serialserver
/// category, "none" for no error, and "other" for anything else (a transport error).
/// Thread-safety: a pure function.
std::string_view close_reason_name(std::error_code reason) noexcept;

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
  /// The listener dropped a connection before handing it to the server (a connection limit, the
  /// handshake); `remote_address` is in the form of Client::remote_address. Such a connection
  /// is never reported to connection_opened or connection_closed.
  virtual void connection_dropped(std::string_view /*remote_address*/,
                                  DropReason /*reason*/) noexcept {}
  /// At ListenerOptions::max_connections, the listener began the graceful close of `client`,
  /// the served connection idle the longest, to admit a newcomer. The connection is still
  /// reported to connection_closed when it ends (its reason: graceful_disconnect).
  virtual void connection_evicted(const Client& /*client*/) noexcept {}
};

}  // namespace serialserver
