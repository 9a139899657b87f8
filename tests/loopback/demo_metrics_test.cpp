// The real serialserver-demo binary with --metrics: a scrape over HTTP after known traffic, and
// --log-format json / --log-level debug giving one JSON line per connection and per task.

#include "support/loopback.hpp"

#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

class DemoMetrics : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    log_path_ = std::filesystem::temp_directory_path() /
                ("serialserver-demo-metrics-" + std::string(info->name()) + "-" +
                 std::to_string(::getpid()) + ".log");
  }
  void TearDown() override {
    child_.reset();  // kills the child if it is still running
    std::filesystem::remove(log_path_);
  }

  void start(std::vector<std::string> args) {
    port_ = free_port();
    metrics_port_ = free_port();
    args.insert(args.begin(), {"--listen", "127.0.0.1:" + std::to_string(port_), "--metrics",
                               "127.0.0.1:" + std::to_string(metrics_port_)});
    child_ =
        std::make_unique<ChildProcess>(bin_dir() + "/serialserver-demo", args, log_path_.string());
    ASSERT_TRUE(wait_for_port(port_)) << log();
    ASSERT_TRUE(wait_for_port(metrics_port_)) << log();
  }

  std::string log() const {
    std::ifstream f(log_path_);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  std::vector<std::string> log_lines() const {
    std::vector<std::string> lines;
    std::istringstream in(log());
    for (std::string line; std::getline(in, line);) {
      lines.push_back(line);
    }
    return lines;
  }

  /// GET /metrics over a plain socket; the samples of the body ("name{labels}" -> value).
  std::map<std::string, std::string> scrape() {
    RawClient c(metrics_port_);
    const std::string request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    c.send(Bytes(request.begin(), request.end()));
    const Bytes raw = c.recv(1 << 20, 5000ms);
    const std::string text(raw.begin(), raw.end());
    EXPECT_TRUE(text.starts_with("HTTP/1.1 200 OK\r\n")) << text.substr(0, 200);
    std::map<std::string, std::string> samples;
    const auto body_at = text.find("\r\n\r\n");
    if (body_at == std::string::npos) {
      return samples;
    }
    std::istringstream in(text.substr(body_at + 4));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line[0] != '#') {
        samples[line.substr(0, line.rfind(' '))] = line.substr(line.rfind(' ') + 1);
      }
    }
    return samples;
  }

  std::filesystem::path log_path_;
  std::uint16_t port_ = 0;
  std::uint16_t metrics_port_ = 0;
  std::unique_ptr<ChildProcess> child_;
};

TEST_F(DemoMetrics, ScrapeAfterKnownTraffic) {
  start({"--wait-timeout", "300ms"});
  {
    RawClient c(port_);
    for (int i = 0; i < 4; ++i) {  // task 1 echo, 3 content bytes
      ASSERT_EQ(c.call(bytes({0x01, 0x03, 'a', 'b', 'c', 0x00}), 6),
                bytes({0x00, 0x03, 'a', 'b', 'c', 0x00}));
    }
    for (int i = 0; i < 2; ++i) {  // task 3 error, 1 content byte
      ASSERT_EQ(c.call(bytes({0x03, 0x01, 0x07, 0x00}), 2), bytes({0x01, 0x07}));
    }
    // Then idle: the Wait timeout closes the connection.
    EXPECT_TRUE(c.closed_within(300ms + kTimingSlack + 5000ms));
  }
  std::map<std::string, std::string> s;
  ASSERT_TRUE(eventually([&] {
    s = scrape();
    // Two connections: wait_for_port's, closed at once, and the one above.
    return s["serialserver_connections_open"] == "0" && s["serialserver_connections_total"] == "2";
  })) << log();
  EXPECT_EQ(s[R"(serialserver_tasks_total{code="1",name="echo",outcome="ok"})"], "4");
  EXPECT_EQ(s[R"(serialserver_tasks_total{code="3",name="error",outcome="error"})"], "2");
  EXPECT_EQ(s[R"(serialserver_request_bytes_total{code="1",name="echo"})"], "12");
  EXPECT_EQ(s[R"(serialserver_response_bytes_total{code="1",name="echo"})"], "12");
  EXPECT_EQ(s[R"(serialserver_request_bytes_total{code="3",name="error"})"], "2");
  EXPECT_EQ(s[R"(serialserver_task_duration_seconds_count{code="1",name="echo"})"], "4");
  EXPECT_EQ(s[R"(serialserver_connections_closed_total{reason="timeout_waiting_for_task"})"], "1");
  EXPECT_EQ(s[R"(serialserver_connections_closed_total{reason="peer_closed"})"], "1");
  EXPECT_EQ(s[R"(serialserver_timeouts_total{kind="wait"})"], "1");
  EXPECT_NE(log().find("metrics on http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics"),
            std::string::npos)
      << log();

  child_->signal(SIGTERM);
  EXPECT_EQ(child_->wait_exit(10000ms), 0) << log();
}

TEST_F(DemoMetrics, JsonLogLinesAtDebugLevel) {
  start({"--log-format", "json", "--log-level", "debug"});
  {
    RawClient c(port_);
    ASSERT_EQ(c.call(bytes({0x01, 0x03, 'a', 'b', 'c', 0x00}), 6),
              bytes({0x00, 0x03, 'a', 'b', 'c', 0x00}))
        << log();
  }
  const std::string closed_line =
      R"("tasks":1,"bytes_in":3,"bytes_out":3,"reason":"peer_closed","detail":)";
  ASSERT_TRUE(eventually([&] { return log().find(closed_line) != std::string::npos; })) << log();
  int opened = 0;
  int tasks = 0;
  int closed = 0;
  int closed_after_task = 0;
  for (const auto& line : log_lines()) {
    EXPECT_TRUE(line.starts_with("{\"ts\":\"") && line.ends_with("}")) << line;
    if (line.find("\"msg\":\"connection opened\"") != std::string::npos) {
      ++opened;
      EXPECT_NE(line.find("\"level\":\"info\""), std::string::npos) << line;
    }
    if (line.find("\"msg\":\"task\"") != std::string::npos) {
      ++tasks;
      EXPECT_NE(line.find("\"level\":\"debug\""), std::string::npos) << line;
      EXPECT_NE(line.find(R"("code":1,"name":"echo","outcome":"ok","duration_us":)"),
                std::string::npos)
          << line;
      EXPECT_NE(line.find(R"("bytes_in":3,"bytes_out":3})"), std::string::npos) << line;
    }
    if (line.find("\"msg\":\"connection closed\"") != std::string::npos) {
      ++closed;
      closed_after_task += line.find(closed_line) != std::string::npos ? 1 : 0;
    }
  }
  // wait_for_port's connection opens and closes too, with no task.
  EXPECT_EQ(opened, 2) << log();
  EXPECT_EQ(tasks, 1) << log();
  EXPECT_EQ(closed, 2) << log();
  EXPECT_EQ(closed_after_task, 1) << log();
}

TEST_F(DemoMetrics, BadFlagsAreUsageErrors) {
  ChildProcess bad_format(bin_dir() + "/serialserver-demo", {"--log-format", "xml"},
                          log_path_.string());
  EXPECT_EQ(bad_format.wait_exit(10000ms), 64) << log();
  ChildProcess bad_address(bin_dir() + "/serialserver-demo",
                           {"--listen", "127.0.0.1:0", "--metrics", "nowhere"}, log_path_.string());
  EXPECT_EQ(bad_address.wait_exit(10000ms), 1) << log();
}

}  // namespace
}  // namespace serialserver::test
