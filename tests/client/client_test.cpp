// The client library against the demo tasks served in process, and against raw servers that
// misbehave on purpose (close mid-response, never answer).

#include "demo_tasks.hpp"
#include "raw_server.hpp"
#include "support/loopback.hpp"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>
#include <gtest/gtest.h>
#include <serialclient/serialclient.hpp>

namespace serialclient::test {
namespace {

using namespace std::chrono_literals;
using serialserver::test::TestServer;

Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }

Bytes big_endian_u64(std::uint64_t v) {
  Bytes out(8);
  for (int i = 7; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v);
    v >>= 8;
  }
  return out;
}

Bytes big_endian_u32(std::uint32_t v) {
  return Bytes{static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
               static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
}

/// The demo tasks on an in-process server.
class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override { start_server(TestServer::quiet_options()); }

  void start_server(
      serialserver::ServerOptions options,
      serialserver::ListenerOptions listener = TestServer::default_listener_options()) {
    server_ = std::make_unique<TestServer>(std::move(options), std::move(listener));
    demo::register_demo_tasks(server_->server());
    server_->start();
  }

  std::unique_ptr<Client> connect(Options options = {}) {
    auto client = std::make_unique<Client>(std::move(options));
    std::error_code ec;
    client->connect(server_->address(), ec);
    EXPECT_FALSE(ec) << ec.message();
    return client;
  }

  std::unique_ptr<TestServer> server_;
};

TEST(Address, Parses) {
  auto a = parse_address("127.0.0.1:7070");
  EXPECT_FALSE(a.is_unix);
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, "7070");
  a = parse_address("[::1]:80");
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.to_string(), "[::1]:80");
  a = parse_address("/tmp/x.sock");
  EXPECT_TRUE(a.is_unix);
  EXPECT_EQ(a.path, "/tmp/x.sock");
  for (const char* bad :
       {"localhost", "host:", ":80", "[::1:80", "::1:80", "h:0", "h:70000", "h:8x"}) {
    EXPECT_THROW(parse_address(bad), std::invalid_argument) << bad;
  }
}

TEST_F(ClientTest, OkErrorAndUnknownTask) {
  auto client = connect();
  std::error_code ec;
  auto r = client->call(1, text("hello"), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.response, text("hello"));

  r = client->call(2, text("ignored"), ec);
  ASSERT_FALSE(ec);
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r.response.empty());

  r = client->call(3, Bytes{42}, ec);  // a remote Error is a value, not a failure
  ASSERT_FALSE(ec);
  EXPECT_TRUE(r.is_error());
  EXPECT_EQ(r.error_code, 42);

  r = client->call(9, {}, ec);
  ASSERT_FALSE(ec);
  EXPECT_TRUE(r.is_error());
  EXPECT_EQ(r.error_code, serialserver::kUnknownTaskErrorCode);

  // 300 bytes: more than one block each way.
  Bytes big(300);
  for (std::size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<std::uint8_t>(i);
  }
  r = client->call(1, big, ec);
  ASSERT_FALSE(ec);
  EXPECT_EQ(r.response, big);
  EXPECT_TRUE(client->is_open());
}

TEST_F(ClientTest, KeepAliveAndGoodbye) {
  auto client = connect();
  std::error_code ec;
  auto r = client->keep_alive(ec);
  ASSERT_FALSE(ec);
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r.response.empty());

  r = client->goodbye(ec);
  ASSERT_FALSE(ec);
  EXPECT_TRUE(r.is_goodbye());
  EXPECT_EQ(r.goodbye_error(), Errc::connection_closing);
  EXPECT_FALSE(client->is_open());

  r = client->call(1, text("x"), ec);
  EXPECT_EQ(ec, Errc::connection_closed);
}

TEST_F(ClientTest, ReservedCodesAreRejectedAndNothingIsSent) {
  auto client = connect();
  for (int code = 250; code <= 255; ++code) {
    std::error_code ec;
    client->call(static_cast<TaskCode>(code), text("x"), ec);
    EXPECT_EQ(ec, Errc::reserved_task_code) << code;
    const Call calls[] = {{1, {}}, {static_cast<TaskCode>(code), {}}};
    client->call_batch(calls, ec);
    EXPECT_EQ(ec, Errc::reserved_task_code) << code;
    client->call(
        static_cast<TaskCode>(code), [](BlockingRequestWriter&) {}, {}, ec);
    EXPECT_EQ(ec, Errc::reserved_task_code) << code;
  }
  // Nothing went out: the connection is in step and still open.
  std::error_code ec;
  auto r = client->call(1, text("still here"), ec);
  ASSERT_FALSE(ec);
  EXPECT_EQ(r.response, text("still here"));

  Pool pool(server_->address());
  pool.call(255, {}, ec);
  EXPECT_EQ(ec, Errc::reserved_task_code);
  EXPECT_EQ(pool.size(), 0U);
}

TEST_F(ClientTest, PipelinedAnswersInOrder) {
  auto client = connect();
  std::vector<Bytes> payloads;
  std::vector<Call> calls;
  for (int i = 0; i < 200; ++i) {
    payloads.push_back(
        text("request " + std::to_string(i) + std::string(static_cast<std::size_t>(i * 3), '.')));
  }
  for (int i = 0; i < 200; ++i) {
    // Every fifth call is an Error whose code is its index, so misplaced answers show.
    if (i % 5 == 4) {
      calls.push_back(
          {3, std::span<const std::uint8_t>(&payloads[static_cast<std::size_t>(i)][8], 1)});
    } else {
      calls.push_back({1, payloads[static_cast<std::size_t>(i)]});
    }
  }
  std::error_code ec;
  const auto results = client->call_batch(calls, ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_EQ(results.size(), calls.size());
  for (std::size_t i = 0; i < calls.size(); ++i) {
    if (i % 5 == 4) {
      EXPECT_TRUE(results[i].is_error()) << i;
      EXPECT_EQ(results[i].error_code, payloads[i][8]) << i;
    } else {
      EXPECT_TRUE(results[i].ok()) << i;
      EXPECT_EQ(results[i].response, payloads[i]) << i;
    }
  }
}

TEST_F(ClientTest, GoodbyeDuringShutdown) {
  auto client = connect();
  // The sleep runs while the server shuts down; the echo behind it is answered with Goodbye.
  const Bytes sleep_ms = big_endian_u32(400);
  const Bytes payload = text("late");
  const Call calls[] = {{5, sleep_ms}, {1, payload}, {1, payload}};
  std::thread stopper([&] {
    std::this_thread::sleep_for(150ms);
    server_->stop(5s);
  });
  std::error_code ec;
  const auto results = client->call_batch(calls, ec);
  stopper.join();
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_EQ(results.size(), 3U);
  EXPECT_TRUE(results[0].ok());
  EXPECT_TRUE(results[1].is_goodbye());
  EXPECT_TRUE(results[2].is_goodbye());
  EXPECT_FALSE(client->is_open());
  client->call(1, payload, ec);
  EXPECT_EQ(ec, Errc::connection_closed);
}

TEST_F(ClientTest, KeepAliveHoldsAnIdleConnectionOpen) {
  serialserver::ServerOptions options = TestServer::quiet_options();
  options.timeout.wait = 300ms;
  start_server(options);

  Options with;
  with.keep_alive_interval = 100ms;
  auto kept = connect(with);
  Options without;
  without.keep_alive_interval = 0ns;
  auto idle = connect(without);

  std::this_thread::sleep_for(1s);
  std::error_code ec;
  auto r = kept->call(1, text("awake"), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.response, text("awake"));
  // The control: the server's Wait timeout closed the connection that sent no keep-alives.
  idle->call(1, text("asleep"), ec);
  EXPECT_EQ(ec, Errc::connection_closed) << ec.message();
}

TEST(ClientRaw, ServerClosesMidResponse) {
  RawServer raw([](int fd) {
    if (RawServer::read_request(fd)) {
      RawServer::send_all(fd, {0x00, 0x05, 'a', 'b'});  // OK, a 5-byte block cut short
    }
  });
  Client client;
  std::error_code ec;
  client.connect(raw.address(), ec);
  ASSERT_FALSE(ec);
  client.call(1, text("hello"), ec);
  EXPECT_EQ(ec, Errc::connection_closed) << ec.message();
  EXPECT_FALSE(client.is_open());
}

TEST(ClientRaw, ServerThatNeverAnswersTimesOut) {
  RawServer raw([](int fd) { RawServer::wait_for_close(fd); });
  Options options;
  options.response_timeout = 200ms;
  Client client(options);
  std::error_code ec;
  client.connect(raw.address(), ec);
  ASSERT_FALSE(ec);
  const auto start = std::chrono::steady_clock::now();
  client.call(1, text("anyone?"), ec);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(ec, Errc::timeout_waiting_for_response) << ec.message();
  EXPECT_GE(elapsed, 190ms);
  EXPECT_LT(elapsed, 3s);
  EXPECT_FALSE(client.is_open());
}

TEST(ClientRaw, StalledResponseHitsTheReadTimeout) {
  RawServer raw([](int fd) {
    if (RawServer::read_request(fd)) {
      RawServer::send_all(fd, {0x00, 0x05, 'a'});
      RawServer::wait_for_close(fd);
    }
  });
  Options options;
  options.read_timeout = 200ms;
  Client client(options);
  std::error_code ec;
  client.connect(raw.address(), ec);
  ASSERT_FALSE(ec);
  client.call(1, text("x"), ec);
  EXPECT_EQ(ec, Errc::read_timeout) << ec.message();
}

TEST(ClientRaw, ConnectFailuresAreErrorCodes) {
  const std::uint16_t port = serialserver::test::free_port();  // nothing listens there now
  Client client;
  std::error_code ec;
  client.connect("127.0.0.1:" + std::to_string(port), ec);
  EXPECT_EQ(ec, std::errc::connection_refused) << ec.message();
  client.connect("no-port-here", ec);
  EXPECT_EQ(ec, Errc::invalid_address);
  client.call(1, {}, ec);
  EXPECT_EQ(ec, Errc::connection_closed);
}

TEST_F(ClientTest, PoolUnderSixteenThreads) {
  PoolOptions options;
  options.max_connections = 4;
  options.io_threads = 2;
  Pool pool(server_->address(), options);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        const Bytes payload = text("thread " + std::to_string(t) + " call " + std::to_string(i));
        std::error_code ec;
        const auto r = pool.call(1, payload, ec);
        if (ec || !r.ok() || r.response != payload) {
          ++failures;
        }
        if (pool.size() > 4) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(pool.size(), 4U);
  EXPECT_GE(pool.idle(), 1U);
}

TEST_F(ClientTest, OneClientFromManyThreadsIsSerialised) {
  auto client = connect();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const Bytes payload = text(std::to_string(t) + ":" + std::to_string(i));
        std::error_code ec;
        const auto r = client->call(1, payload, ec);
        if (ec || r.response != payload) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(ClientTest, BlockingStreamingBothWays) {
  auto client = connect();
  std::error_code ec;
  // A 1 MiB request written in uneven pieces, counted by task 6 in constant memory.
  constexpr std::size_t kSize = 1 << 20;
  auto r = client->call(
      6,
      [&](BlockingRequestWriter& w) {
        Bytes piece(7777, 0xAB);
        std::size_t sent = 0;
        while (sent < kSize) {
          const std::size_t n = std::min(piece.size(), kSize - sent);
          w.write(std::span(piece).first(n));
          sent += n;
          if (sent == 7777 * 3) {
            w.flush();
          }
        }
      },
      {}, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.response, big_endian_u64(kSize));

  // A 1 MiB response from task 4 read in small pieces; byte i is i mod 256.
  std::size_t received = 0;
  bool pattern_ok = true;
  const Bytes size_request = big_endian_u64(kSize);
  r = client->call(
      4, [&](BlockingRequestWriter& w) { w.write(size_request); },
      [&](BlockingResponseReader& reader) {
        Bytes buffer(1000);
        while (std::size_t n = reader.read_some(buffer)) {
          for (std::size_t i = 0; i < n; ++i) {
            pattern_ok = pattern_ok && buffer[i] == static_cast<std::uint8_t>(received + i);
          }
          received += n;
        }
        EXPECT_TRUE(reader.at_end());
      },
      ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(received, kSize);
  EXPECT_TRUE(pattern_ok);

  // A consumer that stops early: the rest is drained, and the next call lines up.
  r = client->call(
      4, [&](BlockingRequestWriter& w) { w.write(size_request); },
      [&](BlockingResponseReader& reader) {
        Bytes buffer(10);
        reader.read_some(buffer);
      },
      ec);
  ASSERT_FALSE(ec);
  r = client->call(1, text("after"), ec);
  ASSERT_FALSE(ec);
  EXPECT_EQ(r.response, text("after"));
}

TEST_F(ClientTest, CoroutineApi) {
  // The coroutine only records what it saw; the checks run afterwards, outside it (GCC 12
  // miscompiles some gtest macros inside coroutines).
  struct Seen {
    Result echo;
    Result error;
    std::error_code reserved;
    std::vector<Result> batch;
    Result streamed;
    std::size_t counted = 0;
    Result keep_alive;
    Result goodbye;
    bool open_after_goodbye = true;
    std::error_code after_goodbye;
  } seen;
  asio::io_context io;
  const std::string address = server_->address();
  const Bytes hello = text("hello");
  auto done = asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        Connection c = co_await Connection::async_connect(address);
        seen.echo = co_await c.async_call(1, hello);
        const Bytes nine(1, 9);  // (no braced temporary inside co_await: GCC 12 rejects it)
        seen.error = co_await c.async_call(3, nine);
        try {
          co_await c.async_call(250, hello);
        } catch (const std::system_error& e) {
          seen.reserved = e.code();
        }
        std::vector<Call> calls(3);
        calls[0] = {1, hello};
        calls[1] = {2, {}};
        calls[2] = {9, {}};
        seen.batch = co_await c.async_call_batch(calls);
        // Streaming: request pieces in, response pieces out.
        seen.streamed = co_await c.async_call(
            4,
            [](RequestWriter& w) -> asio::awaitable<void> {
              const Bytes n = big_endian_u64(100000);
              co_await w.async_write(std::span(n).first(3));
              co_await w.async_flush();
              co_await w.async_write(std::span(n).subspan(3));
            },
            [&](ResponseReader& reader) -> asio::awaitable<void> {
              Bytes buffer(4096);
              while (std::size_t n = co_await reader.async_read_some(buffer)) {
                seen.counted += n;
              }
            });
        seen.keep_alive = co_await c.async_keep_alive();
        seen.goodbye = co_await c.async_goodbye();
        seen.open_after_goodbye = c.is_open();
        try {
          co_await c.async_call(1, hello);
        } catch (const std::system_error& e) {
          seen.after_goodbye = e.code();
        }
      },
      asio::use_future);
  io.run();
  done.get();
  EXPECT_EQ(seen.echo.response, hello);
  EXPECT_TRUE(seen.error.is_error());
  EXPECT_EQ(seen.error.error_code, 9);
  EXPECT_EQ(seen.reserved, Errc::reserved_task_code);
  ASSERT_EQ(seen.batch.size(), 3U);
  EXPECT_EQ(seen.batch[0].response, hello);
  EXPECT_TRUE(seen.batch[1].ok());
  EXPECT_EQ(seen.batch[2].error_code, 255);
  EXPECT_TRUE(seen.streamed.ok());
  EXPECT_EQ(seen.counted, 100000U);
  EXPECT_TRUE(seen.keep_alive.ok());
  EXPECT_TRUE(seen.goodbye.is_goodbye());
  EXPECT_FALSE(seen.open_after_goodbye);
  EXPECT_EQ(seen.after_goodbye, Errc::connection_closed);
}

TEST_F(ClientTest, CoroutineCallsFromSeveralCoroutinesAreSerialised) {
  asio::io_context io;
  const std::string address = server_->address();
  std::atomic<int> good{0};
  auto done = asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto c = std::make_shared<Connection>(co_await Connection::async_connect(address));
        for (int k = 0; k < 4; ++k) {
          asio::co_spawn(
              io,
              [c, k, &good]() -> asio::awaitable<void> {
                for (int i = 0; i < 25; ++i) {
                  const Bytes payload = text(std::to_string(k) + "/" + std::to_string(i));
                  const Result r = co_await c->async_call(1, payload);
                  good += r.response == payload ? 1 : 0;
                }
              },
              asio::detached);
        }
      },
      asio::use_future);
  io.run();
  done.get();
  EXPECT_EQ(good.load(), 100);
}

TEST_F(ClientTest, CoroutineTransportFailureThrows) {
  asio::io_context io;
  const std::uint16_t port = serialserver::test::free_port();
  auto done = asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await Connection::async_connect("127.0.0.1:" + std::to_string(port));
      },
      asio::use_future);
  io.run();
  try {
    done.get();
    FAIL() << "connected to a closed port";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::connection_refused);
  }
}

TEST_F(ClientTest, Ipv6AndUnixSockets) {
  auto v6 = TestServer::default_listener_options();
  v6.address = "[::1]:0";
  TestServer server6(TestServer::quiet_options(), v6);
  demo::register_demo_tasks(server6.server());
  try {
    server6.start();
  } catch (const std::exception& e) {
    GTEST_SKIP() << "no IPv6 loopback: " << e.what();
  }
  Client c6;
  std::error_code ec;
  c6.connect("[::1]:" + std::to_string(server6.port()), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(c6.call(1, text("six"), ec).response, text("six"));

  auto unix_options = TestServer::default_listener_options();
  const auto path = std::filesystem::temp_directory_path() /
                    ("serialclient-test-" + std::to_string(::getpid()) + ".sock");
  unix_options.address = path.string();
  TestServer server_unix(TestServer::quiet_options(), unix_options);
  demo::register_demo_tasks(server_unix.server());
  server_unix.start();
  Client cu;
  cu.connect(path.string(), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(cu.call(1, text("unix"), ec).response, text("unix"));
}

TEST_F(ClientTest, HandshakeHooksOnBothSides) {
  auto listener = TestServer::default_listener_options();
  listener.handshake =
      [](serialserver::HandshakeStream& s) -> asio::awaitable<serialserver::HandshakeResult> {
    std::uint8_t order = 0;
    co_await s.async_read_exact(std::span(&order, 1));
    const std::uint8_t ack = 'k';
    co_await s.async_write(std::span(&ack, 1));
    serialserver::HandshakeResult result;
    result.byte_order =
        order == 'L' ? serialserver::ByteOrder::little_endian : serialserver::ByteOrder::big_endian;
    co_return result;
  };
  start_server(TestServer::quiet_options(), listener);
  Options options;
  options.handshake = [](HandshakeStream& s) -> asio::awaitable<serialserver::ByteOrder> {
    const std::uint8_t order = 'L';
    co_await s.async_write(std::span(&order, 1));
    std::uint8_t ack = 0;
    co_await s.async_read_exact(std::span(&ack, 1));
    if (ack != 'k') {
      throw std::runtime_error("bad ack");
    }
    co_return serialserver::ByteOrder::little_endian;
  };
  auto client = connect(options);
  EXPECT_EQ(client->byte_order(), serialserver::ByteOrder::little_endian);
  std::error_code ec;
  EXPECT_EQ(client->call(1, text("after handshake"), ec).response, text("after handshake"));

  // A hook that fails fails the connect.
  Options failing;
  failing.handshake = [](HandshakeStream&) -> asio::awaitable<serialserver::ByteOrder> {
    throw std::runtime_error("no");
    co_return serialserver::ByteOrder::big_endian;
  };
  Client bad(failing);
  bad.connect(server_->address(), ec);
  EXPECT_EQ(ec, Errc::handshake_failed);
}

}  // namespace
}  // namespace serialclient::test
