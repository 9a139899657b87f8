#pragma once

#include <serialserver/tls.hpp>

#include <memory>

#include <asio/ssl/context.hpp>

namespace serialserver::detail {

/// The server-side TLS context for `options`: TLS 1.2 or later, the certificate chain and key
/// loaded (and checked to match), and client certificates required and verified when a client CA
/// file is given. Throws std::system_error naming the file that could not be loaded.
std::shared_ptr<asio::ssl::context> make_server_tls_context(const TlsOptions& options);

}  // namespace serialserver::detail
