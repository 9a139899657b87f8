// serialserver-log, the real binary, against a small logd-compatible server made in the test
// with the library (logd's handshake, task 6 delete, no task 5): the delete request's bytes, the
// report of an Error answer, and TLS (--tls, --tls-ca, --tls-cert, --tls-key,
// --tls-server-name) with certificates made by the `openssl` command.

#include <serialserver/binary_writer.hpp>
#include "log_cli_support.hpp"
#include "logd_protocol.hpp"
#include "tls/tls_certs.hpp"

#include <array>
#include <limits>
#include <mutex>

namespace {

using logcli_test::cli;
using logcli_test::run;
using logcli_test::TempDir;
using serialserver::test::TestServer;
using serialserver::test::TlsCerts;
using namespace std::chrono_literals;

/// The logd handshake without a token, and task 6 answering 42 after recording its query.
class FakeLogd {
 public:
  explicit FakeLogd(std::optional<serialserver::TlsOptions> tls = std::nullopt) {
    auto listener_options = TestServer::default_listener_options();
    listener_options.tls = std::move(tls);
    listener_options.handshake = [](serialserver::HandshakeStream& stream)
        -> asio::awaitable<serialserver::HandshakeResult> {
      std::array<std::uint8_t, 1> order{};
      co_await stream.async_read_exact(order);
      const std::array<std::uint8_t, 2> answer{order[0], logd::kHandshakeNoToken};
      co_await stream.async_write(answer);
      serialserver::HandshakeResult result;
      result.byte_order = order[0] == logd::kHandshakeLittle
                              ? serialserver::ByteOrder::little_endian
                              : serialserver::ByteOrder::big_endian;
      co_return result;
    };
    server_ = std::make_unique<TestServer>(TestServer::quiet_options(), listener_options);
    server_->server().register_task(
        logd::kTaskDelete,
        [this](serialserver::TaskContext& ctx,
               std::span<const std::uint8_t> request) -> serialserver::Response {
          try {
            const auto query = logd::decode_delete_query(request, ctx.byte_order());
            std::lock_guard lock(mutex_);
            queries_.push_back(query);
          } catch (const logd::ProtocolError& e) {
            throw serialserver::TaskError(e.code());
          }
          serialserver::BinaryWriter w(ctx.byte_order());
          logd::encode_delete_result(w, 42);
          return serialserver::Response::copy_of(w.data());
        },
        {.name = "delete"});
    server_->start();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  std::vector<logd::DeleteQuery> queries() const {
    std::lock_guard lock(mutex_);
    return queries_;
  }

 private:
  std::unique_ptr<TestServer> server_;
  mutable std::mutex mutex_;
  std::vector<logd::DeleteQuery> queries_;
};

TEST(LogCliFake, DeleteSendsTask6) {
  TempDir dir;
  FakeLogd fake;
  for (const char* order : {"big", "little"}) {
    const std::string base =
        cli() + " --addr " + fake.address() + " --byte-order " + std::string(order);
    const auto all = run(dir, base + " delete web");
    EXPECT_EQ(all.status, 0) << all.err;
    EXPECT_EQ(all.out, "42\n");
    const auto before = run(dir, base + " delete web --before 2024-05-01");
    EXPECT_EQ(before.status, 0) << before.err;
    EXPECT_EQ(before.out, "42\n");
  }
  const auto queries = fake.queries();
  ASSERT_EQ(queries.size(), 4U);
  for (std::size_t i = 0; i < 4; i += 2) {
    EXPECT_EQ(queries[i].log, "web");
    EXPECT_EQ(queries[i].before_ns, std::numeric_limits<std::int64_t>::max());
    EXPECT_EQ(queries[i + 1].before_ns, 1714521600LL * 1000000000LL);
  }
}

TEST(LogCliFake, ErrorAnswerIsReportedInOneLine) {
  TempDir dir;
  FakeLogd fake;  // has no task 5
  const auto o = run(dir, cli() + " --addr " + fake.address() + " list");
  EXPECT_EQ(o.status, 2);
  EXPECT_EQ(o.err, "serialserver-log: error 255 (unknown task)\n");
  EXPECT_EQ(o.out, "");
}

TEST(LogCliFake, TlsFlags) {
  TempDir dir;
  TlsCerts certs;
  ASSERT_TRUE(certs.ok()) << certs.log();
  FakeLogd fake(serialserver::TlsOptions{certs.path("server.pem"), certs.path("server.key"), ""});
  const std::string base = cli() + " --addr " + fake.address();

  const auto ok = run(dir, base + " --tls --tls-ca " + certs.path("ca.pem") + " delete web");
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(ok.out, "42\n");
  // The name to check can be given; "localhost" is on the certificate, "example.org" is not.
  const auto named = run(dir, base + " --tls --tls-ca " + certs.path("ca.pem") +
                                  " --tls-server-name localhost delete web");
  EXPECT_EQ(named.status, 0) << named.err;
  const auto wrong_name = run(dir, base + " --tls --tls-ca " + certs.path("ca.pem") +
                                       " --tls-server-name example.org delete web");
  EXPECT_EQ(wrong_name.status, 1);
  // A client certificate is presented when given (this server does not ask for one).
  const auto mutual = run(dir, base + " --tls --tls-ca " + certs.path("ca.pem") + " --tls-cert " +
                                   certs.path("client.pem") + " --tls-key " +
                                   certs.path("client.key") + " delete web");
  EXPECT_EQ(mutual.status, 0) << mutual.err;
  // A server certificate from a CA not trusted: a failure in one line.
  const auto untrusted =
      run(dir, base + " --tls --tls-ca " + certs.path("other-ca.pem") + " delete web");
  EXPECT_EQ(untrusted.status, 1);
  EXPECT_EQ(std::count(untrusted.err.begin(), untrusted.err.end(), '\n'), 1) << untrusted.err;
  EXPECT_NE(untrusted.err.find("TLS handshake with " + fake.address()), std::string::npos)
      << untrusted.err;
  // Plaintext against the TLS server fails too.
  EXPECT_NE(run(dir, base + " --timeout 2s delete web").status, 0);
  EXPECT_EQ(fake.queries().size(), 3U);

  // The flags' own checks: usage errors, exit 64, nothing sent.
  const std::vector<std::pair<std::string, std::string>> usage = {
      {" --tls --tls-ca " + dir.file("nofile.pem") + " list", dir.file("nofile.pem")},
      {" --tls-ca " + certs.path("ca.pem") + " list", "--tls"},
      {" --tls --tls-cert " + certs.path("client.pem") + " list", "--tls-key"},
      {" --tls --tls-cert " + dir.file("none.pem") + " --tls-key " + certs.path("client.key") +
           " list",
       dir.file("none.pem")},
  };
  for (const auto& [args, what] : usage) {
    const auto o = run(dir, base + args);
    EXPECT_EQ(o.status, 64) << args << ": " << o.err;
    EXPECT_NE(o.err.find(what), std::string::npos) << args << ": " << o.err;
  }
  EXPECT_EQ(fake.queries().size(), 3U);
}

}  // namespace
