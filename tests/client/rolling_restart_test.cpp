// A restart on one port under load, as an operator does it: the real serialserver-demo is sent
// SIGTERM while 20 threads call it through a Pool with its default retry policy, and a new
// demo is started on the same port once the old one has exited. The old server says Goodbye to
// its idle connections, the pool retires them, and the calls that find no server retry until
// the new one answers: no call fails, and each gets its own answer.

#include "support/loopback.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <serialclient/serialclient.hpp>

namespace serialclient::test {
namespace {

using namespace std::chrono_literals;
using serialserver::test::bin_dir;
using serialserver::test::ChildProcess;
using serialserver::test::free_port;
using serialserver::test::wait_for_port;

std::unique_ptr<ChildProcess> start_demo(std::uint16_t port, bool reuse_port = false) {
  std::vector<std::string> args{"--listen",    "127.0.0.1:" + std::to_string(port),
                                "--log-level", "warn",
                                "--threads",   "1",
                                "--grace",     "2s"};
  if (reuse_port) {
    args.emplace_back("--reuse-port");
  }
  return std::make_unique<ChildProcess>(bin_dir() + "/serialserver-demo", args);
}

/// Calls echo (task 1) through `pool` from `threads` threads until `stop`, counting calls,
/// failures and answers that are not the call's own request.
struct Load {
  std::atomic<bool> stop{false};
  std::atomic<int> calls{0};
  std::atomic<int> failures{0};
  std::atomic<int> wrong_answers{0};
  std::vector<std::thread> threads;

  Load(Pool& pool, int n, CallOptions call_options) {
    for (int t = 0; t < n; ++t) {
      threads.emplace_back([this, &pool, t, call_options] {
        for (int i = 0; !stop.load(); ++i) {
          const std::string text = std::to_string(t) + ":" + std::to_string(i);
          const Bytes request(text.begin(), text.end());
          std::error_code ec;
          const Result result = pool.call(1, request, ec, call_options);
          ++calls;
          if (ec || !result.ok()) {
            ++failures;
          } else if (result.response != request) {
            ++wrong_answers;
          }
        }
      });
    }
  }
  ~Load() { finish(); }  // also when an assertion returns early
  void finish() {
    stop = true;
    for (auto& thread : threads) {
      if (thread.joinable()) {
        thread.join();
      }
    }
  }
};

TEST(RollingRestart, NoCallFailsWhenTheServerIsRestartedOnItsPort) {
  constexpr int kThreads = 20;
  const std::uint16_t port = free_port();
  auto server = start_demo(port);
  ASSERT_TRUE(wait_for_port(port));

  PoolOptions options;
  options.max_connections = kThreads;
  Pool pool("127.0.0.1:" + std::to_string(port), options);

  Load load(pool, kThreads, CallOptions{});

  std::this_thread::sleep_for(300ms);
  const int before_restart = load.calls.load();
  server->signal(SIGTERM);
  const auto status = server->wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << "the old server did not exit";
  EXPECT_EQ(*status, 0);
  server = start_demo(port);  // the same port, once the old process has gone
  ASSERT_TRUE(wait_for_port(port));
  const int at_restart = load.calls.load();
  std::this_thread::sleep_for(500ms);
  load.finish();
  pool.close();

  EXPECT_GT(before_restart, 0) << "no call ran before the restart";
  EXPECT_GT(load.calls.load(), at_restart) << "no call ran on the new server";
  EXPECT_EQ(load.failures.load(), 0) << "of " << load.calls.load() << " calls";
  EXPECT_EQ(load.wrong_answers.load(), 0);
  std::cout << "[          ] " << load.calls.load() << " calls, " << before_restart
            << " before the SIGTERM, " << load.calls.load() - at_restart << " after the new start"
            << std::endl;
}

TEST(RollingRestart, WithReusePortTheNewServerTakesOverWhileTheOldOneDrains) {
  // Echo is idempotent, and marked so: a call queued on the old listener when it closes is
  // reset by the kernel after its request was written (docs/deployment.md), and only an
  // idempotent call may be sent again then.
  constexpr int kThreads = 20;
  const std::uint16_t port = free_port();
  auto old_server = start_demo(port, true);
  ASSERT_TRUE(wait_for_port(port));
  PoolOptions options;
  options.max_connections = kThreads;
  Pool pool("127.0.0.1:" + std::to_string(port), options);
  Load load(pool, kThreads, CallOptions{.idempotent = true});

  std::this_thread::sleep_for(300ms);
  const int before = load.calls.load();
  auto new_server = start_demo(port, true);  // binds beside the old one
  std::this_thread::sleep_for(300ms);        // so that it is listening before the old one goes
  old_server->signal(SIGTERM);
  const auto status = old_server->wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << "the old server did not exit";
  EXPECT_EQ(*status, 0);
  const int at_exit = load.calls.load();
  std::this_thread::sleep_for(500ms);
  load.finish();
  pool.close();

  EXPECT_GT(before, 0);
  EXPECT_GT(load.calls.load(), at_exit) << "no call ran on the new server";
  EXPECT_EQ(load.failures.load(), 0) << "of " << load.calls.load() << " calls";
  EXPECT_EQ(load.wrong_answers.load(), 0);
}

}  // namespace
}  // namespace serialclient::test
