// A server going away says Goodbye to an idle connection unprompted (docs/protocol.md
// section 7): the client must find it before sending the next call on that connection. Raw
// servers on 127.0.0.1 play the server's part byte by byte.

#include "raw_server.hpp"

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <serialclient/serialclient.hpp>

namespace serialclient::test {
namespace {

using namespace std::chrono_literals;

Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }

/// The OK answer carrying `s` (one block: s is short).
std::vector<std::uint8_t> ok_answer(std::string_view s) {
  std::vector<std::uint8_t> out{0x00, static_cast<std::uint8_t>(s.size())};
  for (const char c : s) {  // (insert() of the range trips g++ 12's -Wstringop-overread)
    out.push_back(static_cast<std::uint8_t>(c));
  }
  out.push_back(0x00);
  return out;
}

/// Reads until the peer closes; returns how many bytes came.
std::size_t bytes_until_close(int fd) {
  std::size_t total = 0;
  std::uint8_t buf[256];
  ssize_t n = 0;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) {
    total += static_cast<std::size_t>(n);
  }
  return total;
}

/// Waits (bounded) until `flag` is set.
bool wait_for(const std::atomic<bool>& flag) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!flag.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  return flag.load();
}

/// A server whose first connection answers one call, then goes away as section 7 says (an
/// unprompted Goodbye, the end of its stream, reading on until the client closes), or, with
/// `say_goodbye` false, just closes. Later connections answer every call with "again".
struct DepartingServer {
  explicit DepartingServer(bool say_goodbye)
      : raw([this, say_goodbye](int fd) {
          if (connection_index++ != 0) {
            while (auto request = RawServer::read_request(fd)) {
              RawServer::send_all(fd, ok_answer("again"));
            }
            return;
          }
          if (!RawServer::read_request(fd)) {
            return;
          }
          RawServer::send_all(fd, ok_answer("first"));
          // Wait for the call to be over on the client's side, so that what follows arrives on
          // an idle connection.
          wait_for(answered);
          if (say_goodbye) {
            RawServer::send_all(fd, {0x02});
          }
          ::shutdown(fd, SHUT_WR);
          left = true;
          bytes_after_leaving = bytes_until_close(fd);
          closed_by_client = true;
        }) {}

  std::atomic<int> connection_index{0};
  std::atomic<bool> answered{false};
  std::atomic<bool> left{false};
  std::atomic<std::size_t> bytes_after_leaving{0};
  std::atomic<bool> closed_by_client{false};
  RawServer raw;  // last: its threads use the fields above
};

TEST(IdleGoodbye, PoolRetiresTheConnectionAndCallsOnANewOne) {
  DepartingServer server(true);
  PoolOptions options;
  options.retry.enabled = false;  // retirement is not a retry: it happens with retries off
  Pool pool(server.raw.address(), options);
  std::error_code ec;
  Result r = pool.call(1, text("one"), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.response, text("first"));
  server.answered = true;
  ASSERT_TRUE(wait_for(server.left));

  r = pool.call(1, text("two"), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.response, text("again"));
  EXPECT_EQ(server.raw.accepted(), 2);
  EXPECT_EQ(pool.size(), 1U);  // the departed connection is gone, the new one idle
  ASSERT_TRUE(wait_for(server.closed_by_client));
  EXPECT_EQ(server.bytes_after_leaving.load(), 0U) << "a call was sent after the Goodbye";
}

TEST(IdleGoodbye, PoolRetiresAConnectionTheServerClosedWithoutGoodbye) {
  DepartingServer server(false);
  PoolOptions options;
  options.retry.enabled = false;
  Pool pool(server.raw.address(), options);
  std::error_code ec;
  pool.call(1, text("one"), ec);
  ASSERT_FALSE(ec) << ec.message();
  server.answered = true;
  ASSERT_TRUE(wait_for(server.left));

  const Result r = pool.call(1, text("two"), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.response, text("again"));
  EXPECT_EQ(server.raw.accepted(), 2);
  ASSERT_TRUE(wait_for(server.closed_by_client));
  EXPECT_EQ(server.bytes_after_leaving.load(), 0U);
}

TEST(IdleGoodbye, ClientAnswersTheNextCallGoodbyeWithoutSendingIt) {
  DepartingServer server(true);
  Client client;
  std::error_code ec;
  client.connect(server.raw.address(), ec);
  ASSERT_FALSE(ec) << ec.message();
  Result r = client.call(1, text("one"), ec);
  ASSERT_FALSE(ec) << ec.message();
  server.answered = true;
  ASSERT_TRUE(wait_for(server.left));

  r = client.call(1, text("two"), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(r.is_goodbye());
  EXPECT_FALSE(client.is_open());
  client.call(1, text("three"), ec);
  EXPECT_EQ(ec, Errc::connection_closed);
  ASSERT_TRUE(wait_for(server.closed_by_client));
  EXPECT_EQ(server.bytes_after_leaving.load(), 0U);
  EXPECT_EQ(server.raw.accepted(), 1);
}

TEST(IdleGoodbye, StreamingCallIsAnsweredGoodbyeWithoutRunningTheProducer) {
  DepartingServer server(true);
  Client client;
  std::error_code ec;
  client.connect(server.raw.address(), ec);
  ASSERT_FALSE(ec) << ec.message();
  client.call(1, text("one"), ec);
  ASSERT_FALSE(ec) << ec.message();
  server.answered = true;
  ASSERT_TRUE(wait_for(server.left));

  bool produced = false;
  const Result r = client.call(
      1, [&](BlockingRequestWriter&) { produced = true; }, {}, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(r.is_goodbye());
  EXPECT_FALSE(produced);
  EXPECT_FALSE(client.is_open());
}

}  // namespace
}  // namespace serialclient::test
