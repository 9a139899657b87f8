#include "net/tls_context.hpp"

#include <system_error>

#include <openssl/ssl.h>

namespace serialserver::detail {

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

std::shared_ptr<asio::ssl::context> make_server_tls_context(const TlsOptions& options) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* native = context->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::single_dh_use);
  // An idle connection gives back OpenSSL's record buffers, as it gives back its own.
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  load_file("certificate chain", options.certificate_chain_file, [&](std::error_code& ec) {
    context->use_certificate_chain_file(options.certificate_chain_file, ec);
  });
  load_file("private key", options.private_key_file, [&](std::error_code& ec) {
    context->use_private_key_file(options.private_key_file, asio::ssl::context::pem, ec);
  });
  if (SSL_CTX_check_private_key(native) != 1) {
    throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                            "TLS private key '" + options.private_key_file +
                                "' does not match the certificate '" +
                                options.certificate_chain_file + "'");
  }
  if (!options.client_ca_file.empty()) {
    load_file("client CA file", options.client_ca_file,
              [&](std::error_code& ec) { context->load_verify_file(options.client_ca_file, ec); });
    // Tell clients which CAs are accepted, so that one with several certificates picks right.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.client_ca_file.c_str())) {
      SSL_CTX_set_client_CA_list(native, names);
    }
    context->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
  }
  return context;
}

}  // namespace serialserver::detail
