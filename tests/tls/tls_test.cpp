// TLS over loopback: the Listener's TLS (server certificate, mutual TLS, TLS 1.2 at least) with
// the client library on both APIs, plaintext peers on either side, a large streamed message,
// and Goodbye on shutdown. Certificates are made at test time (tls_certs.hpp).

#include "support/loopback.hpp"
#include "tls_certs.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <asio/co_spawn.hpp>
#include <asio/read.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <demo_tasks.hpp>
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <serialclient/serialclient.hpp>

namespace serialserver::test {
namespace {

class Tls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { certs_ = new TlsCerts(); }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(certs_->ok()) << certs_->log(); }

  static std::string cert(const std::string& name) { return certs_->path(name); }

  /// Server TLS options with the test CA's server certificate; `client_ca` for mutual TLS.
  static TlsOptions server_tls(const std::string& client_ca = "") {
    return TlsOptions{cert("server.pem"), cert("server.key"),
                      client_ca.empty() ? std::string() : cert(client_ca)};
  }
  /// Starts a server with the demo tasks, TLS as given.
  void start(std::optional<TlsOptions> tls, std::chrono::nanoseconds handshake_timeout = 10s) {
    auto listener_options = TestServer::default_listener_options();
    listener_options.tls = std::move(tls);
    listener_options.handshake_timeout = handshake_timeout;
    server_ = std::make_unique<TestServer>(TestServer::quiet_options(), listener_options);
    demo::register_demo_tasks(server_->server());
    server_->start();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  CapturingLogger& log() { return *server_->logger(); }

  /// Client options trusting `ca`, with an optional client certificate.
  static serialclient::Options client_tls(const std::string& ca = "ca.pem",
                                          const std::string& client = "") {
    serialclient::Options options;
    options.tls = serialclient::TlsOptions{};
    options.tls->ca_file = cert(ca);
    if (!client.empty()) {
      options.tls->certificate_file = cert(client + ".pem");
      options.tls->private_key_file = cert(client + ".key");
    }
    options.handshake_timeout = 10s;
    options.response_timeout = 20s;
    return options;
  }

  /// True if an echo over a fresh TLS connection with `options` works.
  bool echo_works(const serialclient::Options& options) {
    serialclient::Client client(options);
    std::error_code ec;
    client.connect(address(), ec);
    if (ec) {
      return false;
    }
    const Bytes hello = bytes({'h', 'i'});
    const auto result = client.call(1, hello, ec);
    return !ec && result.ok() && result.response == hello;
  }

  /// True once the server logged a failed TLS handshake with 127.0.0.1: refused by the server
  /// ("failed"), or, unless `refused_only`, also ended by the peer.
  bool logged_tls_failure(bool refused_only = false) {
    return eventually([&] {
      for (const auto& line : log().lines()) {
        if (line.find("TLS handshake with 127.0.0.1:") != std::string::npos &&
            (line.find("failed") != std::string::npos ||
             (!refused_only && line.find("closed the connection") != std::string::npos))) {
          return true;
        }
      }
      return false;
    });
  }

  static TlsCerts* certs_;
  std::unique_ptr<TestServer> server_;
};

TlsCerts* Tls::certs_ = nullptr;

TEST_F(Tls, BadConfigurationsAreRefusedAtStart) {
  Server server(TestServer::quiet_options());
  const auto attempt = [&](ListenerOptions options) {
    Listener listener(server, std::move(options));
    listener.start();
  };
  ListenerOptions options = TestServer::default_listener_options();
  options.tls = server_tls();
  options.tls->certificate_chain_file = cert("missing.pem");
  EXPECT_THROW(attempt(options), std::system_error);
  options.tls = server_tls();
  options.tls->private_key_file = cert("client.key");  // not the certificate's key
  EXPECT_THROW(attempt(options), std::system_error);
  options.tls = server_tls("missing-ca.pem");
  EXPECT_THROW(attempt(options), std::system_error);
  options.tls = server_tls();
  options.address = cert("tls.sock");  // TLS is for TCP
  EXPECT_THROW(attempt(options), std::invalid_argument);

  // The client: TLS to a Unix socket, and a CA file that is not there.
  serialclient::Client client(client_tls());
  std::error_code ec;
  client.connect(cert("tls.sock"), ec);
  EXPECT_EQ(ec, serialclient::Errc::invalid_address);
  serialclient::Client missing_ca(client_tls("missing-ca.pem"));
  missing_ca.connect("127.0.0.1:1", ec);
  EXPECT_TRUE(ec);
}

TEST_F(Tls, OkErrorAndGoodbyeWithTheBlockingClient) {
  start(server_tls());
  EXPECT_TRUE(log().contains("(TLS)"));
  serialclient::Client client(client_tls());
  std::error_code ec;
  client.connect(address(), ec);
  ASSERT_FALSE(ec) << ec.message();
  const Bytes hello = bytes({'h', 'e', 'l', 'l', 'o'});
  auto result = client.call(1, hello, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(result.ok());
  EXPECT_EQ(result.response, hello);
  result = client.call(3, bytes({42}), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(result.is_error());
  EXPECT_EQ(result.error_code, 42);
  result = client.keep_alive(ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(result.ok());
  result = client.goodbye(ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(result.is_goodbye());
  EXPECT_FALSE(client.is_open());
  // The server saw a goodbye, not a broken connection.
  EXPECT_TRUE(eventually([&] { return server_->server().num_clients() == 0; }));
  EXPECT_TRUE(log().contains(make_error_code(Errc::graceful_disconnect).message()));
}

TEST_F(Tls, CoroutineClient) {
  start(server_tls());
  asio::io_context io;
  std::optional<serialclient::Result> echo;
  std::optional<serialclient::Result> error;
  std::optional<serialclient::Result> goodbye;
  std::exception_ptr failure;
  const std::string where = address();
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto connection = co_await serialclient::Connection::async_connect(where, client_tls());
        const Bytes content = bytes({1, 2, 3});
        echo = co_await connection.async_call(1, content);
        const Bytes code = bytes({7});
        error = co_await connection.async_call(3, code);
        goodbye = co_await connection.async_goodbye();
      },
      [&](std::exception_ptr e) { failure = e; });
  io.run_for(30s);
  ASSERT_FALSE(failure);
  ASSERT_TRUE(echo && error && goodbye);
  EXPECT_EQ(echo->response, bytes({1, 2, 3}));
  EXPECT_TRUE(error->is_error());
  EXPECT_EQ(error->error_code, 7);
  EXPECT_TRUE(goodbye->is_goodbye());
}

TEST_F(Tls, ServerNameIsVerified) {
  start(server_tls());
  auto options = client_tls();
  options.tls->server_name = "localhost";  // in the certificate's SANs, and sent as SNI
  EXPECT_TRUE(echo_works(options));
  // By name: "localhost" resolves to an address the server listens on (or the next one).
  {
    serialclient::Client client(client_tls());
    std::error_code ec;
    client.connect("localhost:" + std::to_string(server_->port()), ec);
    EXPECT_FALSE(ec) << ec.message();
  }
  options.tls->server_name = "example.com";  // not in the certificate
  serialclient::Client client(options);
  std::error_code ec;
  client.connect(address(), ec);
  EXPECT_EQ(ec, serialclient::Errc::tls_failed);
  EXPECT_FALSE(client.is_open());
}

TEST_F(Tls, ClientRejectsAServerFromAnotherCa) {
  start(server_tls());
  serialclient::Client client(client_tls("other-ca.pem"));
  std::error_code ec;
  client.connect(address(), ec);
  EXPECT_EQ(ec, serialclient::Errc::tls_failed) << ec.message();
  EXPECT_TRUE(logged_tls_failure());  // the client's alert ends the server's handshake
  EXPECT_TRUE(echo_works(client_tls()));
}

TEST_F(Tls, MutualTlsAcceptsAClientCertificateAndRejectsTheRest) {
  start(server_tls("ca.pem"));
  EXPECT_TRUE(echo_works(client_tls("ca.pem", "client")));

  // Without a certificate, or with one from another CA. Under TLS 1.3 the client finishes its
  // side of the handshake before the server has checked its certificate, so the refusal may
  // reach it at connect or at the first call: either way it is a clean error.
  for (const std::string client_cert : {"", "other-client"}) {
    SCOPED_TRACE("client certificate: '" + client_cert + "'");
    serialclient::Client client(client_tls("ca.pem", client_cert));
    std::error_code ec;
    client.connect(address(), ec);
    if (!ec) {
      const auto result = client.call(1, bytes({'x'}), ec);
      (void)result;
    }
    EXPECT_TRUE(ec);
    EXPECT_FALSE(client.is_open());
  }
  EXPECT_TRUE(eventually([&] {
    std::size_t failures = 0;
    for (const auto& line : log().lines()) {
      if (line.find("TLS handshake with 127.0.0.1:") != std::string::npos &&
          line.find("failed") != std::string::npos) {
        ++failures;
      }
    }
    return failures >= 2;
  })) << "the server did not log both refusals";
  EXPECT_EQ(server_->server().num_clients(), 0U);
  EXPECT_TRUE(echo_works(client_tls("ca.pem", "client")));
}

TEST_F(Tls, PlaintextClientAgainstTlsServerFailsCleanlyOnBothSides) {
  start(server_tls());
  const auto started = std::chrono::steady_clock::now();
  {
    // A raw plaintext request (longer than a TLS record header, so that OpenSSL judges it at
    // once): the server logs the failed handshake and closes; no response comes.
    RawClient raw(server_->port());
    raw.send(bytes({0x01, 0x05, 'h', 'e', 'l', 'l', 'o', 0x00}));
    EXPECT_TRUE(raw.closed_within(5000ms));
    EXPECT_TRUE(logged_tls_failure(/*refused_only=*/true));
  }
  {
    // The plaintext library client: a clean transport error, not a hang or a bogus result.
    serialclient::Options options;
    options.response_timeout = 10s;
    serialclient::Client client(options);
    std::error_code ec;
    client.connect(address(), ec);
    ASSERT_FALSE(ec) << ec.message();  // TCP connects; the failure comes with the first call
    const auto result = client.call(1, bytes({'h', 'e', 'l', 'l', 'o', ' ', 'T', 'L', 'S'}), ec);
    EXPECT_TRUE(ec == serialclient::Errc::connection_closed ||
                ec == serialclient::Errc::protocol_error)
        << ec.message();
    EXPECT_FALSE(client.is_open());
  }
  EXPECT_LT(elapsed_since(started), 5000ms + kTimingSlack);
  EXPECT_TRUE(eventually([&] { return server_->listener().num_connections() == 0; }));
  // The listener carries on.
  EXPECT_TRUE(echo_works(client_tls()));
}

TEST_F(Tls, TlsClientAgainstPlaintextServerFailsCleanly) {
  start(std::nullopt);
  auto options = client_tls();
  options.handshake_timeout = 3s;
  const auto started = std::chrono::steady_clock::now();
  serialclient::Client client(options);
  std::error_code ec;
  client.connect(address(), ec);
  // The server reads the ClientHello as a request and answers (or waits for more): either way
  // the client's handshake fails, or times out.
  EXPECT_TRUE(ec == serialclient::Errc::tls_failed || ec == serialclient::Errc::handshake_failed)
      << ec.message();
  EXPECT_LT(elapsed_since(started), 3000ms + kTimingSlack);
  // The plaintext server carries on.
  serialclient::Client plain;
  plain.connect(address(), ec);
  ASSERT_FALSE(ec) << ec.message();
  const auto result = plain.call(1, bytes({'o', 'k'}), ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(result.response, bytes({'o', 'k'}));
}

TEST_F(Tls, HandshakeHooksRunOverTls) {
  auto listener_options = TestServer::default_listener_options();
  listener_options.tls = server_tls();
  listener_options.handshake = [](HandshakeStream& s) -> asio::awaitable<HandshakeResult> {
    std::uint8_t order = 0;
    co_await s.async_read_exact(std::span(&order, 1));
    const std::uint8_t ack = 'k';
    co_await s.async_write(std::span(&ack, 1));
    HandshakeResult result;
    result.byte_order = order == 'L' ? ByteOrder::little_endian : ByteOrder::big_endian;
    co_return result;
  };
  server_ = std::make_unique<TestServer>(TestServer::quiet_options(), listener_options);
  // Task 9 answers the connection's byte order, as the hook chose it.
  server_->server().register_task(
      9,
      [](TaskContext& ctx) -> asio::awaitable<Response> {
        co_return Response(
            Bytes{static_cast<std::uint8_t>(ctx.byte_order() == ByteOrder::little_endian)});
      },
      "order");
  server_->start();
  auto options = client_tls();
  options.handshake = [](HandshakeStream& s) -> asio::awaitable<ByteOrder> {
    const std::uint8_t order = 'L';
    co_await s.async_write(std::span(&order, 1));
    std::uint8_t ack = 0;
    co_await s.async_read_exact(std::span(&ack, 1));
    if (ack != 'k') {
      throw std::runtime_error("bad ack");
    }
    co_return ByteOrder::little_endian;
  };
  serialclient::Client client(options);
  std::error_code ec;
  client.connect(address(), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(client.byte_order(), ByteOrder::little_endian);
  const auto result = client.call(9, {}, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(result.response, bytes({1}));
}

TEST_F(Tls, SilentPeerTimesOutInTheTlsHandshake) {
  start(server_tls(), 500ms);
  const auto started = std::chrono::steady_clock::now();
  RawClient raw(server_->port());  // connects and says nothing
  EXPECT_TRUE(raw.closed_within(500ms + 5000ms));
  EXPECT_GE(elapsed_since(started), 450ms);
  EXPECT_TRUE(eventually([&] { return log().contains("timed out"); }));
  EXPECT_TRUE(eventually([&] { return server_->listener().num_connections() == 0; }));
}

/// A raw OpenSSL client limited to [min_version, max_version]; true if the handshake succeeded
/// and a keep-alive was answered OK.
bool raw_tls_keep_alive(std::uint16_t port, const std::string& ca, int min_version,
                        int max_version) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        &SSL_CTX_free);
  SSL_CTX_set_min_proto_version(ctx.get(), min_version);
  SSL_CTX_set_max_proto_version(ctx.get(), max_version);
  // TLS 1.1 needs security level 0 in OpenSSL 3: allow it here, so that the refusal is the
  // server's.
  SSL_CTX_set_cipher_list(ctx.get(), "DEFAULT:@SECLEVEL=0");
  SSL_CTX_load_verify_locations(ctx.get(), ca.c_str(), nullptr);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  RawClient raw(port);
  timeval timeout{10, 0};
  ::setsockopt(raw.fd(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), &SSL_free);
  SSL_set_fd(ssl.get(), raw.fd());
  if (SSL_connect(ssl.get()) != 1) {
    return false;
  }
  const std::uint8_t keep_alive[2] = {kKeepAliveTaskCode, 0x00};
  if (SSL_write(ssl.get(), keep_alive, 2) != 2) {
    return false;
  }
  std::uint8_t answer[2] = {0xFF, 0xFF};
  std::size_t got = 0;
  while (got < 2) {
    const int n = SSL_read(ssl.get(), answer + got, static_cast<int>(2 - got));
    if (n <= 0) {
      return false;
    }
    got += static_cast<std::size_t>(n);
  }
  return answer[0] == 0x00 && answer[1] == 0x00;
}

TEST_F(Tls, ProtocolVersions) {
  start(server_tls());
  EXPECT_FALSE(raw_tls_keep_alive(server_->port(), cert("ca.pem"), TLS1_1_VERSION, TLS1_1_VERSION));
  EXPECT_TRUE(logged_tls_failure(/*refused_only=*/true)) << "the server did not refuse TLS 1.1";
  EXPECT_TRUE(raw_tls_keep_alive(server_->port(), cert("ca.pem"), TLS1_2_VERSION, TLS1_2_VERSION));
  EXPECT_TRUE(raw_tls_keep_alive(server_->port(), cert("ca.pem"), TLS1_3_VERSION, TLS1_3_VERSION));
}

TEST_F(Tls, LargeMessagesStreamBothWays) {
  start(server_tls());
  constexpr std::uint64_t kSize = std::uint64_t{64} << 20;
  serialclient::Client client(client_tls());
  std::error_code ec;
  client.connect(address(), ec);
  ASSERT_FALSE(ec) << ec.message();

  // A 64 MiB response (task 4: byte i is i mod 256), read as it streams.
  std::uint64_t received = 0;
  bool pattern_ok = true;
  const serialclient::BlockingProducer size_request = [&](serialclient::BlockingRequestWriter& w) {
    w.write(big_endian<std::uint64_t>(kSize));
  };
  const serialclient::BlockingConsumer check = [&](serialclient::BlockingResponseReader& r) {
    std::vector<std::uint8_t> buffer(256 * 1024);
    for (;;) {
      const std::size_t n = r.read_some(buffer);
      if (n == 0) {
        return;
      }
      for (std::size_t i = 0; i < n; ++i) {
        pattern_ok = pattern_ok && buffer[i] == static_cast<std::uint8_t>((received + i) % 256);
      }
      received += n;
    }
  };
  auto result = client.call(4, size_request, check, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(result.ok());
  EXPECT_EQ(received, kSize);
  EXPECT_TRUE(pattern_ok);

  // A 64 MiB request (task 6 counts it), written as it is produced.
  const serialclient::BlockingProducer big = [&](serialclient::BlockingRequestWriter& w) {
    std::vector<std::uint8_t> chunk(1 << 20, 0xA5);
    for (std::uint64_t sent = 0; sent < kSize; sent += chunk.size()) {
      w.write(chunk);
    }
  };
  result = client.call(6, big, {}, ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.response, big_endian<std::uint64_t>(kSize));
}

TEST_F(Tls, GracefulShutdownSaysGoodbyeOverTls) {
  start(server_tls());
  // Task 100 holds the connection busy until the shutdown has begun.
  auto started = std::make_shared<std::atomic<bool>>(false);
  server_->server().register_task(
      100,
      [started](TaskContext& ctx) -> asio::awaitable<Response> {
        started->store(true);
        asio::steady_timer timer(co_await asio::this_coro::executor);
        timer.expires_after(500ms);
        co_await timer.async_wait(asio::use_awaitable);
        (void)ctx;
        co_return Response();
      },
      "busy");
  serialclient::Client client(client_tls());
  std::error_code ec;
  client.connect(address(), ec);
  ASSERT_FALSE(ec) << ec.message();
  const Bytes echo_content = bytes({'e'});
  const std::vector<serialclient::Call> calls{{100, {}}, {1, echo_content}};
  auto batch = std::async(std::launch::async, [&] {
    std::error_code batch_ec;
    auto results = client.call_batch(calls, batch_ec);
    return std::make_pair(results, batch_ec);
  });
  ASSERT_TRUE(eventually([&] { return started->load(); }));
  server_->listener().shutdown(5s);
  ASSERT_EQ(batch.wait_for(20s), std::future_status::ready);
  const auto [results, batch_ec] = batch.get();
  ASSERT_FALSE(batch_ec) << batch_ec.message();
  ASSERT_EQ(results.size(), 2U);
  EXPECT_TRUE(results[0].ok());          // the running task finishes within the grace
  EXPECT_TRUE(results[1].is_goodbye());  // the next request is answered Goodbye
  EXPECT_TRUE(eventually([&] { return server_->listener().num_connections() == 0; }, 10000ms));
}

// Section 7 over TLS: after the unprompted Goodbye the server sends close_notify, shuts its
// socket's sending side, and reads and discards what the client still sends until the linger
// ends, so that the client's late bytes do not reset the connection under the Goodbye.
TEST_F(Tls, AnIdleConnectionGetsGoodbyeThenCloseNotifyAndALinger) {
  start(server_tls());
  asio::io_context io;
  asio::ssl::context context(asio::ssl::context::tls_client);
  context.load_verify_file(cert("ca.pem"));
  context.set_verify_mode(asio::ssl::verify_peer);
  asio::ssl::stream<asio::ip::tcp::socket> stream(io, context);
  stream.lowest_layer().connect(
      {asio::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(server_->port())});
  stream.handshake(asio::ssl::stream_base::client);
  const Bytes keep_alive = bytes({0xFA, 0x00});
  asio::write(stream, asio::buffer(keep_alive));
  Bytes answer(2);
  asio::read(stream, asio::buffer(answer));
  ASSERT_EQ(answer, bytes({0x00, 0x00}));
  ASSERT_TRUE(eventually([&] { return server_->server().num_clients() == 1; }));

  server_->server().disconnect(5s);
  Bytes goodbye(1);
  asio::read(stream, asio::buffer(goodbye));
  EXPECT_EQ(goodbye, bytes({0x02}));
  std::error_code ec;
  std::array<std::uint8_t, 16> more{};
  stream.read_some(asio::buffer(more), ec);
  EXPECT_EQ(ec, asio::error::eof) << ec.message();  // the server's close_notify
  // Late bytes from the client, below TLS: the lingering server discards them. A server that
  // had closed would answer the first with a reset, and a later write would fail.
  const auto started = std::chrono::steady_clock::now();
  const Bytes late = bytes({0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00});
  for (int i = 0; i < 5; ++i) {
    asio::write(stream.next_layer(), asio::buffer(late), ec);
    EXPECT_FALSE(ec) << "write " << i << ": " << ec.message();
    std::this_thread::sleep_for(100ms);
  }
  // The linger ends (1 s) and the connection with it.
  EXPECT_TRUE(eventually([&] { return server_->server().num_clients() == 0; }, 5000ms));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 4s);
}

}  // namespace
}  // namespace serialserver::test
