// Blocking task functions over real sockets: they run on the worker pool, read the request with
// the blocking RequestReader functions (streamed), see their stop_token fire on Client::cancel
// and on shutdown past the grace period, wait for room when the pool is full; blocking and
// asynchronous response producers, producers that fail after OK, and the task adapters.

#include <serialserver/task_adapters.hpp>
#include "support/loopback.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

/// Byte i of the test patterns.
std::uint8_t pattern(std::uint64_t i) { return static_cast<std::uint8_t>(i * 7 + 3); }

Bytes pattern_bytes(std::size_t n) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = pattern(i);
  }
  return out;
}

/// Thread ids seen by tasks.
class ThreadLog {
 public:
  void add(std::set<std::thread::id>& to) {
    std::lock_guard lock(mutex_);
    to.insert(std::this_thread::get_id());
  }
  void io() { add(io_); }
  void worker() { add(worker_); }
  std::set<std::thread::id> io_ids() const {
    std::lock_guard lock(mutex_);
    return io_;
  }
  std::set<std::thread::id> worker_ids() const {
    std::lock_guard lock(mutex_);
    return worker_;
  }

 private:
  mutable std::mutex mutex_;
  std::set<std::thread::id> io_;
  std::set<std::thread::id> worker_;
};

/// Records the reasons connections ended.
class ReasonMetrics final : public Metrics {
 public:
  void connection_closed(const Client& /*client*/, std::error_code reason) noexcept override {
    std::lock_guard lock(mutex_);
    reasons_.push_back(reason);
  }
  void task_finished(const Client& /*client*/, const TaskRecord& record) noexcept override {
    std::lock_guard lock(mutex_);
    outcomes_.push_back(record.outcome);
  }
  std::vector<std::error_code> reasons() const {
    std::lock_guard lock(mutex_);
    return reasons_;
  }
  std::vector<TaskOutcome> outcomes() const {
    std::lock_guard lock(mutex_);
    return outcomes_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::error_code> reasons_;
  std::vector<TaskOutcome> outcomes_;
};

/// A blocking task that waits for its stop_token (at most 10 s) and then fails with Error 42.
struct StopWaiter {
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};
  std::atomic<std::int64_t> stopped_at_ns{0};

  Response operator()(TaskContext& ctx) {
    ++started;
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    const bool stop = cv.wait_for(lock, ctx.stop_token(), 10s, [] { return false; });
    (void)stop;
    if (ctx.stop_requested()) {
      stopped_at_ns = std::chrono::steady_clock::now().time_since_epoch().count();
      ++stopped;
      throw TaskError(42, "stopped");
    }
    return Response::copy_of(std::string_view("not stopped"));
  }
};

constexpr TaskCode kIoThread = 1;
constexpr TaskCode kWorkerThread = 2;
constexpr TaskCode kSum = 3;
constexpr TaskCode kExact = 4;
constexpr TaskCode kWaitStop = 5;
constexpr TaskCode kSlowDouble = 6;
constexpr TaskCode kBlockingProducer = 7;
constexpr TaskCode kAsyncProducer = 8;
constexpr TaskCode kThrowingBlockingProducer = 9;
constexpr TaskCode kThrowingAsyncProducer = 10;

constexpr std::size_t kProducedSize = 100000;

class BlockingTasks : public ::testing::Test {
 protected:
  void start(unsigned worker_threads = 2, std::size_t max_queued = 1024) {
    auto options = TestServer::quiet_options();
    options.worker_threads = worker_threads;
    options.max_queued_blocking_tasks = max_queued;
    options.metrics = metrics_;
    server_ = std::make_unique<TestServer>(std::move(options));
    register_tasks();
    server_->start();
  }
  Server& server() { return server_->server(); }
  std::uint16_t port() { return server_->port(); }

  void register_tasks() {
    Server& s = server();
    s.register_task(
        kIoThread,
        [this](TaskContext&) -> asio::awaitable<Response> {
          threads_.io();
          co_return Response();
        },
        "io-thread");
    s.register_blocking_task(
        kWorkerThread,
        [this](TaskContext&) {
          threads_.worker();
          return Response();
        },
        "worker-thread");
    // Streams the request in 4 KiB reads; answers the byte count and the byte sum (u64 BE).
    s.register_blocking_task(
        kSum,
        [this](TaskContext& ctx) {
          std::array<std::uint8_t, 4096> buf{};
          std::uint64_t count = 0;
          std::uint64_t sum = 0;
          for (;;) {
            const std::size_t n = ctx.request().read_some(buf);
            if (n == 0) {
              break;
            }
            max_read_ = std::max(max_read_.load(), n);
            for (std::size_t i = 0; i < n; ++i) {
              sum += buf[i];
            }
            count += n;
            progress_ = count;
          }
          if (!ctx.request().at_end() || ctx.request().bytes_read() != count) {
            throw TaskError(3, "reader state");
          }
          BinaryWriter w;
          w.write_u64(count);
          w.write_u64(sum);
          return Response(w.take());
        },
        "sum");
    // read_exact of 4 bytes (Error 5 if the message is shorter), then read_all of the rest;
    // answers the 4 bytes and the size of the rest.
    s.register_blocking_task(
        kExact,
        [](TaskContext& ctx) {
          std::array<std::uint8_t, 4> head{};
          try {
            ctx.request().read_exact(head);
          } catch (const EndOfMessage&) {
            throw TaskError(5, "short");
          }
          const auto rest = ctx.request().read_all();
          Bytes out(head.begin(), head.end());
          out.push_back(static_cast<std::uint8_t>(rest.size()));
          return Response(std::move(out));
        },
        "exact");
    s.register_blocking_task(
        kWaitStop, [w = stop_waiter_](TaskContext& ctx) { return (*w)(ctx); }, "wait-stop");
    // Answers the big-endian u32 doubled after 50 ms; counts how many run at once.
    s.register_blocking_task(
        kSlowDouble,
        [this](TaskContext& ctx) {
          const int now = ++running_;
          max_running_ = std::max(max_running_.load(), now);
          const auto content = ctx.request().read_all();
          std::this_thread::sleep_for(50ms);
          --running_;
          BinaryReader r(content);
          BinaryWriter w;
          w.write_u32(r.read_u32() * 2);
          return Response(w.take());
        },
        "slow-double");
    s.register_task(
        kBlockingProducer,
        [this](TaskContext&) -> asio::awaitable<Response> {
          std::shared_ptr<void> token(nullptr,
                                      [flag = producer_destroyed_](void*) { flag->store(true); });
          co_return Response::stream([this, token, offset = std::uint64_t{0}](
                                         std::span<std::uint8_t> out) mutable {
            threads_.worker();
            const std::size_t n = std::min<std::size_t>(
                {out.size(), std::size_t{1000}, kProducedSize - static_cast<std::size_t>(offset)});
            for (std::size_t i = 0; i < n; ++i) {
              out[i] = pattern(offset + i);
            }
            offset += n;
            return n;
          });
        },
        "blocking-producer");
    s.register_task(
        kAsyncProducer,
        [this](TaskContext&) -> asio::awaitable<Response> {
          std::shared_ptr<void> token(nullptr,
                                      [flag = producer_destroyed_](void*) { flag->store(true); });
          co_return Response::stream(
              [this, token, offset = std::uint64_t{0}](
                  std::span<std::uint8_t> out) mutable -> asio::awaitable<std::size_t> {
                threads_.io();
                const std::size_t n =
                    std::min<std::size_t>({out.size(), std::size_t{777},
                                           kProducedSize - static_cast<std::size_t>(offset)});
                for (std::size_t i = 0; i < n; ++i) {
                  out[i] = pattern(offset + i);
                }
                offset += n;
                co_return n;
              });
        },
        "async-producer");
    s.register_blocking_task(
        kThrowingBlockingProducer,
        [](TaskContext&) {
          return Response::stream([calls = 0](std::span<std::uint8_t> out) mutable -> std::size_t {
            if (calls++ > 0) {
              throw std::runtime_error("producer failed");
            }
            const std::size_t n = std::min<std::size_t>(out.size(), 300);
            for (std::size_t i = 0; i < n; ++i) {
              out[i] = pattern(i);
            }
            return n;
          });
        },
        "throwing-blocking-producer");
    s.register_task(
        kThrowingAsyncProducer,
        [](TaskContext&) -> asio::awaitable<Response> {
          co_return Response::stream(
              [calls = 0](std::span<std::uint8_t> out) mutable -> asio::awaitable<std::size_t> {
                if (calls++ > 0) {
                  throw std::runtime_error("producer failed");
                }
                const std::size_t n = std::min<std::size_t>(out.size(), 300);
                for (std::size_t i = 0; i < n; ++i) {
                  out[i] = pattern(i);
                }
                co_return n;
              });
        },
        "throwing-async-producer");
  }

  void TearDown() override { server_.reset(); }

  std::shared_ptr<ReasonMetrics> metrics_ = std::make_shared<ReasonMetrics>();
  std::shared_ptr<StopWaiter> stop_waiter_ = std::make_shared<StopWaiter>();
  std::shared_ptr<std::atomic<bool>> producer_destroyed_ = std::make_shared<std::atomic<bool>>();
  ThreadLog threads_;
  std::atomic<std::uint64_t> progress_{0};
  std::atomic<std::size_t> max_read_{0};
  std::atomic<int> running_{0};
  std::atomic<int> max_running_{0};
  std::unique_ptr<TestServer> server_;
};

TEST_F(BlockingTasks, RunOnTheWorkerPoolNotOnTheIoThreads) {
  start(2);
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 4; ++i) {  // connections are spread over both I/O threads
    clients.push_back(std::make_unique<RawClient>(port()));
  }
  for (int round = 0; round < 3; ++round) {
    for (auto& c : clients) {
      ASSERT_EQ(c->call(request(kIoThread), 2), bytes({0x00, 0x00}));
      ASSERT_EQ(c->call(request(kWorkerThread), 2), bytes({0x00, 0x00}));
    }
  }
  const auto io = threads_.io_ids();
  const auto workers = threads_.worker_ids();
  EXPECT_FALSE(io.empty());
  EXPECT_FALSE(workers.empty());
  EXPECT_LE(workers.size(), 2U);  // worker_threads
  EXPECT_FALSE(workers.contains(std::this_thread::get_id()));
  for (const auto& id : workers) {
    EXPECT_FALSE(io.contains(id)) << "a blocking task ran on an I/O thread";
  }
}

TEST_F(BlockingTasks, BlockingReaderStreamsALargeRequest) {
  start(2);
  RawClient c(port());
  constexpr std::size_t kHalf = 4 << 20;
  const Bytes content = pattern_bytes(2 * kHalf);
  const Bytes req = request(kSum, content);
  // The first half (task code and whole blocks), without the end of the message.
  const std::size_t first_part = 1 + (kHalf / 255) * 256;
  c.send(Bytes(req.begin(), req.begin() + static_cast<std::ptrdiff_t>(first_part)));
  // The task consumes what has arrived while the request is still open: it is streamed, not
  // collected first (the server's input buffer is 16 KiB).
  ASSERT_TRUE(eventually([&] { return progress_.load() == (kHalf / 255) * 255; }, 10000ms));
  EXPECT_LE(max_read_.load(), 4096U);
  c.send(Bytes(req.begin() + static_cast<std::ptrdiff_t>(first_part), req.end()));
  std::uint64_t sum = 0;
  for (const auto b : content) {
    sum += b;
  }
  BinaryWriter expected;
  expected.write_u64(content.size());
  expected.write_u64(sum);
  const Bytes answer = ok_response(Bytes(expected.data().begin(), expected.data().end()));
  EXPECT_EQ(c.recv(answer.size(), 10000ms), answer);
}

TEST_F(BlockingTasks, ReadExactAndReadAll) {
  start(2);
  RawClient c(port());
  EXPECT_EQ(c.call(request(kExact, bytes({1, 2, 3, 4, 5, 6, 7})), 8),
            ok_response(bytes({1, 2, 3, 4, 3})));
  EXPECT_EQ(c.call(request(kExact, bytes({1, 2, 3, 4})), 8), ok_response(bytes({1, 2, 3, 4, 0})));
  EXPECT_EQ(c.call(request(kExact, bytes({1, 2, 3})), 2), bytes({0x01, 0x05}));
  EXPECT_EQ(c.call(request(kExact), 2), bytes({0x01, 0x05}));
  // Large rest: 600 bytes (read_all over several blocks); 600 mod 256 = 88.
  EXPECT_EQ(c.call(request(kExact, pattern_bytes(604)), 8),
            ok_response(bytes({pattern(0), pattern(1), pattern(2), pattern(3), 600 % 256})));
}

TEST_F(BlockingTasks, StopTokenFiresOnClientCancel) {
  start(2);
  RawClient c(port());
  for (int round = 1; round <= 2; ++round) {  // a fresh token for the second task
    c.send(request(kWaitStop));
    ASSERT_TRUE(eventually([&] { return stop_waiter_->started == round; }));
    ASSERT_EQ(server().num_clients(), 1U);
    server().clients().front()->cancel();
    EXPECT_EQ(c.recv(2), bytes({0x01, 42})) << "round " << round;
    EXPECT_EQ(stop_waiter_->stopped, round);
    EXPECT_EQ(c.call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));  // the connection goes on
  }
  // Cancel when idle does nothing.
  server().clients().front()->cancel();
  EXPECT_EQ(c.call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
}

TEST_F(BlockingTasks, StopTokenFiresOnShutdownPastTheGracePeriod) {
  start(2);
  RawClient c(port());
  c.send(request(kWaitStop));
  ASSERT_TRUE(eventually([&] { return stop_waiter_->started == 1; }));
  const auto shutdown_at = std::chrono::steady_clock::now();
  server_->listener().shutdown(300ms);
  EXPECT_TRUE(c.closed_within(5000ms));
  EXPECT_TRUE(c.unexpected_bytes().empty());  // past the grace: no response
  ASSERT_TRUE(eventually([&] { return stop_waiter_->stopped == 1; }));
  const auto stopped_after =
      std::chrono::nanoseconds(stop_waiter_->stopped_at_ns.load()) - shutdown_at.time_since_epoch();
  EXPECT_GE(stopped_after, 250ms);  // not before the grace period
  EXPECT_LT(stopped_after, 3s);
}

TEST_F(BlockingTasks, FullPoolMakesConnectionsWaitAndAllAreAnswered) {
  start(/*worker_threads=*/1, /*max_queued=*/1);
  constexpr int kConnections = 6;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < kConnections; ++i) {
    clients.push_back(std::make_unique<RawClient>(port()));
  }
  for (int i = 0; i < kConnections; ++i) {
    clients[i]->send(request(kSlowDouble, big_endian<std::uint32_t>(1000 + i)));
  }
  for (int i = 0; i < kConnections; ++i) {
    const Bytes expected = ok_response(big_endian<std::uint32_t>(2 * (1000 + i)));
    EXPECT_EQ(clients[i]->recv(expected.size(), 10000ms), expected) << "connection " << i;
  }
  EXPECT_EQ(max_running_.load(), 1);  // one worker thread
  for (auto& c : clients) {           // none was dropped
    EXPECT_EQ(c->call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
  }
}

TEST_F(BlockingTasks, BlockingResponseProducerRunsOnTheWorkerPool) {
  start(2);
  RawClient c(port());
  ASSERT_EQ(c.call(request(kIoThread), 2), bytes({0x00, 0x00}));
  const Bytes expected = ok_response(pattern_bytes(kProducedSize));
  EXPECT_EQ(c.call(request(kBlockingProducer), expected.size()), expected);
  EXPECT_TRUE(eventually([&] { return producer_destroyed_->load(); }));
  const auto io = threads_.io_ids();
  const auto workers = threads_.worker_ids();
  EXPECT_FALSE(workers.empty());
  for (const auto& id : workers) {
    EXPECT_FALSE(io.contains(id)) << "the blocking producer ran on an I/O thread";
  }
  EXPECT_EQ(c.call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
}

TEST_F(BlockingTasks, AsyncResponseProducerRunsOnTheIoThread) {
  start(2);
  RawClient c(port());
  const Bytes expected = ok_response(pattern_bytes(kProducedSize));
  EXPECT_EQ(c.call(request(kAsyncProducer), expected.size()), expected);
  EXPECT_TRUE(eventually([&] { return producer_destroyed_->load(); }));
  EXPECT_EQ(threads_.io_ids().size(), 1U);  // one connection: one I/O thread
  EXPECT_EQ(c.call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
}

/// After OK, a failing producer drops the connection: what arrives is never a whole response.
void expect_dropped_after_ok(RawClient& c, TaskCode code, ReasonMetrics& metrics) {
  c.send(request(code));
  const Bytes got = c.recv(1 << 16, 5000ms);
  EXPECT_TRUE(c.closed_within(3000ms));
  // The most that can arrive: OK, the one full block that was encoded; never the end byte.
  Bytes most{0x00, 0xFF};
  const Bytes first = pattern_bytes(255);
  most.insert(most.end(), first.begin(), first.end());
  ASSERT_LE(got.size(), most.size());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), most.begin()));
  ASSERT_TRUE(eventually([&] { return metrics.reasons().size() == 1; }));
  EXPECT_EQ(metrics.reasons()[0], make_error_code(Errc::response_failed));
  ASSERT_EQ(metrics.outcomes().size(), 1U);
  EXPECT_EQ(metrics.outcomes()[0], TaskOutcome::dropped);
}

TEST_F(BlockingTasks, BlockingProducerThatThrowsAfterOkDropsTheConnection) {
  start(2);
  RawClient c(port());
  expect_dropped_after_ok(c, kThrowingBlockingProducer, *metrics_);
}

TEST_F(BlockingTasks, AsyncProducerThatThrowsAfterOkDropsTheConnection) {
  start(2);
  RawClient c(port());
  expect_dropped_after_ok(c, kThrowingAsyncProducer, *metrics_);
}

TEST_F(BlockingTasks, TaskAdaptersOfEveryForm) {
  start(2);
  std::atomic<int> simple_calls{0};
  std::atomic<int> async_simple_calls{0};
  std::mutex m;
  std::vector<std::string> seen;  // what the *_with_client forms saw
  auto note = [&](const std::string& what) {
    std::lock_guard lock(m);
    seen.push_back(what);
  };
  auto reversed = [](adapters::Bytes b) {
    std::reverse(b.begin(), b.end());
    return b;
  };
  Server& s = server();
  s.register_blocking_task(20, adapters::simple([&] {
                             threads_.worker();
                             ++simple_calls;
                           }));
  s.register_blocking_task(21, adapters::simple_with_client([&](Client& c, std::stop_token st) {
                             threads_.worker();
                             note("21 " + c.to_string() + (st.stop_possible() ? " stoppable" : ""));
                           }));
  s.register_blocking_task(22, adapters::bytes([&](adapters::Bytes b) {
                             threads_.worker();
                             return reversed(std::move(b));
                           }));
  s.register_blocking_task(
      23, adapters::bytes_with_client([&](Client& c, std::stop_token st, adapters::Bytes b) {
        threads_.worker();
        note("23 " + c.to_string() + (st.stop_possible() ? " stoppable" : ""));
        b.insert(b.begin(), c.byte_order() == ByteOrder::big_endian ? 'B' : 'L');
        return b;
      }));
  s.register_task(24, adapters::async_simple([&]() -> asio::awaitable<void> {
                    threads_.io();
                    ++async_simple_calls;
                    co_return;
                  }));
  s.register_task(25, adapters::async_simple_with_client(
                          [&](Client& c, std::stop_token st) -> asio::awaitable<void> {
                            threads_.io();
                            note("25 " + c.to_string() + (st.stop_possible() ? " stoppable" : ""));
                            co_return;
                          }));
  s.register_task(26,
                  adapters::async_bytes([&](adapters::Bytes b) -> asio::awaitable<adapters::Bytes> {
                    threads_.io();
                    co_return reversed(std::move(b));
                  }));
  s.register_task(27, adapters::async_bytes_with_client(
                          [&](Client& c, std::stop_token st,
                              adapters::Bytes b) -> asio::awaitable<adapters::Bytes> {
                            threads_.io();
                            note("27 " + c.to_string() + (st.stop_possible() ? " stoppable" : ""));
                            b.push_back(c.byte_order() == ByteOrder::big_endian ? 'B' : 'L');
                            co_return b;
                          }));
  for (TaskCode code = 20; code <= 23; ++code) {
    EXPECT_TRUE(static_cast<bool>(s.task(code)->blocking_function)) << int{code};
  }
  for (TaskCode code = 24; code <= 27; ++code) {
    EXPECT_TRUE(static_cast<bool>(s.task(code)->function)) << int{code};
  }

  RawClient c(port());
  const Bytes abc = bytes({'a', 'b', 'c'});
  // The forms without a request leave it to the server to drain: the next task lines up.
  EXPECT_EQ(c.call(request(20, abc), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(c.call(request(21, abc), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(c.call(request(22, abc), 6), ok_response(bytes({'c', 'b', 'a'})));
  EXPECT_EQ(c.call(request(23, abc), 7), ok_response(bytes({'B', 'a', 'b', 'c'})));
  EXPECT_EQ(c.call(request(24, abc), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(c.call(request(25, abc), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(c.call(request(26, abc), 6), ok_response(bytes({'c', 'b', 'a'})));
  EXPECT_EQ(c.call(request(27, abc), 7), ok_response(bytes({'a', 'b', 'c', 'B'})));
  // Whole requests and responses of several blocks.
  const Bytes big = pattern_bytes(700);
  Bytes big_reversed(big.rbegin(), big.rend());
  EXPECT_EQ(c.call(request(22, big), ok_response(big_reversed).size()), ok_response(big_reversed));
  EXPECT_EQ(c.call(request(26, big), ok_response(big_reversed).size()), ok_response(big_reversed));
  EXPECT_EQ(c.call(request(22), 2), bytes({0x00, 0x00}));  // empty in, empty out

  EXPECT_EQ(simple_calls.load(), 1);
  EXPECT_EQ(async_simple_calls.load(), 1);
  ASSERT_EQ(s.num_clients(), 1U);
  const std::string name = s.clients().front()->to_string();
  {
    std::lock_guard lock(m);
    EXPECT_EQ(seen,
              (std::vector<std::string>{"21 " + name + " stoppable", "23 " + name + " stoppable",
                                        "25 " + name + " stoppable", "27 " + name + " stoppable"}));
  }
  // The plain forms ran on workers, the async_ ones on the connection's I/O thread.
  const auto io = threads_.io_ids();
  const auto workers = threads_.worker_ids();
  EXPECT_EQ(io.size(), 1U);
  EXPECT_FALSE(workers.empty());
  for (const auto& id : workers) {
    EXPECT_FALSE(io.contains(id));
  }
}

}  // namespace
}  // namespace serialserver::test
