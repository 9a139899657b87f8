// The soak test: one in-process server with the demo tasks, well-behaved and faulty clients
// mixed for a bounded time, then: every well-behaved request was answered correctly, no
// descriptor leaked, resident memory stayed within kRssBound of what it was after the warm-up,
// and every connection ended with a documented reason (docs/robustness.md).
//
// Duration: SERIALSERVER_SOAK_SECONDS (default 60, the CI setting; the first sixth, at most 15 s,
// is the warm-up). A longer run, for example an hour:
//     SERIALSERVER_SOAK_SECONDS=3600 ctest --preset debug -L soak
// (ctest stops a test after its TIMEOUT property, 600 s; run the binary,
// serialserver_soak_tests, directly for runs longer than that).

#include "demo_tasks.hpp"
#include "support/hostile.hpp"

#include <atomic>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <map>
#include <set>

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

using Clock = std::chrono::steady_clock;

/// How much resident memory may grow from the end of the warm-up to the end of the soak. Under
/// AddressSanitizer freed memory sits in a quarantine (256 MiB by default) before reuse, so the
/// bound is larger there.
constexpr std::uint64_t kRssBound = kSanitized ? std::uint64_t{384} << 20 : std::uint64_t{64} << 20;

std::chrono::seconds soak_duration() {
  if (const char* s = std::getenv("SERIALSERVER_SOAK_SECONDS"); s != nullptr && *s != '\0') {
    return std::chrono::seconds(std::max(10L, std::strtol(s, nullptr, 10)));
  }
  return std::chrono::seconds(60);
}

std::uint64_t next_random(std::uint64_t& state) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

/// The demo's task 4 pattern: byte i is i mod 256.
Bytes pattern(std::size_t n) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<std::uint8_t>(i);
  }
  return out;
}

constexpr std::uint64_t kMaxRequestBytes = 256 * 1024;
constexpr std::uint64_t kMaxRequestDrainBytes = 16 * 1024;

/// A logger that keeps nothing (a soak would pile up lines) but counts the closes it was told.
class CountingLogger final : public Logger {
 public:
  bool enabled(LogLevel level) const noexcept override { return level >= LogLevel::info; }
  void write(LogLevel /*level*/, std::string_view message) noexcept override {
    if (message.find("msg=\"connection closed\"") != std::string_view::npos) {
      ++closes_;
    }
  }
  std::uint64_t closes() const { return closes_.load(); }

 private:
  std::atomic<std::uint64_t> closes_{0};
};

/// A well-behaved client: a connection of its own and a mix of calls, each answer checked.
class GoodClient {
 public:
  GoodClient(std::uint16_t port, std::uint64_t seed) : port_(port), state_(seed) {}

  /// One call (or a pipelined batch of three); false and a reason if an answer was wrong.
  bool step(std::string& why) {
    if (!client_) {
      client_ = std::make_unique<RawClient>(port_);
    }
    Bytes req;
    Bytes want;
    const int batch = next_random(state_) % 8 == 0 ? 3 : 1;
    for (int b = 0; b < batch; ++b) {
      add_call(req, want);
    }
    const auto start = Clock::now();
    client_->send(req);
    const Bytes got = client_->recv(want.size(), 30000ms);
    const auto took = elapsed_since(start);
    max_latency_ = std::max(max_latency_, took);
    requests_ += batch;
    if (got != want) {
      why = "got " + std::to_string(got.size()) + " bytes of " + std::to_string(want.size()) +
            (got.size() == want.size() ? " (different)" : "");
      return false;
    }
    return true;
  }
  std::uint64_t requests() const { return requests_; }
  std::chrono::milliseconds max_latency() const { return max_latency_; }
  void close() { client_.reset(); }

 private:
  void add_call(Bytes& req, Bytes& want) {
    const auto append = [](Bytes& to, const Bytes& more) {
      to.insert(to.end(), more.begin(), more.end());
    };
    switch (next_random(state_) % 8) {
      case 0:
      case 1: {  // echo, up to 2,000 bytes
        Bytes content(next_random(state_) % 2000);
        for (auto& b : content) {
          b = static_cast<std::uint8_t>(next_random(state_));
        }
        append(req, request(1, content));
        append(want, ok_response(content));
        break;
      }
      case 2: {  // count, up to 100 KB
        const std::size_t n = next_random(state_) % 100000;
        append(req, request(6, Bytes(n, 0x5A)));
        append(want, ok_response(big_endian<std::uint64_t>(n)));
        break;
      }
      case 3: {  // produce, up to 200 KB
        const std::size_t n = next_random(state_) % 200000;
        append(req, request(4, big_endian<std::uint64_t>(n)));
        append(want, ok_response(pattern(n)));
        break;
      }
      case 4:  // keep-alive
        append(req, bytes({0xFA, 0x00}));
        append(want, bytes({0x00, 0x00}));
        break;
      case 5: {  // an application error code
        const auto code = static_cast<std::uint8_t>(next_random(state_) % 200 + 2);
        append(req, request(3, Bytes{code}));
        append(want, bytes({0x01, code}));
        break;
      }
      case 6:  // an unknown task
        append(req, request(9, bytes({1, 2, 3})));
        append(want, bytes({0x01, 0xFF}));
        break;
      default:  // over the size limit: Error 254, and the connection stays usable
        append(req, request(6, Bytes(kMaxRequestBytes + 1 + next_random(state_) % 1000, 1)));
        append(want, bytes({0x01, 0xFE}));
        break;
    }
  }

  std::uint16_t port_;
  std::uint64_t state_;
  std::unique_ptr<RawClient> client_;
  std::uint64_t requests_ = 0;
  std::chrono::milliseconds max_latency_{0};
};

/// A faulty client: one misbehaviour after another, some held open until the server ends them.
class FaultyClient {
 public:
  FaultyClient(std::uint16_t port, std::uint64_t seed) : port_(port), state_(seed) {}

  /// Starts one misbehaviour; returns false if a connection that must be answered was not.
  bool step(std::string& why) {
    reap();
    auto p = std::make_unique<RawPeer>(port_);
    ++connections_;
    switch (next_random(state_) % 10) {
      case 0: {  // garbage, then close
        Bytes garbage(1 + next_random(state_) % 300);
        for (auto& b : garbage) {
          b = static_cast<std::uint8_t>(next_random(state_));
        }
        (void)p->send_some(garbage);
        return true;
      }
      case 1:  // reset mid-message
        (void)p->send(bytes({0x01, 0x20, 0x01}));
        p->set_linger_reset();
        return true;
      case 2:  // connect and go at once
        return true;
      case 3:  // silent mid-message: the Read timeout ends it
        (void)p->send(bytes({0x06, 0x10, 0x01}));
        hold(std::move(p));
        return true;
      case 4:  // slowloris: one byte each step; the request deadline ends it
        (void)p->send(bytes({0x01, 0xFF}));
        slow_.push_back(p.get());
        hold(std::move(p));
        return true;
      case 5:  // never reads a large response: the Write timeout ends it
        p->set_small_receive_buffer();
        (void)p->send(request(4, big_endian<std::uint64_t>(std::uint64_t{64} << 20)));
        hold(std::move(p));
        return true;
      case 6:  // half-close mid-message: closed without a response
        (void)p->send(bytes({0x01, 0x05, 0x01}));
        p->shutdown_write();
        hold(std::move(p));
        return true;
      case 7: {  // goodbye: 02, then the close
        (void)p->send(bytes({0xFF, 0x00}));
        if (!p->read_until_closed(Clock::now() + 10s) || p->received() != bytes({0x02})) {
          why = "goodbye was not answered 02 and a close";
          return false;
        }
        return true;
      }
      case 8: {  // half-close after a whole request: the response, then the close
        (void)p->send(request(1, bytes({4, 5, 6})));
        p->shutdown_write();
        if (!p->read_until_closed(Clock::now() + 10s) ||
            p->received() != ok_response(bytes({4, 5, 6}))) {
          why = "a half-closed peer did not get its response and a close";
          return false;
        }
        return true;
      }
      default:  // a request past the size and drain limits: Error 254, then the close
        (void)p->send(request(6, Bytes(kMaxRequestBytes + kMaxRequestDrainBytes + 10000, 3)));
        hold(std::move(p));
        return true;
    }
  }
  /// Feeds the slow peers one more byte.
  void tick() {
    for (RawPeer* p : slow_) {
      (void)p->send_some(Bytes{0x42});
    }
  }
  /// Closes everything still held.
  void close_all() {
    slow_.clear();
    held_.clear();
  }
  std::uint64_t connections() const { return connections_; }

 private:
  void hold(std::unique_ptr<RawPeer> p) {
    held_.push_back(std::move(p));
    while (held_.size() > 40) {  // a bounded number of held connections per faulty client
      forget(held_.front().get());
      held_.pop_front();
    }
  }
  /// Drops the held peers the server has closed.
  void reap() {
    for (auto it = held_.begin(); it != held_.end();) {
      pollfd pfd{(*it)->fd(), POLLIN, 0};
      if (::poll(&pfd, 1, 0) > 0) {
        (*it)->poll_once();
      }
      if ((*it)->closed()) {
        forget(it->get());
        it = held_.erase(it);
      } else {
        ++it;
      }
    }
  }
  void forget(RawPeer* p) { slow_.erase(std::remove(slow_.begin(), slow_.end(), p), slow_.end()); }

  std::uint16_t port_;
  std::uint64_t state_;
  std::deque<std::unique_ptr<RawPeer>> held_;
  std::vector<RawPeer*> slow_;
  std::uint64_t connections_ = 0;
};

TEST(Soak, MixedWellBehavedAndFaultyClients) {
  const auto duration = soak_duration();
  const auto warm_up = std::min<std::chrono::seconds>(duration / 6, 15s);
  constexpr int kGood = 4;
  constexpr int kFaulty = 3;
  RaisedFileLimit limit;

  auto metrics = std::make_shared<RecordingMetrics>();
  ServerOptions o = options_with_metrics(metrics);
  auto logger = std::make_shared<CountingLogger>();
  o.logger = logger;
  o.timeout.wait = 10s;
  o.timeout.read = 1s;
  o.timeout.write = 1s;
  o.max_request_duration = 3s;
  o.max_request_bytes = kMaxRequestBytes;
  o.max_request_drain_bytes = kMaxRequestDrainBytes;
  ListenerOptions lo = TestServer::default_listener_options();
  lo.max_connections = 2000;
  TestServer server(std::move(o), lo);
  demo::register_demo_tasks(server.server());
  server.start();
  // Each I/O thread's reactor opens its descriptors on its first connection: one connection per
  // thread before the count that the end compares with.
  for (std::size_t i = 0; i < server.listener().io_thread_count(); ++i) {
    RawClient warm(server.port());
    ASSERT_EQ(warm.call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
  }
  ASSERT_TRUE(eventually([&] { return server.server().num_clients() == 0; }));
  const int fds_before = open_fd_count();

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> good_requests{0};
  std::atomic<std::uint64_t> faulty_connections{0};
  std::atomic<std::int64_t> good_max_latency_ms{0};
  std::mutex failures_mutex;
  std::vector<std::string> failures;
  const auto fail = [&](std::string why) {
    std::lock_guard lock(failures_mutex);
    if (failures.size() < 20) {
      failures.push_back(std::move(why));
    }
  };

  std::vector<std::thread> threads;
  for (int g = 0; g < kGood; ++g) {
    threads.emplace_back([&, g] {
      GoodClient c(server.port(), 0x1234567ULL * static_cast<std::uint64_t>(g + 1));
      std::string why;
      while (!stop) {
        try {
          if (!c.step(why)) {
            fail("well-behaved client " + std::to_string(g) + ": " + why);
            c.close();  // out of step with the server: start over on a new connection
          }
        } catch (const std::exception& e) {
          fail("well-behaved client " + std::to_string(g) + ": " + e.what());
          c.close();
        }
      }
      good_requests += c.requests();
      std::int64_t seen = good_max_latency_ms.load();
      const std::int64_t mine = c.max_latency().count();
      while (mine > seen && !good_max_latency_ms.compare_exchange_weak(seen, mine)) {
      }
    });
  }
  for (int f = 0; f < kFaulty; ++f) {
    threads.emplace_back([&, f] {
      FaultyClient c(server.port(), 0xABCDEFULL * static_cast<std::uint64_t>(f + 1));
      std::string why;
      auto last_tick = Clock::now();
      while (!stop) {
        try {
          if (!c.step(why)) {
            fail("faulty client " + std::to_string(f) + ": " + why);
          }
        } catch (const std::exception& e) {
          fail("faulty client " + std::to_string(f) + ": " + e.what());
        }
        if (Clock::now() - last_tick >= 500ms) {
          c.tick();
          last_tick = Clock::now();
        }
        std::this_thread::sleep_for(20ms);  // the faulty clients' pace
      }
      faulty_connections += c.connections();
      c.close_all();
    });
  }

  const auto started = Clock::now();
  std::this_thread::sleep_for(warm_up);  // the soak's duration is the point, not a wait
  const std::uint64_t rss_after_warm_up = vm_rss_bytes();
  std::uint64_t rss_peak = rss_after_warm_up;
  while (Clock::now() - started < duration) {
    std::this_thread::sleep_for(1s);
    rss_peak = std::max(rss_peak, vm_rss_bytes());
  }
  stop = true;
  for (auto& t : threads) {
    t.join();
  }
  // Every connection ends: the clients have closed theirs.
  EXPECT_TRUE(eventually([&] { return server.server().num_clients() == 0; }, 30000ms))
      << server.server().num_clients() << " connections left";
  EXPECT_TRUE(eventually([&] { return server.listener().num_connections() == 0; }, 30000ms));
  EXPECT_TRUE(eventually([&] { return open_fd_count() == fds_before; }, 10000ms))
      << "descriptors before " << fds_before << ", after " << open_fd_count();
  const std::uint64_t rss_end = vm_rss_bytes();
  rss_peak = std::max(rss_peak, rss_end);

  std::map<std::string, int> reasons;
  for (const auto& r : metrics->closed()) {
    ++reasons[r.message()];
  }
  std::cout << "[          ] soak " << duration.count() << " s: " << good_requests.load()
            << " well-behaved requests (slowest " << good_max_latency_ms.load() << " ms), "
            << faulty_connections.load() << " faulty connections; RSS after warm-up "
            << (rss_after_warm_up >> 20) << " MiB, peak " << (rss_peak >> 20) << " MiB, end "
            << (rss_end >> 20) << " MiB; connections ended:";
  for (const auto& [reason, n] : reasons) {
    std::cout << "\n[          ]   " << n << " x " << reason;
  }
  std::cout << std::endl;

  {
    std::lock_guard lock(failures_mutex);
    EXPECT_TRUE(failures.empty()) << failures.size() << " failures, the first: " << failures[0];
  }
  EXPECT_GT(good_requests.load(), 100U);
  EXPECT_GT(faulty_connections.load(), 100U);
  EXPECT_LE(rss_peak, rss_after_warm_up + kRssBound)
      << "resident memory grew by " << ((rss_peak - rss_after_warm_up) >> 20) << " MiB";
  EXPECT_EQ(metrics->opened(), metrics->closed().size());
  EXPECT_EQ(logger->closes(), metrics->closed().size()) << "not every close was logged";
  const std::set<std::string> documented = {
      make_error_code(Errc::peer_closed).message(),
      make_error_code(Errc::read_timeout).message(),
      make_error_code(Errc::write_timeout).message(),
      make_error_code(Errc::request_timeout).message(),
      make_error_code(Errc::timeout_waiting_for_task).message(),
      make_error_code(Errc::graceful_disconnect).message(),
      make_error_code(Errc::message_too_large).message()};
  for (const auto& [reason, n] : reasons) {
    EXPECT_TRUE(documented.count(reason) == 1) << n << " connections ended with: " << reason;
  }
}

}  // namespace
}  // namespace serialserver::test
