#pragma once

#include <serialserver/byte_order.hpp>
#include <serialserver/listener.hpp>
#include <serialserver/logger.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>

#include <asio/awaitable.hpp>
#include <serialclient/tls.hpp>

namespace serialclient {

/// The raw connection as a handshake hook sees it: the same interface the server's hook gets, so
/// that both halves of an application's handshake are written against one type.
using HandshakeStream = serialserver::HandshakeStream;

/// A handshake hook: a coroutine over the raw stream, run right after connecting and before the
/// first task, under Options::handshake_timeout. It returns the byte order it negotiated
/// (Connection::byte_order()). Throwing fails the connect with Errc::handshake_failed (or with
/// the std::system_error it threw).
using HandshakeFunction = std::function<asio::awaitable<serialserver::ByteOrder>(HandshakeStream&)>;

/// Options of a client connection. Every field has the Go client's default where it had one.
/// Thread-safety: a plain value, copied into each connection.
struct Options {
  /// Go: the client's default wait for a response.
  static constexpr std::chrono::nanoseconds kDefaultResponseTimeout = std::chrono::minutes(10);
  /// Go: the client's default rolling read timeout.
  static constexpr std::chrono::nanoseconds kDefaultReadTimeout = std::chrono::minutes(5);
  /// Go: the client's default rolling write timeout.
  static constexpr std::chrono::nanoseconds kDefaultWriteTimeout = std::chrono::seconds(5);
  /// Go: the idle time after which the client sends the keep-alive task.
  static constexpr std::chrono::nanoseconds kDefaultKeepAliveInterval = std::chrono::minutes(3);

  /// The longest wait for a response code, counted from the end of the request.
  std::chrono::nanoseconds response_timeout = kDefaultResponseTimeout;
  /// Rolling timeout, re-armed by every read, while the rest of a response is read.
  std::chrono::nanoseconds read_timeout = kDefaultReadTimeout;
  /// Rolling timeout, re-armed by every write, while a request is written.
  std::chrono::nanoseconds write_timeout = kDefaultWriteTimeout;
  /// Idle time after which the keep-alive task (250) is sent, so that the server's Wait timeout
  /// does not close the connection; zero disables keep-alives.
  std::chrono::nanoseconds keep_alive_interval = kDefaultKeepAliveInterval;
  /// The longest that resolving and connecting may take.
  std::chrono::nanoseconds connect_timeout = std::chrono::seconds(30);
  /// Handshake hook; empty means none (big-endian).
  HandshakeFunction handshake;
  /// The longest a handshake may take.
  std::chrono::nanoseconds handshake_timeout = std::chrono::seconds(10);
  /// TLS for the connection (see TlsOptions); empty means plaintext.
  std::optional<TlsOptions> tls;
  /// Logger for connection events (keep-alive failures and the like); null means none.
  std::shared_ptr<serialserver::Logger> logger;
};

}  // namespace serialclient
