// The Pool's retry policy (RetryPolicy, CallOptions) against raw servers on 127.0.0.1 that
// answer busy, Goodbye, other errors, or drop the connection after reading a request.

#include "scripted_server.hpp"
#include "support/loopback.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <serialclient/serialclient.hpp>

namespace serialclient::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }

TEST(PoolRetry, BusyTwiceThenOkReturnsOk) {
  ScriptedServer server([](int n) { return n < 2 ? Reply::busy : Reply::ok; });
  Pool pool(server.raw.address());
  std::error_code ec;
  const auto start = Clock::now();
  const Result r = pool.call(1, text("x"), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.response, text("done"));
  EXPECT_EQ(server.requests.load(), 3);
  EXPECT_LT(Clock::now() - start, 2s);
}

TEST(PoolRetry, BusyIsReturnedWhenRetriesAreOff) {
  ScriptedServer server([](int n) { return n < 2 ? Reply::busy : Reply::ok; });
  PoolOptions options;
  options.retry.enabled = false;
  Pool pool(server.raw.address(), options);
  std::error_code ec;
  const Result r = pool.call(1, text("x"), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(r.is_error());
  EXPECT_EQ(r.error_code, 253);
  EXPECT_EQ(server.requests.load(), 1);
}

TEST(PoolRetry, DeadlineExceededAndApplicationErrorsAreNotRetried) {
  ScriptedServer server([](int n) { return n == 0 ? Reply::deadline_exceeded : Reply::app_error; });
  Pool pool(server.raw.address());
  std::error_code ec;
  Result r = pool.call(1, text("x"), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.error_code, 252);
  EXPECT_EQ(server.requests.load(), 1);
  r = pool.call(1, text("x"), ec, CallOptions{.idempotent = true});
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.error_code, 7);
  EXPECT_EQ(server.requests.load(), 2);
}

TEST(PoolRetry, GoodbyeAnswerIsRetriedOnANewConnection) {
  ScriptedServer server([](int n) { return n == 0 ? Reply::goodbye : Reply::ok; });
  Pool pool(server.raw.address());
  std::error_code ec;
  const Result r = pool.call(1, text("x"), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.response, text("done"));
  EXPECT_EQ(server.requests.load(), 2);
  EXPECT_EQ(server.raw.accepted(), 2);
}

TEST(PoolRetry, CallDroppedAfterItsRequestIsRetriedOnlyIfIdempotent) {
  ScriptedServer server([](int n) { return n % 2 == 0 ? Reply::drop : Reply::ok; });
  Pool pool(server.raw.address());
  std::error_code ec;
  // Request 0 is dropped: the task may have run, so a plain call fails.
  pool.call(1, text("x"), ec);
  EXPECT_EQ(ec, Errc::connection_closed) << ec.message();
  EXPECT_EQ(server.requests.load(), 1);
  // Request 1 is answered; request 2 is dropped, and the idempotent call goes again (3: OK).
  Result r = pool.call(1, text("x"), ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_EQ(server.requests.load(), 2);
  r = pool.call(1, text("x"), ec, CallOptions{.idempotent = true});
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.response, text("done"));
  EXPECT_EQ(server.requests.load(), 4);
  EXPECT_EQ(server.raw.accepted(), 3);
}

TEST(PoolRetry, WhenTheBudgetRunsOutTheLastAnswerIsReturned) {
  ScriptedServer server([](int) { return Reply::busy; });
  PoolOptions options;
  options.retry.budget = 300ms;
  Pool pool(server.raw.address(), options);
  std::error_code ec;
  const auto start = Clock::now();
  const Result r = pool.call(1, text("x"), ec);
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(r.is_error());
  EXPECT_EQ(r.error_code, 253);
  EXPECT_GT(server.requests.load(), 2);
  EXPECT_LT(elapsed, 300ms + 1s);
}

TEST(PoolRetry, RefusedConnectsAreRetriedUntilTheBudgetRunsOut) {
  const std::uint16_t port = serialserver::test::free_port();  // nothing listens there
  PoolOptions options;
  options.retry.budget = 300ms;
  Pool pool("127.0.0.1:" + std::to_string(port), options);
  std::error_code ec;
  const auto start = Clock::now();
  pool.call(1, text("x"), ec);
  const auto elapsed = Clock::now() - start;
  EXPECT_EQ(ec, std::errc::connection_refused) << ec.message();
  // The back-offs before giving up add up to well over the first one (5..10 ms).
  EXPECT_GT(elapsed, 50ms);
  EXPECT_LT(elapsed, 300ms + 1s);
  EXPECT_EQ(pool.size(), 0U);
}

TEST(PoolRetry, CloseEndsARetryingCall) {
  ScriptedServer server([](int) { return Reply::busy; });
  PoolOptions options;
  options.retry.initial_backoff = 2s;  // the call sleeps after its first answer
  Pool pool(server.raw.address(), options);
  std::error_code ec;
  std::thread closer([&] {
    const auto give_up = Clock::now() + 5s;
    while (server.requests.load() == 0 && Clock::now() < give_up) {
      std::this_thread::sleep_for(1ms);
    }
    std::this_thread::sleep_for(50ms);
    pool.close();
  });
  const auto start = Clock::now();
  const Result r = pool.call(1, text("x"), ec);
  closer.join();
  EXPECT_EQ(r.error_code, 253);
  EXPECT_LT(Clock::now() - start, 900ms);  // the first back-off alone is 1..2 s
}

}  // namespace
}  // namespace serialclient::test
