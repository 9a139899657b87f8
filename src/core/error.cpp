#include <serialserver/error.hpp>

#include <string>

namespace serialserver {

namespace {

// The messages match the Go packages' error texts where those exist, so logs read the same.
class ErrorCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "serialserver"; }

  std::string message(int value) const override {
    switch (static_cast<Errc>(value)) {
      case Errc::graceful_disconnect:
        return "client requested to disconnect";
      case Errc::timeout_waiting_for_task:
        return "timeout whilst waiting for task";
      case Errc::read_timeout:
        return "timeout whilst reading the request";
      case Errc::write_timeout:
        return "timeout whilst writing the response";
      case Errc::peer_closed:
        return "peer closed the connection";
      case Errc::end_of_message:
        return "end of message";
      case Errc::message_too_large:
        return "message too large";
      case Errc::task_failed:
        return "task failed without an error code";
      case Errc::response_failed:
        return "producing the response failed after OK was sent";
      case Errc::closed_by_server:
        return "connection closed";
      case Errc::handshake_failed:
        return "handshake failed";
      case Errc::too_many_connections:
        return "too many connections";
      case Errc::cancelled:
        return "task cancelled";
      case Errc::request_timeout:
        return "timeout whilst receiving the request (max_request_duration)";
    }
    return "unknown serialserver error " + std::to_string(value);
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  // A function-local static: thread-safe initialisation, and no static-order problems for
  // error codes made during other static initialisation.
  static const ErrorCategory kCategory;
  return kCategory;
}

}  // namespace serialserver
