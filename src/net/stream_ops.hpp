#pragma once

#include <concepts>
#include <string>
#include <system_error>

#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/ssl/error.hpp>
#include <asio/ssl/stream.hpp>

namespace serialserver::detail {

/// Streams that are plain sockets: the connection uses readiness waits and non-blocking
/// reads and writes on them (the fewest syscalls), and a generic async_read_some /
/// async_write_some path for everything else (TLS, the in-memory test stream).
template <class Stream>
concept PlainSocket = std::same_as<Stream, asio::ip::tcp::socket> ||
    std::same_as<Stream, asio::local::stream_protocol::socket>;

/// A TLS connection over TCP, as a TLS listener serves it.
using TlsSocket = asio::ssl::stream<asio::ip::tcp::socket>;

/// TLS streams: the connection uses the generic path and ends with a bounded TLS shutdown.
template <class Stream>
concept TlsStream = std::same_as<Stream, TlsSocket>;

/// The socket under a stream (the stream itself for a plain socket).
template <class Stream>
auto& lowest_socket(Stream& stream) noexcept {
  if constexpr (TlsStream<Stream>) {
    return stream.next_layer();
  } else {
    return stream;
  }
}

/// True for the errors that mean the peer has gone: end of stream, reset, broken pipe, and a TLS
/// stream cut without close_notify.
inline bool is_peer_gone_error(const std::error_code& ec) noexcept {
  return ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::ssl::error::stream_truncated;
}

/// Closes a stream (or the socket under it), ignoring errors.
template <class Stream>
void close_stream(Stream& stream) noexcept {
  std::error_code ignored;
  if constexpr (requires { stream.lowest_layer(); }) {
    stream.lowest_layer().shutdown(asio::socket_base::shutdown_both, ignored);
    stream.lowest_layer().close(ignored);
  } else if constexpr (requires { stream.close(ignored); }) {
    stream.close(ignored);
  } else {
    stream.close();
  }
}

/// Cancels the stream's pending operations (they complete with operation_aborted), ignoring
/// errors; the stream stays open.
template <class Stream>
void cancel_stream(Stream& stream) noexcept {
  std::error_code ignored;
  lowest_socket(stream).cancel(ignored);
}

/// "127.0.0.1:7070", "[::1]:7070".
std::string endpoint_to_string(const asio::ip::tcp::endpoint& endpoint);
/// The socket path (or "@name" for an abstract socket, "unix" if unnamed).
std::string endpoint_to_string(const asio::local::stream_protocol::endpoint& endpoint);

/// The local and remote address of a socket as strings ("?" where it cannot be read).
template <class Socket>
std::pair<std::string, std::string> socket_addresses(const Socket& socket) {
  std::error_code ec;
  auto local = socket.local_endpoint(ec);
  std::string local_text = ec ? std::string("?") : endpoint_to_string(local);
  auto remote = socket.remote_endpoint(ec);
  std::string remote_text = ec ? std::string("?") : endpoint_to_string(remote);
  return {std::move(local_text), std::move(remote_text)};
}

}  // namespace serialserver::detail
