// The Listener over real sockets: IPv4, IPv6 and Unix socket addresses, bad and busy addresses,
// the handshake hook (failure and timeout), the connection limits, and shutdown.

#include "support/loopback.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <atomic>
#include <cstring>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

const Bytes kKeepAlive = bytes({0xFA, 0x00});
const Bytes kOkEmpty = bytes({0x00, 0x00});

ServerOptions quiet_options() { return TestServer::quiet_options(); }

ListenerOptions listener_at(std::string address) {
  auto o = TestServer::default_listener_options();
  o.address = std::move(address);
  return o;
}

std::filesystem::path socket_path(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("serialserver-listener-" + name + "-" + std::to_string(::getpid()) + ".sock");
}

/// True if connecting to 127.0.0.1:port is refused.
bool connection_refused(std::uint16_t port) {
  try {
    RawClient c(port);
    // Accepted by the kernel after all (a backlog): refused means closed at once, no answer.
    c.send(kKeepAlive);
    return c.closed_within(1000ms) && c.unexpected_bytes().empty();
  } catch (const std::system_error&) {
    return true;
  }
}

/// A keep-alive round trip over a TCP connection from a chosen loopback source address.
class SourcedClient {
 public:
  SourcedClient(const std::string& source, std::uint16_t port) : socket_(io_) {
    socket_.open(asio::ip::tcp::v4());
    socket_.bind({asio::ip::make_address(source), 0});
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
  }
  /// Sends a keep-alive; true if the OK arrives (false if the connection is closed instead).
  bool keep_alive() {
    std::error_code ec;
    asio::write(socket_, asio::buffer(kKeepAlive), ec);
    if (ec) {
      return false;
    }
    pollfd p{socket_.native_handle(), POLLIN, 0};
    if (::poll(&p, 1, 3000) <= 0) {
      return false;
    }
    std::array<std::uint8_t, 2> answer{};
    asio::read(socket_, asio::buffer(answer), ec);
    return !ec && answer[0] == 0x00 && answer[1] == 0x00;
  }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket socket_;
};

TEST(Listener, ListensOnIPv4EphemeralPort) {
  TestServer s(quiet_options(), listener_at("127.0.0.1:0"));
  s.start();
  ASSERT_NE(s.port(), 0);
  EXPECT_EQ(s.address(), "127.0.0.1:" + std::to_string(s.port()));
  EXPECT_EQ(s.listener().io_thread_count(), 2U);
  RawClient c(s.port());
  EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
  EXPECT_TRUE(eventually([&] { return s.listener().num_connections() == 1; }));
}

TEST(Listener, ListensOnIPv6EphemeralPort) {
  TestServer s(quiet_options(), listener_at("[::1]:0"));
  s.start();
  ASSERT_NE(s.port(), 0);
  EXPECT_EQ(s.address(), "[::1]:" + std::to_string(s.port()));
  RawClient c("::1", s.port());
  EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
  // v6-only: the same port on IPv4 is not this listener.
  EXPECT_TRUE(connection_refused(s.port()));
}

TEST(Listener, ListensOnUnixSocketReplacingAStaleOneAndRemovesItAtTheEnd) {
  const auto path = socket_path("stale");
  std::filesystem::remove(path);
  {
    // A stale socket file, as a crashed earlier run leaves it: bound, then closed, not removed.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::close(fd);
    ASSERT_TRUE(std::filesystem::is_socket(path));
  }
  {
    TestServer s(quiet_options(), listener_at(path.string()));
    s.start();
    EXPECT_EQ(s.address(), path.string());
    EXPECT_EQ(s.port(), 0);
    RawClient c(path.string());
    EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
    RawClient d(path.string());
    EXPECT_EQ(d.call(kKeepAlive, 2), kOkEmpty);
    EXPECT_TRUE(std::filesystem::is_socket(path));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(Listener, SecondListenerOnALiveUnixSocketIsRefusedAndTheFirstKeepsIt) {
  const auto path = socket_path("live");
  std::filesystem::remove(path);
  {
    TestServer first(quiet_options(), listener_at(path.string()));
    first.start();
    {
      Server server(quiet_options());
      Listener second(server, listener_at(path.string()));
      try {
        second.start();
        ADD_FAILURE() << "a second listener took over a live Unix socket";
      } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), make_error_code(asio::error::address_in_use)) << e.what();
      }
    }  // the refused listener ends here: it must not remove the first one's socket
    ASSERT_TRUE(std::filesystem::is_socket(path));
    RawClient c(path.string());
    EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(Listener, StoppingDoesNotRemoveASocketFileThatReplacedItsOwn) {
  const auto path = socket_path("replaced");
  std::filesystem::remove(path);
  const auto moved = path.string() + ".old";
  {
    std::optional<TestServer> first;
    first.emplace(quiet_options(), listener_at(path.string()));
    first->start();
    // Someone moves the first socket away and another server binds the path.
    std::filesystem::rename(path, moved);
    TestServer second(quiet_options(), listener_at(path.string()));
    second.start();
    first.reset();  // stops and destroys the first listener
    ASSERT_TRUE(std::filesystem::is_socket(path));
    RawClient c(path.string());
    EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
  }
  std::filesystem::remove(moved);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(Listener, UnixSocketPathHeldByARegularFileIsNotRemoved) {
  const auto path = socket_path("file");
  {
    std::ofstream f(path);
    f << "not a socket";
  }
  {
    Server server(quiet_options());
    Listener listener(server, listener_at(path.string()));
    EXPECT_THROW(listener.start(), std::system_error);
  }
  EXPECT_TRUE(std::filesystem::is_regular_file(path));
  std::filesystem::remove(path);
}

TEST(Listener, BadAddressesThrowInvalidArgument) {
  Server server(quiet_options());
  for (const char* bad : {"", "localhost", "127.0.0.1", "127.0.0.1:", "127.0.0.1:http",
                          "127.0.0.1:12ab", "[::1:0", "[::1]:x", "127.0.0.1:-1"}) {
    Listener listener(server, listener_at(bad));
    EXPECT_THROW(listener.start(), std::invalid_argument) << "address '" << bad << "'";
  }
}

TEST(Listener, BusyPortThrowsSystemError) {
  TestServer first(quiet_options(), listener_at("127.0.0.1:0"));
  first.start();
  Server server(quiet_options());
  Listener second(server, listener_at("127.0.0.1:" + std::to_string(first.port())));
  try {
    second.start();
    ADD_FAILURE() << "binding a busy port did not throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), make_error_code(asio::error::address_in_use)) << e.what();
  }
  // The first listener is unharmed.
  RawClient c(first.port());
  EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
}

/// A handshake that wants one byte 'H' and answers 'h'; anything else throws.
asio::awaitable<HandshakeResult> strict_handshake(HandshakeStream& stream) {
  std::array<std::uint8_t, 1> b{};
  co_await stream.async_read_exact(b);
  if (b[0] != 'H') {
    throw std::runtime_error("bad greeting");
  }
  static constexpr std::array<std::uint8_t, 1> kReply{'h'};
  co_await stream.async_write(kReply);
  co_return HandshakeResult{};
}

TEST(Listener, FailingHandshakeClosesTheConnectionAndTheServerCarriesOn) {
  auto o = listener_at("127.0.0.1:0");
  o.handshake = strict_handshake;
  o.handshake_timeout = 10s;  // far longer than the test's bound: the failure must close at once
  TestServer s(quiet_options(), o);
  s.start();
  RawClient bad(s.port());
  const auto start = std::chrono::steady_clock::now();
  bad.send(bytes({'X'}));
  EXPECT_TRUE(bad.closed_within(3000ms));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_TRUE(bad.unexpected_bytes().empty());
  EXPECT_TRUE(eventually([&] { return s.logger()->contains("bad greeting"); }));
  EXPECT_TRUE(eventually([&] { return s.listener().num_connections() == 0; }));
  EXPECT_EQ(s.server().num_clients(), 0U);

  RawClient good(s.port());
  EXPECT_EQ(good.call(bytes({'H'}), 1), bytes({'h'}));
  EXPECT_EQ(good.call(kKeepAlive, 2), kOkEmpty);
  EXPECT_TRUE(eventually([&] { return s.server().num_clients() == 1; }));
}

TEST(Listener, SilentPeerIsClosedAfterTheHandshakeTimeout) {
  auto o = listener_at("127.0.0.1:0");
  o.handshake = strict_handshake;
  o.handshake_timeout = 300ms;
  TestServer s(quiet_options(), o);
  s.start();
  const auto start = std::chrono::steady_clock::now();
  RawClient silent(s.port());
  EXPECT_TRUE(eventually([&] { return s.listener().num_connections() == 1; }));
  EXPECT_EQ(s.server().num_clients(), 0U);  // not handed to the server yet
  EXPECT_TRUE(silent.closed_within(3000ms));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 3s);
  EXPECT_TRUE(silent.unexpected_bytes().empty());
  EXPECT_TRUE(eventually([&] { return s.logger()->contains("timed out"); }));
  EXPECT_TRUE(eventually([&] { return s.listener().num_connections() == 0; }));
}

TEST(Listener, ConnectionsBeyondMaxPerAddressAreClosedAtOnce) {
  auto o = listener_at("127.0.0.1:0");
  o.max_connections_per_address = 2;
  TestServer s(quiet_options(), o);
  s.start();
  SourcedClient a1("127.0.0.1", s.port());
  ASSERT_TRUE(a1.keep_alive());
  SourcedClient a2("127.0.0.1", s.port());
  ASSERT_TRUE(a2.keep_alive());
  SourcedClient a3("127.0.0.1", s.port());
  EXPECT_FALSE(a3.keep_alive());  // a third from 127.0.0.1: closed

  // Another address has its own count.
  SourcedClient b1("127.0.0.2", s.port());
  EXPECT_TRUE(b1.keep_alive());
  SourcedClient b2("127.0.0.2", s.port());
  EXPECT_TRUE(b2.keep_alive());
  SourcedClient b3("127.0.0.2", s.port());
  EXPECT_FALSE(b3.keep_alive());

  EXPECT_TRUE(a1.keep_alive());
  EXPECT_TRUE(a2.keep_alive());
  EXPECT_TRUE(eventually([&] { return s.listener().num_connections() == 4; }));
}

TEST(Listener, PerAddressCountIsReleasedWhenAConnectionEnds) {
  auto o = listener_at("127.0.0.1:0");
  o.max_connections_per_address = 1;
  TestServer s(quiet_options(), o);
  s.start();
  auto first = std::make_unique<RawClient>(s.port());
  ASSERT_EQ(first->call(kKeepAlive, 2), kOkEmpty);
  {
    RawClient refused(s.port());
    refused.send(kKeepAlive);
    EXPECT_TRUE(refused.closed_within(3000ms));
  }
  first.reset();
  ASSERT_TRUE(eventually([&] { return s.listener().num_connections() == 0; }));
  RawClient again(s.port());
  EXPECT_EQ(again.call(kKeepAlive, 2), kOkEmpty);
}

TEST(Listener, ShutdownClosesIdleConnectionsAndRefusesNewOnes) {
  TestServer s(quiet_options(), listener_at("127.0.0.1:0"));
  s.start();
  const auto port = s.port();
  RawClient idle(port);
  ASSERT_EQ(idle.call(kKeepAlive, 2), kOkEmpty);
  s.listener().shutdown(5s);
  EXPECT_TRUE(idle.closed_within(2000ms));  // idle: Goodbye at once, not after the grace
  EXPECT_EQ(idle.unexpected_bytes(), bytes({0x02}));
  EXPECT_TRUE(eventually([&] { return connection_refused(port); }));
  EXPECT_TRUE(eventually([&] { return s.listener().num_connections() == 0; }));
  s.listener().wait();  // returns: shut down and nothing left
  EXPECT_EQ(s.server().num_clients(), 0U);
}

TEST(Listener, ShutdownLetsARunningTaskAnswerThenCloses) {
  TestServer s(quiet_options(), listener_at("127.0.0.1:0"));
  std::atomic<bool> running{false};
  s.server().register_task(1, [&](TaskContext&) -> asio::awaitable<Response> {
    running = true;
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(300ms);
    co_await timer.async_wait(asio::use_awaitable);
    co_return Response::copy_of(std::string_view("ok"));
  });
  s.start();
  RawClient c(s.port());
  c.send(request(1));
  ASSERT_TRUE(eventually([&] { return running.load(); }));
  s.listener().shutdown(5s);
  EXPECT_EQ(c.recv(5), bytes({0x00, 0x02, 'o', 'k', 0x00}));
  EXPECT_TRUE(c.closed_within(2000ms));
  EXPECT_EQ(c.unexpected_bytes(), bytes({0x02}));
  EXPECT_TRUE(connection_refused(s.port()));
}

}  // namespace
}  // namespace serialserver::test
