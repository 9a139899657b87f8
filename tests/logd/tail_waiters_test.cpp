// logd's TailWaiters without sockets: a commit wakes the tails waiting on the logs it wrote to,
// and only those; a commit between a tail's query and its wait is not missed; shutdown wakes all.

#include "tail_waiters.hpp"

#include <chrono>
#include <optional>
#include <string>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <gtest/gtest.h>

namespace {

using logd::TailWaiters;
using logd::WaitOutcome;
using namespace std::chrono_literals;

class TailWaitersTest : public ::testing::Test {
 protected:
  /// Starts a tail waiting on `log` (as from a query just made) that writes its outcome to
  /// `out`, and runs the io_context until it waits.
  void start_waiting(const std::string& log, std::optional<WaitOutcome>& out) {
    const std::size_t before = waiters_.waiting();
    asio::co_spawn(io_, wait_on(log, waiters_.sequence(log), out), asio::detached);
    io_.poll();
    io_.restart();
    ASSERT_EQ(waiters_.waiting(), before + 1);
  }
  asio::awaitable<void> wait_on(std::string log, std::uint64_t seen,
                                std::optional<WaitOutcome>& out) {
    out = co_await waiters_.wait(log, seen, std::chrono::steady_clock::now() + 5s);
  }
  /// Runs the handlers that a notify posted.
  void run_posted() {
    io_.run_for(100ms);
    io_.restart();
  }

  asio::io_context io_;
  TailWaiters waiters_{8};
};

TEST_F(TailWaitersTest, ACommitWakesOnlyTheTailsOfTheLogsItWroteTo) {
  std::optional<WaitOutcome> on_app;
  std::optional<WaitOutcome> on_audit;
  start_waiting("app", on_app);
  start_waiting("audit", on_audit);
  waiters_.notify_commit({"app"});
  run_posted();
  EXPECT_EQ(on_app, WaitOutcome::committed);
  EXPECT_FALSE(on_audit.has_value());
  EXPECT_EQ(waiters_.waiting(), 1U);
  waiters_.notify_commit({"web", "audit"});
  run_posted();
  EXPECT_EQ(on_audit, WaitOutcome::committed);
  EXPECT_EQ(waiters_.waiting(), 0U);
}

TEST_F(TailWaitersTest, ACommitBetweenTheQueryAndTheWaitIsNotMissed) {
  const std::uint64_t seen = waiters_.sequence("app");
  waiters_.notify_commit({"app"});  // after the tail's query, before it waits
  std::optional<WaitOutcome> out;
  asio::co_spawn(io_, wait_on("app", seen, out), asio::detached);
  run_posted();
  EXPECT_EQ(out, WaitOutcome::committed);
  EXPECT_EQ(waiters_.waiting(), 0U);
}

TEST_F(TailWaitersTest, CloseWakesEveryTailAndEveryLaterOne) {
  std::optional<WaitOutcome> a;
  std::optional<WaitOutcome> b;
  start_waiting("app", a);
  start_waiting("audit", b);
  waiters_.close();
  run_posted();
  EXPECT_EQ(a, WaitOutcome::closing);
  EXPECT_EQ(b, WaitOutcome::closing);
  std::optional<WaitOutcome> later;
  asio::co_spawn(io_, wait_on("app", waiters_.sequence("app"), later), asio::detached);
  run_posted();
  EXPECT_EQ(later, WaitOutcome::closing);
}

TEST_F(TailWaitersTest, APauseIsEndedByCloseButNotByACommit) {
  bool paused = false;
  auto pause = [&]() -> asio::awaitable<void> {
    co_await waiters_.pause(std::chrono::steady_clock::now() + 5s);
    paused = true;
  };
  asio::co_spawn(io_, pause(), asio::detached);
  io_.poll();
  io_.restart();
  EXPECT_EQ(waiters_.waiting(), 1U);
  waiters_.notify_commit({"app"});
  run_posted();
  EXPECT_FALSE(paused);
  waiters_.close();
  run_posted();
  EXPECT_TRUE(paused);
  EXPECT_EQ(waiters_.waiting(), 0U);
}

TEST_F(TailWaitersTest, BeyondTheLimitAWaitIsRefused) {
  TailWaiters one(1);
  std::optional<WaitOutcome> first;
  std::optional<WaitOutcome> second;
  auto wait_one = [&](std::optional<WaitOutcome>& out) -> asio::awaitable<void> {
    out = co_await one.wait("app", one.sequence("app"), std::chrono::steady_clock::now() + 5s);
  };
  asio::co_spawn(io_, wait_one(first), asio::detached);
  asio::co_spawn(io_, wait_one(second), asio::detached);
  io_.poll();
  io_.restart();
  EXPECT_FALSE(first.has_value());
  EXPECT_EQ(second, WaitOutcome::full);
  one.close();
  run_posted();
  EXPECT_EQ(first, WaitOutcome::closing);
}

}  // namespace
