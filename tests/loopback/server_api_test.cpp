// The Server and Client API over real sockets: session data and byte order from a handshake,
// clients() and num_clients(), the client's addresses and to_string(), metadata() and
// task_codes(), loggers and metrics (per client and inherited), the Metrics records, close(),
// disconnect(), wait() and wait_for().

#include "support/loopback.hpp"

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

/// The session data of the handshake below.
struct User {
  std::string name;
  ByteOrder order = ByteOrder::big_endian;
};

/// A small handshake: the client sends 'B' or 'L' (the byte order), a length byte and a user
/// name; the server answers 'K'. Anything else is rejected.
asio::awaitable<HandshakeResult> user_handshake(HandshakeStream& stream) {
  std::array<std::uint8_t, 2> head{};
  co_await stream.async_read_exact(head);
  if (head[0] != 'B' && head[0] != 'L') {
    throw std::runtime_error("unknown byte order");
  }
  std::string name(head[1], '\0');
  co_await stream.async_read_exact(
      std::span(reinterpret_cast<std::uint8_t*>(name.data()), name.size()));
  static constexpr std::array<std::uint8_t, 1> kAck{'K'};
  co_await stream.async_write(kAck);
  HandshakeResult result;
  result.byte_order = head[0] == 'L' ? ByteOrder::little_endian : ByteOrder::big_endian;
  result.session = SessionData(User{name, result.byte_order});
  co_return result;
}

/// The client's side of user_handshake.
void do_handshake(RawClient& c, char order, const std::string& name) {
  Bytes hello{static_cast<std::uint8_t>(order), static_cast<std::uint8_t>(name.size())};
  hello.insert(hello.end(), name.begin(), name.end());
  ASSERT_EQ(c.call(hello, 1), bytes({'K'}));
}

/// Records everything a Metrics implementation is told.
class RecordingMetrics final : public Metrics {
 public:
  struct Task {
    std::uint64_t client = 0;
    TaskRecord record;
    std::string name;  // a copy: record.name does not outlive the call
  };
  void connection_opened(const Client& client) noexcept override {
    std::lock_guard lock(mutex_);
    opened_.push_back(client.id());
    events_.push_back("open " + std::to_string(client.id()));
  }
  void connection_closed(const Client& client, std::error_code reason) noexcept override {
    std::lock_guard lock(mutex_);
    closed_[client.id()] = reason;
    events_.push_back("close " + std::to_string(client.id()));
  }
  void task_finished(const Client& client, const TaskRecord& record) noexcept override {
    std::lock_guard lock(mutex_);
    tasks_.push_back(Task{client.id(), record, std::string(record.name)});
    tasks_.back().record.name = {};
    events_.push_back("task " + std::to_string(client.id()));
  }
  std::vector<Task> tasks_of(std::uint64_t client) const {
    std::lock_guard lock(mutex_);
    std::vector<Task> out;
    for (const auto& t : tasks_) {
      if (t.client == client) {
        out.push_back(t);
      }
    }
    return out;
  }
  std::size_t task_count() const {
    std::lock_guard lock(mutex_);
    return tasks_.size();
  }
  std::optional<std::error_code> closed_reason(std::uint64_t client) const {
    std::lock_guard lock(mutex_);
    auto it = closed_.find(client);
    if (it == closed_.end()) {
      return std::nullopt;
    }
    return it->second;
  }
  std::size_t opened_count(std::uint64_t client) const {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(std::count(opened_.begin(), opened_.end(), client));
  }
  std::vector<std::string> events_of(std::uint64_t client) const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    const std::string suffix = " " + std::to_string(client);
    for (const auto& e : events_) {
      if (e.size() > suffix.size() && e.ends_with(suffix)) {
        out.push_back(e.substr(0, e.size() - suffix.size()));
      }
    }
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::uint64_t> opened_;
  std::map<std::uint64_t, std::error_code> closed_;
  std::vector<Task> tasks_;
  std::vector<std::string> events_;
};

/// The local TCP port of a connected RawClient (the server sees it as the remote port).
std::uint16_t local_port(const RawClient& c) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(c.fd(), reinterpret_cast<sockaddr*>(&addr), &len);
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
}

/// The server's handle of the connection whose remote address is `remote` (bounded wait).
std::shared_ptr<Client> find_client(Server& server, const std::string& remote) {
  std::shared_ptr<Client> found;
  eventually([&] {
    for (const auto& c : server.clients()) {
      if (c->remote_address() == remote) {
        found = c;
        return true;
      }
    }
    return false;
  });
  return found;
}
std::shared_ptr<Client> find_client(Server& server, const RawClient& c) {
  return find_client(server, "127.0.0.1:" + std::to_string(local_port(c)));
}

/// State shared with the "hold" task: it reads 600 bytes, says so, and waits for release.
struct Hold {
  std::atomic<bool> holding{false};
  std::atomic<bool> release{false};
};

constexpr TaskCode kWhoAmI = 10;
constexpr TaskCode kDouble = 11;
constexpr TaskCode kHold = 12;
constexpr TaskCode kLog = 13;
constexpr TaskCode kPause = 14;
constexpr TaskCode kEcho = 20;
constexpr TaskCode kFail = 21;
constexpr TaskCode kBoom = 22;

void register_tasks(Server& server, const std::shared_ptr<Hold>& hold) {
  // Answers the session's user name; Error 9 if a wrong type would be handed out.
  server.register_task(
      kWhoAmI,
      [](TaskContext& ctx) -> asio::awaitable<Response> {
        const SessionData& session = ctx.session();
        if (session.get_if<int>() != nullptr || session.get_if<std::string>() != nullptr) {
          throw TaskError(9, "a wrong type was handed out");
        }
        const User* user = session.get_if<User>();
        if (user == nullptr) {
          co_return Response::copy_of(std::string_view(session.has_value() ? "?" : "none"));
        }
        if (&session.get<User>() != user || user->order != ctx.byte_order()) {
          throw TaskError(8, "inconsistent session");
        }
        co_return Response::copy_of(std::string_view(user->name));
      },
      "whoami");
  // Decodes a u32 in the connection's byte order and answers it doubled, in the same order.
  server.register_task(
      kDouble,
      [](TaskContext& ctx) -> asio::awaitable<Response> {
        const auto content = co_await ctx.request().async_read_all();
        BinaryReader reader(content, ctx.byte_order());
        const std::uint32_t value = reader.read_u32();
        if (!reader.at_end()) {
          throw TaskError(2, "trailing bytes");
        }
        BinaryWriter writer(ctx.byte_order());
        writer.write_u32(value * 2);
        co_return Response(writer.take());
      },
      "double");
  server.register_task(
      kHold,
      [hold](TaskContext& ctx) -> asio::awaitable<Response> {
        std::array<std::uint8_t, 600> first{};
        co_await ctx.request().async_read_exact(first);
        hold->holding = true;
        asio::steady_timer timer(co_await asio::this_coro::executor);
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (!hold->release && std::chrono::steady_clock::now() < deadline) {
          timer.expires_after(2ms);
          co_await timer.async_wait(asio::use_awaitable);
        }
        hold->holding = false;
        co_return Response::copy_of(std::string_view("done"));
      },
      "hold");
  server.register_task(
      kLog,
      [](TaskContext& ctx) -> asio::awaitable<Response> {
        ctx.log().info("task-log-line from client {}", ctx.client().id());
        co_return Response();
      },
      "log");
  server.register_task(
      kEcho,
      [](TaskContext& ctx) -> asio::awaitable<Response> {
        co_return Response(co_await ctx.request().async_read_all());
      },
      "echo");
  // Answers empty after 200 ms.
  server.register_task(
      kPause,
      [](TaskContext&) -> asio::awaitable<Response> {
        asio::steady_timer timer(co_await asio::this_coro::executor, 200ms);
        co_await timer.async_wait(asio::use_awaitable);
        co_return Response();
      },
      "pause");
  server.register_task(
      kFail, [](TaskContext&) -> asio::awaitable<Response> { throw TaskError(7); }, "fail");
  server.register_task(
      kBoom, [](TaskContext&) -> asio::awaitable<Response> { throw std::runtime_error("boom"); },
      "boom");
}

class ServerApi : public ::testing::Test {
 protected:
  /// Starts a server (with the user handshake if asked) on `address`.
  void start(bool with_handshake, std::string address = "127.0.0.1:0",
             std::shared_ptr<Metrics> metrics = nullptr) {
    auto options = TestServer::quiet_options();
    options.metrics = std::move(metrics);
    auto listener_options = TestServer::default_listener_options();
    listener_options.address = std::move(address);
    if (with_handshake) {
      listener_options.handshake = user_handshake;
    }
    server_ = std::make_unique<TestServer>(std::move(options), std::move(listener_options));
    register_tasks(server_->server(), hold_);
    server_->start();
  }
  Server& server() { return server_->server(); }
  std::uint16_t port() const { return server_->port(); }

  void TearDown() override {
    hold_->release = true;
    server_.reset();
  }

  std::shared_ptr<Hold> hold_ = std::make_shared<Hold>();
  std::unique_ptr<TestServer> server_;
};

TEST_F(ServerApi, SessionDataReachesTasksTypeSafely) {
  start(true);
  RawClient alice(port());
  do_handshake(alice, 'B', "alice");
  RawClient bob(port());
  do_handshake(bob, 'L', "bob");
  EXPECT_EQ(alice.call(request(kWhoAmI), 8), bytes({0x00, 0x05, 'a', 'l', 'i', 'c', 'e', 0x00}));
  EXPECT_EQ(bob.call(request(kWhoAmI), 6), bytes({0x00, 0x03, 'b', 'o', 'b', 0x00}));
  // Each connection keeps its own session, task after task.
  EXPECT_EQ(alice.call(request(kWhoAmI), 8), bytes({0x00, 0x05, 'a', 'l', 'i', 'c', 'e', 0x00}));
}

TEST_F(ServerApi, NoHandshakeMeansNoSessionData) {
  start(false);
  RawClient c(port());
  EXPECT_EQ(c.call(request(kWhoAmI), 7), bytes({0x00, 0x04, 'n', 'o', 'n', 'e', 0x00}));
}

TEST_F(ServerApi, HandshakeThatIsRejectedNeverReachesATask) {
  start(true);
  RawClient bad(port());
  bad.send(bytes({'X', 0}));
  EXPECT_TRUE(bad.closed_within(3000ms));
  EXPECT_TRUE(bad.unexpected_bytes().empty());
  EXPECT_EQ(server().num_clients(), 0U);
}

TEST_F(ServerApi, ByteOrderFromHandshakeDecodesAndEncodesNumbers) {
  start(true);
  RawClient little(port());
  do_handshake(little, 'L', "l");
  RawClient big(port());
  do_handshake(big, 'B', "b");
  // Content 00 80 00 00: little-endian 0x00008000, doubled 0x00010000 = 00 00 01 00;
  // big-endian 0x00800000, doubled 0x01000000 = 01 00 00 00.
  const Bytes req = request(kDouble, bytes({0x00, 0x80, 0x00, 0x00}));
  EXPECT_EQ(little.call(req, 7), bytes({0x00, 0x04, 0x00, 0x00, 0x01, 0x00, 0x00}));
  EXPECT_EQ(big.call(req, 7), bytes({0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00}));
  // 0x01020304 doubled: 0x02040608; little-endian content 04 03 02 01, answer 08 06 04 02.
  EXPECT_EQ(little.call(request(kDouble, bytes({0x04, 0x03, 0x02, 0x01})), 7),
            bytes({0x00, 0x04, 0x08, 0x06, 0x04, 0x02, 0x00}));
  EXPECT_EQ(big.call(request(kDouble, bytes({0x01, 0x02, 0x03, 0x04})), 7),
            bytes({0x00, 0x04, 0x02, 0x04, 0x06, 0x08, 0x00}));
  auto little_client = find_client(server(), little);
  auto big_client = find_client(server(), big);
  ASSERT_NE(little_client, nullptr);
  ASSERT_NE(big_client, nullptr);
  EXPECT_EQ(little_client->byte_order(), ByteOrder::little_endian);
  EXPECT_EQ(big_client->byte_order(), ByteOrder::big_endian);
}

TEST_F(ServerApi, NoHandshakeMeansBigEndian) {
  start(false);
  RawClient c(port());
  EXPECT_EQ(c.call(request(kDouble, bytes({0x00, 0x80, 0x00, 0x00})), 7),
            bytes({0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00}));
  auto client = find_client(server(), c);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->byte_order(), ByteOrder::big_endian);
}

TEST_F(ServerApi, ClientsAreSortedByConnectTimeAndCounted) {
  start(false);
  EXPECT_EQ(server().num_clients(), 0U);
  std::vector<std::unique_ptr<RawClient>> raw;
  for (int i = 0; i < 4; ++i) {
    raw.push_back(std::make_unique<RawClient>(port()));
    // The keep-alive answer proves the server has taken this connection before the next one.
    ASSERT_EQ(raw.back()->call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
    ASSERT_TRUE(eventually([&] { return server().num_clients() == raw.size(); }));
  }
  auto expect_order = [&](const std::vector<std::size_t>& which) {
    const auto clients = server().clients();
    ASSERT_EQ(clients.size(), which.size());
    EXPECT_EQ(server().num_clients(), which.size());
    for (std::size_t i = 0; i < which.size(); ++i) {
      EXPECT_EQ(clients[i]->remote_address(),
                "127.0.0.1:" + std::to_string(local_port(*raw[which[i]])))
          << "position " << i;
      if (i > 0) {
        EXPECT_LE(clients[i - 1]->timestamp(), clients[i]->timestamp());
        EXPECT_LT(clients[i - 1]->id(), clients[i]->id());
      }
    }
  };
  expect_order({0, 1, 2, 3});
  raw[1]->close();
  ASSERT_TRUE(eventually([&] { return server().num_clients() == 3; }));
  expect_order({0, 2, 3});
  raw[0]->close();
  raw[3]->close();
  ASSERT_TRUE(eventually([&] { return server().num_clients() == 1; }));
  expect_order({2});
}

TEST_F(ServerApi, ClientAddressesAndToStringOverIPv4) {
  start(false);
  RawClient c(port());
  auto client = find_client(server(), c);
  ASSERT_NE(client, nullptr);
  const std::string remote = "127.0.0.1:" + std::to_string(local_port(c));
  const std::string local = "127.0.0.1:" + std::to_string(port());
  EXPECT_EQ(client->remote_address(), remote);
  EXPECT_EQ(client->local_address(), local);
  EXPECT_EQ(client->to_string(), remote + "->" + local);
  EXPECT_EQ(&client->server(), &server());
  EXPECT_FALSE(client->closed());
  c.close();
  EXPECT_TRUE(eventually([&] { return client->closed(); }));
  // The handle stays valid after the end.
  EXPECT_EQ(client->to_string(), remote + "->" + local);
}

TEST_F(ServerApi, ClientAddressesAndToStringOverIPv6) {
  start(false, "[::1]:0");
  RawClient c("::1", port());
  const std::string remote = "[::1]:" + std::to_string(local_port(c));
  auto client = find_client(server(), remote);
  ASSERT_NE(client, nullptr);
  const std::string local = "[::1]:" + std::to_string(port());
  EXPECT_EQ(client->local_address(), local);
  EXPECT_EQ(client->to_string(), remote + "->" + local);
}

TEST_F(ServerApi, ClientAddressesOverUnixSocket) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("serialserver-api-" + std::to_string(::getpid()) + ".sock");
  start(false, path.string());
  {
    RawClient c(path.string());
    ASSERT_TRUE(eventually([&] { return server().num_clients() == 1; }));
    auto client = server().clients().front();
    EXPECT_EQ(client->local_address(), path.string());
    EXPECT_FALSE(client->remote_address().empty());
    EXPECT_EQ(client->to_string(), client->remote_address() + "->" + path.string());
  }
  server_.reset();
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(ServerApi, MetadataDuringRunningTaskAndEmptyWhenIdle) {
  start(false);
  RawClient c(port());
  auto client = find_client(server(), c);
  ASSERT_NE(client, nullptr);
  EXPECT_FALSE(client->metadata().has_value());  // idle

  Bytes content(1000);
  for (std::size_t i = 0; i < content.size(); ++i) {
    content[i] = static_cast<std::uint8_t>(i);
  }
  const auto before = std::chrono::system_clock::now();
  c.send(request(kHold, content));
  ASSERT_TRUE(eventually([&] { return hold_->holding.load(); }));
  const auto after = std::chrono::system_clock::now();
  const auto m = client->metadata();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->code, kHold);
  EXPECT_EQ(m->name, "hold");
  EXPECT_GE(m->start, before);
  EXPECT_LE(m->start, after);
  EXPECT_EQ(m->bytes_read, 600U);  // what the task has read so far
  EXPECT_EQ(m->bytes_written, 0U);

  hold_->release = true;
  EXPECT_EQ(c.recv(7), bytes({0x00, 0x04, 'd', 'o', 'n', 'e', 0x00}));
  EXPECT_TRUE(eventually([&] { return !client->metadata().has_value(); }));
}

// TaskMetadata::start is when the task code arrived, not when its task began: a request sent
// behind a 200 ms task, in the same write, reports a start before that task could have ended.
TEST_F(ServerApi, MetadataStartIsWhenThePipelinedCodeArrived) {
  start(false);
  RawClient c(port());
  auto client = find_client(server(), c);
  ASSERT_NE(client, nullptr);
  Bytes both = request(kPause);
  const Bytes hold = request(kHold, Bytes(1000));
  both.insert(both.end(), hold.begin(), hold.end());
  const auto before = std::chrono::system_clock::now();
  c.send(both);
  EXPECT_EQ(c.recv(2), bytes({0x00, 0x00}));  // the pause
  const auto pause_ended = std::chrono::system_clock::now();
  ASSERT_GE(pause_ended - before, 200ms);
  ASSERT_TRUE(eventually([&] { return hold_->holding.load(); }));
  const auto m = client->metadata();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->code, kHold);
  EXPECT_GE(m->start, before);
  EXPECT_LT(m->start, before + 200ms);  // the hold task began after the pause's 200 ms
  hold_->release = true;
  EXPECT_EQ(c.recv(7), bytes({0x00, 0x04, 'd', 'o', 'n', 'e', 0x00}));
}

TEST_F(ServerApi, TaskCodesListsTheAssignedCodesInOrder) {
  start(false);
  RawClient c(port());
  auto client = find_client(server(), c);
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->task_codes().empty());
  EXPECT_EQ(c.call(request(kLog), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(c.call(request(kEcho, bytes({1})), 4), bytes({0x00, 0x01, 0x01, 0x00}));
  EXPECT_EQ(c.call(request(kFail), 2), bytes({0x01, 0x07}));
  EXPECT_EQ(c.call(request(kLog), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(client->task_codes(), (std::vector<TaskCode>{kLog, kEcho, kFail}));

  // Another connection has its own list.
  RawClient other(port());
  auto other_client = find_client(server(), other);
  ASSERT_NE(other_client, nullptr);
  EXPECT_EQ(other.call(request(kDouble, bytes({0, 0, 0, 1})), 7),
            bytes({0x00, 0x04, 0x00, 0x00, 0x00, 0x02, 0x00}));
  EXPECT_EQ(other_client->task_codes(), std::vector<TaskCode>{kDouble});
  EXPECT_EQ(client->task_codes(), (std::vector<TaskCode>{kLog, kEcho, kFail}));

  // Every code the client sent counts, as documented: the keep-alive and an unregistered code
  // too (Go's "all assigned task codes"), not only the application's registered ones.
  EXPECT_EQ(c.call(request(kKeepAliveTaskCode), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(c.call(request(200), 2), bytes({0x01, 0xFF}));
  EXPECT_EQ(client->task_codes(),
            (std::vector<TaskCode>{kLog, kEcho, kFail, 200, kKeepAliveTaskCode}));
}

TEST_F(ServerApi, ClientLoggerAndMetricsOverrideTheServerOnes) {
  auto server_metrics = std::make_shared<RecordingMetrics>();
  start(false, "127.0.0.1:0", server_metrics);
  auto* server_logger = server_->logger();
  ASSERT_NE(server_logger, nullptr);
  RawClient c1(port());
  RawClient c2(port());
  auto h1 = find_client(server(), c1);
  auto h2 = find_client(server(), c2);
  ASSERT_NE(h1, nullptr);
  ASSERT_NE(h2, nullptr);
  EXPECT_EQ(h1->log(), server().log());
  EXPECT_EQ(h1->metrics(), server_metrics);

  auto own_logger = std::make_shared<CapturingLogger>();
  auto own_metrics = std::make_shared<RecordingMetrics>();
  h1->set_logger(own_logger);
  h1->set_metrics(own_metrics);
  EXPECT_EQ(h1->log(), own_logger);
  EXPECT_EQ(h1->metrics(), own_metrics);
  EXPECT_EQ(h2->log(), server().log());
  EXPECT_EQ(h2->metrics(), server_metrics);

  EXPECT_EQ(c1.call(request(kLog), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(c2.call(request(kLog), 2), bytes({0x00, 0x00}));
  const std::string line1 = "task-log-line from client " + std::to_string(h1->id());
  const std::string line2 = "task-log-line from client " + std::to_string(h2->id());
  EXPECT_TRUE(eventually([&] { return own_logger->contains(line1); }));
  EXPECT_FALSE(server_logger->contains(line1));
  EXPECT_TRUE(server_logger->contains(line2));
  EXPECT_FALSE(own_logger->contains(line2));
  ASSERT_TRUE(eventually([&] { return own_metrics->tasks_of(h1->id()).size() == 1; }));
  EXPECT_EQ(own_metrics->tasks_of(h1->id())[0].record.code, kLog);
  EXPECT_TRUE(own_metrics->tasks_of(h2->id()).empty());
  ASSERT_TRUE(eventually([&] { return server_metrics->tasks_of(h2->id()).size() == 1; }));
  EXPECT_TRUE(server_metrics->tasks_of(h1->id()).empty());

  // The server's new logger and metrics reach the client that did not set its own.
  auto new_server_logger = std::make_shared<CapturingLogger>();
  auto new_server_metrics = std::make_shared<RecordingMetrics>();
  server().set_logger(new_server_logger);
  server().set_metrics(new_server_metrics);
  EXPECT_EQ(h2->log(), new_server_logger);
  EXPECT_EQ(h2->metrics(), new_server_metrics);
  EXPECT_EQ(h1->log(), own_logger);
  EXPECT_EQ(h1->metrics(), own_metrics);
  EXPECT_EQ(c2.call(request(kLog), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(c1.call(request(kLog), 2), bytes({0x00, 0x00}));
  EXPECT_TRUE(eventually([&] { return new_server_logger->contains(line2); }));
  EXPECT_FALSE(new_server_logger->contains(line1));
  EXPECT_TRUE(eventually([&] { return new_server_metrics->tasks_of(h2->id()).size() == 1; }));
  EXPECT_TRUE(new_server_metrics->tasks_of(h1->id()).empty());
  EXPECT_TRUE(eventually([&] { return own_metrics->tasks_of(h1->id()).size() == 2; }));
  EXPECT_EQ(server_metrics->tasks_of(h2->id()).size(), 1U);  // the old one hears no more
}

TEST_F(ServerApi, MetricsRecordConnectionsTasksOutcomesAndByteCounts) {
  auto metrics = std::make_shared<RecordingMetrics>();
  start(false, "127.0.0.1:0", metrics);

  // Connection 1: ok, error, unknown, keep-alive, then goodbye.
  RawClient c1(port());
  auto h1 = find_client(server(), c1);
  ASSERT_NE(h1, nullptr);
  EXPECT_EQ(c1.call(request(kEcho, bytes({1, 2, 3, 4, 5})), 8),
            bytes({0x00, 0x05, 1, 2, 3, 4, 5, 0x00}));
  EXPECT_EQ(c1.call(request(kFail, bytes({9, 9, 9})), 2), bytes({0x01, 0x07}));
  EXPECT_EQ(c1.call(request(99, bytes({1, 2})), 2), bytes({0x01, 0xFF}));
  EXPECT_EQ(c1.call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(c1.call(bytes({0xFF, 0x00}), 1), bytes({0x02}));
  EXPECT_TRUE(c1.closed_within(3000ms));
  ASSERT_TRUE(eventually([&] { return metrics->closed_reason(h1->id()).has_value(); }));
  EXPECT_EQ(*metrics->closed_reason(h1->id()), make_error_code(Errc::graceful_disconnect));
  EXPECT_EQ(metrics->opened_count(h1->id()), 1U);
  EXPECT_EQ(metrics->events_of(h1->id()),
            (std::vector<std::string>{"open", "task", "task", "task", "task", "task", "close"}));
  const auto t1 = metrics->tasks_of(h1->id());
  ASSERT_EQ(t1.size(), 5U);
  EXPECT_EQ(t1[0].record.code, kEcho);
  EXPECT_EQ(t1[0].name, "echo");
  EXPECT_EQ(t1[0].record.outcome, TaskOutcome::ok);
  EXPECT_EQ(t1[0].record.bytes_read, 5U);
  EXPECT_EQ(t1[0].record.bytes_written, 5U);
  EXPECT_EQ(t1[1].record.code, kFail);
  EXPECT_EQ(t1[1].name, "fail");
  EXPECT_EQ(t1[1].record.outcome, TaskOutcome::error);
  EXPECT_EQ(t1[1].record.error_code, 7);
  EXPECT_EQ(t1[1].record.bytes_read, 3U);  // drained by the server
  EXPECT_EQ(t1[1].record.bytes_written, 0U);
  EXPECT_EQ(t1[2].record.code, 99);
  EXPECT_EQ(t1[2].name, "");
  EXPECT_EQ(t1[2].record.outcome, TaskOutcome::error);
  EXPECT_EQ(t1[2].record.error_code, kUnknownTaskErrorCode);
  EXPECT_EQ(t1[2].record.bytes_read, 2U);
  EXPECT_EQ(t1[3].record.code, kKeepAliveTaskCode);
  EXPECT_EQ(t1[3].record.outcome, TaskOutcome::ok);
  EXPECT_EQ(t1[3].record.bytes_read, 0U);
  EXPECT_EQ(t1[3].record.bytes_written, 0U);
  EXPECT_EQ(t1[4].record.code, kGoodbyeTaskCode);
  EXPECT_EQ(t1[4].record.outcome, TaskOutcome::goodbye);
  for (const auto& t : t1) {
    EXPECT_GE(t.record.duration.count(), 0);
  }

  // Connection 2: a task that fails without a code drops the connection.
  RawClient c2(port());
  auto h2 = find_client(server(), c2);
  ASSERT_NE(h2, nullptr);
  c2.send(request(kBoom, bytes({1})));
  EXPECT_TRUE(c2.closed_within(3000ms));
  EXPECT_TRUE(c2.unexpected_bytes().empty());
  ASSERT_TRUE(eventually([&] { return metrics->closed_reason(h2->id()).has_value(); }));
  EXPECT_EQ(*metrics->closed_reason(h2->id()), make_error_code(Errc::task_failed));
  const auto t2 = metrics->tasks_of(h2->id());
  ASSERT_EQ(t2.size(), 1U);
  EXPECT_EQ(t2[0].record.code, kBoom);
  EXPECT_EQ(t2[0].name, "boom");
  EXPECT_EQ(t2[0].record.outcome, TaskOutcome::dropped);

  // Connection 3: the peer closes.
  auto c3 = std::make_unique<RawClient>(port());
  auto h3 = find_client(server(), *c3);
  ASSERT_NE(h3, nullptr);
  c3.reset();
  ASSERT_TRUE(eventually([&] { return metrics->closed_reason(h3->id()).has_value(); }));
  EXPECT_EQ(*metrics->closed_reason(h3->id()), make_error_code(Errc::peer_closed));
  EXPECT_TRUE(metrics->tasks_of(h3->id()).empty());
  EXPECT_EQ(metrics->opened_count(h3->id()), 1U);
}

TEST_F(ServerApi, ClientCloseEndsTheConnectionWithoutResponse) {
  auto metrics = std::make_shared<RecordingMetrics>();
  start(false, "127.0.0.1:0", metrics);
  RawClient c(port());
  auto h = find_client(server(), c);
  ASSERT_NE(h, nullptr);
  c.send(request(kHold, Bytes(700, 1)));
  ASSERT_TRUE(eventually([&] { return hold_->holding.load(); }));
  h->close();
  EXPECT_TRUE(c.closed_within(3000ms));
  EXPECT_TRUE(c.unexpected_bytes().empty());
  ASSERT_TRUE(eventually([&] { return metrics->closed_reason(h->id()).has_value(); }));
  EXPECT_EQ(*metrics->closed_reason(h->id()), make_error_code(Errc::closed_by_server));
  EXPECT_TRUE(h->closed());
  h->close();  // after the end: does nothing
  h->cancel();
  h->disconnect(0ms);
}

TEST_F(ServerApi, ServerDisconnectSaysGoodbyeToIdleConnectionsAtOnce) {
  start(false);
  RawClient a(port());
  RawClient b(port());
  ASSERT_TRUE(eventually([&] { return server().num_clients() == 2; }));
  server().disconnect(10s);
  EXPECT_TRUE(a.closed_within(2000ms));
  EXPECT_TRUE(b.closed_within(2000ms));
  EXPECT_EQ(a.unexpected_bytes(), bytes({0x02}));
  EXPECT_EQ(b.unexpected_bytes(), bytes({0x02}));
  EXPECT_TRUE(server().wait_for(2s));
}

TEST_F(ServerApi, WaitAndWaitForReturnOnceNoConnectionIsLeft) {
  start(false);
  EXPECT_TRUE(server().wait_for(0ms));
  auto c = std::make_unique<RawClient>(port());
  ASSERT_TRUE(eventually([&] { return server().num_clients() == 1; }));
  EXPECT_FALSE(server().wait_for(50ms));
  auto waiter = std::async(std::launch::async, [&] { server().wait(); });
  EXPECT_EQ(waiter.wait_for(100ms), std::future_status::timeout);
  c.reset();
  EXPECT_EQ(waiter.wait_for(5s), std::future_status::ready);
  if (waiter.wait_for(0ms) != std::future_status::ready) {
    server().disconnect(0ms);  // do not hang in the future's destructor
  }
  EXPECT_TRUE(server().wait_for(0ms));
  EXPECT_EQ(server().num_clients(), 0U);
}

}  // namespace
}  // namespace serialserver::test
