// Graceful shutdown under load, against the real serialserver-demo binary: SIGTERM while 1,000
// tasks run. Every task that started gets its response, every other client sees Goodbye or a
// close before its task code was read, nothing is answered twice, and the process exits within
// the grace period plus one second. A second test has half the tasks outlast the grace period.

#include "support/hostile.hpp"

#include <signal.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

using Clock = std::chrono::steady_clock;

/// Established server-side TCP sockets of 127.0.0.1:port, and how many of them still hold
/// unread bytes, from /proc/net/tcp: a socket whose receive queue is empty has had its request
/// read by the server.
struct ServerSockets {
  int established = 0;
  int with_unread_bytes = 0;
};

ServerSockets server_sockets(std::uint16_t port) {
  ServerSockets out;
  std::ifstream f("/proc/net/tcp");
  std::string line;
  std::getline(f, line);  // the header
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string slot, local, remote, state, queues;
    in >> slot >> local >> remote >> state >> queues;
    const auto colon = local.find(':');
    if (colon == std::string::npos || state != "01") {
      continue;
    }
    if (std::stoul(local.substr(colon + 1), nullptr, 16) != port) {
      continue;
    }
    ++out.established;
    const auto q = queues.find(':');
    if (q != std::string::npos && std::stoul(queues.substr(q + 1), nullptr, 16) != 0) {
      ++out.with_unread_bytes;
    }
  }
  return out;
}

class ShutdownUnderLoad : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    log_path_ = std::filesystem::temp_directory_path() /
                ("serialserver-shutdown-" + std::string(info->name()) + "-" +
                 std::to_string(::getpid()) + ".log");
  }
  void TearDown() override {
    peers_.clear();
    child_.reset();  // kills the child if it is still running
    std::filesystem::remove(log_path_);
  }

  /// Starts the demo on a free port with `grace`, at debug level (every task's outcome is
  /// logged), and waits until it listens.
  void start(const std::string& grace) {
    port_ = free_port();
    child_ = std::make_unique<ChildProcess>(
        bin_dir() + "/serialserver-demo",
        std::vector<std::string>{"--listen", "127.0.0.1:" + std::to_string(port_), "--grace", grace,
                                 "--log-level", "debug", "--threads", "2"},
        log_path_.string());
    ASSERT_TRUE(wait_for_port(port_)) << log();
    // wait_for_port's own probing connections end before the counting starts.
    ASSERT_TRUE(eventually([&] { return server_sockets(port_).established == 0; }, 10000ms));
    // And wait_for_port's connection has been logged, opened and closed.
    ASSERT_TRUE(eventually([&] { return log_count("msg=\"connection closed\"") == 1; }, 10000ms))
        << log();
    opened_before_ = log_count("msg=\"connection opened\"");
  }
  std::string log() const {
    std::ifstream f(log_path_);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  std::size_t log_count(std::string_view needle) const {
    const std::string text = log();
    std::size_t n = 0;
    for (auto pos = text.find(needle); pos != std::string::npos;
         pos = text.find(needle, pos + needle.size())) {
      ++n;
    }
    return n;
  }
  RawPeer& connect() {
    peers_.push_back(std::make_unique<RawPeer>(port_));
    return *peers_.back();
  }
  /// Waits until the server has accepted `connections` and read every request sent so far.
  void wait_until_every_request_was_read(int connections) {
    ASSERT_TRUE(eventually(
        [&] {
          const auto s = server_sockets(port_);
          return s.established == connections && s.with_unread_bytes == 0;
        },
        60000ms))
        << "established " << server_sockets(port_).established << " of " << connections
        << ", with unread bytes " << server_sockets(port_).with_unread_bytes;
    ASSERT_TRUE(eventually(
        [&] {
          return log_count("msg=\"connection opened\"") ==
                 opened_before_ + static_cast<std::size_t>(connections);
        },
        30000ms))
        << log_count("msg=\"connection opened\"") << " connections opened, " << opened_before_
        << " before";
  }
  /// Reads every peer until the server closes it, or the deadline passes.
  void read_all_until_closed(Clock::time_point deadline) {
    for (;;) {
      std::vector<pollfd> fds;
      std::vector<RawPeer*> open;
      for (auto& p : peers_) {
        if (!p->closed()) {
          fds.push_back(pollfd{p->fd(), POLLIN, 0});
          open.push_back(p.get());
        }
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (open.empty() || left <= 0) {
        return;
      }
      if (::poll(fds.data(), fds.size(), static_cast<int>(std::min<std::int64_t>(left, 100))) <=
          0) {
        continue;
      }
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (fds[i].revents != 0) {
          open[i]->poll_once();
        }
      }
    }
  }

  std::filesystem::path log_path_;
  std::uint16_t port_ = 0;
  std::size_t opened_before_ = 0;
  std::unique_ptr<ChildProcess> child_;
  std::vector<std::unique_ptr<RawPeer>> peers_;
};

TEST_F(ShutdownUnderLoad, SigtermWhileAThousandTasksRunAnswersEveryStartedTaskOnce) {
  constexpr int kTasks = 1000;     // each sleeps 2 to 3 s, within the grace period
  constexpr int kPipelined = 100;  // of those, with a second request queued behind the first
  constexpr int kIdle = 50;        // connected, silent
  constexpr int kLate = 50;        // connected, silent, then send a task after the SIGTERM
  constexpr auto kShortestTask = 2000ms;
  constexpr auto kGrace = 4s;
  RaisedFileLimit limit;
  if (limit.current() < 2 * (kTasks + kIdle + kLate) + 256) {
    GTEST_SKIP() << "RLIMIT_NOFILE is " << limit.current();
  }
  ASSERT_NO_FATAL_FAILURE(start("4s"));
  // Everyone connects first, so that the tasks start close together.
  for (int i = 0; i < kTasks + kIdle + kLate; ++i) {
    connect();
  }
  ASSERT_NO_FATAL_FAILURE(wait_until_every_request_was_read(kTasks + kIdle + kLate));
  const auto first_sent = Clock::now();
  for (int i = 0; i < kTasks; ++i) {
    Bytes r = request(5, big_endian<std::uint32_t>(
                             static_cast<std::uint32_t>(kShortestTask.count() + (i * 7) % 1000)));
    if (i < kPipelined) {
      const Bytes second = request(5, big_endian<std::uint32_t>(1));
      r.insert(r.end(), second.begin(), second.end());
    }
    ASSERT_TRUE(peers_[i]->send(r)) << "client " << i;
  }
  // All 1,000 tasks run (their requests were read) when the signal comes.
  ASSERT_NO_FATAL_FAILURE(wait_until_every_request_was_read(kTasks + kIdle + kLate));
  const auto signalled = Clock::now();
  ASSERT_LT(signalled - first_sent, kShortestTask)
      << "the first tasks may have ended before the signal: the test proves nothing";
  child_->signal(SIGTERM);
  for (int i = kTasks + kIdle; i < kTasks + kIdle + kLate; ++i) {
    (void)peers_[i]->send(request(1, bytes({'l', 'a', 't', 'e'})));
  }
  const auto status = child_->wait_exit(kGrace + 1s + 5s);
  const auto exited_after = elapsed_since(signalled);
  read_all_until_closed(Clock::now() + 5s);

  ASSERT_TRUE(status.has_value()) << "still running " << exited_after.count()
                                  << " ms after SIGTERM";
  EXPECT_EQ(*status, 0) << log();
  EXPECT_LE(exited_after, kGrace + 1s) << "the exit took longer than the grace period plus 1 s";
  const Bytes late_answer = ok_response(bytes({'l', 'a', 't', 'e'}));
  int goodbyes = 0;
  int late_answers = 0;
  for (int i = 0; i < static_cast<int>(peers_.size()); ++i) {
    const RawPeer& p = *peers_[i];
    EXPECT_TRUE(p.closed()) << "client " << i << " was not closed";
    if (i < kPipelined) {  // the running task's response, then Goodbye for the queued one
      EXPECT_EQ(p.received(), bytes({0x00, 0x00, 0x02})) << "client " << i;
    } else if (i < kTasks) {  // the response, then the unprompted Goodbye
      EXPECT_EQ(p.received(), bytes({0x00, 0x00, 0x02})) << "client " << i;
    } else if (i < kTasks + kIdle) {
      EXPECT_EQ(p.received(), bytes({0x02})) << "idle client " << i;
    } else {
      // Late: sent just after the signal, so the task may still have started before the server
      // acted on it (then it is answered, and Goodbye follows); else Goodbye, which answers the
      // task code if the server read it, or was sent unprompted if it did not.
      Bytes answered = late_answer;
      answered.push_back(0x02);
      EXPECT_TRUE(p.received() == bytes({0x02}) || p.received() == answered)
          << "late client " << i << ": " << ::testing::PrintToString(p.received());
      goodbyes += p.received() == bytes({0x02}) ? 1 : 0;
      late_answers += p.received() == answered ? 1 : 0;
    }
  }
  // The server's side agrees: every task ran to its response, none was cut off, and the
  // Goodbyes that answered a task code are the queued ones and those of the late task codes it
  // read (the others were sent unprompted, and are not task outcomes).
  EXPECT_EQ(log_count("name=sleep outcome=ok "), static_cast<std::size_t>(kTasks));
  EXPECT_EQ(log_count("name=echo outcome=ok "), static_cast<std::size_t>(late_answers));
  EXPECT_EQ(log_count(" outcome=dropped "), 0U);
  EXPECT_GE(log_count(" outcome=goodbye "), static_cast<std::size_t>(kPipelined));
  EXPECT_LE(log_count(" outcome=goodbye "), static_cast<std::size_t>(kPipelined + goodbyes));
  std::cout << "[          ] SIGTERM " << elapsed_since(first_sent).count() - exited_after.count()
            << " ms after the first task was sent; exit " << exited_after.count()
            << " ms after SIGTERM; of " << kLate << " late clients " << late_answers
            << " were answered, " << goodbyes << " got Goodbye, the others a close" << std::endl;
}

TEST_F(ShutdownUnderLoad, SigtermWithTasksOutlastingTheGraceCancelsThemAtTheGrace) {
  constexpr int kTasks = 1000;  // the even ones sleep 0.2 to 0.7 s, the odd ones 20 s
  constexpr auto kGrace = 1s;
  RaisedFileLimit limit;
  if (limit.current() < 2 * kTasks + 256) {
    GTEST_SKIP() << "RLIMIT_NOFILE is " << limit.current();
  }
  ASSERT_NO_FATAL_FAILURE(start("1s"));
  for (int i = 0; i < kTasks; ++i) {
    connect();
  }
  ASSERT_NO_FATAL_FAILURE(wait_until_every_request_was_read(kTasks));
  for (int i = 0; i < kTasks; ++i) {
    const std::uint32_t ms = i % 2 == 0 ? 200 + (i * 7) % 500 : 20000;
    ASSERT_TRUE(peers_[i]->send(request(5, big_endian<std::uint32_t>(ms)))) << "client " << i;
  }
  ASSERT_NO_FATAL_FAILURE(wait_until_every_request_was_read(kTasks));
  const auto signalled = Clock::now();
  child_->signal(SIGTERM);
  const auto status = child_->wait_exit(kGrace + 1s + 5s);
  const auto exited_after = elapsed_since(signalled);
  read_all_until_closed(Clock::now() + 5s);

  ASSERT_TRUE(status.has_value()) << "still running " << exited_after.count()
                                  << " ms after SIGTERM";
  EXPECT_EQ(*status, 0) << log();
  EXPECT_GE(exited_after, kGrace) << "the long tasks were not given the grace period";
  EXPECT_LE(exited_after, kGrace + 1s) << "the exit took longer than the grace period plus 1 s";
  for (int i = 0; i < kTasks; ++i) {
    const RawPeer& p = *peers_[i];
    EXPECT_TRUE(p.closed()) << "client " << i << " was not closed";
    if (i % 2 == 0) {  // the response, then the unprompted Goodbye
      EXPECT_EQ(p.received(), bytes({0x00, 0x00, 0x02})) << "client " << i;
    } else {
      EXPECT_TRUE(p.received().empty())
          << "client " << i
          << " got bytes past the grace: " << ::testing::PrintToString(p.received());
    }
  }
  EXPECT_EQ(log_count("name=sleep outcome=ok "), static_cast<std::size_t>(kTasks / 2));
  EXPECT_EQ(log_count("name=sleep outcome=dropped "), static_cast<std::size_t>(kTasks / 2));
}

}  // namespace
}  // namespace serialserver::test
