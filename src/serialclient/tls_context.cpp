#include "tls_context.hpp"

#include <string>
#include <system_error>

#include <openssl/ssl.h>

namespace serialclient::detail {

namespace {

/// Runs `load`, turning its failure into a std::system_error that names what was loaded.
template <class F>
void load_file(const char* what, const std::string& path, F&& load) {
  std::error_code ec;
  load(ec);
  if (ec) {
    throw std::system_error(ec, std::string("TLS ") + what + " '" + path + "'");
  }
}

}  // namespace

std::shared_ptr<asio::ssl::context> make_client_tls_context(const TlsOptions& options) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
  context->set_options(asio::ssl::context::default_workarounds);
  if (options.ca_file.empty()) {
    load_file("default CA paths", "",
              [&](std::error_code& ec) { context->set_default_verify_paths(ec); });
  } else {
    load_file("CA file", options.ca_file,
              [&](std::error_code& ec) { context->load_verify_file(options.ca_file, ec); });
  }
  context->set_verify_mode(asio::ssl::verify_peer);
  if (!options.certificate_file.empty()) {
    const std::string& key =
        options.private_key_file.empty() ? options.certificate_file : options.private_key_file;
    load_file("certificate", options.certificate_file, [&](std::error_code& ec) {
      context->use_certificate_chain_file(options.certificate_file, ec);
    });
    load_file("private key", key, [&](std::error_code& ec) {
      context->use_private_key_file(key, asio::ssl::context::pem, ec);
    });
  }
  return context;
}

}  // namespace serialclient::detail
