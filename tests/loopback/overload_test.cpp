// docs/protocol.md section 5 over real sockets: Error 253 (busy) under
// ServerOptions::max_concurrent_tasks, and Error 252 (deadline exceeded) under
// ServerOptions::task_deadline and TaskOptions::deadline.

#include "support/loopback.hpp"

#include <algorithm>
#include <atomic>
#include <future>

#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

using Clock = std::chrono::steady_clock;

/// A coroutine task that waits on a timer (cancellable) for the milliseconds its 4-byte
/// big-endian request says, counting its runs, then answers OK with the empty message.
struct Sleeper {
  std::shared_ptr<std::atomic<int>> runs = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<int>> running = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<int>> most_at_once = std::make_shared<std::atomic<int>>(0);

  asio::awaitable<Response> operator()(TaskContext& ctx) const {
    const std::vector<std::uint8_t> request = co_await ctx.request().async_read_all();
    std::uint32_t ms = 0;
    for (const auto b : request) {
      ms = (ms << 8) | b;
    }
    ++*runs;
    const int now = ++*running;
    int most = most_at_once->load();
    while (now > most && !most_at_once->compare_exchange_weak(most, now)) {
    }
    asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
    std::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    --*running;
    if (ec) {
      throw std::system_error(ec);
    }
    co_return Response{};
  }
};

Bytes sleep_request(std::uint32_t ms) { return request(5, big_endian<std::uint32_t>(ms)); }

ServerOptions options_with(std::uint32_t max_tasks, std::chrono::nanoseconds deadline) {
  ServerOptions o = TestServer::quiet_options();
  o.max_concurrent_tasks = max_tasks;
  o.task_deadline = deadline;
  return o;
}

TEST(Busy, TasksOverTheLimitAreAnsweredBusyNotRunAndTheConnectionsStayUsable) {
  constexpr int kConnections = 12;
  constexpr std::uint32_t kLimit = 4;
  TestServer server(options_with(kLimit, 0ns));
  Sleeper sleeper;
  server.server().register_task(5, sleeper, {.name = "sleep"});
  server.server().register_task(
      6, [](TaskContext&, std::span<const std::uint8_t>) { return Response{}; },
      {.name = "inline"});
  server.start();

  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < kConnections; ++i) {
    clients.push_back(std::make_unique<RawClient>(server.port()));
  }
  for (auto& c : clients) {
    c->send(sleep_request(400));
  }
  int ok = 0;
  int busy = 0;
  for (auto& c : clients) {
    const Bytes answer = c->recv(2);
    if (answer == bytes({0x00, 0x00})) {
      ++ok;
    } else if (answer == bytes({0x01, 0xFD})) {
      ++busy;
    } else {
      ADD_FAILURE() << "unexpected answer of " << answer.size() << " bytes";
    }
  }
  EXPECT_EQ(ok, static_cast<int>(kLimit));
  EXPECT_EQ(busy, kConnections - static_cast<int>(kLimit));
  EXPECT_EQ(sleeper.runs->load(), static_cast<int>(kLimit)) << "a task over the limit ran";
  EXPECT_LE(sleeper.most_at_once->load(), static_cast<int>(kLimit));
  // Every connection is still in step and usable: keep-alive, and an inline task now that the
  // sleepers are done.
  for (auto& c : clients) {
    EXPECT_EQ(c->call(request(250), 2), bytes({0x00, 0x00}));
    EXPECT_EQ(c->call(request(6, bytes({1, 2, 3})), 2), bytes({0x00, 0x00}));
  }
}

TEST(Busy, FiftyShortTasksAgainstALimitOfFourNeverRunMoreAndRunOnlyWhatIsAnsweredOk) {
  constexpr int kConnections = 50;
  constexpr int kLimit = 4;
  TestServer server(options_with(kLimit, 0ns));
  Sleeper sleeper;
  server.server().register_task(5, sleeper, {.name = "sleep"});
  server.start();
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < kConnections; ++i) {
    clients.push_back(std::make_unique<RawClient>(server.port()));
  }
  for (auto& c : clients) {
    c->send(sleep_request(50));
  }
  int ok = 0;
  int busy = 0;
  for (auto& c : clients) {
    const Bytes answer = c->recv(2);
    ok += answer == bytes({0x00, 0x00}) ? 1 : 0;
    busy += answer == bytes({0x01, 0xFD}) ? 1 : 0;
  }
  EXPECT_EQ(ok + busy, kConnections);
  EXPECT_GT(busy, 0);
  EXPECT_EQ(sleeper.runs->load(), ok) << "a task answered busy ran, or one that ran was not OK";
  EXPECT_LE(sleeper.most_at_once->load(), kLimit);
  for (auto& c : clients) {  // all still usable
    EXPECT_EQ(c->call(request(250), 2), bytes({0x00, 0x00}));
  }
}

TEST(Busy, AnInlineTaskOverTheLimitIsAnsweredBusyWithItsRequestDrained) {
  TestServer server(options_with(1, 0ns));
  Sleeper sleeper;
  std::atomic<int> inline_runs{0};
  server.server().register_task(5, sleeper, {.name = "sleep"});
  server.server().register_task(6,
                                [&](TaskContext&, std::span<const std::uint8_t>) {
                                  ++inline_runs;
                                  return Response{};
                                },
                                {.name = "inline"});
  server.start();
  RawClient holder(server.port());
  holder.send(sleep_request(500));
  ASSERT_TRUE(eventually([&] { return sleeper.runs->load() == 1; }));
  RawClient c(server.port());
  // Busy, then the next request on the same connection lines up: keep-alive answers OK.
  Bytes both = request(6, Bytes(300, 0x41));
  const Bytes keep_alive = request(250);
  both.insert(both.end(), keep_alive.begin(), keep_alive.end());
  c.send(both);
  EXPECT_EQ(c.recv(4), bytes({0x01, 0xFD, 0x00, 0x00}));
  EXPECT_EQ(inline_runs.load(), 0);
  // The worked bytes of docs/protocol.md section 8.
  EXPECT_EQ(c.call(bytes({0x05, 0x04, 0x00, 0x00, 0x00, 0x0A, 0x00}), 2), bytes({0x01, 0xFD}));
  EXPECT_EQ(sleeper.runs->load(), 1);
  EXPECT_EQ(holder.recv(2), bytes({0x00, 0x00}));
  EXPECT_EQ(c.call(request(6), 2), bytes({0x00, 0x00})) << "the slot was not given back";
  EXPECT_EQ(inline_runs.load(), 1);
}

TEST(Busy, NoLimitByDefault) {
  TestServer server;
  Sleeper sleeper;
  server.server().register_task(5, sleeper, {.name = "sleep"});
  server.start();
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 20; ++i) {
    clients.push_back(std::make_unique<RawClient>(server.port()));
    clients.back()->send(sleep_request(200));
  }
  for (auto& c : clients) {
    EXPECT_EQ(c->recv(2), bytes({0x00, 0x00}));
  }
  EXPECT_EQ(sleeper.most_at_once->load(), 20);
}

TEST(Deadline, ATaskPastTheServerDeadlineIsCancelledAndAnsweredError252) {
  constexpr auto kDeadline = 150ms;
  TestServer server(options_with(0, kDeadline));
  Sleeper sleeper;
  server.server().register_task(5, sleeper, {.name = "sleep"});
  server.start();
  RawClient c(server.port());
  const auto start = Clock::now();
  EXPECT_EQ(c.call(sleep_request(5000), 2), bytes({0x01, 0xFC}));
  const auto took = elapsed_since(start);
  EXPECT_GE(took, kDeadline);
  EXPECT_LT(took, kDeadline + kTimingSlack) << "the task was not cancelled at its deadline";
  // The connection stays, and a task within its budget answers OK.
  EXPECT_EQ(c.call(sleep_request(10), 2), bytes({0x00, 0x00}));
}

TEST(Deadline, ThePerTaskDeadlineOverridesTheServerDefault) {
  TestServer server(options_with(0, 100ms));
  Sleeper sleeper;
  server.server().register_task(5, sleeper, {.name = "sleep", .deadline = 0ns});
  server.server().register_task(7, sleeper, {.name = "short", .deadline = 50ms});
  server.start();
  RawClient c(server.port());
  EXPECT_EQ(c.call(sleep_request(300), 2), bytes({0x00, 0x00})) << "0 did not mean none";
  const Bytes short_request = request(7, big_endian<std::uint32_t>(3000));
  const auto start = Clock::now();
  EXPECT_EQ(c.call(short_request, 2), bytes({0x01, 0xFC}));
  EXPECT_LT(elapsed_since(start), 50ms + kTimingSlack);
}

TEST(Deadline, ABlockingTaskSeesItsDeadlineAndStopToken) {
  TestServer server(options_with(0, 100ms));
  std::promise<bool> had_deadline;
  server.server().register_task(8,
                                [&](TaskContext& ctx) {
                                  had_deadline.set_value(ctx.deadline().has_value());
                                  while (!ctx.stop_requested()) {
                                    std::this_thread::sleep_for(5ms);
                                  }
                                  return Response{};  // stopped early: still answered Error 252
                                },
                                {.name = "blocking", .kind = TaskKind::blocking});
  server.start();
  RawClient c(server.port());
  const auto start = Clock::now();
  EXPECT_EQ(c.call(request(8), 2), bytes({0x01, 0xFC}));
  EXPECT_LT(elapsed_since(start), 100ms + kTimingSlack);
  EXPECT_TRUE(had_deadline.get_future().get());
}

TEST(Deadline, AStreamedResponsePastTheDeadlineIsDroppedWithItsConnection) {
  TestServer server(options_with(0, 200ms));
  server.server().register_task(
      9,
      [](TaskContext&) -> asio::awaitable<Response> {
        co_return Response::stream([](std::span<std::uint8_t> out) -> asio::awaitable<std::size_t> {
          asio::steady_timer timer(co_await asio::this_coro::executor, 20ms);
          co_await timer.async_wait(asio::use_awaitable);
          std::fill(out.begin(), out.end(), std::uint8_t{0x61});
          co_return out.size();  // a chunk every 20 ms, never ending by itself
        });
      },
      {.name = "stream"});
  server.start();
  RawClient c(server.port());
  c.send(request(9));
  const auto start = Clock::now();
  const Bytes first = c.recv(1);
  ASSERT_EQ(first, bytes({0x00})) << "the OK did not start";
  EXPECT_TRUE(c.closed_within(200ms + 2 * kTimingSlack)) << "the stream was not dropped";
  EXPECT_LT(elapsed_since(start), 200ms + 2 * kTimingSlack);
}

}  // namespace
}  // namespace serialserver::test
