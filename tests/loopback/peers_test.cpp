// Peers that push the server: deep pipelining, one byte per segment, failing tasks, tasks that end
// only when cancelled (peer gone, shutdown past the grace), and a thousand connections at once.

#include "demo_tasks.hpp"
#include "support/loopback.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <stdexcept>

#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

using Clock = std::chrono::steady_clock;

Bytes ok_with(const Bytes& content) {
  Bytes out{0x00};
  const Bytes body = encode(content);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

void append(Bytes& to, const Bytes& more) { to.insert(to.end(), more.begin(), more.end()); }

/// Where the first difference between two byte strings is, for readable failures.
std::string first_difference(const Bytes& got, const Bytes& want) {
  const std::size_t n = std::min(got.size(), want.size());
  for (std::size_t i = 0; i < n; ++i) {
    if (got[i] != want[i]) {
      return "byte " + std::to_string(i) + ": got " + std::to_string(got[i]) + ", want " +
             std::to_string(want[i]);
    }
  }
  return got.size() == want.size() ? "equal"
                                   : "sizes differ: got " + std::to_string(got.size()) + ", want " +
                                         std::to_string(want.size());
}

class Peers : public ::testing::Test {
 protected:
  void SetUp() override {
    metrics_ = std::make_shared<RecordingMetrics>();
    server_ = std::make_unique<TestServer>(options_with_metrics(metrics_));
    demo::register_demo_tasks(server_->server());
  }
  std::shared_ptr<RecordingMetrics> metrics_;
  std::unique_ptr<TestServer> server_;
};

TEST_F(Peers, ThousandPipelinedRequestsInOneWriteAreAnsweredInOrder) {
  server_->start();
  Bytes all;
  Bytes expected;
  for (int i = 0; i < 1000; ++i) {
    if (i % 100 == 99) {
      append(all, request(kKeepAliveTaskCode));
      append(expected, bytes({0x00, 0x00}));
      continue;
    }
    switch (i % 4) {
      case 0: {  // echo, a distinct payload of 0..599 bytes
        Bytes content(static_cast<std::size_t>(i * 7 % 600));
        for (std::size_t j = 0; j < content.size(); ++j) {
          content[j] = static_cast<std::uint8_t>(i + j * 13);
        }
        append(all, request(1, content));
        append(expected, ok_with(content));
        break;
      }
      case 1:  // empty response
        append(all, request(2));
        append(expected, bytes({0x00, 0x00}));
        break;
      case 2: {  // Error with a code that varies
        const auto code = static_cast<std::uint8_t>(i % 250);
        append(all, request(3, Bytes{code}));
        append(expected, bytes({0x01, code}));
        break;
      }
      default:  // echo of the index
        append(all, request(1, big_endian<std::uint32_t>(static_cast<std::uint32_t>(i))));
        append(expected, ok_with(big_endian<std::uint32_t>(static_cast<std::uint32_t>(i))));
        break;
    }
  }
  RawClient c(server_->port());
  std::thread sender([&] { c.send(all); });  // one write; read meanwhile, so nobody blocks
  const Bytes got = c.recv(expected.size(), 20000ms);
  sender.join();
  EXPECT_TRUE(got == expected) << first_difference(got, expected);
  EXPECT_TRUE(c.recv(1, 100ms).empty()) << "extra bytes after the last response";
  EXPECT_EQ(metrics_->tasks().size(), 1000U);
  EXPECT_TRUE(metrics_->closed().empty());
}

TEST_F(Peers, OneByteAtATimeGetsTheRightAnswers) {
  server_->start();
  Bytes big(300);
  for (std::size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<std::uint8_t>(i * 3);
  }
  const std::vector<std::pair<Bytes, Bytes>> exchanges = {
      {request(1, big), ok_with(big)},
      {request(2), bytes({0x00, 0x00})},
      {request(3, bytes({7})), bytes({0x01, 0x07})},
      {request(kKeepAliveTaskCode), bytes({0x00, 0x00})},
      {request(9, bytes({1, 2, 3})), bytes({0x01, 0xFF})},
      {bytes({0x01, 0x03, 0x01, 0x02, 0x03, 0x01, 0x04, 0x00}), ok_with(bytes({1, 2, 3, 4}))},
      {request(6, big), ok_with(big_endian<std::uint64_t>(300))},
      {request(5, big_endian<std::uint32_t>(1)), bytes({0x00, 0x00})},
  };
  RawClient c(server_->port());  // TCP_NODELAY: every send is its own segment
  for (const auto& [req, resp] : exchanges) {
    SCOPED_TRACE(::testing::PrintToString(Bytes(req.begin(), req.begin() + 1)));
    for (std::uint8_t b : req) {
      c.send(Bytes{b});
    }
    EXPECT_EQ(c.recv(resp.size()), resp);
  }
  // All of them again, pipelined, a byte per send.
  Bytes all;
  Bytes expected;
  for (const auto& [req, resp] : exchanges) {
    append(all, req);
    append(expected, resp);
  }
  for (std::uint8_t b : all) {
    c.send(Bytes{b});
  }
  EXPECT_EQ(c.recv(expected.size()), expected);
  EXPECT_TRUE(metrics_->closed().empty());
}

TEST_F(Peers, TaskThatThrowsANonTaskErrorDropsOnlyItsConnectionAndIsLogged) {
  server_->server().register_task(20, [](TaskContext& ctx) -> asio::awaitable<Response> {
    co_await ctx.request().async_read_all();
    throw std::runtime_error("deliberate failure in task 20");
  });
  server_->server().register_blocking_task(21, [](TaskContext& ctx) -> Response {
    ctx.request().read_all();
    throw std::runtime_error("deliberate failure in task 21");
  });
  server_->start();
  RawClient other(server_->port());
  ASSERT_EQ(other.call(request(2), 2), bytes({0x00, 0x00}));
  for (const TaskCode code : {TaskCode{20}, TaskCode{21}}) {
    SCOPED_TRACE("task " + std::to_string(code));
    RawClient failing(server_->port());
    failing.send(request(code, bytes({1, 2})));
    EXPECT_TRUE(failing.closed_within(kTimingSlack)) << "the connection was not dropped";
    EXPECT_TRUE(failing.unexpected_bytes().empty()) << "a response was sent";
    EXPECT_EQ(other.call(request(1, bytes({code})), 4), ok_with(bytes({code})));
    const std::string message = "deliberate failure in task " + std::to_string(code);
    EXPECT_TRUE(eventually([&] { return server_->logger()->contains(message); }))
        << "the failure was not logged";
    ASSERT_TRUE(eventually([&] { return metrics_->tasks_with_code(code).size() == 1; }));
    EXPECT_EQ(metrics_->tasks_with_code(code).front().outcome, TaskOutcome::dropped);
  }
  ASSERT_TRUE(eventually([&] { return metrics_->closed().size() == 2; }));
  for (const auto& reason : metrics_->closed()) {
    EXPECT_EQ(reason, make_error_code(Errc::task_failed));
  }
}

/// What a task that ends only when cancelled saw.
struct CancelProbe {
  std::atomic<bool> started{false};
  std::atomic<bool> ended{false};
  std::atomic<bool> stop_requested{false};
  std::atomic<Clock::rep> ended_at{0};
  void end(bool stop) {
    stop_requested = stop;
    ended_at = Clock::now().time_since_epoch().count();
    ended = true;
  }
  Clock::time_point end_time() const { return Clock::time_point(Clock::duration(ended_at.load())); }
};

enum class TaskKind { coroutine, blocking };

/// Registers task 30: reads its request, then waits until cancelled (a timer that never expires
/// for the coroutine kind, the stop token for the blocking kind), then fails.
void register_wait_until_cancelled(Server& server, TaskKind kind,
                                   const std::shared_ptr<CancelProbe>& probe) {
  if (kind == TaskKind::coroutine) {
    server.register_task(30, [probe](TaskContext& ctx) -> asio::awaitable<Response> {
      co_await ctx.request().async_skip_all();
      asio::steady_timer timer(co_await asio::this_coro::executor);
      timer.expires_at(asio::steady_timer::time_point::max());
      probe->started = true;
      std::error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      probe->end(ctx.stop_requested());
      throw std::system_error(ec ? ec : make_error_code(Errc::cancelled));
    });
  } else {
    server.register_blocking_task(30, [probe](TaskContext& ctx) -> Response {
      (void)ctx.request().read_all();
      std::mutex m;
      std::condition_variable_any cv;
      probe->started = true;
      std::unique_lock lock(m);
      const std::stop_token stop = ctx.stop_token();
      cv.wait(lock, stop, [] { return false; });
      probe->end(ctx.stop_requested());
      throw std::system_error(make_error_code(Errc::cancelled));
    });
  }
}

class WaitUntilCancelled : public Peers, public ::testing::WithParamInterface<TaskKind> {
 protected:
  void SetUp() override {
    Peers::SetUp();
    probe_ = std::make_shared<CancelProbe>();
    register_wait_until_cancelled(server_->server(), GetParam(), probe_);
    server_->start();
  }
  std::shared_ptr<CancelProbe> probe_;
};

TEST_P(WaitUntilCancelled, IsCancelledWhenThePeerClosesTheConnection) {
  RawClient c(server_->port());
  c.send(request(30, bytes({1})));
  ASSERT_TRUE(eventually([&] { return probe_->started.load(); }));
  EXPECT_FALSE(probe_->ended.load());
  c.close();
  EXPECT_TRUE(eventually([&] { return probe_->ended.load(); }, kTimingSlack))
      << "the task was not cancelled when its peer went away";
  EXPECT_TRUE(probe_->stop_requested.load()) << "the stop token did not fire";
  EXPECT_TRUE(eventually([&] { return metrics_->closed().size() == 1; }));
  EXPECT_EQ(metrics_->closed().front(), make_error_code(Errc::peer_closed));
  ASSERT_EQ(metrics_->tasks_with_code(30).size(), 1U);
  EXPECT_EQ(metrics_->tasks_with_code(30).front().outcome, TaskOutcome::dropped);
  EXPECT_TRUE(server_->logger()->contains("peer went away"));
}

TEST_P(WaitUntilCancelled, IsCancelledWhenTheServerShutsDownPastItsGrace) {
  constexpr auto kGrace = 300ms;
  RawClient c(server_->port());
  c.send(request(30));
  ASSERT_TRUE(eventually([&] { return probe_->started.load(); }));
  const auto start = Clock::now();
  server_->listener().shutdown(kGrace);
  EXPECT_TRUE(c.closed_within(kGrace + kTimingSlack));
  EXPECT_TRUE(c.unexpected_bytes().empty()) << "a response was sent";
  ASSERT_TRUE(eventually([&] { return probe_->ended.load(); }));
  const auto ended_after = probe_->end_time() - start;
  EXPECT_GE(ended_after, kGrace) << "cancelled before the grace period passed";
  EXPECT_LE(ended_after, kGrace + kTimingSlack);
  EXPECT_TRUE(probe_->stop_requested.load());
  EXPECT_TRUE(eventually([&] { return metrics_->closed().size() == 1; }));
  EXPECT_EQ(metrics_->closed().front(), make_error_code(Errc::graceful_disconnect));
  // The stop completes.
  const auto stop_start = Clock::now();
  server_->stop(0ms);
  EXPECT_LT(elapsed_since(stop_start), kTimingSlack);
}

INSTANTIATE_TEST_SUITE_P(Kinds, WaitUntilCancelled,
                         ::testing::Values(TaskKind::coroutine, TaskKind::blocking),
                         [](const auto& param_info) {
                           return param_info.param == TaskKind::coroutine ? std::string("Coroutine")
                                                                          : std::string("Blocking");
                         });

/// A minimal blocking TCP client on a raw descriptor: a thousand RawClients would each bring an
/// io_context along.
class FdClient {
 public:
  explicit FdClient(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      throw std::system_error(errno, std::generic_category(), "socket");
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      const int e = errno;
      ::close(fd_);
      throw std::system_error(e, std::generic_category(), "connect");
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  FdClient(const FdClient&) = delete;
  FdClient& operator=(const FdClient&) = delete;
  ~FdClient() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  bool send(const Bytes& data) const {
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  Bytes recv(std::size_t n, Clock::time_point deadline) const {
    Bytes out(n);
    std::size_t got = 0;
    while (got < n) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      pollfd p{fd_, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
        break;
      }
      const ssize_t r = ::recv(fd_, out.data() + got, n - got, 0);
      if (r <= 0) {
        break;
      }
      got += static_cast<std::size_t>(r);
    }
    out.resize(got);
    return out;
  }

 private:
  int fd_ = -1;
};

/// Raises the soft limit of open files to the hard limit; restores it on destruction.
class RaisedFileLimit {
 public:
  RaisedFileLimit() {
    if (::getrlimit(RLIMIT_NOFILE, &saved_) == 0) {
      rlimit raised = saved_;
      raised.rlim_cur = raised.rlim_max;
      if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
        current_ = raised.rlim_cur;
      } else {
        current_ = saved_.rlim_cur;
      }
    }
  }
  RaisedFileLimit(const RaisedFileLimit&) = delete;
  RaisedFileLimit& operator=(const RaisedFileLimit&) = delete;
  ~RaisedFileLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  rlim_t current() const { return current_; }

 private:
  rlimit saved_{};
  rlim_t current_ = 0;
};

TEST_F(Peers, ThousandConcurrentConnectionsEachDoAFewEchoes) {
  constexpr std::size_t kConnections = 1000;
  constexpr int kRounds = 3;
  RaisedFileLimit limit;
  // Each connection costs a descriptor on both sides, plus the server's and the test's own.
  if (limit.current() < 2 * kConnections + 256) {
    GTEST_SKIP() << "RLIMIT_NOFILE is " << limit.current() << ", too low for " << kConnections
                 << " connections";
  }
  server_->start();
  std::vector<std::unique_ptr<FdClient>> clients;
  clients.reserve(kConnections);
  for (std::size_t i = 0; i < kConnections; ++i) {
    clients.push_back(std::make_unique<FdClient>(server_->port()));
  }
  ASSERT_TRUE(eventually([&] { return server_->server().num_clients() == kConnections; }, 30000ms))
      << "the server handles " << server_->server().num_clients() << " connections";

  const auto content_for = [](std::size_t i, int round) {
    Bytes content = big_endian<std::uint32_t>(static_cast<std::uint32_t>(i));
    content.push_back(static_cast<std::uint8_t>(round));
    content.resize(5 + (i + static_cast<std::size_t>(round)) % 40, static_cast<std::uint8_t>(i));
    return content;
  };
  std::size_t correct = 0;
  for (int round = 0; round < kRounds; ++round) {
    // Every connection has a request in flight at once, then every answer is read.
    for (std::size_t i = 0; i < kConnections; ++i) {
      ASSERT_TRUE(clients[i]->send(request(1, content_for(i, round)))) << "connection " << i;
    }
    const auto deadline = Clock::now() + 30s;
    for (std::size_t i = 0; i < kConnections; ++i) {
      const Bytes want = ok_with(content_for(i, round));
      const Bytes got = clients[i]->recv(want.size(), deadline);
      if (got == want) {
        ++correct;
      } else {
        ADD_FAILURE() << "connection " << i << ", round " << round << ": "
                      << first_difference(got, want);
      }
    }
  }
  EXPECT_EQ(correct, kConnections * kRounds);
  EXPECT_EQ(metrics_->opened(), kConnections);
  EXPECT_TRUE(metrics_->closed().empty());
  clients.clear();
  EXPECT_TRUE(eventually([&] { return server_->server().num_clients() == 0; }, 30000ms));
  EXPECT_EQ(metrics_->closed().size(), kConnections);
}

}  // namespace
}  // namespace serialserver::test
