// Cancellation reaches every part of a task over real sockets: Client::cancel() stops a streamed
// response part-way (coroutine and blocking producers) and drops the connection; a blocking
// producer's stop token fires at the end of a disconnect's grace period, so Server::wait() does
// not wait for it to end by itself; of two disconnects the shorter grace wins, whichever came
// first; and the public async_handle_connection / handle_connection end when their stop token
// fires.

#include "support/loopback.hpp"

#include <atomic>
#include <future>
#include <thread>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

using Clock = std::chrono::steady_clock;

constexpr TaskCode kCoroutineStream = 1;  // an endless response from a coroutine producer
constexpr TaskCode kBlockingStream = 2;   // an endless response from a blocking producer
constexpr TaskCode kStuckStream = 3;      // a blocking producer that waits for its stop token
constexpr TaskCode kSleep = 4;            // a coroutine task that sleeps for 20 s
constexpr std::size_t kChunk = 1000;

/// Counts what the producers did, for the tests to see.
struct ProducerLog {
  std::atomic<int> chunks{0};
  std::atomic<bool> saw_stop{false};
  std::atomic<bool> stuck{false};  // the stuck producer has begun to wait
};

void register_tasks(Server& server, ProducerLog& log) {
  server.register_task(kCoroutineStream,
                       [&log](TaskContext& /*ctx*/) -> asio::awaitable<Response> {
                         co_return Response::stream(
                             [&log](std::span<std::uint8_t> out) -> asio::awaitable<std::size_t> {
                               asio::steady_timer timer(co_await asio::this_coro::executor,
                                                        std::chrono::milliseconds(5));
                               try {
                                 co_await timer.async_wait(asio::use_awaitable);
                               } catch (const std::system_error&) {
                                 log.saw_stop = true;  // the pending wait was cancelled
                                 throw;
                               }
                               const std::size_t n = std::min(out.size(), kChunk);
                               std::fill_n(out.begin(), n, std::uint8_t{'c'});
                               ++log.chunks;
                               co_return n;
                             });
                       },
                       {.name = "coroutine_stream"});
  server.register_task(
      kBlockingStream,
      [&log](TaskContext& ctx) {
        return Response::stream([&log, stop = ctx.stop_token()](std::span<std::uint8_t> out) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
          if (stop.stop_requested()) {
            log.saw_stop = true;
            return std::size_t{0};  // a well-behaved producer stops early
          }
          const std::size_t n = std::min(out.size(), kChunk);
          std::fill_n(out.begin(), n, std::uint8_t{'b'});
          ++log.chunks;
          return n;
        });
      },
      {.name = "blocking_stream"});
  server.register_task(kStuckStream,
                       [&log](TaskContext& ctx) {
                         return Response::stream([&log, stop = ctx.stop_token(), first = true](
                                                     std::span<std::uint8_t> out) mutable {
                           if (first) {
                             first = false;
                             out[0] = 's';
                             return std::size_t{1};
                           }
                           // Stuck until cancelled: at most 20 s, far past any grace period below.
                           log.stuck = true;
                           const auto deadline = Clock::now() + std::chrono::seconds(20);
                           while (!stop.stop_requested() && Clock::now() < deadline) {
                             std::this_thread::sleep_for(std::chrono::milliseconds(2));
                           }
                           log.saw_stop = stop.stop_requested();
                           return std::size_t{0};
                         });
                       },
                       {.name = "stuck_stream"});
  server.register_task(kSleep,
                       [](TaskContext& /*ctx*/) -> asio::awaitable<Response> {
                         asio::steady_timer timer(co_await asio::this_coro::executor,
                                                  std::chrono::seconds(20));
                         co_await timer.async_wait(asio::use_awaitable);
                         co_return Response();
                       },
                       {.name = "sleep"});
}

class Cancellation : public ::testing::Test {
 protected:
  void SetUp() override {
    register_tasks(server_.server(), log_);
    server_.start();
  }
  std::shared_ptr<Client> only_client() {
    EXPECT_TRUE(eventually([&] { return server_.server().num_clients() == 1; }));
    auto clients = server_.server().clients();
    return clients.empty() ? nullptr : clients.front();
  }
  std::error_code first_close_reason() {
    EXPECT_TRUE(eventually([&] { return !metrics_->closed().empty(); }));
    const auto closed = metrics_->closed();
    return closed.empty() ? std::error_code{} : closed.front();
  }

  ProducerLog log_;
  std::shared_ptr<RecordingMetrics> metrics_ = std::make_shared<RecordingMetrics>();
  TestServer server_{options_with_metrics(metrics_)};
};

TEST_F(Cancellation, CancelStopsACoroutineProducerAndDropsTheConnection) {
  RawClient c(server_.port());
  c.send(request(kCoroutineStream));
  const Bytes start = c.recv(1 + 256);  // OK, then the first full block
  ASSERT_EQ(start.size(), 257U);
  EXPECT_EQ(start[0], 0x00);
  only_client()->cancel();
  EXPECT_TRUE(c.closed_within(kTimingSlack + 2000ms)) << "the response went on";
  // The producer's pending wait was cancelled (saw_stop), or the cancel came while the
  // connection was writing its last chunk: either way it produces no more.
  EXPECT_EQ(first_close_reason(), make_error_code(Errc::cancelled));
  const int chunks = log_.chunks.load();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(log_.chunks.load(), chunks) << "the producer still runs";
}

TEST_F(Cancellation, CancelStopsABlockingProducerAndDropsTheConnection) {
  RawClient c(server_.port());
  c.send(request(kBlockingStream));
  const Bytes start = c.recv(1 + 256);
  ASSERT_EQ(start.size(), 257U);
  only_client()->cancel();
  EXPECT_TRUE(c.closed_within(kTimingSlack + 2000ms)) << "the response went on";
  EXPECT_TRUE(log_.saw_stop.load());
  EXPECT_EQ(first_close_reason(), make_error_code(Errc::cancelled));
}

TEST_F(Cancellation, AStuckBlockingProducerIsStoppedAtTheEndOfTheGracePeriod) {
  RawClient c(server_.port());
  c.send(request(kStuckStream));
  // OK and the first byte are in the output buffer (a response is written out as its buffer
  // fills or when it ends); the producer is now stuck.
  ASSERT_TRUE(eventually([&] { return log_.stuck.load(); }));
  ASSERT_NE(only_client(), nullptr);
  const auto started = Clock::now();
  server_.server().disconnect(100ms);
  EXPECT_TRUE(server_.server().wait_for(kTimingSlack + 1000ms))
      << "the connection outlived its grace period by far";
  EXPECT_LT(elapsed_since(started), kTimingSlack + 1000ms);
  EXPECT_TRUE(log_.saw_stop.load());
  EXPECT_TRUE(c.closed_within(kTimingSlack));
}

TEST_F(Cancellation, OfTwoDisconnectsTheShorterGraceWins) {
  for (const bool short_first : {false, true}) {
    RawClient c(server_.port());
    c.send(request(kSleep));
    auto client = only_client();
    ASSERT_TRUE(eventually([&] { return client->metadata().has_value(); }));
    const auto started = Clock::now();
    if (short_first) {
      client->disconnect(100ms);
      client->disconnect(30s);
    } else {
      client->disconnect(30s);
      client->disconnect(100ms);
    }
    EXPECT_TRUE(c.closed_within(kTimingSlack + 1000ms)) << "short_first=" << short_first;
    EXPECT_LT(elapsed_since(started), kTimingSlack + 1000ms) << "short_first=" << short_first;
    EXPECT_TRUE(eventually([&] { return server_.server().num_clients() == 0; }));
  }
}

/// An acceptor on 127.0.0.1 and an io_context run by one thread, for the public
/// handle_connection entry points (no Listener).
class HandleConnection : public ::testing::Test {
 protected:
  HandleConnection() : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    register_tasks(server_, log_);
  }
  ~HandleConnection() override {
    work_.reset();
    io_.stop();
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  void run_io() {
    thread_ = std::thread([this] { io_.run(); });
  }

  ProducerLog log_;
  Server server_{TestServer::quiet_options()};
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
};

TEST_F(HandleConnection, AsyncFormEndsGracefullyWhenItsStopTokenFires) {
  RawClient c(port());
  asio::ip::tcp::socket socket = acceptor_.accept();
  std::stop_source stop;
  auto ended = asio::co_spawn(io_,
                              server_.async_handle_connection(
                                  std::move(socket), ByteOrder::big_endian, {}, stop.get_token()),
                              asio::use_future);
  run_io();
  // A task that runs when the stop fires finishes within the grace period (shutdown_grace, 5 s
  // by default) only if it is short: the 20 s sleep is cancelled at its end. Idle, it ends at once.
  EXPECT_EQ(c.call(request(250), 2), bytes({0x00, 0x00}));
  const auto started = Clock::now();
  stop.request_stop();
  ASSERT_EQ(ended.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(ended.get(), make_error_code(Errc::graceful_disconnect));
  EXPECT_LT(elapsed_since(started), kTimingSlack);
  EXPECT_TRUE(c.closed_within(kTimingSlack));
}

TEST_F(HandleConnection, BlockingFormEndsWhenItsStopTokenFires) {
  RawClient c(port());
  asio::ip::tcp::socket socket = acceptor_.accept();
  run_io();
  std::stop_source stop;
  auto ended = std::async(std::launch::async, [&] {
    return server_.handle_connection(std::move(socket), ByteOrder::big_endian, {},
                                     stop.get_token());
  });
  EXPECT_EQ(c.call(request(250), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(ended.wait_for(100ms), std::future_status::timeout) << "ended before the stop";
  stop.request_stop();
  ASSERT_EQ(ended.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(ended.get(), make_error_code(Errc::graceful_disconnect));
  EXPECT_TRUE(c.closed_within(kTimingSlack));
}

}  // namespace
}  // namespace serialserver::test
