#pragma once

#include <string>

namespace serialclient {

/// TLS for a client connection (OpenSSL through asio::ssl): TLS 1.2 or later, the server's
/// certificate always verified, against `ca_file` or the system's default CA paths, and its name
/// checked. The TLS handshake runs right after connecting, before the handshake hook, under
/// Options::handshake_timeout; if it fails, connecting fails with Errc::tls_failed (the reason,
/// such as "certificate verify failed", in the exception's what()), or Errc::handshake_failed if
/// it timed out. TLS is for TCP addresses: a Unix socket path fails with Errc::invalid_address.
/// The files are read on every connect.
/// Thread-safety: a plain value.
struct TlsOptions {
  /// CA certificates (PEM) the server's certificate must chain to; empty means the system's
  /// default verify paths.
  std::string ca_file;
  /// The name the server's certificate must carry (a DNS name, or an IP address matched against
  /// its IP SANs), also sent as SNI when it is a DNS name. Empty means the host of the address.
  std::string server_name;
  /// A client certificate (PEM, with any intermediates) for servers that require one (mutual
  /// TLS); empty means none.
  std::string certificate_file;
  /// The private key of certificate_file (PEM, unencrypted); empty means the key is in
  /// certificate_file.
  std::string private_key_file;
};

}  // namespace serialclient
