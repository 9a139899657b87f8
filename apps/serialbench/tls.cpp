#include "tls.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>

#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace serialbench {

std::string openssl_errors() {
  std::string text;
  while (const unsigned long code = ::ERR_get_error()) {
    char buffer[256];
    ::ERR_error_string_n(code, buffer, sizeof buffer);
    if (!text.empty()) {
      text += "; ";
    }
    text += buffer;
  }
  return text.empty() ? std::string("unknown TLS error") : text;
}

SSL_CTX* make_tls_context(const Config& config) {
  SSL_CTX* ctx = ::SSL_CTX_new(::TLS_client_method());
  if (ctx == nullptr) {
    std::fprintf(stderr, "serialbench: TLS: %s\n", openssl_errors().c_str());
    return nullptr;
  }
  ::SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  ::SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  ::SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  const bool ca_ok = config.tls_ca.empty() ? ::SSL_CTX_set_default_verify_paths(ctx) == 1
                                           : ::SSL_CTX_load_verify_locations(
                                                 ctx, config.tls_ca.c_str(), nullptr) == 1;
  const bool cert_ok =
      config.tls_cert.empty() ||
      (::SSL_CTX_use_certificate_chain_file(ctx, config.tls_cert.c_str()) == 1 &&
       ::SSL_CTX_use_PrivateKey_file(ctx, config.tls_key.c_str(), SSL_FILETYPE_PEM) == 1);
  if (!ca_ok || !cert_ok) {
    std::fprintf(stderr, "serialbench: TLS %s: %s\n", ca_ok ? "certificate" : "CA file",
                 openssl_errors().c_str());
    ::SSL_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

SSL* tls_handshake(SSL_CTX* ctx, int fd, const Config& config) {
  SSL* ssl = ::SSL_new(ctx);
  const std::string& name =
      config.tls_server_name.empty() ? config.address.host : config.tls_server_name;
  in6_addr scratch{};
  const bool is_ip = ::inet_pton(AF_INET, name.c_str(), &scratch) == 1 ||
                     ::inet_pton(AF_INET6, name.c_str(), &scratch) == 1;
  X509_VERIFY_PARAM* param = ::SSL_get0_param(ssl);
  if (is_ip) {
    ::X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
  } else {
    ::SSL_set_tlsext_host_name(ssl, name.c_str());
    ::X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
  }
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  ::SSL_set_fd(ssl, fd);
  if (::SSL_connect(ssl) != 1) {
    const long verify = ::SSL_get_verify_result(ssl);
    const std::string reason = verify != X509_V_OK
                                   ? std::string("certificate verify failed (") +
                                         ::X509_verify_cert_error_string(verify) + ")"
                                   : openssl_errors();
    std::fprintf(stderr, "serialbench: TLS handshake with %s failed: %s\n",
                 config.address.to_string().c_str(), reason.c_str());
    ::SSL_free(ssl);
    return nullptr;
  }
  timeval none{0, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
  return ssl;
}

}  // namespace serialbench
