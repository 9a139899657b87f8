#pragma once

#include <serialserver/protocol.hpp>

#include <exception>
#include <string>
#include <system_error>

namespace serialserver {

/// Errors that the library reports, as std::error_code values in the "serialserver" category.
/// They compare with Asio's and the standard library's error codes.
enum class Errc {
  /// A graceful disconnection closed the connection (Client::disconnect, server shutdown, or the
  /// client's goodbye task). Go: ErrGracefulDisconnect.
  graceful_disconnect = 1,
  /// No task code arrived within the Wait timeout. Go: ErrTimeoutWaitingForTask.
  timeout_waiting_for_task,
  /// The rolling Read timeout expired while a request was being read.
  read_timeout,
  /// The rolling Write timeout expired while a response was being written.
  write_timeout,
  /// The peer closed the connection.
  peer_closed,
  /// A read went past the end of a message (the Go side's io.EOF).
  end_of_message,
  /// A request's content exceeded the configured limit.
  message_too_large,
  /// A task function failed without an error code: the connection was dropped.
  task_failed,
  /// Producing the response failed after OK was sent: the connection was dropped.
  response_failed,
  /// The connection was closed by Client::close() or by the server.
  closed_by_server,
  /// The handshake failed or timed out.
  handshake_failed,
  /// The connection was refused because a connection limit was reached.
  too_many_connections,
  /// A task was cancelled.
  cancelled,
  /// A request took longer than ServerOptions::max_request_duration to arrive in full.
  request_timeout,
};

/// The "serialserver" error category. Thread-safety: safe from any thread (a static object).
const std::error_category& error_category() noexcept;

/// Makes an error_code in the serialserver category.
inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// Thrown by a task function to answer Error + code (the Go ErrorCoder interface). Any other
/// exception from a task function drops the connection without a response.
/// Thread-safety: an immutable value.
class TaskError : public std::exception {
 public:
  /// Answers Error + `code`; `message` (default "task error code N") is for the server's log.
  explicit TaskError(ErrorCode code, std::string message = {})
      : code_(code), message_(std::move(message)) {
    if (message_.empty()) {
      message_ = "task error code " + std::to_string(code_);
    }
  }
  /// The error code sent to the client.
  ErrorCode code() const noexcept { return code_; }
  /// The message given to the constructor.
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  ErrorCode code_;
  std::string message_;
};

/// Thrown by readers that are asked for bytes past the end of a message (the Go io.EOF).
/// Its code() is Errc::end_of_message.
class EndOfMessage : public std::system_error {
 public:
  EndOfMessage() : std::system_error(make_error_code(Errc::end_of_message)) {}
};

}  // namespace serialserver

/// @cond INTERNAL
template <>
struct std::is_error_code_enum<serialserver::Errc> : std::true_type {};
/// @endcond
