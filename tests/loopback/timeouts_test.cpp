// docs/protocol.md section 6 over real sockets: the Wait, Read and Write timeouts, each checked for
// "not before" and "by" (with slack for a shared, possibly sanitized machine).

#include "demo_tasks.hpp"
#include "support/loopback.hpp"

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

using Clock = std::chrono::steady_clock;

/// A started server with the demo tasks, the given timeouts and recording metrics.
struct TimeoutServer {
  explicit TimeoutServer(const Timeout& timeout)
      : metrics(std::make_shared<RecordingMetrics>()), server([&] {
          ServerOptions o = options_with_metrics(metrics);
          o.timeout = timeout;
          return o;
        }()) {
    demo::register_demo_tasks(server.server());
    server.start();
  }
  /// Waits for the first connection-closed report and returns its reason.
  std::error_code first_close_reason() {
    EXPECT_TRUE(eventually([&] { return !metrics->closed().empty(); }));
    const auto closed = metrics->closed();
    return closed.empty() ? std::error_code{} : closed.front();
  }

  std::shared_ptr<RecordingMetrics> metrics;
  TestServer server;
};

Timeout timeouts(std::chrono::milliseconds wait, std::chrono::milliseconds read,
                 std::chrono::milliseconds write) {
  Timeout t;
  t.wait = wait;
  t.read = read;
  t.write = write;
  return t;
}

Bytes echo_response(const Bytes& content) {
  Bytes out{0x00};
  const Bytes body = encode(content);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

TEST(Timeouts, WaitTimeoutClosesAnIdleConnection) {
  constexpr auto kWait = 300ms;
  TimeoutServer s(timeouts(kWait, 5000ms, 5000ms));
  const auto start = Clock::now();  // before the server can have taken the connection
  RawClient c(s.server.port());
  EXPECT_TRUE(c.closed_within(kWait + kTimingSlack));
  const auto took = elapsed_since(start);
  EXPECT_GE(took, kWait) << "closed before the Wait timeout";
  EXPECT_LE(took, kWait + kTimingSlack) << "not closed by the Wait timeout";
  EXPECT_TRUE(c.unexpected_bytes().empty()) << "the server sent bytes before closing";

  EXPECT_EQ(s.first_close_reason(), make_error_code(Errc::timeout_waiting_for_task));
  EXPECT_TRUE(eventually([&] {
    return s.server.logger()->contains("timeout whilst waiting for task");
  })) << "the reason did not reach the log";
}

TEST(Timeouts, AZeroWaitTimeoutExpiresAtOnce) {
  // Documented on Timeout: zero is not "no timeout"; the connection ends as soon as it waits.
  TimeoutServer s(timeouts(0ms, 5000ms, 5000ms));
  const auto start = Clock::now();
  RawClient c(s.server.port());
  EXPECT_TRUE(c.closed_within(kTimingSlack));
  EXPECT_LT(elapsed_since(start), kTimingSlack);
  EXPECT_EQ(s.first_close_reason(), make_error_code(Errc::timeout_waiting_for_task));
}

TEST(Timeouts, WaitIsCountedAgainFromTheEndOfEachResponse) {
  constexpr auto kWait = 600ms;
  TimeoutServer s(timeouts(kWait, 5000ms, 5000ms));
  RawClient c(s.server.port());

  // A task that runs longer than the Wait timeout: the Wait timeout does not run meanwhile.
  EXPECT_EQ(c.call(request(5, big_endian<std::uint32_t>(900)), 2), bytes({0x00, 0x00}));

  // Requests spaced by half the Wait timeout keep the connection open well past it.
  const auto first = Clock::now();
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(kWait / 2);  // the pacing under test, not synchronisation
    const Bytes content{static_cast<std::uint8_t>(i), 0x42};
    ASSERT_EQ(c.call(request(1, content), echo_response(content).size()), echo_response(content))
        << "request " << i;
  }
  EXPECT_GE(elapsed_since(first), kWait * 2);

  // After the last response, the Wait timeout runs once more in full.
  const auto last_response = Clock::now();
  EXPECT_TRUE(c.closed_within(kWait + kTimingSlack));
  const auto took = elapsed_since(last_response);
  EXPECT_GE(took, kWait - 50ms) << "closed before the Wait timeout after the last response";
  EXPECT_LE(took, kWait + kTimingSlack);
  EXPECT_TRUE(c.unexpected_bytes().empty());
  EXPECT_EQ(s.first_close_reason(), make_error_code(Errc::timeout_waiting_for_task));
}

TEST(Timeouts, ReadTimeoutDropsAPeerThatStopsMidMessageWithoutAResponse) {
  constexpr auto kRead = 300ms;
  // Stops after the task code, inside a block, and between blocks.
  const std::vector<Bytes> partial_requests = {bytes({0x01}), bytes({0x01, 0x05, 0x01, 0x02}),
                                               bytes({0x01, 0x02, 0x01, 0x02})};
  for (const auto& partial : partial_requests) {
    SCOPED_TRACE(::testing::PrintToString(partial));
    TimeoutServer s(timeouts(30000ms, kRead, 5000ms));
    RawClient c(s.server.port());
    const auto start = Clock::now();
    c.send(partial);
    EXPECT_TRUE(c.closed_within(kRead + kTimingSlack));
    const auto took = elapsed_since(start);
    EXPECT_GE(took, kRead) << "dropped before the Read timeout";
    EXPECT_LE(took, kRead + kTimingSlack) << "not dropped by the Read timeout";
    EXPECT_TRUE(c.unexpected_bytes().empty()) << "a response was sent";
    EXPECT_EQ(s.first_close_reason(), make_error_code(Errc::read_timeout));
    const auto tasks = s.metrics->tasks_with_code(1);
    ASSERT_EQ(tasks.size(), 1U);
    EXPECT_EQ(tasks[0].outcome, TaskOutcome::dropped);
  }
}

TEST(Timeouts, ReadTimeoutIsRolling) {
  constexpr auto kRead = 300ms;
  TimeoutServer s(timeouts(30000ms, kRead, 5000ms));
  RawClient c(s.server.port());
  const Bytes content{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const Bytes req = request(1, content);  // 13 bytes: 1.3 s in all, more than 4 Read timeouts
  const auto start = Clock::now();
  for (std::uint8_t b : req) {
    c.send(Bytes{b});
    std::this_thread::sleep_for(100ms);  // the pacing under test, not synchronisation
  }
  EXPECT_GT(elapsed_since(start), kRead * 4);
  EXPECT_EQ(c.recv(echo_response(content).size()), echo_response(content));
  EXPECT_TRUE(s.metrics->closed().empty()) << "the connection was closed";
  // And it is still usable.
  EXPECT_EQ(c.call(request(2), 2), bytes({0x00, 0x00}));
}

TEST(Timeouts, WriteTimeoutDropsAPeerThatNeverReadsWhileOthersAreServed) {
  constexpr auto kWrite = 300ms;
  TimeoutServer s(timeouts(30000ms, 5000ms, kWrite));
  RawClient other(s.server.port());
  ASSERT_EQ(other.call(request(2), 2), bytes({0x00, 0x00}));

  RawClient stalled(s.server.port());
  const auto start = Clock::now();
  stalled.send(request(4, big_endian<std::uint64_t>(std::uint64_t{256} << 20)));  // never read

  // The server keeps serving the other connection while it writes to the stalled one.
  for (int i = 0; i < 5; ++i) {
    const Bytes content{static_cast<std::uint8_t>(i)};
    ASSERT_EQ(other.call(request(1, content), echo_response(content).size()),
              echo_response(content));
  }
  // The stalled connection is dropped by the Write timeout (plus the time to fill the socket
  // buffers, a few megabytes on loopback).
  ASSERT_TRUE(eventually([&] { return !s.metrics->closed().empty(); }, kWrite + 2 * kTimingSlack));
  const auto took = elapsed_since(start);
  EXPECT_GE(took, kWrite) << "dropped before the Write timeout";
  EXPECT_LE(took, kWrite + 2 * kTimingSlack);
  EXPECT_EQ(s.first_close_reason(), make_error_code(Errc::write_timeout));
  const auto tasks = s.metrics->tasks_with_code(4);
  ASSERT_EQ(tasks.size(), 1U);
  EXPECT_EQ(tasks[0].outcome, TaskOutcome::dropped);

  // The other connection is unaffected.
  EXPECT_EQ(other.call(request(1, bytes({7, 8})), 5), echo_response(bytes({7, 8})));
  EXPECT_EQ(s.metrics->closed().size(), 1U);
}

}  // namespace
}  // namespace serialserver::test
