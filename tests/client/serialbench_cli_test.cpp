// serialbench, the real binary, against the real demo server and raw servers: its summaries
// (--json parsed with nlohmann-json, --csv, the text), how it counts answers, its pacing, its
// command-line conventions and exit statuses.

#include <serialserver/wire/block_encoder.hpp>
#include "program_run.hpp"
#include "raw_server.hpp"
#include "support/loopback.hpp"

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace serialclient::test {
namespace {

using namespace std::chrono_literals;
using serialserver::test::bin_dir;
using serialserver::test::ChildProcess;
using serialserver::test::free_port;
using serialserver::test::wait_for_port;

/// The real demo server on a free TCP port, or on a Unix socket path.
class Demo {
 public:
  Demo() : port_(free_port()), address_("127.0.0.1:" + std::to_string(port_)) {
    start();
    ready_ = wait_for_port(port_);
  }
  explicit Demo(const std::filesystem::path& socket) : address_(socket.string()) {
    start();
    ready_ = serialserver::test::eventually([&] { return std::filesystem::exists(socket); }, 10s);
  }
  ~Demo() {
    process_->signal(SIGTERM);
    process_->wait_exit(10s);
  }
  Demo(const Demo&) = delete;
  Demo& operator=(const Demo&) = delete;

  bool ready() const { return ready_; }
  const std::string& address() const { return address_; }

 private:
  void start() {
    process_ = std::make_unique<ChildProcess>(
        bin_dir() + "/serialserver-demo",
        std::vector<std::string>{"--listen", address_, "--log-level", "warn", "--threads", "1"});
  }

  std::uint16_t port_ = 0;
  std::string address_;
  std::unique_ptr<ChildProcess> process_;
  bool ready_ = false;
};

ProgramRun bench(const std::vector<std::string>& args, const ProgramSetup& setup = {}) {
  return run_program("serialbench", args, setup);
}

/// The JSON summary on stdout; a test failure (and null) if it is not exactly one JSON object.
nlohmann::json parse_json(const ProgramRun& r) {
  try {
    auto value = nlohmann::json::parse(r.out);
    EXPECT_TRUE(value.is_object()) << r.out;
    return value;
  } catch (const nlohmann::json::exception& e) {
    ADD_FAILURE() << "not JSON: " << e.what() << "\n" << r.out << r.err;
    return {};
  }
}

/// The --csv summary as field -> value; a test failure if a line is not "field,value".
std::map<std::string, std::string> parse_csv(const ProgramRun& r) {
  std::map<std::string, std::string> rows;
  std::istringstream in(r.out);
  std::string line;
  EXPECT_TRUE(std::getline(in, line));
  EXPECT_EQ(line, "field,value");
  while (std::getline(in, line)) {
    const auto comma = line.find(',');
    EXPECT_NE(comma, std::string::npos) << line;
    if (comma != std::string::npos) {
      rows[line.substr(0, comma)] = line.substr(comma + 1);
    }
  }
  return rows;
}

TEST(SerialbenchSummary, JsonIsValidForAnyAddress) {
  // A tab, a quote and a backslash in the socket's path: hand-escaped JSON broke on these.
  const auto path = scratch_path("bench\t\"q\\.sock");
  Demo demo(path);
  ASSERT_TRUE(demo.ready());
  const auto r =
      bench({path.string(), "-c", "2", "-P", "4", "-t", "1", "-s", "20", "-n", "300", "--json"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  const auto json = parse_json(r);
  ASSERT_TRUE(json.is_object());
  EXPECT_EQ(json["address"], path.string());
  EXPECT_EQ(json["requests"], 300);
  EXPECT_EQ(json["errors"], 0);
  EXPECT_EQ(json["connections_lost"], 0);
  EXPECT_GT(json["requests_per_second"].get<double>(), 0.0);
  EXPECT_GT(json["latency_us"]["p50"].get<double>(), 0.0);
  EXPECT_GE(json["latency_us"]["max"].get<double>(), json["latency_us"]["p99"].get<double>());
}

TEST(SerialbenchSummary, Csv) {
  Demo demo;
  ASSERT_TRUE(demo.ready());
  const auto r = bench({demo.address(), "-t", "1", "-s", "8", "-n", "200", "--csv"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  auto rows = parse_csv(r);
  EXPECT_EQ(rows["address"], demo.address());
  EXPECT_EQ(rows["requests"], "200");
  EXPECT_EQ(rows["errors"], "0");
  EXPECT_TRUE(rows.contains("latency_us.p99")) << r.out;
  // One summary format at a time.
  EXPECT_EQ(bench({demo.address(), "-n", "1", "--csv", "--json"}).status, 64);
}

}  // namespace
}  // namespace serialclient::test
