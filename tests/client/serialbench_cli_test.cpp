// serialbench, the real binary, against the real demo server and raw servers: its summaries
// (--json parsed with nlohmann-json, --csv, the text), how it counts answers, its pacing, its
// command-line conventions and exit statuses.

#include <serialserver/wire/block_encoder.hpp>
#include "raw_server.hpp"
#include "support/loopback.hpp"
#include "support/program_run.hpp"

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
using serialserver::test::ProgramRun;
using serialserver::test::ProgramSetup;
using serialserver::test::run_program;
using serialserver::test::scratch_path;
using serialserver::test::wait_for_port;

/// The real demo server on a free TCP port, or on a Unix socket path.
class Demo {
 public:
  /// `extra` are more command-line arguments of the demo server.
  explicit Demo(std::vector<std::string> extra = {})
      : port_(free_port()),
        address_("127.0.0.1:" + std::to_string(port_)),
        extra_(std::move(extra)) {
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
    std::vector<std::string> args{"--listen", address_, "--log-level", "warn", "--threads", "1"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    process_ = std::make_unique<ChildProcess>(bin_dir() + "/serialserver-demo", args);
  }

  std::uint16_t port_ = 0;
  std::string address_;
  std::vector<std::string> extra_;
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

TEST(SerialbenchAnswers, AnErrorWhereOkWasExpectedIsAnError) {
  Demo demo;
  ASSERT_TRUE(demo.ready());
  // Task 9 is not registered: every answer is Error 255, and an OK was expected.
  auto r = bench({demo.address(), "-t", "9", "-n", "100", "--json"});
  EXPECT_EQ(r.status, 1) << r.err << r.out;
  auto json = parse_json(r);
  ASSERT_TRUE(json.is_object());
  EXPECT_EQ(json["requests"], 100);
  EXPECT_EQ(json["errors"], 100);
  EXPECT_EQ(json["answers"]["ok"], 0);
  EXPECT_EQ(json["answers"]["error"], 100);
  EXPECT_EQ(json["answers"]["error_by_code"]["255"], 100);
  EXPECT_EQ(json["error_reasons"]["error_by_code"]["255"], 100);
  r = bench({demo.address(), "-t", "9", "-n", "100"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("errors        100 (error 255 (unknown task): 100)"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("Error 100 (code 255: 100)"), std::string::npos) << r.out;
  // Task 3 answers Error with its content's first byte (none here: 0); an echo was expected.
  r = bench({demo.address(), "-t", "3", "-x", "echo", "-n", "100"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("(error 0: 100)"), std::string::npos) << r.out;
  // Accepted when asked for.
  r = bench({demo.address(), "-t", "9", "-n", "50", "-x", "error", "--json"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  json = parse_json(r);
  EXPECT_EQ(json["errors"], 0);
  EXPECT_EQ(json["answers"]["error_by_code"]["255"], 50);
}

TEST(SerialbenchAnswers, GoodbyeIsCountedApart) {
  RawServer says_goodbye([](int fd) {
    if (RawServer::read_request(fd)) {
      RawServer::send_all(fd, {0x02});
    }
  });
  const auto r = bench({says_goodbye.address(), "-c", "2", "-n", "10", "--json"});
  EXPECT_EQ(r.status, 1) << r.err << r.out;
  const auto json = parse_json(r);
  ASSERT_TRUE(json.is_object());
  EXPECT_EQ(json["answers"]["goodbye"], 2);
  EXPECT_EQ(json["error_reasons"]["goodbye"], 2);
  EXPECT_EQ(json["connections_lost"], 0);
  EXPECT_EQ(json["errors"], 2);
}

TEST(SerialbenchSummary, MinMeanAndHistogram) {
  Demo demo;
  ASSERT_TRUE(demo.ready());
  auto r = bench({demo.address(), "-c", "2", "-t", "1", "-s", "16", "-n", "500", "--json"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  const auto json = parse_json(r);
  ASSERT_TRUE(json.is_object());
  const auto& latency = json["latency_us"];
  EXPECT_GT(latency["min"].get<double>(), 0.0);
  EXPECT_LE(latency["min"].get<double>(), latency["mean"].get<double>());
  EXPECT_LE(latency["mean"].get<double>(), latency["max"].get<double>());
  EXPECT_LE(latency["min"].get<double>(), latency["p50"].get<double>());
  const auto& histogram = json["histogram"];
  ASSERT_EQ(histogram.size(), 11U) << histogram;
  std::uint64_t total = 0;
  double last_mark = 0;
  for (const auto& bar : histogram) {
    total += bar["count"].get<std::uint64_t>();
    EXPECT_GE(bar["mark_us"].get<double>(), last_mark);
    last_mark = bar["mark_us"].get<double>();
  }
  EXPECT_EQ(total, 500U);
  EXPECT_GE(histogram[0]["count"].get<std::uint64_t>(), 1U);  // the fastest
  // The first mark is the fastest (rounded to 0.1 us in latency_us, to 0.001 us here).
  EXPECT_NEAR(histogram[0]["mark_us"].get<double>(), latency["min"].get<double>(), 0.051);
  // The text: min and mean beside the percentiles, and the histogram.
  r = bench({demo.address(), "-t", "1", "-s", "16", "-n", "200"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("latency (us)  min "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  mean "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("latency histogram (us):"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("answers       OK 200  Error 0  Goodbye 0"), std::string::npos) << r.out;
  // And in --csv.
  r = bench({demo.address(), "-n", "100", "--csv"});
  auto rows = parse_csv(r);
  EXPECT_TRUE(rows.contains("latency_us.min")) << r.out;
  EXPECT_TRUE(rows.contains("histogram.10.count")) << r.out;
  EXPECT_EQ(rows["answers.ok"], "100");
}

TEST(SerialbenchPacing, RpsHoldsTheRate) {
  Demo demo;
  ASSERT_TRUE(demo.ready());
  // 200 requests a second over 2 connections for 1 s: about 200, where the closed loop makes
  // thousands.
  const auto r = bench({demo.address(), "-c", "2", "--rps", "200", "-d", "1s", "--json"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  const auto json = parse_json(r);
  ASSERT_TRUE(json.is_object());
  const auto requests = json["requests"].get<std::uint64_t>();
  EXPECT_GE(requests, 150U) << r.out;
  EXPECT_LE(requests, 230U) << r.out;
  EXPECT_EQ(json["rps_target"], 200.0);
  // An exact count at a paced rate: 40 requests at 400/s take about 0.1 s, not less.
  const auto counted = bench({demo.address(), "-c", "2", "--rps", "400", "-n", "40", "--json"});
  EXPECT_EQ(counted.status, 0) << counted.err << counted.out;
  const auto counted_json = parse_json(counted);
  EXPECT_EQ(counted_json["requests"], 40);
  EXPECT_GE(counted_json["seconds"].get<double>(), 0.09) << counted.out;
}

TEST(SerialbenchRun, CtrlCPrintsTheSummaryOfWhatRan) {
  Demo demo;
  ASSERT_TRUE(demo.ready());
  ProgramSetup setup;
  setup.signal_after = 1500ms;
  setup.signal = SIGINT;
  setup.timeout = 20s;
  const auto started = std::chrono::steady_clock::now();
  const auto r = bench({demo.address(), "-d", "60s", "--json"}, setup);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 15s);
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  const auto json = parse_json(r);
  ASSERT_TRUE(json.is_object());
  EXPECT_EQ(json["interrupted"], true);
  EXPECT_GT(json["requests"].get<std::uint64_t>(), 0U);
  EXPECT_LT(json["seconds"].get<double>(), 30.0);
}

TEST(SerialbenchUsage, DefaultsAndWarmupWithRequests) {
  const auto help = bench({"--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("default: 10s"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("--warmup TEXT=0s"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("--rps"), std::string::npos) << help.out;
  // A warm-up belongs to a timed run: refused with --requests, before connecting.
  const auto r = bench({"127.0.0.1:1", "-n", "10", "-w", "1s"});
  EXPECT_EQ(r.status, 64);
  EXPECT_NE(r.err.find("serialbench: --warmup"), std::string::npos) << r.err;
}

TEST(SerialbenchRetry, BusyAnswersAreRetriedOnlyWithRetry) {
  // One task at a time; a task over it is answered Error 253 (busy) without running.
  Demo demo(std::vector<std::string>{"--max-concurrent-tasks", "1"});
  ASSERT_TRUE(demo.ready());
  // Task 5 sleeps for its request's 4 bytes read as milliseconds. serialbench stamps the
  // connection number there (times 256): connection 1's tasks hold the one slot 256 ms each,
  // and connection 0's calls, which sleep 0 ms, run into them.
  for (const char* engine : {"auto", "epoll"}) {
    SCOPED_TRACE(engine);
    const std::vector<std::string> load{demo.address(), "-t", "5",    "-s",     "4",
                                        "-x",           "ok", "-c",   "2",      "-n",
                                        "12",           "-e", engine, "--json", "-q"};
    const auto plain = bench(load);
    EXPECT_EQ(plain.status, 1) << plain.err;
    const auto without = parse_json(plain);
    EXPECT_GT(without.value("errors", 0), 0) << plain.out;
    EXPECT_GT(without["answers"]["error_by_code"].value("253", 0), 0) << plain.out;
    EXPECT_EQ(without.value("retries", -1), 0) << plain.out;

    auto retrying_args = load;
    retrying_args.emplace_back("--retry");
    const auto retrying = bench(retrying_args);
    EXPECT_EQ(retrying.status, 0) << retrying.out << retrying.err;
    const auto with = parse_json(retrying);
    EXPECT_EQ(with.value("errors", -1), 0) << retrying.out;
    EXPECT_GT(with.value("retries", 0), 0) << retrying.out;
    EXPECT_EQ(with.value("requests", 0), 12) << retrying.out;
    EXPECT_EQ(with["answers"].value("ok", 0), 12) << retrying.out;
    EXPECT_EQ(with["answers"].value("error", -1), 0) << retrying.out;
  }
  // The text summary says it too.
  const auto text = bench(
      {demo.address(), "-t", "5", "-s", "4", "-x", "ok", "-c", "2", "-n", "6", "-q", "--retry"});
  EXPECT_EQ(text.status, 0) << text.out << text.err;
  EXPECT_NE(text.out.find("  retries       "), std::string::npos) << text.out;
}

TEST(SerialbenchRetry, RetryIsNotForPacedRuns) {
  const auto r = bench({"127.0.0.1:1", "-n", "10", "--rps", "100", "--retry"});
  EXPECT_EQ(r.status, 64);
  EXPECT_NE(r.err.find("serialbench: "), std::string::npos) << r.err;
}

}  // namespace
}  // namespace serialclient::test
