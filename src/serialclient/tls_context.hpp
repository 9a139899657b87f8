#pragma once

#include <memory>

#include <asio/ssl/context.hpp>
#include <serialclient/tls.hpp>

namespace serialclient::detail {

/// The client-side TLS context for `options`: TLS 1.2 or later, the server's certificate
/// verified against the CA file (or the system's default paths), and the client certificate
/// loaded if one is given. Throws std::system_error naming the file that could not be loaded.
std::shared_ptr<asio::ssl::context> make_client_tls_context(const TlsOptions& options);

}  // namespace serialclient::detail
