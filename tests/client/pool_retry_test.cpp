// The Pool's retry policy (RetryPolicy, CallOptions) against raw servers on 127.0.0.1 that
// answer busy, Goodbye, other errors, or drop the connection after reading a request.

#include "raw_server.hpp"
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

const std::vector<std::uint8_t> kOkDone{0x00, 0x04, 'd', 'o', 'n', 'e', 0x00};

/// What a scripted server does with the n-th request it reads (counted over all connections).
enum class Reply : std::uint8_t { ok, busy, deadline_exceeded, app_error, goodbye, drop };

/// A raw server that answers the requests it reads by a script: `script(n)` for the n-th
/// request (from 0). After Goodbye or a drop it closes that connection.
struct ScriptedServer {
  explicit ScriptedServer(std::function<Reply(int)> script_fn)
      : script(std::move(script_fn)), raw([this](int fd) { serve(fd); }) {}

  void serve(int fd) {
    while (RawServer::read_request(fd)) {
      switch (script(requests++)) {
        case Reply::ok:
          RawServer::send_all(fd, kOkDone);
          break;
        case Reply::busy:
          RawServer::send_all(fd, {0x01, 253});
          break;
        case Reply::deadline_exceeded:
          RawServer::send_all(fd, {0x01, 252});
          break;
        case Reply::app_error:
          RawServer::send_all(fd, {0x01, 7});
          break;
        case Reply::goodbye:
          RawServer::send_all(fd, {0x02});
          return;
        case Reply::drop:
          return;  // the whole request was read: closing sends a FIN, not a reset
      }
    }
  }

  std::function<Reply(int)> script;
  std::atomic<int> requests{0};
  RawServer raw;  // last: its threads use the fields above
};

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
