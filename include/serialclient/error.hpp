#pragma once

#include <system_error>

namespace serialclient {

/// Errors that the client reports, as std::error_code values in the "serialclient" category.
/// A remote Error response is not one of them: it is a value of Result.
enum class Errc {
  /// The connection is closed: closed by close(), by an earlier failure, or by the peer (also
  /// when the peer closes in the middle of a response). Go: ErrConnectionClosed.
  connection_closed = 1,
  /// The server answered Goodbye: the task was not run and the connection is closing.
  /// Go: ErrConnectionClosing.
  connection_closing,
  /// No response code arrived within Options::response_timeout.
  /// Go: ErrTimeoutWaitingForResponse.
  timeout_waiting_for_response,
  /// The rolling read timeout expired while a response was being read.
  read_timeout,
  /// The rolling write timeout expired while a request was being written.
  write_timeout,
  /// Connecting (including name resolution) did not finish within Options::connect_timeout.
  connect_timeout,
  /// An application call named a reserved task code (250..255); nothing was sent.
  reserved_task_code,
  /// The server sent a byte that the protocol does not allow (an unknown response code).
  protocol_error,
  /// The handshake hook failed.
  handshake_failed,
  /// The address could not be parsed (or TLS was asked for on a Unix socket).
  invalid_address,
  /// The TLS handshake failed: the server is not speaking TLS, its certificate does not verify
  /// or does not carry the expected name, it refused our certificate, or no protocol version is
  /// shared.
  tls_failed,
};

/// The "serialclient" error category. Thread-safety: safe from any thread (a static object).
const std::error_category& error_category() noexcept;

/// Makes an error_code in the serialclient category. Thread-safety: a pure function.
inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace serialclient

/// @cond INTERNAL
template <>
struct std::is_error_code_enum<serialclient::Errc> : std::true_type {};
/// @endcond
