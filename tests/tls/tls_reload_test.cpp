// Listener::reload_tls over loopback: after the certificate files are replaced and reloaded, a
// new TLS connection is served with the new certificate while one opened before keeps working;
// a bad file is refused and the listener keeps the certificate it had. And the same through
// serialserver-demo's SIGHUP. Certificates are made at test time (tls_certs.hpp).

#include "support/loopback.hpp"
#include "tls_certs.hpp"

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <asio/ssl.hpp>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace serialserver::test {
namespace {

const Bytes kKeepAlive = bytes({0xFA, 0x00});
const Bytes kOkEmpty = bytes({0x00, 0x00});

/// A blocking TLS client that trusts any certificate, to look at the one the server presents.
class RawTlsClient {
 public:
  explicit RawTlsClient(std::uint16_t port)
      : context_(asio::ssl::context::tls_client), stream_(io_, context_) {
    context_.set_verify_mode(asio::ssl::verify_none);
    stream_.lowest_layer().connect({asio::ip::make_address("127.0.0.1"), port});
    stream_.handshake(asio::ssl::stream_base::client);
  }
  /// The server certificate's DER bytes.
  std::string peer_certificate() {
    X509* cert = SSL_get1_peer_certificate(stream_.native_handle());
    if (cert == nullptr) {
      return {};
    }
    std::string der = to_der(cert);
    X509_free(cert);
    return der;
  }
  /// A keep-alive round trip: true if answered OK.
  bool keep_alive() {
    std::error_code ec;
    asio::write(stream_, asio::buffer(kKeepAlive), ec);
    Bytes answer(2);
    if (!ec) {
      asio::read(stream_, asio::buffer(answer), ec);
    }
    return !ec && answer == kOkEmpty;
  }

  static std::string to_der(X509* cert) {
    unsigned char* out = nullptr;
    const int size = i2d_X509(cert, &out);
    std::string der;
    if (size > 0) {
      der.assign(reinterpret_cast<const char*>(out), static_cast<std::size_t>(size));
    }
    OPENSSL_free(out);
    return der;
  }

 private:
  asio::io_context io_;
  asio::ssl::context context_;
  asio::ssl::stream<asio::ip::tcp::socket> stream_;
};

/// The DER bytes of the first certificate of a PEM file.
std::string certificate_in(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "r");
  if (file == nullptr) {
    return {};
  }
  X509* cert = PEM_read_X509(file, nullptr, nullptr, nullptr);
  std::fclose(file);
  if (cert == nullptr) {
    return {};
  }
  std::string der = RawTlsClient::to_der(cert);
  X509_free(cert);
  return der;
}

class TlsReload : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { certs_ = new TlsCerts(); }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(certs_->ok()) << certs_->log();
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ =
        std::filesystem::temp_directory_path() /
        ("serialserver-tls-reload-" + std::string(info->name()) + "-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    install("server");  // certificate A
    cert_a_ = certificate_in(certs_->path("server.pem"));
    cert_b_ = certificate_in(certs_->path("other-server.pem"));
    ASSERT_FALSE(cert_a_.empty());
    ASSERT_FALSE(cert_b_.empty());
    ASSERT_NE(cert_a_, cert_b_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  /// Copies the certificate `name`.pem and its key over the files the server is given.
  void install(const std::string& name) {
    using std::filesystem::copy_options;
    std::filesystem::copy_file(certs_->path(name + ".pem"), cert_file(),
                               copy_options::overwrite_existing);
    std::filesystem::copy_file(certs_->path(name + ".key"), key_file(),
                               copy_options::overwrite_existing);
  }
  std::string cert_file() const { return (dir_ / "cert.pem").string(); }
  std::string key_file() const { return (dir_ / "key.pem").string(); }

  static TlsCerts* certs_;
  std::filesystem::path dir_;
  std::string cert_a_;
  std::string cert_b_;
};

TlsCerts* TlsReload::certs_ = nullptr;

TEST_F(TlsReload, NewConnectionsGetTheNewCertificateOldOnesKeepWorking) {
  auto options = TestServer::default_listener_options();
  options.tls = TlsOptions{cert_file(), key_file(), ""};
  TestServer s(TestServer::quiet_options(), options);
  s.start();

  RawTlsClient old_connection(s.port());
  EXPECT_EQ(old_connection.peer_certificate(), cert_a_);
  ASSERT_TRUE(old_connection.keep_alive());

  install("other-server");  // certificate B
  ASSERT_NO_THROW(s.listener().reload_tls());
  EXPECT_TRUE(s.logger()->contains("TLS certificate reloaded"));

  RawTlsClient new_connection(s.port());
  EXPECT_EQ(new_connection.peer_certificate(), cert_b_);
  EXPECT_TRUE(new_connection.keep_alive());
  // The connection from before is still served, with the certificate it was made with.
  EXPECT_TRUE(old_connection.keep_alive());
  EXPECT_EQ(old_connection.peer_certificate(), cert_a_);
}

TEST_F(TlsReload, ABadFileIsRefusedAndTheOldCertificateStays) {
  auto options = TestServer::default_listener_options();
  options.tls = TlsOptions{cert_file(), key_file(), ""};
  TestServer s(TestServer::quiet_options(), options);
  s.start();

  // A key that does not match the certificate.
  std::filesystem::copy_file(certs_->path("other-server.key"), key_file(),
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_THROW(s.listener().reload_tls(), std::system_error);
  // A certificate file that is not PEM.
  std::ofstream(cert_file()) << "not a certificate\n";
  EXPECT_THROW(s.listener().reload_tls(), std::system_error);

  RawTlsClient c(s.port());
  EXPECT_EQ(c.peer_certificate(), cert_a_);
  EXPECT_TRUE(c.keep_alive());
}

TEST_F(TlsReload, PlaintextListenerRefusesAReload) {
  TestServer s(TestServer::quiet_options(), TestServer::default_listener_options());
  s.start();
  EXPECT_THROW(s.listener().reload_tls(), std::logic_error);
  RawClient c(s.port());
  EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
}

TEST_F(TlsReload, DemoReloadsOnSighupAndKeepsServingAfterABadOne) {
  const auto port = free_port();
  const auto log_path = (dir_ / "demo.log").string();
  ChildProcess demo(bin_dir() + "/serialserver-demo",
                    {"--listen", "127.0.0.1:" + std::to_string(port), "--grace", "0s", "--tls-cert",
                     cert_file(), "--tls-key", key_file()},
                    log_path);
  ASSERT_TRUE(wait_for_port(port));
  const auto log = [&] {
    std::ifstream in(log_path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  RawTlsClient old_connection(port);
  EXPECT_EQ(old_connection.peer_certificate(), cert_a_);

  install("other-server");
  demo.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] {
    return log().find("TLS certificate reloaded") != std::string::npos;
  })) << log();
  {
    RawTlsClient c(port);
    EXPECT_EQ(c.peer_certificate(), cert_b_);
    EXPECT_TRUE(c.keep_alive());
  }
  EXPECT_TRUE(old_connection.keep_alive());

  // A bad file: logged as an error, and the server goes on with certificate B.
  std::ofstream(cert_file()) << "not a certificate\n";
  demo.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return log().find("not reloaded") != std::string::npos; })) << log();
  EXPECT_FALSE(demo.wait_exit(200ms).has_value());
  {
    RawTlsClient c(port);
    EXPECT_EQ(c.peer_certificate(), cert_b_);
    EXPECT_TRUE(c.keep_alive());
  }
  demo.signal(SIGTERM);
  EXPECT_EQ(demo.wait_exit(10000ms), std::optional<int>(0)) << log();
}

}  // namespace
}  // namespace serialserver::test
