// A Pool over several addresses (PoolOptions::address_backoff) against raw servers on
// 127.0.0.1: new connections spread round-robin, an address that refuses is passed over for its
// back-off, then tried again.

#include "demo_tasks.hpp"
#include "raw_server.hpp"
#include "support/loopback.hpp"
#include "tls/tls_certs.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <serialclient/serialclient.hpp>

namespace serialclient::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::vector<std::uint8_t> kOkDone{0x00, 0x04, 'd', 'o', 'n', 'e', 0x00};
const std::vector<std::uint8_t> kRequest{'x'};

/// Holds every answer until `expected` requests have arrived (over all servers sharing it), so
/// that that many calls are in flight at once and each has a connection of its own.
class Gate {
 public:
  explicit Gate(int expected) : expected_(expected) {}
  void arrive_and_wait() {
    std::unique_lock lock(mutex_);
    ++arrived_;
    all_in_.notify_all();
    all_in_.wait_for(lock, 10s, [&] { return arrived_ >= expected_; });
  }

 private:
  const int expected_;
  std::mutex mutex_;
  std::condition_variable all_in_;
  int arrived_ = 0;
};

/// A server answering every request OK, after `gate` (if any) lets it.
RawServer gated_server(Gate* gate) {
  return RawServer([gate](int fd) {
    while (RawServer::read_request(fd)) {
      if (gate != nullptr) {
        gate->arrive_and_wait();
      }
      RawServer::send_all(fd, kOkDone);
    }
  });
}

/// A server answering one request OK per connection, then closing it: every call on the pool
/// then needs a new connection.
std::function<void(int)> answer_once() {
  return [](int fd) {
    if (RawServer::read_request(fd)) {
      RawServer::send_all(fd, kOkDone);
    }
  };
}

/// A port of 127.0.0.1 with nothing listening on it (it was bound, then released).
std::uint16_t unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

std::string loopback(std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

/// Runs `count` calls at once, each on a thread of its own; returns how many answered OK.
int concurrent_calls(Pool& pool, int count) {
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < count; ++i) {
    threads.emplace_back([&] {
      std::error_code ec;
      const Result r = pool.call(1, kRequest, ec);
      if (!ec && r.ok()) {
        ++ok;
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  return ok.load();
}

TEST(PoolAddresses, NewConnectionsAreSpreadOverTheAddresses) {
  Gate gate(4);
  RawServer first = gated_server(&gate);
  RawServer second = gated_server(&gate);
  PoolOptions options;
  options.max_connections = 4;
  Pool pool(std::vector<std::string>{first.address(), second.address()}, options);
  EXPECT_EQ(concurrent_calls(pool, 4), 4);
  EXPECT_EQ(first.accepted(), 2);
  EXPECT_EQ(second.accepted(), 2);
  EXPECT_EQ(pool.size(), 4U);
}

TEST(PoolAddresses, RefusingAddressIsPassedOverWithoutRetries) {
  Gate gate(4);
  RawServer live = gated_server(&gate);
  PoolOptions options;
  options.max_connections = 4;
  options.retry.enabled = false;  // the other address is taken within the same attempt
  Pool pool(std::vector<std::string>{loopback(unused_port()), live.address()}, options);
  EXPECT_EQ(concurrent_calls(pool, 4), 4);
  EXPECT_EQ(live.accepted(), 4);
}

TEST(PoolAddresses, EveryAddressRefusingFailsWithRefused) {
  PoolOptions options;
  options.retry.enabled = false;
  Pool pool(std::vector<std::string>{loopback(unused_port()), loopback(unused_port())}, options);
  std::error_code ec;
  pool.call(1, kRequest, ec);
  EXPECT_EQ(ec, std::errc::connection_refused) << ec.message();
  // Both are backing off now, and are still tried rather than given up on.
  pool.call(1, kRequest, ec);
  EXPECT_EQ(ec, std::errc::connection_refused) << ec.message();
  EXPECT_EQ(pool.size(), 0U);
}

TEST(PoolAddresses, RefusingAddressIsTriedAgainAfterItsBackoff) {
  const std::uint16_t down_port = unused_port();
  RawServer live(answer_once());
  PoolOptions options;  // address_backoff: the default, 1 s
  Pool pool(std::vector<std::string>{loopback(down_port), live.address()}, options);
  const auto call_ok = [&] {
    std::this_thread::sleep_for(20ms);  // the previous connection's close reaches the pool
    std::error_code ec;
    const Result r = pool.call(1, kRequest, ec, {.idempotent = true});
    return !ec && r.ok();
  };

  const auto refused_at = Clock::now();
  ASSERT_TRUE(call_ok());  // tried the first address, refused, then the second
  RawServer revived(answer_once(), down_port);
  ASSERT_TRUE(call_ok());
  ASSERT_TRUE(call_ok());
  ASSERT_LT(Clock::now() - refused_at, 900ms) << "too slow to observe the back-off";
  EXPECT_EQ(revived.accepted(), 0);  // still backing off
  EXPECT_EQ(live.accepted(), 3);

  std::this_thread::sleep_until(refused_at + 1100ms);
  ASSERT_TRUE(call_ok());
  ASSERT_TRUE(call_ok());
  EXPECT_GE(revived.accepted(), 1);
}

TEST(PoolAddresses, HostNamesAreResolvedIntoTheRotation) {
  Gate gate(2);
  RawServer first = gated_server(&gate);
  RawServer second = gated_server(&gate);
  PoolOptions options;
  options.max_connections = 2;
  // The same address twice (a name and its address) is one entry of the rotation.
  Pool pool(std::vector<std::string>{"localhost:" + std::to_string(first.port()), first.address(),
                                     "localhost:" + std::to_string(second.port())},
            options);
  EXPECT_EQ(concurrent_calls(pool, 2), 2);
  EXPECT_EQ(first.accepted(), 1);
  EXPECT_EQ(second.accepted(), 1);
}

TEST(PoolAddresses, TlsConnectsThroughAResolvedName) {
  // The certificate is checked against the name (the test certificate also carries the IP).
  const serialserver::test::TlsCerts certs;
  ASSERT_TRUE(certs.ok()) << certs.log();
  auto listener = serialserver::test::TestServer::default_listener_options();
  listener.tls = serialserver::TlsOptions{certs.path("server.pem"), certs.path("server.key"), ""};
  serialserver::test::TestServer server(serialserver::test::TestServer::quiet_options(), listener);
  demo::register_demo_tasks(server.server());
  server.start();

  PoolOptions options;
  options.retry.enabled = false;
  options.connection.tls = TlsOptions{};
  options.connection.tls->ca_file = certs.path("ca.pem");
  Pool pool(std::vector<std::string>{"localhost:" + std::to_string(server.port())}, options);
  std::error_code ec;
  const Result r = pool.call(1, kRequest, ec);  // the demo's echo
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.response, kRequest);
}

TEST(PoolAddresses, EmptyAddressListIsRejected) {
  EXPECT_THROW(Pool(std::vector<std::string>{}), std::invalid_argument);
}

}  // namespace
}  // namespace serialclient::test
