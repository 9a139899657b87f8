// ListenerOptions::max_connections over real sockets: at the limit, the connection idle the
// longest is disconnected gracefully (Goodbye, then end of stream) and the newcomer is served;
// when every connection is running a task, the newcomer is refused (closed at once) as before.

#include <serialserver/prometheus_metrics.hpp>
#include "support/loopback.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <string>

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

const Bytes kKeepAlive = bytes({0xFA, 0x00});
const Bytes kOkEmpty = bytes({0x00, 0x00});
const Bytes kGoodbye = bytes({0x02});

ListenerOptions limited_to(std::size_t max_connections) {
  auto o = TestServer::default_listener_options();
  o.max_connections = max_connections;
  return o;
}

/// The client's own address as the server sees it ("127.0.0.1:port").
std::string local_address_of(const RawClient& client) {
  sockaddr_in address{};
  socklen_t size = sizeof address;
  ::getsockname(client.fd(), reinterpret_cast<sockaddr*>(&address), &size);
  return "127.0.0.1:" + std::to_string(ntohs(address.sin_port));
}

/// True once every one of the server's `count` connections is running a task.
bool all_busy(Server& server, std::size_t count) {
  const auto clients = server.clients();
  if (clients.size() != count) {
    return false;
  }
  for (const auto& client : clients) {
    if (!client->metadata()) {
      return false;
    }
  }
  return true;
}

TEST(IdleEviction, TheOldestIdleConnectionGetsGoodbyeAndTheNewcomerIsServed) {
  TestServer s(TestServer::quiet_options(), limited_to(2));
  s.start();
  RawClient a(s.port());
  ASSERT_EQ(a.call(kKeepAlive, 2), kOkEmpty);
  std::this_thread::sleep_for(20ms);
  RawClient b(s.port());
  ASSERT_EQ(b.call(kKeepAlive, 2), kOkEmpty);
  ASSERT_EQ(s.listener().num_connections(), 2U);

  RawClient c(s.port());
  EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);  // served
  // The oldest idle one gets an unprompted Goodbye, then the end of the stream.
  EXPECT_TRUE(a.closed_within(3000ms));
  EXPECT_EQ(a.unexpected_bytes(), kGoodbye);
  EXPECT_TRUE(eventually([&] {
    return s.logger()->contains("evicted the longest idle connection " + local_address_of(a));
  }));
  // The other one is untouched.
  EXPECT_EQ(b.call(kKeepAlive, 2), kOkEmpty);
  EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
  EXPECT_TRUE(eventually([&] { return s.listener().num_connections() == 2; }));
}

TEST(IdleEviction, EvictionsAreCountedInTheMetrics) {
  auto options = TestServer::quiet_options();
  const auto metrics = std::make_shared<PrometheusMetrics>();
  options.metrics = metrics;
  TestServer s(options, limited_to(1));
  s.start();
  RawClient a(s.port());
  ASSERT_EQ(a.call(kKeepAlive, 2), kOkEmpty);
  EXPECT_NE(metrics->render().find("serialserver_connections_evicted_total 0\n"),
            std::string::npos);
  RawClient b(s.port());
  EXPECT_EQ(b.call(kKeepAlive, 2), kOkEmpty);
  EXPECT_TRUE(a.closed_within(3000ms));
  EXPECT_NE(metrics->render().find("serialserver_connections_evicted_total 1\n"), std::string::npos)
      << metrics->render();
  // The evicted connection is reported closed too, gracefully.
  EXPECT_TRUE(eventually([&] {
    return metrics->render().find(
               "serialserver_connections_closed_total{reason=\"graceful_disconnect\"} 1\n") !=
           std::string::npos;
  }));
}

TEST(IdleEviction, IdleTheLongestNotConnectedFirstIsEvicted) {
  TestServer s(TestServer::quiet_options(), limited_to(2));
  s.start();
  RawClient a(s.port());
  ASSERT_EQ(a.call(kKeepAlive, 2), kOkEmpty);
  RawClient b(s.port());
  ASSERT_EQ(b.call(kKeepAlive, 2), kOkEmpty);
  std::this_thread::sleep_for(20ms);
  ASSERT_EQ(a.call(kKeepAlive, 2), kOkEmpty);  // a is now the more recently active

  RawClient c(s.port());
  EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
  EXPECT_TRUE(b.closed_within(3000ms));
  EXPECT_EQ(b.unexpected_bytes(), kGoodbye);
  EXPECT_EQ(a.call(kKeepAlive, 2), kOkEmpty);
}

TEST(IdleEviction, NewcomersInARowEvictDistinctConnections) {
  TestServer s(TestServer::quiet_options(), limited_to(2));
  s.start();
  RawClient a(s.port());
  ASSERT_EQ(a.call(kKeepAlive, 2), kOkEmpty);
  std::this_thread::sleep_for(10ms);
  RawClient b(s.port());
  ASSERT_EQ(b.call(kKeepAlive, 2), kOkEmpty);

  // a and b do not close their ends: both linger on the server while c and d arrive, and the
  // one evicted first must not be picked again.
  RawClient c(s.port());
  EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
  RawClient d(s.port());
  EXPECT_EQ(d.call(kKeepAlive, 2), kOkEmpty);
  EXPECT_TRUE(a.closed_within(3000ms));
  EXPECT_EQ(a.unexpected_bytes(), kGoodbye);
  EXPECT_TRUE(b.closed_within(3000ms));
  EXPECT_EQ(b.unexpected_bytes(), kGoodbye);
  EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
  EXPECT_EQ(d.call(kKeepAlive, 2), kOkEmpty);
  EXPECT_TRUE(eventually([&] { return s.listener().num_connections() == 2; }));
}

TEST(IdleEviction, WhenEveryConnectionIsBusyTheNewcomerIsRefused) {
  TestServer s(TestServer::quiet_options(), limited_to(2));
  std::atomic<int> running{0};
  s.server().register_task(1, [&](TaskContext&) -> asio::awaitable<Response> {
    ++running;
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(1500ms);
    co_await timer.async_wait(asio::use_awaitable);
    co_return Response::copy_of(std::string_view("ok"));
  });
  s.start();
  RawClient a(s.port());
  RawClient b(s.port());
  a.send(request(1));
  b.send(request(1));
  ASSERT_TRUE(eventually([&] { return running.load() == 2 && all_busy(s.server(), 2); }));

  RawClient c(s.port());
  c.send(kKeepAlive);
  EXPECT_TRUE(c.closed_within(3000ms));
  EXPECT_TRUE(c.unexpected_bytes().empty());
  EXPECT_TRUE(s.logger()->contains("max_connections"));
  EXPECT_FALSE(s.logger()->contains("evicted"));
  // The busy ones finish their tasks undisturbed.
  const Bytes ok = bytes({0x00, 0x02, 'o', 'k', 0x00});
  EXPECT_EQ(a.recv(5), ok);
  EXPECT_EQ(b.recv(5), ok);

  // Idle again: the next newcomer evicts the one idle the longest instead of being refused.
  ASSERT_EQ(b.call(kKeepAlive, 2), kOkEmpty);
  RawClient d(s.port());
  EXPECT_EQ(d.call(kKeepAlive, 2), kOkEmpty);
  EXPECT_TRUE(a.closed_within(3000ms));
  EXPECT_EQ(a.unexpected_bytes(), kGoodbye);
}

TEST(IdleEviction, PerAddressLimitStillRefuses) {
  auto o = TestServer::default_listener_options();
  o.max_connections_per_address = 1;
  TestServer s(TestServer::quiet_options(), o);
  s.start();
  RawClient a(s.port());
  ASSERT_EQ(a.call(kKeepAlive, 2), kOkEmpty);
  RawClient b(s.port());
  b.send(kKeepAlive);
  EXPECT_TRUE(b.closed_within(3000ms));
  EXPECT_TRUE(b.unexpected_bytes().empty());
  EXPECT_EQ(a.call(kKeepAlive, 2), kOkEmpty);
  EXPECT_FALSE(s.logger()->contains("evicted"));
}

}  // namespace
}  // namespace serialserver::test
