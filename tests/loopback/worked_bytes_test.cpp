// docs/protocol.md section 8, byte for byte, over real sockets: TCP on 127.0.0.1 and ::1, and a
// Unix socket.

#include "demo_tasks.hpp"
#include "support/loopback.hpp"

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

enum class Transport { tcp4, tcp6, unix_socket };

class WorkedBytes : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    auto listener_options = TestServer::default_listener_options();
    if (GetParam() == Transport::tcp6) {
      listener_options.address = "[::1]:0";
    } else if (GetParam() == Transport::unix_socket) {
      socket_path_ = std::filesystem::temp_directory_path() /
                     ("serialserver-worked-" + std::to_string(::getpid()) + ".sock");
      listener_options.address = socket_path_.string();
    }
    server_ = std::make_unique<TestServer>(TestServer::quiet_options(), listener_options);
    demo::register_demo_tasks(server_->server());
    // Task 7 answers "hi" after checking that its content is 01 02 03 04.
    server_->server().register_task(7, [](TaskContext& ctx) -> asio::awaitable<Response> {
      auto content = co_await ctx.request().async_read_all();
      if (content != bytes({1, 2, 3, 4})) {
        throw TaskError(3);
      }
      co_return Response::copy_of(std::string_view("hi"));
    });
    server_->start();
  }
  std::unique_ptr<RawClient> connect() {
    switch (GetParam()) {
      case Transport::tcp4:
        return std::make_unique<RawClient>("127.0.0.1", server_->port());
      case Transport::tcp6:
        return std::make_unique<RawClient>("::1", server_->port());
      case Transport::unix_socket:
        return std::make_unique<RawClient>(socket_path_.string());
    }
    return nullptr;
  }

  std::filesystem::path socket_path_;
  std::unique_ptr<TestServer> server_;
};

TEST_P(WorkedBytes, TaskWithContentGetsOkHi) {
  auto c = connect();
  EXPECT_EQ(c->call(bytes({0x07, 0x04, 0x01, 0x02, 0x03, 0x04, 0x00}), 5),
            bytes({0x00, 0x02, 0x68, 0x69, 0x00}));
}

TEST_P(WorkedBytes, SplitBlocksCarryTheSameContent) {
  auto c = connect();
  EXPECT_EQ(c->call(bytes({0x07, 0x03, 0x01, 0x02, 0x03, 0x01, 0x04, 0x00}), 5),
            bytes({0x00, 0x02, 0x68, 0x69, 0x00}));
}

TEST_P(WorkedBytes, OkWithNoContent) {
  auto c = connect();
  EXPECT_EQ(c->call(bytes({0x02, 0x00}), 2), bytes({0x00, 0x00}));
}

TEST_P(WorkedBytes, ErrorCode3) {
  auto c = connect();
  EXPECT_EQ(c->call(bytes({0x03, 0x01, 0x03, 0x00}), 2), bytes({0x01, 0x03}));
}

TEST_P(WorkedBytes, UnknownTask9) {
  auto c = connect();
  EXPECT_EQ(c->call(bytes({0x09, 0x00}), 2), bytes({0x01, 0xFF}));
}

TEST_P(WorkedBytes, DescribeListsTheRegisteredTasks) {
  // The listing (docs/protocol.md section 4) made from the server's own registry.
  Bytes listing{0x01};
  for (const TaskCode code : server_->server().registered_task_codes()) {
    const std::string name = server_->server().task(code)->name;
    listing.push_back(code);
    listing.push_back(static_cast<std::uint8_t>(name.size()));
    listing.insert(listing.end(), name.begin(), name.end());
  }
  ASSERT_GT(listing.size(), 1U);
  ASSERT_LT(listing.size(), 256U);  // one block
  Bytes expected{0x00, static_cast<std::uint8_t>(listing.size())};
  expected.insert(expected.end(), listing.begin(), listing.end());
  expected.push_back(0x00);
  auto c = connect();
  EXPECT_EQ(c->call(bytes({0xFB, 0x00}), expected.size()), expected);
  // Content is read and thrown away, also when it takes many reads (64 KiB of it).
  EXPECT_EQ(c->call(request(0xFB, Bytes(std::size_t{64} * 1024, 0x5A)), expected.size()), expected);
  // The connection stays open.
  EXPECT_EQ(c->call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
}

TEST_P(WorkedBytes, UnassignedReservedCodesAreUnknownTasks) {
  auto c = connect();
  for (int code = 252; code <= 254; ++code) {
    EXPECT_EQ(c->call(bytes({code, 0x00}), 2), bytes({0x01, 0xFF})) << "code " << code;
  }
}

TEST_P(WorkedBytes, KeepAlive) {
  auto c = connect();
  EXPECT_EQ(c->call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
}

TEST_P(WorkedBytes, GoodbyeThenClose) {
  auto c = connect();
  EXPECT_EQ(c->call(bytes({0xFF, 0x00}), 1), bytes({0x02}));
  EXPECT_TRUE(c->closed_within(2000ms));
  EXPECT_TRUE(c->unexpected_bytes().empty());
}

TEST_P(WorkedBytes, ThreeHundredBytesOfContent) {
  auto c = connect();
  Bytes content(300);
  for (std::size_t i = 0; i < content.size(); ++i) {
    content[i] = static_cast<std::uint8_t>(i * 7);
  }
  Bytes req{0x01, 0xFF};
  req.insert(req.end(), content.begin(), content.begin() + 255);
  req.push_back(0x2D);
  req.insert(req.end(), content.begin() + 255, content.end());
  req.push_back(0x00);
  Bytes expected{0x00, 0xFF};
  expected.insert(expected.end(), content.begin(), content.begin() + 255);
  expected.push_back(0x2D);
  expected.insert(expected.end(), content.begin() + 255, content.end());
  expected.push_back(0x00);
  EXPECT_EQ(c->call(req, expected.size()), expected);
}

INSTANTIATE_TEST_SUITE_P(Transports, WorkedBytes,
                         ::testing::Values(Transport::tcp4, Transport::tcp6,
                                           Transport::unix_socket),
                         [](const auto& param_info) {
                           switch (param_info.param) {
                             case Transport::tcp4:
                               return std::string("tcp4");
                             case Transport::tcp6:
                               return std::string("tcp6");
                             case Transport::unix_socket:
                               return std::string("unix");
                           }
                           return std::string("unknown");
                         });

}  // namespace
}  // namespace serialserver::test
