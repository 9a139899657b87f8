#include <serialserver/error.hpp>
#include <serialserver/metrics.hpp>

namespace serialserver {

std::string_view task_outcome_name(TaskOutcome outcome) noexcept {
  switch (outcome) {
    case TaskOutcome::ok:
      return "ok";
    case TaskOutcome::error:
      return "error";
    case TaskOutcome::dropped:
      return "dropped";
    case TaskOutcome::goodbye:
      return "goodbye";
  }
  return "other";
}

std::string_view drop_reason_name(DropReason reason) noexcept {
  switch (reason) {
    case DropReason::max_connections:
      return "max_connections";
    case DropReason::max_connections_per_address:
      return "max_connections_per_address";
    case DropReason::handshake_failed:
      return "handshake_failed";
    case DropReason::handshake_timeout:
      return "handshake_timeout";
    case DropReason::shutting_down:
      return "shutting_down";
  }
  return "other";
}

std::string_view close_reason_name(std::error_code reason) noexcept {
  if (!reason) {
    return "none";
  }
  if (reason.category() != error_category()) {
    return "other";
  }
  switch (static_cast<Errc>(reason.value())) {
    case Errc::graceful_disconnect:
      return "graceful_disconnect";
    case Errc::timeout_waiting_for_task:
      return "timeout_waiting_for_task";
    case Errc::read_timeout:
      return "read_timeout";
    case Errc::write_timeout:
      return "write_timeout";
    case Errc::peer_closed:
      return "peer_closed";
    case Errc::end_of_message:
      return "end_of_message";
    case Errc::message_too_large:
      return "message_too_large";
    case Errc::task_failed:
      return "task_failed";
    case Errc::response_failed:
      return "response_failed";
    case Errc::closed_by_server:
      return "closed_by_server";
    case Errc::handshake_failed:
      return "handshake_failed";
    case Errc::too_many_connections:
      return "too_many_connections";
    case Errc::cancelled:
      return "cancelled";
    case Errc::request_timeout:
      return "request_timeout";
  }
  return "other";
}

}  // namespace serialserver
