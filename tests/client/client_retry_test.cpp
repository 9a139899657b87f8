// A single Client's opt-in retry (Client::call with a RetryPolicy) against raw servers on
// 127.0.0.1 that answer busy, Goodbye, other errors, or drop the connection after a request.

#include "scripted_server.hpp"
#include "support/loopback.hpp"

#include <chrono>
#include <string>
#include <string_view>
#include <thread>

#include <gtest/gtest.h>
#include <serialclient/serialclient.hpp>

namespace serialclient::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }

/// A client connected to `address` (the connect must succeed).
std::unique_ptr<Client> connected_to(const std::string& address) {
  auto client = std::make_unique<Client>();
  std::error_code ec;
  client->connect(address, ec);
  EXPECT_FALSE(ec) << ec.message();
  return client;
}

TEST(ClientRetry, PlainCallIsNeverRetried) {
  ScriptedServer server([](int n) { return n < 2 ? Reply::busy : Reply::ok; });
  auto client = connected_to(server.raw.address());
  std::error_code ec;
  const Result r = client->call(1, text("x"), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.error_code, 253);
  EXPECT_EQ(server.requests.load(), 1);
}

TEST(ClientRetry, BusyTwiceThenOkReturnsOkOnTheSameConnection) {
  ScriptedServer server([](int n) { return n < 2 ? Reply::busy : Reply::ok; });
  auto client = connected_to(server.raw.address());
  std::error_code ec;
  const Result r = client->call(1, text("x"), ec, RetryPolicy{});
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.response, text("done"));
  EXPECT_EQ(server.requests.load(), 3);
  EXPECT_EQ(server.raw.accepted(), 1);
}

TEST(ClientRetry, DisabledPolicyAndFinalAnswersAreNotRetried) {
  ScriptedServer server([](int n) { return n == 1 ? Reply::deadline_exceeded : Reply::busy; });
  auto client = connected_to(server.raw.address());
  std::error_code ec;
  RetryPolicy off;
  off.enabled = false;
  EXPECT_EQ(client->call(1, text("x"), ec, off).error_code, 253);
  EXPECT_EQ(client->call(1, text("x"), ec, RetryPolicy{}, {.idempotent = true}).error_code, 252);
  EXPECT_EQ(server.requests.load(), 2);
}

TEST(ClientRetry, GoodbyeAnswerReconnectsAndSendsAgain) {
  ScriptedServer server([](int n) { return n == 0 ? Reply::goodbye : Reply::ok; });
  auto client = connected_to(server.raw.address());
  std::error_code ec;
  const Result r = client->call(1, text("x"), ec, RetryPolicy{});
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.response, text("done"));
  EXPECT_EQ(server.requests.load(), 2);
  EXPECT_EQ(server.raw.accepted(), 2);
  EXPECT_TRUE(client->is_open());
}

TEST(ClientRetry, DroppedCallIsSentAgainOnlyIfIdempotent) {
  ScriptedServer server([](int n) { return n % 2 == 0 ? Reply::drop : Reply::ok; });
  auto client = connected_to(server.raw.address());
  std::error_code ec;
  client->call(1, text("x"), ec, RetryPolicy{});  // request 0 dropped: it may have run
  EXPECT_EQ(ec, Errc::connection_closed) << ec.message();
  EXPECT_EQ(server.requests.load(), 1);
  // Reopened for the next call (request 1: OK); request 2 is dropped and sent again (3: OK).
  Result r = client->call(1, text("x"), ec, RetryPolicy{});
  ASSERT_FALSE(ec) << ec.message();
  r = client->call(1, text("x"), ec, RetryPolicy{}, {.idempotent = true});
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.response, text("done"));
  EXPECT_EQ(server.requests.load(), 4);
  EXPECT_EQ(server.raw.accepted(), 3);
}

TEST(ClientRetry, RefusedReconnectsGoOnUntilAServerListens) {
  const std::uint16_t port = serialserver::test::free_port();
  Client client;
  std::error_code ec;
  client.connect("127.0.0.1:" + std::to_string(port), ec);
  ASSERT_EQ(ec, std::errc::connection_refused) << ec.message();
  // Nothing listens yet: the call backs off and reconnects until the server starts.
  std::unique_ptr<ScriptedServer> server;
  std::thread starter([&] {
    std::this_thread::sleep_for(200ms);
    server = std::make_unique<ScriptedServer>([](int) { return Reply::ok; }, port);
  });
  const Result r = client.call(1, text("x"), ec, RetryPolicy{});
  starter.join();
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.response, text("done"));
}

TEST(ClientRetry, RefusedConnectsEndWithTheBudget) {
  const std::uint16_t port = serialserver::test::free_port();  // nothing listens there
  Client client;
  std::error_code ec;
  client.connect("127.0.0.1:" + std::to_string(port), ec);
  RetryPolicy policy;
  policy.budget = 300ms;
  const auto start = Clock::now();
  client.call(1, text("x"), ec, policy);
  const auto elapsed = Clock::now() - start;
  EXPECT_EQ(ec, std::errc::connection_refused) << ec.message();
  EXPECT_GT(elapsed, 50ms);  // several back-offs, not one attempt
  EXPECT_LT(elapsed, 300ms + 1s);
}

TEST(ClientRetry, WithoutAConnectThereIsNowhereToGo) {
  Client client;
  std::error_code ec;
  client.call(1, text("x"), ec, RetryPolicy{});
  EXPECT_EQ(ec, Errc::connection_closed) << ec.message();
}

}  // namespace
}  // namespace serialclient::test
