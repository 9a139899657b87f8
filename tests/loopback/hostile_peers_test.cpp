// Slow and hostile peers over real sockets on 127.0.0.1 (docs/robustness.md): slowloris, peers
// that never read or read one byte a second, half-open connections, floods of connects and
// resets, a flood past max_connections (evicting the longest idle), a flood of blocking tasks, and
// 10,000 connections sending garbage. Throughout each, a well-behaved client (Probe) keeps calling
// and must get every answer right within kProbeLatencyBudget; afterwards every attacking connection
// has ended with a documented reason, in the metrics and in the log, and nothing has leaked.

#include "demo_tasks.hpp"
#include "support/hostile.hpp"

#include <sys/wait.h>

#include <atomic>
#include <condition_variable>
#include <iostream>
#include <map>
#include <mutex>
#include <set>

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

using Clock = std::chrono::steady_clock;

/// Counts of the reasons connections ended, by message, for readable failures.
std::map<std::string, int> reason_counts(const std::vector<std::error_code>& reasons) {
  std::map<std::string, int> counts;
  for (const auto& r : reasons) {
    ++counts[r.message()];
  }
  return counts;
}

std::string describe(const std::map<std::string, int>& counts) {
  std::string out;
  for (const auto& [reason, n] : counts) {
    out += "\n  " + std::to_string(n) + " x " + reason;
  }
  return out;
}

/// Keeps the lines logged at info level and above (per-task debug lines would slow floods of
/// requests down for nothing).
class InfoLog final : public Logger {
 public:
  bool enabled(LogLevel level) const noexcept override { return level >= LogLevel::info; }
  void write(LogLevel /*level*/, std::string_view message) noexcept override {
    std::lock_guard lock(mutex_);
    lines_.emplace_back(message);
  }
  /// How many lines contain `needle`.
  std::size_t count(std::string_view needle) const {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(std::count_if(lines_.begin(), lines_.end(), [&](const auto& l) {
      return l.find(needle) != std::string::npos;
    }));
  }
  bool contains(std::string_view needle) const { return count(needle) > 0; }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

/// How many log lines contain `needle`.
std::size_t count_lines(const InfoLog& log, std::string_view needle) { return log.count(needle); }

class HostilePeers : public ::testing::Test {
 protected:
  /// The server's timeouts in these tests: short, so that attacks end in bounded time.
  static constexpr auto kWait = 30000ms;
  static constexpr auto kRead = 1000ms;
  static constexpr auto kWrite = 1000ms;
  static constexpr auto kRequestDeadline = 4000ms;

  ServerOptions options() {
    ServerOptions o = options_with_metrics(metrics_);
    o.timeout.wait = kWait;
    o.timeout.read = kRead;
    o.timeout.write = kWrite;
    o.max_request_duration = kRequestDeadline;
    o.max_request_bytes = 1 << 20;
    return o;
  }
  static ListenerOptions listener_options() {
    ListenerOptions o = TestServer::default_listener_options();
    o.backlog = 4096;
    return o;
  }
  /// Starts the server with the demo tasks, then the probe.
  void start(ServerOptions o, ListenerOptions lo = listener_options()) {
    server_ = std::make_unique<TestServer>(std::move(o), std::move(lo));
    demo::register_demo_tasks(server_->server());
    server_->start();
    // Each I/O thread's reactor opens its descriptors on its first connection: one connection
    // per thread before the count that the end of the test compares with.
    for (std::size_t i = 0; i < server_->listener().io_thread_count(); ++i) {
      RawClient warm(server_->port());
      ASSERT_EQ(warm.call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
    }
    ASSERT_TRUE(eventually([&] { return server_->server().num_clients() == 0; }));
    fds_baseline_ = open_fd_count();
    // The counts and lines that the tests check start after the warm-up.
    metrics_ = std::make_shared<RecordingMetrics>();
    server_->server().set_metrics(metrics_);
    log_ = std::make_shared<InfoLog>();
    server_->server().set_logger(log_);
    probe_ = std::make_unique<Probe>(server_->port());
    ASSERT_TRUE(probe_->wait_for_calls(3)) << probe_->failure();
  }
  void start() { start(options()); }
  InfoLog& log() { return *log_; }
  std::uint16_t port() { return server_->port(); }

  /// How many log lines contain `needle`, counted once at least `expected` do (or after 5 s).
  /// A connection's end reaches the metrics just before its "connection closed" line reaches
  /// the log, so a count taken as soon as wait_for_closed returns can be a line short; more
  /// lines than expected still show.
  std::size_t log_lines(std::string_view needle, std::size_t expected) {
    eventually([&] { return count_lines(log(), needle) >= expected; }, 5000ms);
    return count_lines(log(), needle);
  }

  /// Waits until `n` connections besides the probe's have ended; returns their reasons.
  std::vector<std::error_code> wait_for_closed(std::size_t n, std::chrono::milliseconds timeout) {
    EXPECT_TRUE(eventually([&] { return metrics_->closed().size() >= n; }, timeout))
        << metrics_->closed().size() << " of " << n << " connections ended"
        << describe(reason_counts(metrics_->closed()));
    return metrics_->closed();
  }

  /// Once the probe has gone too, no connection is left, and the server serves a new client.
  void expect_back_to_normal() {
    probe_.reset();
    EXPECT_TRUE(eventually([&] { return server_->server().num_clients() == 0; }, 30000ms))
        << server_->server().num_clients() << " connections are still being served";
    EXPECT_TRUE(eventually([&] { return server_->listener().num_connections() == 0; }, 30000ms));
    {
      RawClient fresh(port());
      EXPECT_EQ(fresh.call(request(1, bytes({1, 2, 3})), 6), ok_response(bytes({1, 2, 3})));
    }
    // No descriptor leaked: back to what the process held before the first connection.
    EXPECT_TRUE(eventually([&] { return open_fd_count() == fds_baseline_; }, 10000ms))
        << "descriptors before " << fds_baseline_ << ", after " << open_fd_count();
  }

  std::shared_ptr<RecordingMetrics> metrics_ = std::make_shared<RecordingMetrics>();
  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Probe> probe_;
  std::shared_ptr<InfoLog> log_ = std::make_shared<InfoLog>();
  int fds_baseline_ = -1;
};

// ---- slowloris ---------------------------------------------------------------------------

TEST_F(HostilePeers, SlowlorisIsClosedAtTheRequestDeadlineWhileOthersAreServed) {
  // One byte a second, forever: an echo request that never ends. Each byte re-arms the rolling
  // Read timeout (2.5 s here), so only max_request_duration ends it.
  constexpr int kPeers = 50;
  ServerOptions o = options();
  o.timeout.read = 2500ms;
  start(std::move(o));
  std::vector<std::unique_ptr<RawPeer>> peers;
  for (int i = 0; i < kPeers; ++i) {
    peers.push_back(std::make_unique<RawPeer>(port()));
  }
  std::vector<std::optional<std::chrono::milliseconds>> closed_after(kPeers);
  const auto start = Clock::now();
  const auto give_up = start + kRequestDeadline + 2 * kTimingSlack + 2s;
  for (int second = 0; Clock::now() < give_up; ++second) {
    // The slow byte: the task code, a block of 255, then its content, one byte each second.
    const std::uint8_t b = second == 0   ? 0x01
                           : second == 1 ? 0xFF
                                         : static_cast<std::uint8_t>(second);
    for (auto& p : peers) {
      if (!p->closed()) {
        (void)p->send_some(Bytes{b});
      }
    }
    // Watch for closes until the next second.
    const auto tick = start + std::chrono::seconds(second + 1);
    while (Clock::now() < tick) {
      std::vector<pollfd> fds;
      for (auto& p : peers) {
        fds.push_back(pollfd{p->fd(), POLLIN, 0});
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(tick - Clock::now());
      if (::poll(fds.data(), fds.size(),
                 static_cast<int>(std::max<std::int64_t>(left.count(), 0))) <= 0) {
        continue;
      }
      for (int i = 0; i < kPeers; ++i) {
        if (fds[i].revents != 0 && !peers[i]->closed()) {
          peers[i]->poll_once();
          if (peers[i]->closed()) {
            closed_after[i] = elapsed_since(start);
          }
        }
      }
    }
    if (std::all_of(closed_after.begin(), closed_after.end(),
                    [](auto& c) { return c.has_value(); })) {
      break;
    }
  }
  for (int i = 0; i < kPeers; ++i) {
    ASSERT_TRUE(closed_after[i].has_value()) << "slow peer " << i << " is still connected";
    EXPECT_GE(*closed_after[i], kRequestDeadline) << "slow peer " << i << " closed too early";
    EXPECT_LE(*closed_after[i], kRequestDeadline + kTimingSlack) << "slow peer " << i;
    EXPECT_TRUE(peers[i]->received().empty()) << "slow peer " << i << " got a response";
  }
  const auto reasons = wait_for_closed(kPeers, 5000ms);
  EXPECT_EQ(
      reason_counts(reasons),
      (std::map<std::string, int>{{make_error_code(Errc::request_timeout).message(), kPeers}}));
  EXPECT_EQ(log_lines("max_request_duration", static_cast<std::size_t>(kPeers)),
            static_cast<std::size_t>(kPeers));
  probe_->expect_well_served(20);
  // The probe's echoes and the slow peers' dropped ones, nothing else.
  EXPECT_EQ(metrics_->tasks_with_code(1).size(), probe_->answered() + kPeers);
  peers.clear();
  expect_back_to_normal();
}

// ---- peers that do not read ---------------------------------------------------------------

TEST_F(HostilePeers, PeersThatNeverReadOrReadOneByteASecondAreDroppedByTheWriteTimeout) {
  constexpr int kBigResponse = 6;  // ask for 256 MiB and never read
  constexpr int kPipeliners = 2;   // pipeline echoes as fast as the server takes them, never read
  constexpr int kSlowReaders = 4;  // ask for 256 MiB and read one byte a second
  constexpr int kPeers = kBigResponse + kPipeliners + kSlowReaders;
  start();
  std::vector<std::unique_ptr<RawPeer>> peers;
  const Bytes big = request(4, big_endian<std::uint64_t>(std::uint64_t{256} << 20));
  Bytes echoes;
  for (int i = 0; i < 500; ++i) {
    const Bytes one = request(1, Bytes(2000, static_cast<std::uint8_t>(i)));
    echoes.insert(echoes.end(), one.begin(), one.end());
  }
  const auto start = Clock::now();
  for (int i = 0; i < kPeers; ++i) {
    auto p = std::make_unique<RawPeer>(port());
    p->set_small_receive_buffer();
    if (i < kBigResponse || i >= kBigResponse + kPipeliners) {
      ASSERT_TRUE(p->send(big));
    }
    peers.push_back(std::move(p));
  }
  // The pipeliners push requests while the server takes them; the slow readers read one byte a
  // second; until the server has dropped everyone.
  const auto budget = kWrite + 3 * kTimingSlack + 10s;  // plus the time to fill the buffers
  auto next_slow_read = start;
  std::vector<std::size_t> offsets(kPipeliners, 0);
  while (metrics_->closed().size() < static_cast<std::size_t>(kPeers) &&
         Clock::now() < start + budget) {
    for (int i = 0; i < kPipeliners; ++i) {  // the stream of echoes, cyclically, never cut
      auto& offset = offsets[i];
      offset = (offset + peers[kBigResponse + i]->send_some(echoes, offset)) % echoes.size();
    }
    if (Clock::now() >= next_slow_read) {
      for (int i = kBigResponse + kPipeliners; i < kPeers; ++i) {
        std::uint8_t b = 0;
        (void)::recv(peers[i]->fd(), &b, 1, MSG_DONTWAIT);
      }
      next_slow_read += 1s;
    }
    eventually([&] { return metrics_->closed().size() >= static_cast<std::size_t>(kPeers); }, 50ms);
  }
  const auto took = elapsed_since(start);
  const auto reasons = wait_for_closed(kPeers, 1000ms);
  EXPECT_GE(took, kWrite);
  EXPECT_EQ(reason_counts(reasons),
            (std::map<std::string, int>{{make_error_code(Errc::write_timeout).message(), kPeers}}));
  EXPECT_EQ(log_lines("timeout whilst writing the response", static_cast<std::size_t>(kPeers)),
            static_cast<std::size_t>(kPeers));
  probe_->expect_well_served(10);
  peers.clear();
  expect_back_to_normal();
}

// ---- half-open connections ----------------------------------------------------------------

TEST_F(HostilePeers, HalfCloseMidMessageClosesAtOnceWithoutAResponse) {
  start();
  // Stops after the task code, inside a block, and between blocks; then ends its write side.
  const std::vector<Bytes> partial = {bytes({0x01}), bytes({0x01, 0x05, 0x01, 0x02}),
                                      bytes({0x01, 0x02, 0x01, 0x02})};
  for (const auto& bytes_sent : partial) {
    SCOPED_TRACE(::testing::PrintToString(bytes_sent));
    RawPeer p(port());
    ASSERT_TRUE(p.send(bytes_sent));
    const auto start = Clock::now();
    p.shutdown_write();
    EXPECT_TRUE(p.read_until_closed(start + kTimingSlack));
    EXPECT_LT(elapsed_since(start), kRead) << "closed by the Read timeout, not by the EOF";
    EXPECT_TRUE(p.received().empty()) << "a response was sent";
  }
  const auto reasons = wait_for_closed(partial.size(), 5000ms);
  EXPECT_EQ(reason_counts(reasons),
            (std::map<std::string, int>{
                {make_error_code(Errc::peer_closed).message(), static_cast<int>(partial.size())}}));
  EXPECT_EQ(log_lines("peer closed the connection", partial.size()), partial.size());
  probe_->expect_well_served(3);
  expect_back_to_normal();
}

TEST_F(HostilePeers, HalfCloseAfterFullRequestsStillGetsEveryResponse) {
  start();
  RawPeer p(port());
  Bytes pipelined = request(1, bytes({'a', 'b', 'c'}));
  const Bytes count = request(6, Bytes(600, 7));
  pipelined.insert(pipelined.end(), count.begin(), count.end());
  pipelined.push_back(0xFA);  // keep-alive
  pipelined.push_back(0x00);
  ASSERT_TRUE(p.send(pipelined));
  p.shutdown_write();
  EXPECT_TRUE(p.read_until_closed(Clock::now() + kTimingSlack + 1s));
  Bytes want = ok_response(bytes({'a', 'b', 'c'}));
  const Bytes counted = ok_response(big_endian<std::uint64_t>(600));
  want.insert(want.end(), counted.begin(), counted.end());
  want.push_back(0x00);
  want.push_back(0x00);
  EXPECT_EQ(p.received(), want);
  const auto reasons = wait_for_closed(1, 5000ms);
  EXPECT_EQ(reasons, std::vector<std::error_code>{make_error_code(Errc::peer_closed)});
  probe_->expect_well_served(3);
}

TEST_F(HostilePeers, HalfCloseWhileATaskWaitsCancelsItWithoutAResponse) {
  // The server cannot tell a half-close from a close: both read as end of stream. A task that
  // is waiting when the end of stream arrives is cancelled (nobody may be left to answer).
  start();
  RawPeer p(port());
  ASSERT_TRUE(p.send(request(5, big_endian<std::uint32_t>(5000))));  // sleep 5 s
  const auto start = Clock::now();
  p.shutdown_write();
  EXPECT_TRUE(p.read_until_closed(start + kTimingSlack + 1s));
  EXPECT_LT(elapsed_since(start), 2500ms) << "the sleeping task was not cancelled";
  EXPECT_TRUE(p.received().empty());
  const auto reasons = wait_for_closed(1, 5000ms);
  EXPECT_EQ(reasons, std::vector<std::error_code>{make_error_code(Errc::peer_closed)});
  const auto tasks = metrics_->tasks_with_code(5);
  ASSERT_EQ(tasks.size(), 1U);
  EXPECT_EQ(tasks[0].outcome, TaskOutcome::dropped);
  EXPECT_TRUE(log().contains("peer went away while a task was running"));
  probe_->expect_well_served(3);
}

TEST_F(HostilePeers, PeersSilentForeverMidMessageAreClosedByTheReadTimeout) {
  constexpr int kPeers = 150;
  start();
  const std::vector<Bytes> partial = {bytes({0x01}), bytes({0x01, 0x05, 0x01, 0x02}),
                                      bytes({0x06, 0x02, 0x01, 0x02})};
  std::vector<std::unique_ptr<RawPeer>> peers;
  const auto start = Clock::now();
  for (int i = 0; i < kPeers; ++i) {
    peers.push_back(std::make_unique<RawPeer>(port()));
    ASSERT_TRUE(peers.back()->send(partial[i % partial.size()]));
  }
  for (int i = 0; i < kPeers; ++i) {
    EXPECT_TRUE(peers[i]->read_until_closed(start + kRead + 2 * kTimingSlack)) << "peer " << i;
    EXPECT_TRUE(peers[i]->received().empty()) << "peer " << i << " got a response";
  }
  const auto took = elapsed_since(start);
  EXPECT_GE(took, kRead);
  EXPECT_LE(took, kRead + 2 * kTimingSlack);
  const auto reasons = wait_for_closed(kPeers, 5000ms);
  EXPECT_EQ(reason_counts(reasons),
            (std::map<std::string, int>{{make_error_code(Errc::read_timeout).message(), kPeers}}));
  EXPECT_EQ(log_lines("timeout whilst reading the request", static_cast<std::size_t>(kPeers)),
            static_cast<std::size_t>(kPeers));
  probe_->expect_well_served(10);
  peers.clear();
  expect_back_to_normal();
}

// ---- floods -------------------------------------------------------------------------------

TEST_F(HostilePeers, FloodOfConnectsAndResetsLeavesNothingBehind) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = kSanitized ? 300 : 600;
  constexpr int kTotal = kThreads * kPerThread;
  start();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        try {
          RawPeer p(port());
          switch ((t + i) % 5) {
            case 0:  // reset at once
              break;
            case 1:  // reset mid-message
              (void)p.send(bytes({0x01, 0x10, 0x01, 0x02}));
              break;
            case 2:  // reset after a full request, before its response
              (void)p.send(request(1, Bytes(100, 9)));
              break;
            case 3: {  // reset in the middle of a 4 MiB response
              (void)p.send(request(4, big_endian<std::uint64_t>(std::uint64_t{4} << 20)));
              (void)p.recv(1024, Clock::now() + 5s);
              break;
            }
            default:  // a plain close, no reset
              p.close();
              continue;
          }
          p.set_linger_reset();
        } catch (const std::system_error&) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(failures.load(), 0) << "connects failed";
  // Every flooded connection ends, each as a peer that went away.
  const auto reasons = wait_for_closed(static_cast<std::size_t>(kTotal - failures.load()), 30000ms);
  EXPECT_EQ(metrics_->opened(), static_cast<std::size_t>(kTotal - failures.load()) + 1);
  EXPECT_EQ(reason_counts(reasons),
            (std::map<std::string, int>{
                {make_error_code(Errc::peer_closed).message(), kTotal - failures.load()}}))
      << describe(reason_counts(reasons));
  probe_->expect_well_served(20);
  expect_back_to_normal();
}

TEST_F(HostilePeers, FloodPastMaxConnectionsEvictsTheLongestIdleAndIsLogged) {
  constexpr int kLimit = 50;
  constexpr int kPeers = 200;
  constexpr int kEvicted = kPeers - (kLimit - 1);
  ListenerOptions lo = listener_options();
  lo.max_connections = kLimit;
  start(options(), lo);  // the probe holds one of the 50
  // A probe that calls without pausing is never the connection idle the longest: each flood
  // peer is idle from its keep-alive on, while the probe is idle for microseconds at a time.
  probe_ = std::make_unique<Probe>(port(), 0ms);
  ASSERT_TRUE(probe_->wait_for_calls(3)) << probe_->failure();
  ASSERT_TRUE(eventually([&] { return server_->listener().num_connections() == 1; }));
  std::vector<std::unique_ptr<RawPeer>> peers;
  int admitted = 0;
  for (int i = 0; i < kPeers; ++i) {
    peers.push_back(std::make_unique<RawPeer>(port()));
    RawPeer& p = *peers.back();
    (void)p.send(bytes({0xFA, 0x00}));
    if (p.recv(2, Clock::now() + 5s) == bytes({0x00, 0x00})) {
      ++admitted;
    }
  }
  // At the limit each newcomer is served and the idle flood peer connected first makes room.
  EXPECT_EQ(admitted, kPeers);
  EXPECT_EQ(log_lines("evicted the longest idle connection", kEvicted),
            static_cast<std::size_t>(kEvicted));
  for (int i = 0; i < kEvicted; ++i) {
    EXPECT_TRUE(peers[i]->read_until_closed(Clock::now() + 5s)) << "peer " << i;
    EXPECT_EQ(peers[i]->received(), bytes({0x02})) << "peer " << i;
  }
  EXPECT_TRUE(eventually(
      [&] { return server_->listener().num_connections() == static_cast<std::size_t>(kLimit); }));
  // The last ones admitted are still served.
  for (int i = kEvicted; i < kPeers; ++i) {
    ASSERT_TRUE(peers[i]->send(bytes({0xFA, 0x00})));
    EXPECT_EQ(peers[i]->recv(2, Clock::now() + 5s), bytes({0x00, 0x00})) << "peer " << i;
  }
  EXPECT_TRUE(probe_->wait_for_calls(10));
  probe_->expect_well_served(10);
  // Room again once they go.
  peers.clear();
  expect_back_to_normal();
}

TEST_F(HostilePeers, FloodOfBlockingTasksWaitsForWorkersWithoutStallingOtherConnections) {
  constexpr int kWorkers = 2;
  constexpr int kQueued = 3;
  constexpr int kPeers = 40;
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
  std::atomic<int> running{0};
  std::atomic<int> max_running{0};
  std::atomic<int> started{0};
  ServerOptions o = options();
  o.worker_threads = kWorkers;
  o.max_queued_blocking_tasks = kQueued;
  server_ = std::make_unique<TestServer>(std::move(o), listener_options());
  demo::register_demo_tasks(server_->server());
  server_->server().register_blocking_task(
      20,
      [&](TaskContext& ctx) {
        ++started;
        int now = ++running;
        int seen = max_running.load();
        while (now > seen && !max_running.compare_exchange_weak(seen, now)) {
        }
        const auto content = ctx.request().read_all();
        {
          std::unique_lock lock(m);
          cv.wait_for(lock, 20s, [&] { return open; });
        }
        --running;
        return Response(content);
      },
      "gate");
  server_->start();
  probe_ = std::make_unique<Probe>(port());
  std::vector<std::unique_ptr<RawPeer>> peers;
  for (int i = 0; i < kPeers; ++i) {
    peers.push_back(std::make_unique<RawPeer>(port()));
    ASSERT_TRUE(peers.back()->send(request(20, big_endian<std::uint32_t>(i))));
  }
  ASSERT_TRUE(eventually([&] { return started.load() == kWorkers; }));
  // While every worker is busy and the rest wait for room, the I/O threads serve the probe.
  ASSERT_TRUE(probe_->wait_for_calls(20)) << probe_->failure();
  EXPECT_EQ(started.load(), kWorkers);
  {
    std::lock_guard lock(m);
    open = true;
  }
  cv.notify_all();
  for (int i = 0; i < kPeers; ++i) {
    const Bytes want = ok_response(big_endian<std::uint32_t>(i));
    EXPECT_EQ(peers[i]->recv(want.size(), Clock::now() + 20s), want) << "peer " << i;
  }
  EXPECT_EQ(max_running.load(), kWorkers);
  EXPECT_EQ(started.load(), kPeers);
  EXPECT_TRUE(metrics_->closed().empty()) << "a waiting connection was dropped";
  probe_->expect_well_served(20);
}

// ---- 10,000 connections sending garbage -----------------------------------------------------

/// What the garbage process reports through its pipe.
struct GarbageReport {
  std::int32_t connected = 0;
  std::int32_t connect_failures = 0;
  std::int32_t answered = 0;          // saw at least one byte from the server
  std::int32_t closed_by_server = 0;  // saw the server's close before closing itself
};

/// Xorshift: the garbage is random but the same on every run.
std::uint64_t next_random(std::uint64_t& state) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

bool read_exact_fd(int fd, void* out, std::size_t n, int timeout_ms) {
  auto* p = static_cast<std::uint8_t*>(out);
  while (n > 0) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, timeout_ms) <= 0) {
      return false;
    }
    const ssize_t r = ::read(fd, p, n);
    if (r <= 0) {
      return false;
    }
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

/// The body of the forked garbage process: plain system calls only. Opens `count` connections
/// to the port it reads from `command`, sends each 1 to 400 random bytes, then for every
/// fourth closes at once, resets every fourth, half-closes every fourth and holds the rest;
/// reports, waits for the go-ahead, reads what the server sent, closes everything, reports.
[[noreturn]] void garbage_process(int command, int report, int count) {
  std::uint16_t port = 0;
  if (!read_exact_fd(command, &port, sizeof port, 120000)) {
    ::_exit(2);
  }
  GarbageReport r;
  std::vector<int> held;
  held.reserve(static_cast<std::size_t>(count));
  std::uint8_t garbage[400];
  for (int i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      ++r.connect_failures;
      if (fd >= 0) {
        ::close(fd);
      }
      continue;
    }
    ++r.connected;
    std::uint64_t state = 0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(i + 1);
    const std::size_t n = 1 + next_random(state) % sizeof garbage;
    for (std::size_t k = 0; k < n; ++k) {
      garbage[k] = static_cast<std::uint8_t>(next_random(state));
    }
    (void)::send(fd, garbage, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    switch (i % 4) {
      case 0:
        ::close(fd);
        break;
      case 1: {
        linger l{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        ::close(fd);
        break;
      }
      case 2:
        ::shutdown(fd, SHUT_WR);
        held.push_back(fd);
        break;
      default:
        held.push_back(fd);
        break;
    }
  }
  if (::write(report, &r, sizeof r) != sizeof r) {
    ::_exit(3);
  }
  char go = 0;
  if (!read_exact_fd(command, &go, 1, 300000)) {
    ::_exit(4);
  }
  std::uint8_t buf[4096];
  for (const int fd : held) {
    bool answered = false;
    for (int k = 0; k < 64; ++k) {  // what the server sent, up to 256 KiB; then a reset
      const ssize_t got = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (got > 0) {
        answered = true;
        continue;
      }
      if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        ++r.closed_by_server;
      }
      break;
    }
    r.answered += answered ? 1 : 0;
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd);
  }
  if (::write(report, &r, sizeof r) != sizeof r) {
    ::_exit(3);
  }
  ::_exit(0);
}

TEST_F(HostilePeers, TenThousandConnectionsSendingGarbage) {
  constexpr int kConnections = 10000;
  RaisedFileLimit limit;
  // The garbage runs in a child process, so each process holds one side of the connections.
  if (limit.current() < static_cast<rlim_t>(kConnections) + 512) {
    GTEST_SKIP() << "RLIMIT_NOFILE is " << limit.current() << ", too low for " << kConnections
                 << " connections";
  }
  // Fork before the server starts threads: the child then has one thread and needs no care.
  int command[2];
  int report[2];
  ASSERT_EQ(::pipe2(command, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(command[1]);
    ::close(report[0]);
    garbage_process(command[0], report[1], kConnections);
  }
  ::close(command[0]);
  ::close(report[1]);
  struct Reap {
    pid_t pid;
    int command;
    int report;
    ~Reap() {
      ::close(command);
      ::close(report);
      if (pid > 0) {  // not reaped by the test yet
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
      }
    }
  } reap{child, command[1], report[0]};

  ServerOptions o = options();
  o.timeout.wait = 2000ms;  // the garbage that happens to form whole requests then idles
  ListenerOptions lo = listener_options();
  lo.max_connections = kConnections + 100;
  start(std::move(o), lo);
  const auto started = Clock::now();
  const std::uint16_t p = port();
  ASSERT_EQ(::write(command[1], &p, sizeof p), static_cast<ssize_t>(sizeof p));

  GarbageReport first;
  ASSERT_TRUE(read_exact_fd(report[0], &first, sizeof first, 120000)) << "no report";
  EXPECT_EQ(first.connect_failures, 0);
  EXPECT_EQ(first.connected, kConnections);
  const auto connected_after = elapsed_since(started);
  // Every connection reaches the server (and the probe keeps being served meanwhile).
  ASSERT_TRUE(eventually(
      [&] { return metrics_->opened() >= static_cast<std::size_t>(first.connected) + 1; }, 60000ms))
      << metrics_->opened() << " connections opened";
  // Let the timeouts act on what is held open: partial requests (Read), whole ones (Wait),
  // responses nobody reads (Write).
  std::this_thread::sleep_for(kRead + 1000ms);  // the attack itself: held connections, idle
  const char go = 1;
  ASSERT_EQ(::write(command[1], &go, 1), 1);
  GarbageReport last;
  ASSERT_TRUE(read_exact_fd(report[0], &last, sizeof last, 120000)) << "no final report";

  const auto reasons = wait_for_closed(static_cast<std::size_t>(first.connected), 60000ms);
  const auto counts = reason_counts(reasons);
  std::cout << "[          ] " << first.connected << " garbage connections in "
            << connected_after.count() << " ms, all ended after " << elapsed_since(started).count()
            << " ms; " << last.answered << " of the held ones got bytes, " << last.closed_by_server
            << " were closed by the server first; reasons:" << describe(counts)
            << "\n[          ] the well-behaved client: " << probe_->answered()
            << " answers, the slowest in " << probe_->max_latency().count() << " ms" << std::endl;
  // Every reason is one the robustness table documents.
  const std::set<std::string> documented = {
      make_error_code(Errc::peer_closed).message(),
      make_error_code(Errc::read_timeout).message(),
      make_error_code(Errc::write_timeout).message(),
      make_error_code(Errc::timeout_waiting_for_task).message(),
      make_error_code(Errc::graceful_disconnect).message(),
      make_error_code(Errc::message_too_large).message()};
  for (const auto& [reason, n] : counts) {
    EXPECT_TRUE(documented.count(reason) == 1) << n << " connections ended with: " << reason;
  }
  EXPECT_EQ(log_lines("msg=\"connection closed\"", static_cast<std::size_t>(first.connected)),
            static_cast<std::size_t>(first.connected));
  EXPECT_EQ(log_lines("msg=\"connection opened\"", static_cast<std::size_t>(first.connected) + 1),
            static_cast<std::size_t>(first.connected) + 1);
  probe_->expect_well_served(50);
  expect_back_to_normal();
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "garbage process status " << status;
  reap.pid = -1;
}

}  // namespace
}  // namespace serialserver::test
