// docs/protocol.md section 7 over real sockets: graceful disconnection through Client::disconnect,
// Server::disconnect and Listener::shutdown; and Client::cancel and Client::close.

#include "demo_tasks.hpp"
#include "support/loopback.hpp"

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

using Clock = std::chrono::steady_clock;

/// Demo task 5: sleep `ms` milliseconds, then OK with the empty message.
Bytes sleep_request(std::uint32_t ms) { return request(5, big_endian<std::uint32_t>(ms)); }

/// A started server with the demo tasks and recording metrics.
class DisconnectBase {
 protected:
  DisconnectBase()
      : metrics_(std::make_shared<RecordingMetrics>()), server_(options_with_metrics(metrics_)) {
    demo::register_demo_tasks(server_.server());
    server_.start();
  }

  /// The one connection the server handles now (waits until it has taken it).
  std::shared_ptr<Client> only_client() {
    EXPECT_TRUE(eventually([&] { return server_.server().num_clients() == 1; }));
    auto clients = server_.server().clients();
    EXPECT_EQ(clients.size(), 1U);
    return clients.empty() ? nullptr : clients.front();
  }
  /// Waits until the one connection is running a task with this code.
  void wait_task_running(TaskCode code) {
    auto client = only_client();
    ASSERT_TRUE(client);
    ASSERT_TRUE(eventually([&] {
      const auto m = client->metadata();
      return m.has_value() && m->code == code;
    })) << "task "
        << int{code} << " did not start";
  }
  std::error_code first_close_reason() {
    EXPECT_TRUE(eventually([&] { return !metrics_->closed().empty(); }));
    const auto closed = metrics_->closed();
    return closed.empty() ? std::error_code{} : closed.front();
  }

  std::shared_ptr<RecordingMetrics> metrics_;
  TestServer server_;
};

enum class Mechanism { client_disconnect, server_disconnect, listener_shutdown };

class GracefulDisconnect : public DisconnectBase, public ::testing::TestWithParam<Mechanism> {
 protected:
  /// Begins the graceful disconnection of the one connection with `grace`.
  void disconnect(std::chrono::nanoseconds grace) {
    switch (GetParam()) {
      case Mechanism::client_disconnect: {
        auto client = only_client();
        ASSERT_TRUE(client);
        client->disconnect(grace);
        break;
      }
      case Mechanism::server_disconnect:
        server_.server().disconnect(grace);
        break;
      case Mechanism::listener_shutdown:
        server_.listener().shutdown(grace);
        break;
    }
  }
};

TEST_P(GracefulDisconnect, IdleConnectionIsSentGoodbyeAtOnceThenEndOfStream) {
  constexpr auto kGrace = 10s;
  RawClient c(server_.port());
  ASSERT_EQ(c.call(request(2), 2), bytes({0x00, 0x00}));
  ASSERT_TRUE(only_client());
  const auto start = Clock::now();
  disconnect(kGrace);
  EXPECT_EQ(c.recv(1, kTimingSlack), bytes({0x02})) << "no unprompted Goodbye";
  EXPECT_TRUE(c.closed_within(kTimingSlack)) << "the server did not end its side";
  EXPECT_LT(elapsed_since(start), kTimingSlack) << "the Goodbye waited";
  EXPECT_TRUE(c.unexpected_bytes().empty()) << "bytes were sent after the Goodbye";
  EXPECT_EQ(first_close_reason(), make_error_code(Errc::graceful_disconnect));
}

TEST_P(GracefulDisconnect, AfterTheGoodbyeTheServerClosesWhenTheClientDoes) {
  RawClient c(server_.port());
  ASSERT_EQ(c.call(request(2), 2), bytes({0x00, 0x00}));
  ASSERT_TRUE(only_client());
  disconnect(10s);
  ASSERT_EQ(c.recv(1, kTimingSlack), bytes({0x02}));
  const auto start = Clock::now();
  c.close();
  EXPECT_EQ(first_close_reason(), make_error_code(Errc::graceful_disconnect));
  // Well before the 1 s linger: the server saw the client close.
  EXPECT_LT(elapsed_since(start), 900ms) << "the server lingered after the client closed";
}

TEST_P(GracefulDisconnect, WhatTheClientSendsAfterTheGoodbyeIsDiscardedUntilTheLingerEnds) {
  RawClient c(server_.port());
  ASSERT_EQ(c.call(request(2), 2), bytes({0x00, 0x00}));
  ASSERT_TRUE(only_client());
  disconnect(10s);
  ASSERT_EQ(c.recv(1, kTimingSlack), bytes({0x02}));
  const auto start = Clock::now();
  c.send(request(1, bytes({0x7A})));  // a task sent without reading the Goodbye: never run
  EXPECT_EQ(first_close_reason(), make_error_code(Errc::graceful_disconnect));
  const auto took = elapsed_since(start);
  EXPECT_GE(took, 800ms) << "the server did not linger";
  EXPECT_LE(took, 1s + kTimingSlack) << "the linger did not end";
  EXPECT_TRUE(metrics_->tasks_with_code(1).empty()) << "a task ran after the Goodbye";
}

TEST_P(GracefulDisconnect, AShortGraceShortensTheLinger) {
  RawClient c(server_.port());
  ASSERT_EQ(c.call(request(2), 2), bytes({0x00, 0x00}));
  ASSERT_TRUE(only_client());
  const auto start = Clock::now();
  disconnect(150ms);
  ASSERT_EQ(c.recv(1, kTimingSlack), bytes({0x02}));
  EXPECT_EQ(first_close_reason(), make_error_code(Errc::graceful_disconnect));
  EXPECT_LT(elapsed_since(start), 150ms + kTimingSlack / 2);
}

TEST_P(GracefulDisconnect, AZeroGraceStillSaysGoodbye) {
  RawClient c(server_.port());
  ASSERT_EQ(c.call(request(2), 2), bytes({0x00, 0x00}));
  ASSERT_TRUE(only_client());
  disconnect(0s);
  EXPECT_EQ(c.recv(1, kTimingSlack), bytes({0x02}));
  EXPECT_EQ(first_close_reason(), make_error_code(Errc::graceful_disconnect));
}

TEST_P(GracefulDisconnect, RunningTaskFinishesAndItsResponseIsSentThenTheConnectionCloses) {
  constexpr std::uint32_t kSleepMs = 300;
  RawClient c(server_.port());
  const auto start = Clock::now();
  c.send(sleep_request(kSleepMs));
  wait_task_running(5);
  disconnect(10s);
  EXPECT_EQ(c.recv(3), bytes({0x00, 0x00, 0x02}))
      << "the running task's response, then Goodbye, were not sent";
  EXPECT_GE(elapsed_since(start), std::chrono::milliseconds(kSleepMs)) << "the task was cut short";
  EXPECT_TRUE(c.closed_within(kTimingSlack));
  EXPECT_LT(elapsed_since(start), 5s) << "the connection waited for the grace period";
  EXPECT_TRUE(c.unexpected_bytes().empty());
  EXPECT_EQ(first_close_reason(), make_error_code(Errc::graceful_disconnect));
  const auto tasks = metrics_->tasks_with_code(5);
  ASSERT_EQ(tasks.size(), 1U);
  EXPECT_EQ(tasks[0].outcome, TaskOutcome::ok);
  // The closing line says the server began it, not the goodbye task's "client requested".
  EXPECT_TRUE(
      eventually([&] { return server_.logger()->contains("the server disconnected gracefully"); }));
  EXPECT_FALSE(server_.logger()->contains("client requested to disconnect"));
}

TEST_P(GracefulDisconnect, TaskCodeBufferedBehindTheRunningTaskGetsGoodbyeAndIsNotRun) {
  RawClient c(server_.port());
  Bytes both = sleep_request(300);
  const Bytes echo = request(1, bytes({0x78}));
  both.insert(both.end(), echo.begin(), echo.end());
  c.send(both);  // one write: the echo is buffered behind the sleep
  wait_task_running(5);
  disconnect(10s);
  EXPECT_EQ(c.recv(3), bytes({0x00, 0x00, 0x02}));
  EXPECT_TRUE(c.closed_within(kTimingSlack));
  EXPECT_TRUE(c.unexpected_bytes().empty());
  EXPECT_EQ(first_close_reason(), make_error_code(Errc::graceful_disconnect));
  const auto echoes = metrics_->tasks_with_code(1);
  ASSERT_EQ(echoes.size(), 1U);
  EXPECT_EQ(echoes[0].outcome, TaskOutcome::goodbye) << "the pipelined task was run";
}

TEST_P(GracefulDisconnect, TaskCodeSentAfterTheDisconnectGetsGoodbyeAndIsNotRun) {
  RawClient c(server_.port());
  c.send(sleep_request(600));
  wait_task_running(5);
  disconnect(10s);
  c.send(request(1, bytes({0x79})));  // arrives while the sleep still runs
  EXPECT_EQ(c.recv(3), bytes({0x00, 0x00, 0x02}));
  EXPECT_TRUE(c.closed_within(kTimingSlack));
  EXPECT_TRUE(c.unexpected_bytes().empty());
  const auto echoes = metrics_->tasks_with_code(1);
  ASSERT_EQ(echoes.size(), 1U);
  EXPECT_EQ(echoes[0].outcome, TaskOutcome::goodbye) << "the task sent after disconnect was run";
}

TEST_P(GracefulDisconnect, PastTheGraceTheRunningTaskIsCancelledAndNoResponseIsSent) {
  constexpr auto kGrace = 300ms;
  RawClient c(server_.port());
  c.send(sleep_request(20000));
  wait_task_running(5);
  const auto start = Clock::now();
  disconnect(kGrace);
  EXPECT_TRUE(c.closed_within(kGrace + kTimingSlack));
  const auto took = elapsed_since(start);
  EXPECT_GE(took, kGrace) << "closed before the grace period passed";
  EXPECT_LE(took, kGrace + kTimingSlack);
  EXPECT_TRUE(c.unexpected_bytes().empty()) << "a response was sent past the grace period";
  EXPECT_EQ(first_close_reason(), make_error_code(Errc::graceful_disconnect));
  ASSERT_TRUE(eventually([&] { return metrics_->tasks_with_code(5).size() == 1; }));
  const auto task = metrics_->tasks_with_code(5).front();
  EXPECT_EQ(task.outcome, TaskOutcome::dropped);
  EXPECT_LT(task.duration, 10s) << "the task was not cancelled";
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, GracefulDisconnect,
                         ::testing::Values(Mechanism::client_disconnect,
                                           Mechanism::server_disconnect,
                                           Mechanism::listener_shutdown),
                         [](const auto& param_info) {
                           switch (param_info.param) {
                             case Mechanism::client_disconnect:
                               return std::string("ClientDisconnect");
                             case Mechanism::server_disconnect:
                               return std::string("ServerDisconnect");
                             case Mechanism::listener_shutdown:
                               return std::string("ListenerShutdown");
                           }
                           return std::string("unknown");
                         });

class ListenerShutdown : public DisconnectBase, public ::testing::Test {};

TEST_F(ListenerShutdown, NewConnectionsAreRefusedAfterwards) {
  RawClient before(server_.port());
  ASSERT_EQ(before.call(request(2), 2), bytes({0x00, 0x00}));
  const auto port = server_.port();
  server_.listener().shutdown(5s);
  EXPECT_TRUE(before.closed_within(kTimingSlack)) << "the idle connection stayed open";
  EXPECT_TRUE(eventually([&] {
    try {
      RawClient after(port);
      return false;
    } catch (const std::system_error& e) {
      return e.code() == asio::error::connection_refused;
    }
  })) << "connections are still accepted after shutdown";
  // And the listener's wait() returns.
  std::atomic<bool> waited{false};
  std::thread waiter([&] {
    server_.listener().wait();
    waited = true;
  });
  EXPECT_TRUE(eventually([&] { return waited.load(); }));
  if (!waited) {
    server_.listener().shutdown(0ms);
  }
  waiter.join();
}

TEST_F(ListenerShutdown, StopWithGraceWaitsForTheRunningTaskAndItsResponse) {
  RawClient c(server_.port());
  c.send(sleep_request(300));
  wait_task_running(5);
  std::thread reader([&] {
    EXPECT_EQ(c.recv(2), bytes({0x00, 0x00}));
    EXPECT_TRUE(c.closed_within(kTimingSlack));
  });
  const auto start = Clock::now();
  server_.stop(10s);  // blocks until the connection has ended
  const auto took = elapsed_since(start);
  reader.join();
  EXPECT_LT(took, 5s);
  EXPECT_EQ(server_.server().num_clients(), 0U);
}

class ClientControl : public DisconnectBase, public ::testing::Test {};

TEST_F(ClientControl, CancelEndsTheRunningTaskAndDropsTheConnection) {
  RawClient c(server_.port());
  c.send(sleep_request(20000));
  wait_task_running(5);
  const auto start = Clock::now();
  only_client()->cancel();
  // The sleep ends early with a non-coded failure: the connection is dropped, no response.
  EXPECT_TRUE(c.closed_within(kTimingSlack));
  EXPECT_LT(elapsed_since(start), kTimingSlack);
  EXPECT_TRUE(c.unexpected_bytes().empty());
  EXPECT_EQ(first_close_reason(), make_error_code(Errc::task_failed));
  ASSERT_TRUE(eventually([&] { return metrics_->tasks_with_code(5).size() == 1; }));
  const auto task = metrics_->tasks_with_code(5).front();
  EXPECT_EQ(task.outcome, TaskOutcome::dropped);
  EXPECT_LT(task.duration, 10s);
}

TEST_F(ClientControl, CancelOnAnIdleConnectionDoesNothing) {
  RawClient c(server_.port());
  ASSERT_EQ(c.call(request(2), 2), bytes({0x00, 0x00}));
  only_client()->cancel();
  EXPECT_EQ(c.call(request(1, bytes({5})), 4), bytes({0x00, 0x01, 0x05, 0x00}));
  EXPECT_EQ(c.call(sleep_request(50), 2), bytes({0x00, 0x00})) << "a later task was cancelled";
  EXPECT_TRUE(metrics_->closed().empty());
}

TEST_F(ClientControl, CloseClosesAnIdleConnectionAtOnce) {
  RawClient c(server_.port());
  ASSERT_EQ(c.call(request(2), 2), bytes({0x00, 0x00}));
  const auto start = Clock::now();
  only_client()->close();
  EXPECT_TRUE(c.closed_within(kTimingSlack));
  EXPECT_LT(elapsed_since(start), kTimingSlack);
  EXPECT_TRUE(c.unexpected_bytes().empty());
  EXPECT_EQ(first_close_reason(), make_error_code(Errc::closed_by_server));
}

TEST_F(ClientControl, CloseDuringATaskCancelsItWithoutAResponse) {
  RawClient c(server_.port());
  c.send(sleep_request(20000));
  wait_task_running(5);
  auto client = only_client();
  client->close();
  EXPECT_TRUE(c.closed_within(kTimingSlack));
  EXPECT_TRUE(c.unexpected_bytes().empty());
  EXPECT_EQ(first_close_reason(), make_error_code(Errc::closed_by_server));
  ASSERT_TRUE(eventually([&] { return metrics_->tasks_with_code(5).size() == 1; }));
  EXPECT_EQ(metrics_->tasks_with_code(5).front().outcome, TaskOutcome::dropped);
  EXPECT_TRUE(eventually([&] { return client->closed(); }));
  client->close();  // after the end: does nothing
  client->cancel();
  client->disconnect(0ms);
}

}  // namespace
}  // namespace serialserver::test
