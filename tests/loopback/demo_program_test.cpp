// The real serialserver-demo binary, started as a child process: its six tasks byte for byte,
// its flags (--max-request-bytes, --wait-timeout, --grace, --listen on a Unix socket, invalid
// values), and its shutdown on SIGTERM.

#include "support/loopback.hpp"

#include <signal.h>

#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

using Clock = std::chrono::steady_clock;

class DemoProgram : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    log_path_ =
        std::filesystem::temp_directory_path() / ("serialserver-demo-" + std::string(info->name()) +
                                                  "-" + std::to_string(::getpid()) + ".log");
  }
  void TearDown() override {
    child_.reset();  // kills the child if it is still running
    std::filesystem::remove(log_path_);
  }

  /// Starts the demo on a free port of 127.0.0.1 with `args`, and waits until it listens.
  void start(std::vector<std::string> args = {}) {
    port_ = free_port();
    args.insert(args.begin(), {"--listen", "127.0.0.1:" + std::to_string(port_)});
    child_ = std::make_unique<ChildProcess>(demo_path(), args, log_path_.string());
    ASSERT_TRUE(wait_for_port(port_)) << log();
  }
  static std::string demo_path() { return bin_dir() + "/serialserver-demo"; }

  /// What the child wrote to stderr so far.
  std::string log() const {
    std::ifstream f(log_path_);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }

  std::filesystem::path log_path_;
  std::uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> child_;
};

TEST_F(DemoProgram, Task1EchoesTheRequest) {
  start();
  RawClient c(port_);
  EXPECT_EQ(c.call(bytes({0x01, 0x03, 'a', 'b', 'c', 0x00}), 6),
            bytes({0x00, 0x03, 'a', 'b', 'c', 0x00}));
  // A split request comes back in the project's block layout.
  EXPECT_EQ(c.call(bytes({0x01, 0x01, 'a', 0x02, 'b', 'c', 0x00}), 6),
            bytes({0x00, 0x03, 'a', 'b', 'c', 0x00}));
  EXPECT_EQ(c.call(bytes({0x01, 0x00}), 2), bytes({0x00, 0x00}));
  Bytes content(300);
  for (std::size_t i = 0; i < content.size(); ++i) {
    content[i] = static_cast<std::uint8_t>(255 - i % 256);
  }
  Bytes expected{0x00};
  const Bytes body = encode(content);
  expected.insert(expected.end(), body.begin(), body.end());
  EXPECT_EQ(c.call(request(1, content), expected.size()), expected);
}

TEST_F(DemoProgram, Task2AnswersEmpty) {
  start();
  RawClient c(port_);
  EXPECT_EQ(c.call(bytes({0x02, 0x00}), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(c.call(bytes({0x02, 0x02, 0xAA, 0xBB, 0x00}), 2), bytes({0x00, 0x00}));
}

TEST_F(DemoProgram, Task3AnswersErrorWithTheFirstByte) {
  start();
  RawClient c(port_);
  EXPECT_EQ(c.call(bytes({0x03, 0x01, 0x07, 0x00}), 2), bytes({0x01, 0x07}));
  EXPECT_EQ(c.call(bytes({0x03, 0x02, 0xC8, 0x09, 0x00}), 2), bytes({0x01, 0xC8}));
  EXPECT_EQ(c.call(bytes({0x03, 0x00}), 2), bytes({0x01, 0x00}));
}

TEST_F(DemoProgram, Task4ProducesNBytes) {
  start();
  RawClient c(port_);
  Bytes expected{0x00, 0xFF};
  for (int i = 0; i < 255; ++i) {
    expected.push_back(static_cast<std::uint8_t>(i));
  }
  expected.push_back(0x2D);
  for (int i = 255; i < 300; ++i) {
    expected.push_back(static_cast<std::uint8_t>(i % 256));
  }
  expected.push_back(0x00);
  EXPECT_EQ(c.call(request(4, big_endian<std::uint64_t>(300)), expected.size()), expected);
  EXPECT_EQ(c.call(request(4, big_endian<std::uint64_t>(0)), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(c.call(request(4, big_endian<std::uint64_t>(3)), 6),
            bytes({0x00, 0x03, 0x00, 0x01, 0x02, 0x00}));
  // A request shorter than a u64: Error 1.
  EXPECT_EQ(c.call(request(4, bytes({0x01, 0x02, 0x03})), 2), bytes({0x01, 0x01}));
}

TEST_F(DemoProgram, Task5SleepsThenAnswersEmpty) {
  start();
  RawClient c(port_);
  const auto begin = Clock::now();
  EXPECT_EQ(c.call(request(5, big_endian<std::uint32_t>(200)), 2), bytes({0x00, 0x00}));
  EXPECT_GE(Clock::now() - begin, 190ms);
  EXPECT_EQ(c.call(request(5, big_endian<std::uint32_t>(0)), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(c.call(request(5, bytes({0x01})), 2), bytes({0x01, 0x01}));
}

TEST_F(DemoProgram, Task6CountsTheRequestBytes) {
  start();
  RawClient c(port_);
  EXPECT_EQ(c.call(request(6), 11), bytes({0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0x00}));
  EXPECT_EQ(c.call(request(6, Bytes(1000, 0x5A)), 11),
            bytes({0x00, 0x08, 0, 0, 0, 0, 0, 0, 0x03, 0xE8, 0x00}));
  EXPECT_EQ(c.call(request(6, Bytes(70000, 0x01)), 11),
            bytes({0x00, 0x08, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70, 0x00}));
}

TEST_F(DemoProgram, ReservedAndUnknownCodes) {
  start();
  RawClient c(port_);
  EXPECT_EQ(c.call(bytes({0x09, 0x00}), 2), bytes({0x01, 0xFF}));
  EXPECT_EQ(c.call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
  EXPECT_EQ(c.call(bytes({0xFF, 0x00}), 1), bytes({0x02}));
  EXPECT_TRUE(c.closed_within(2000ms));
}

TEST_F(DemoProgram, MaxRequestBytesAnswers01FE) {
  start({"--max-request-bytes", "10"});
  RawClient c(port_);
  EXPECT_EQ(c.call(request(1, Bytes(11, 0x41)), 2), bytes({0x01, 0xFE}));
  // The connection stays usable, and a request at the limit passes.
  Bytes at_limit{0x00, 0x0A};
  at_limit.insert(at_limit.end(), 10, 0x41);
  at_limit.push_back(0x00);
  EXPECT_EQ(c.call(request(1, Bytes(10, 0x41)), at_limit.size()), at_limit);
  EXPECT_EQ(c.call(request(6, Bytes(5000, 0x41)), 2), bytes({0x01, 0xFE}));
  EXPECT_EQ(c.call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
}

TEST_F(DemoProgram, WaitTimeoutClosesIdleConnections) {
  start({"--wait-timeout", "300ms"});
  RawClient c(port_);
  const auto begin = Clock::now();
  EXPECT_TRUE(c.closed_within(3000ms));
  const auto elapsed = Clock::now() - begin;
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 2s);
  EXPECT_TRUE(c.unexpected_bytes().empty());

  // Keep-alives re-arm the timeout.
  RawClient k(port_);
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(150ms);  // the behaviour under test is the passing of time
    ASSERT_EQ(k.call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00})) << "keep-alive " << i;
  }
  EXPECT_TRUE(k.closed_within(3000ms));
}

TEST_F(DemoProgram, SigtermWithAnIdleConnectionExitsZeroPromptly) {
  start();
  RawClient c(port_);
  ASSERT_EQ(c.call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
  const auto begin = Clock::now();
  child_->signal(SIGTERM);
  EXPECT_TRUE(c.closed_within(2000ms));
  EXPECT_EQ(c.unexpected_bytes(), bytes({0x02})) << "no unprompted Goodbye";
  const auto status = child_->wait_exit(3000ms);
  ASSERT_TRUE(status.has_value()) << "still running 3 s after SIGTERM";
  EXPECT_EQ(*status, 0) << log();
  EXPECT_LT(Clock::now() - begin, 2s);  // the 5 s default grace is not waited out
}

TEST_F(DemoProgram, SigtermDuringASleepWithinTheGraceLetsTheResponseThrough) {
  start({"--grace", "2s"});
  RawClient c(port_);
  ASSERT_EQ(c.call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
  const auto sent = Clock::now();
  c.send(request(5, big_endian<std::uint32_t>(500)));
  // There is nothing to observe from outside while the task sleeps; a short pause makes sure
  // the task code has been read before the signal.
  std::this_thread::sleep_for(100ms);
  const auto signalled = Clock::now();
  child_->signal(SIGTERM);
  EXPECT_EQ(c.recv(2, 3000ms), bytes({0x00, 0x00}));
  EXPECT_GE(Clock::now() - sent, 450ms);  // the sleep was not cut short
  EXPECT_TRUE(c.closed_within(2000ms));
  EXPECT_EQ(c.unexpected_bytes(), bytes({0x02})) << "no Goodbye after the response";
  const auto status = child_->wait_exit(3000ms);
  ASSERT_TRUE(status.has_value()) << "still running after grace + 1 s";
  EXPECT_EQ(*status, 0) << log();
  EXPECT_LT(Clock::now() - signalled, 3s);  // grace (2 s) + 1 s
}

TEST_F(DemoProgram, SigtermPastTheGraceClosesWithoutResponse) {
  start({"--grace", "200ms"});
  RawClient c(port_);
  ASSERT_EQ(c.call(bytes({0xFA, 0x00}), 2), bytes({0x00, 0x00}));
  c.send(request(5, big_endian<std::uint32_t>(5000)));
  std::this_thread::sleep_for(100ms);  // as above: let the task start
  const auto signalled = Clock::now();
  child_->signal(SIGTERM);
  EXPECT_TRUE(c.closed_within(2000ms));
  EXPECT_TRUE(c.unexpected_bytes().empty()) << "a response arrived after the grace";
  const auto status = child_->wait_exit(2000ms);
  ASSERT_TRUE(status.has_value()) << "still running 2 s after SIGTERM";
  EXPECT_EQ(*status, 0) << log();
  const auto elapsed = Clock::now() - signalled;
  EXPECT_GE(elapsed, 150ms);
  EXPECT_LT(elapsed, 1200ms);
}

TEST_F(DemoProgram, InvalidWaitTimeoutExitsNonZeroWithAMessage) {
  child_ = std::make_unique<ChildProcess>(
      demo_path(), std::vector<std::string>{"--wait-timeout", "xyz"}, log_path_.string());
  const auto status = child_->wait_exit(5000ms);
  ASSERT_TRUE(status.has_value());
  EXPECT_NE(*status, 0);
  EXPECT_NE(log().find("xyz"), std::string::npos) << log();
  EXPECT_NE(log().find("wait-timeout"), std::string::npos) << log();
}

TEST_F(DemoProgram, OtherInvalidFlagsExitNonZero) {
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"--grace", "5"},
                                             {"--read-timeout", "1x"},
                                             {"--log-level", "loud"},
                                             {"--max-request-bytes", "many"},
                                             {"--no-such-flag"},
                                             {"--listen", "127.0.0.1:notaport"}}) {
    ChildProcess child(demo_path(), args, log_path_.string());
    const auto status = child.wait_exit(5000ms);
    ASSERT_TRUE(status.has_value()) << args[0] << " did not exit";
    EXPECT_NE(*status, 0) << args[0];
    EXPECT_FALSE(log().empty()) << args[0] << ": no message";
  }
}

TEST_F(DemoProgram, MaxConcurrentTasksAnswersBusyOverTheLimit) {
  start({"--max-concurrent-tasks", "1"});
  RawClient running(port_);
  running.send(request(5, big_endian<std::uint32_t>(600)));
  std::this_thread::sleep_for(100ms);  // so that the first sleep has started
  RawClient other(port_);
  // Until the first sleep has started, the second may still be the one that runs.
  ASSERT_TRUE(eventually([&] {
    return other.call(request(5, big_endian<std::uint32_t>(10)), 2) == bytes({0x01, 0xFD});
  })) << log();
  EXPECT_EQ(running.recv(2, 3000ms), bytes({0x00, 0x00}));
  EXPECT_EQ(other.call(request(5, big_endian<std::uint32_t>(10)), 2), bytes({0x00, 0x00}));
}

TEST_F(DemoProgram, TaskTimeoutAnswersDeadlineExceeded) {
  start({"--task-timeout", "100ms"});
  RawClient c(port_);
  const auto sent = Clock::now();
  EXPECT_EQ(c.call(request(5, big_endian<std::uint32_t>(1000)), 2), bytes({0x01, 0xFC}));
  EXPECT_LT(Clock::now() - sent, 100ms + kTimingSlack);
  EXPECT_EQ(c.call(request(2), 2), bytes({0x00, 0x00}));
}

TEST_F(DemoProgram, TaskTimeoutDropsAStreamedResponsePastItsBudget) {
  start({"--task-timeout", "100ms"});
  RawClient c(port_);
  c.send(request(4, big_endian<std::uint64_t>(std::uint64_t{1} << 40)));  // 1 TiB: never ends
  ASSERT_EQ(c.recv(1), bytes({0x00})) << "the OK did not start";
  // Not read for a while: the producer waits on the full socket until the budget ends.
  std::this_thread::sleep_for(300ms);
  // What the socket buffers hold arrives, then the end: read in large pieces.
  const auto deadline = Clock::now() + 5s;
  std::size_t received = 0;
  while (!c.peer_closed() && Clock::now() < deadline) {
    received += c.recv(std::size_t{1} << 20, 1000ms).size();
  }
  EXPECT_TRUE(c.peer_closed()) << "the stream went on past its budget: " << received << " bytes";
}

TEST_F(DemoProgram, NoDescribeAnswersDescribeAsAnUnknownCode) {
  start({"--no-describe"});
  RawClient c(port_);
  EXPECT_EQ(c.call(bytes({0xFB, 0x00}), 2), bytes({0x01, 0xFF}));
}

TEST_F(DemoProgram, BadLimitFlagsAreUsageErrors) {
  for (const auto& args : std::vector<std::vector<std::string>>{{"--task-timeout", "soon"},
                                                                {"--max-concurrent-tasks", "-1"}}) {
    ChildProcess child(demo_path(), args, log_path_.string());
    const auto status = child.wait_exit(5000ms);
    ASSERT_TRUE(status.has_value()) << args[0] << " did not exit";
    EXPECT_EQ(*status, 64) << args[0] << ": " << log();
  }
}

TEST_F(DemoProgram, ListensOnAUnixSocket) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("serialserver-demo-" + std::to_string(::getpid()) + ".sock");
  std::filesystem::remove(path);
  child_ = std::make_unique<ChildProcess>(
      demo_path(), std::vector<std::string>{"--listen", path.string()}, log_path_.string());
  ASSERT_TRUE(eventually([&] { return std::filesystem::is_socket(path); }, 10000ms)) << log();
  {
    std::unique_ptr<RawClient> c;
    ASSERT_TRUE(eventually(
        [&] {
          try {
            c = std::make_unique<RawClient>(path.string());
            return true;
          } catch (const std::exception&) {
            return false;
          }
        },
        5000ms));
    EXPECT_EQ(c->call(bytes({0x01, 0x02, 'h', 'i', 0x00}), 5), bytes({0x00, 0x02, 'h', 'i', 0x00}));
    EXPECT_EQ(c->call(request(6, Bytes(300, 1)), 11),
              bytes({0x00, 0x08, 0, 0, 0, 0, 0, 0, 0x01, 0x2C, 0x00}));
  }
  child_->signal(SIGTERM);
  const auto status = child_->wait_exit(3000ms);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 0) << log();
  EXPECT_FALSE(std::filesystem::exists(path)) << "the socket file was left behind";
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace serialserver::test
