#pragma once

#include <string>

namespace serialserver {

/// TLS for a Listener (OpenSSL through asio::ssl). TLS 1.2 is the oldest version accepted; TLS 1.3
/// is preferred when the peer offers it. The files are PEM and are read by Listener::start(),
/// which throws std::system_error if one cannot be loaded (or if the key does not match the
/// certificate), and again by Listener::reload_tls(), for the connections accepted after it.
///
/// The TLS handshake runs right after accept and before the handshake hook, under
/// ListenerOptions::handshake_timeout (one deadline for both), and counts toward the connection
/// limits. A failed TLS handshake (a plaintext client, a bad certificate, an old protocol) is
/// logged with the peer's address and reason, the socket is closed, and the listener carries on.
/// A connection that ends normally sends its last response (Goodbye included), then a TLS
/// close_notify, and waits at most min(Write timeout, 2 s) for the peer's.
///
/// TLS is for TCP listeners; Listener::start() throws std::invalid_argument for a Unix socket.
/// Thread-safety: a plain value.
struct TlsOptions {
  /// The server's certificate, followed by any intermediate certificates (PEM).
  std::string certificate_chain_file;
  /// The private key of that certificate (PEM, unencrypted).
  std::string private_key_file;
  /// CA certificates (PEM) that client certificates must chain to. Non-empty: mutual TLS, every
  /// client must present a certificate that verifies against them. Empty: no client
  /// certificates are asked for.
  std::string client_ca_file;
};

}  // namespace serialserver
