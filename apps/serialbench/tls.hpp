#pragma once

// serialbench's --tls: an OpenSSL client context and a blocking handshake per connection, done
// before the loop; the epoll engine then reads and writes through the SSL object.

#include "options.hpp"

#include <string>

#include <openssl/ssl.h>

namespace serialbench {

/// The OpenSSL error queue as one line (and emptied).
std::string openssl_errors();

/// The client TLS context of --tls: TLS 1.2 or later, the server verified against --tls-ca (or
/// the system's CAs), the client certificate of --tls-cert. Null with a message on failure.
SSL_CTX* make_tls_context(const Config& config);

/// The TLS handshake over a connected, still blocking socket, bounded by 10 s per read or
/// write. Returns the SSL object (the caller frees it), or null with a message on stderr.
SSL* tls_handshake(SSL_CTX* ctx, int fd, const Config& config);

}  // namespace serialbench
