// The idle check over TLS, against the in-process server: what arrives between calls must be
// decrypted to be understood. Records without content (TLS 1.3 session tickets) leave the
// connection in use; the server leaving it (a Goodbye, its close_notify, its end) retires it.

#include "demo_tasks.hpp"
#include "support/loopback.hpp"
#include "tls/tls_certs.hpp"

#include <chrono>
#include <string>
#include <string_view>

#include <gtest/gtest.h>
#include <serialclient/serialclient.hpp>

namespace serialclient::test {
namespace {

using namespace std::chrono_literals;
using serialserver::test::eventually;
using serialserver::test::TestServer;
using serialserver::test::TlsCerts;

Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }

TEST(IdleTls, PoolKeepsItsConnectionAndRetiresItOnceTheServerLeaves) {
  const TlsCerts certs;
  ASSERT_TRUE(certs.ok()) << certs.log();
  auto listener = TestServer::default_listener_options();
  listener.tls = serialserver::TlsOptions{certs.path("server.pem"), certs.path("server.key"), ""};
  TestServer server(TestServer::quiet_options(), listener);
  demo::register_demo_tasks(server.server());
  server.start();

  PoolOptions options;
  options.retry.enabled = false;  // a retirement is not a retry
  options.connection.tls = TlsOptions{};
  options.connection.tls->ca_file = certs.path("ca.pem");
  Pool pool("127.0.0.1:" + std::to_string(server.port()), options);
  std::error_code ec;
  Result r = pool.call(1, text("hi"), ec);  // the demo's echo
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.response, text("hi"));
  const auto first = server.server().clients();
  ASSERT_EQ(first.size(), 1U);
  for (int i = 0; i < 3; ++i) {
    r = pool.call(1, text("again"), ec);
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_EQ(r.response, text("again"));
  }
  const auto still = server.server().clients();
  ASSERT_EQ(still.size(), 1U);
  EXPECT_EQ(still.front(), first.front()) << "an idle TLS connection was retired for nothing";

  server.server().disconnect(0s);
  ASSERT_TRUE(eventually([&] { return server.server().num_clients() == 0; }));
  r = pool.call(1, text("later"), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.response, text("later"));
  EXPECT_EQ(pool.size(), 1U);
}

}  // namespace
}  // namespace serialclient::test
