// docs/protocol.md sections 3 to 5 over real sockets: the request size limit (Error 254 after
// draining, and closing past the drain limit), and draining of requests whose content nobody reads
// (unknown tasks, keep-alive).

#include "demo_tasks.hpp"
#include "support/loopback.hpp"

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

constexpr std::uint64_t kLimit = 1000;
constexpr std::uint64_t kDrainLimit = 4096;

/// Content of `n` bytes, byte i being (i * 31 + 7) mod 256.
Bytes content_of(std::size_t n) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<std::uint8_t>(i * 31 + 7);
  }
  return out;
}

/// `n` bytes of content as full 255-byte blocks and a remainder, without the end byte.
Bytes blocks_without_end(std::size_t n) {
  Bytes out = encode(content_of(n));
  out.pop_back();
  return out;
}

Bytes ok_with(const Bytes& content) {
  Bytes out{0x00};
  const Bytes body = encode(content);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

class RequestLimits : public ::testing::Test {
 protected:
  void start(std::uint64_t limit, std::uint64_t drain_limit = std::uint64_t{64} << 20) {
    metrics_ = std::make_shared<RecordingMetrics>();
    ServerOptions o = options_with_metrics(metrics_);
    o.max_request_bytes = limit;
    o.max_request_drain_bytes = drain_limit;
    o.timeout.read = 30s;  // a close in these tests must never be the Read timeout's doing
    server_ = std::make_unique<TestServer>(std::move(o));
    demo::register_demo_tasks(server_->server());
    server_->start();
  }
  /// The connection's current task has read more than `n` content bytes.
  bool server_has_read_more_than(std::uint64_t n) {
    const auto clients = server_->server().clients();
    if (clients.size() != 1) {
      return false;
    }
    const auto m = clients.front()->metadata();
    return m.has_value() && m->bytes_read > n;
  }
  /// Sends an over-limit request for `code` in two parts and checks that Error 254 comes only
  /// after its end byte, and that the connection then serves the next task.
  void expect_254_after_drain(TaskCode code) {
    RawClient c(server_->port());
    Bytes first{code};
    const Bytes body = blocks_without_end(2 * kLimit);
    first.insert(first.end(), body.begin(), body.end());
    c.send(first);
    ASSERT_TRUE(eventually([&] { return server_has_read_more_than(kLimit); }))
        << "the server did not read past the limit";
    EXPECT_TRUE(c.recv(1, 200ms).empty()) << "answered before the request ended";
    Bytes rest = blocks_without_end(kLimit);  // more content, still over the limit
    rest.push_back(0x00);
    c.send(rest);
    EXPECT_EQ(c.recv(2), bytes({0x01, 0xFE}));
    // The connection stays usable: the next task code lines up.
    EXPECT_EQ(c.call(request(1, bytes({0x61, 0x62, 0x63})), 6), ok_with(bytes({0x61, 0x62, 0x63})));
    EXPECT_EQ(c.call(request(6, content_of(10)), 11), ok_with(big_endian<std::uint64_t>(10)));
    EXPECT_TRUE(metrics_->closed().empty()) << "the connection was closed";
    const auto tasks = metrics_->tasks_with_code(code);
    ASSERT_FALSE(tasks.empty());
    EXPECT_EQ(tasks[0].outcome, TaskOutcome::error);
    EXPECT_EQ(tasks[0].error_code, kMessageTooLargeErrorCode);
    EXPECT_EQ(tasks[0].bytes_read, 3 * kLimit) << "the request was not drained to its end";
  }

  std::shared_ptr<RecordingMetrics> metrics_;
  std::unique_ptr<TestServer> server_;
};

TEST_F(RequestLimits, ContentAtTheLimitIsAccepted) {
  start(kLimit);
  RawClient c(server_->port());
  const Bytes content = content_of(kLimit);
  EXPECT_EQ(c.call(request(1, content), ok_with(content).size()), ok_with(content));
  EXPECT_EQ(c.call(request(6, content), 11), ok_with(big_endian<std::uint64_t>(kLimit)));
  EXPECT_EQ(c.call(request(1, content_of(kLimit + 1)), 2), bytes({0x01, 0xFE}));
}

TEST_F(RequestLimits, OverTheLimitRequestInOneWriteIsAnswered254) {
  // The end byte arrives with the content that crosses the limit: it must not be waited for
  // again.
  start(kLimit);
  RawClient c(server_->port());
  for (const TaskCode code : {TaskCode{1}, TaskCode{6}, TaskCode{9}}) {
    SCOPED_TRACE("task " + std::to_string(code));
    EXPECT_EQ(c.call(request(code, content_of(kLimit + 1)), 2), bytes({0x01, 0xFE}));
    EXPECT_EQ(c.call(request(code, content_of(3 * kLimit)), 2), bytes({0x01, 0xFE}));
  }
  EXPECT_EQ(c.call(request(1, bytes({0x61})), 4), ok_with(bytes({0x61})));
  EXPECT_TRUE(metrics_->closed().empty());
}

TEST_F(RequestLimits, OverTheLimitEchoGetsError254AfterDrainingAndStaysUsable) {
  start(kLimit);
  expect_254_after_drain(1);
}

TEST_F(RequestLimits, OverTheLimitStreamingCountGetsError254AfterDrainingAndStaysUsable) {
  start(kLimit);
  expect_254_after_drain(6);
}

TEST_F(RequestLimits, OverTheLimitUnknownTaskGetsError254AfterDraining) {
  start(kLimit);
  expect_254_after_drain(9);
}

TEST_F(RequestLimits, PastTheDrainLimitTheServerAnswers254AndCloses) {
  for (const TaskCode code : {TaskCode{1}, TaskCode{6}, TaskCode{9}, kKeepAliveTaskCode}) {
    SCOPED_TRACE("task " + std::to_string(code));
    start(kLimit, kDrainLimit);
    RawClient c(server_->port());
    // Just past limit + drain limit, in full blocks, and no end byte: the server cannot wait for
    // one.
    Bytes req{code};
    const Bytes body = blocks_without_end(kLimit + kDrainLimit + kMaxBlockSize);
    req.insert(req.end(), body.begin(), body.end());
    const auto start_time = std::chrono::steady_clock::now();
    c.send(req);
    EXPECT_EQ(c.recv(2), bytes({0x01, 0xFE}));
    EXPECT_TRUE(c.closed_within(kTimingSlack)) << "the connection was not closed";
    EXPECT_LT(elapsed_since(start_time), 10s);
    EXPECT_TRUE(c.unexpected_bytes().empty());
    ASSERT_TRUE(eventually([&] { return !metrics_->closed().empty(); }));
    EXPECT_EQ(metrics_->closed().front(), make_error_code(Errc::message_too_large));
    server_.reset();
  }
}

TEST_F(RequestLimits, UnknownTaskWithBigContentIsDrainedAndAnswered255) {
  start(0);
  RawClient c(server_->port());
  for (const TaskCode code : {TaskCode{9}, TaskCode{200}, TaskCode{252}, TaskCode{254}}) {
    SCOPED_TRACE("task " + std::to_string(code));
    EXPECT_EQ(c.call(request(code, content_of(std::size_t{1} << 20)), 2), bytes({0x01, 0xFF}));
    EXPECT_EQ(c.call(request(1, bytes({0x01, 0x02})), 5), ok_with(bytes({0x01, 0x02})));
  }
  EXPECT_TRUE(metrics_->closed().empty());
  const auto tasks = metrics_->tasks_with_code(9);
  ASSERT_EQ(tasks.size(), 1U);
  EXPECT_EQ(tasks[0].bytes_read, std::uint64_t{1} << 20);
}

TEST_F(RequestLimits, KeepAliveWithContentIsDrained) {
  start(0);
  RawClient c(server_->port());
  EXPECT_EQ(c.call(request(kKeepAliveTaskCode, content_of(100 * 1024)), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(c.call(request(1, bytes({0x33})), 4), ok_with(bytes({0x33})));
  // Two at once, the second right behind the first's content.
  Bytes both = request(kKeepAliveTaskCode, content_of(300));
  const Bytes echo = request(1, bytes({0x34, 0x35}));
  both.insert(both.end(), echo.begin(), echo.end());
  Bytes expected{0x00, 0x00};
  const Bytes echoed = ok_with(bytes({0x34, 0x35}));
  expected.insert(expected.end(), echoed.begin(), echoed.end());
  EXPECT_EQ(c.call(both, expected.size()), expected);
  EXPECT_TRUE(metrics_->closed().empty());
}

TEST_F(RequestLimits, KeepAliveOverTheLimitGetsError254AndStaysUsable) {
  start(kLimit);
  RawClient c(server_->port());
  EXPECT_EQ(c.call(request(kKeepAliveTaskCode, content_of(2 * kLimit)), 2), bytes({0x01, 0xFE}));
  EXPECT_EQ(c.call(request(kKeepAliveTaskCode), 2), bytes({0x00, 0x00}));
}

}  // namespace
}  // namespace serialserver::test
