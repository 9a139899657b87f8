// PrometheusMetrics::render(): the text exposition format as prometheus-cpp's TextSerializer
// writes it (HELP and TYPE before each family's samples, names, labels and their escaping,
// cumulative histogram buckets with +Inf, _sum and _count), fed through the Metrics hooks with
// known records; and collectable(), the same families for prometheus-cpp consumers.

#include <serialserver/client.hpp>
#include <serialserver/error.hpp>
#include <serialserver/prometheus_metrics.hpp>
#include <serialserver/server.hpp>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace serialserver {
namespace {

using namespace std::chrono_literals;

/// A Client that is never connected: the hooks only need a reference to one.
class FakeClient final : public Client {
 public:
  explicit FakeClient(Server& server)
      : Client(server, ByteOrder::big_endian, "127.0.0.1:7070", "127.0.0.1:5000") {}

 private:
  void do_cancel() override {}
  void do_close() override {}
  void do_disconnect(std::chrono::nanoseconds /*grace*/) override {}
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  return lines;
}

/// Sample lines ("name{labels}" -> value text).
std::map<std::string, std::string> samples_of(const std::string& text) {
  std::map<std::string, std::string> samples;
  for (const auto& line : lines_of(text)) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    const auto space = line.rfind(' ');
    samples[line.substr(0, space)] = line.substr(space + 1);
  }
  return samples;
}

TaskRecord task(TaskCode code, std::string_view name, TaskOutcome outcome,
                std::chrono::nanoseconds duration, std::uint64_t in = 0, std::uint64_t out = 0) {
  TaskRecord r;
  r.code = code;
  r.name = name;
  r.outcome = outcome;
  r.duration = duration;
  r.bytes_read = in;
  r.bytes_written = out;
  return r;
}

class PrometheusFormat : public ::testing::Test {
 protected:
  PrometheusFormat() : server_(quiet()), client_(std::make_shared<FakeClient>(server_)) {}
  static ServerOptions quiet() {
    ServerOptions o;
    o.logger = make_null_logger();
    return o;
  }
  Server server_;
  std::shared_ptr<FakeClient> client_;
  PrometheusMetrics metrics_;
};

TEST_F(PrometheusFormat, EveryFamilyHasHelpAndTypeBeforeItsSamples) {
  metrics_.connection_opened(*client_);
  metrics_.task_finished(*client_, task(1, "echo", TaskOutcome::ok, 1ms));
  const auto lines = lines_of(metrics_.render());
  ASSERT_FALSE(lines.empty());
  std::string family;
  std::string type;
  std::set<std::string> families;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    ASSERT_FALSE(line.empty()) << "empty line " << i;
    if (line.starts_with("# HELP ")) {
      const std::string rest = line.substr(7);
      family = rest.substr(0, rest.find(' '));
      EXPECT_TRUE(family.starts_with("serialserver_")) << line;
      EXPECT_TRUE(families.insert(family).second) << "family twice: " << family;
      ASSERT_LT(i + 1, lines.size());
      ASSERT_TRUE(lines[i + 1].starts_with("# TYPE " + family + " ")) << lines[i + 1];
      type = lines[i + 1].substr(7 + family.size() + 1);
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << type;
      if (type == "counter") {
        EXPECT_TRUE(family.ends_with("_total")) << family;
      }
      ++i;
      continue;
    }
    ASSERT_NE(line[0], '#') << line;
    ASSERT_FALSE(family.empty()) << "sample before any HELP: " << line;
    const std::string name = line.substr(0, line.find_first_of("{ "));
    if (type == "histogram") {
      EXPECT_TRUE(name == family + "_bucket" || name == family + "_sum" ||
                  name == family + "_count")
          << line;
    } else {
      EXPECT_EQ(name, family) << line;
    }
    // The value parses as a number.
    const std::string value = line.substr(line.rfind(' ') + 1);
    std::size_t used = 0;
    (void)std::stod(value, &used);
    EXPECT_EQ(used, value.size()) << line;
  }
  const std::set<std::string> expected = {"serialserver_connections_open",
                                          "serialserver_connections_total",
                                          "serialserver_connections_closed_total",
                                          "serialserver_connections_dropped_total",
                                          "serialserver_connections_evicted_total",
                                          "serialserver_timeouts_total",
                                          "serialserver_tasks_total",
                                          "serialserver_request_bytes_total",
                                          "serialserver_response_bytes_total",
                                          "serialserver_task_duration_seconds"};
  EXPECT_EQ(families, expected);
}

TEST_F(PrometheusFormat, ConnectionsClosesDropsAndTimeouts) {
  auto a = std::make_shared<FakeClient>(server_);
  auto b = std::make_shared<FakeClient>(server_);
  metrics_.connection_opened(*client_);
  metrics_.connection_opened(*a);
  metrics_.connection_opened(*b);
  metrics_.connection_closed(*a, make_error_code(Errc::read_timeout));
  metrics_.connection_closed(*b, make_error_code(Errc::timeout_waiting_for_task));
  auto c = std::make_shared<FakeClient>(server_);
  metrics_.connection_opened(*c);
  metrics_.connection_closed(*c, std::make_error_code(std::errc::connection_reset));
  metrics_.connection_dropped("127.0.0.1:1", DropReason::max_connections);
  metrics_.connection_dropped("127.0.0.1:2", DropReason::handshake_timeout);
  metrics_.connection_dropped("127.0.0.1:3", DropReason::handshake_timeout);
  metrics_.connection_evicted(*client_);

  const auto s = samples_of(metrics_.render());
  EXPECT_EQ(s.at("serialserver_connections_evicted_total"), "1");
  EXPECT_EQ(s.at("serialserver_connections_open"), "1");
  EXPECT_EQ(s.at("serialserver_connections_total"), "4");
  EXPECT_EQ(s.at("serialserver_connections_closed_total{reason=\"read_timeout\"}"), "1");
  EXPECT_EQ(s.at("serialserver_connections_closed_total{reason=\"timeout_waiting_for_task\"}"),
            "1");
  EXPECT_EQ(s.at("serialserver_connections_closed_total{reason=\"other\"}"), "1");
  EXPECT_EQ(s.at("serialserver_connections_closed_total{reason=\"peer_closed\"}"), "0");
  EXPECT_EQ(s.at("serialserver_connections_dropped_total{reason=\"max_connections\"}"), "1");
  EXPECT_EQ(s.at("serialserver_connections_dropped_total{reason=\"handshake_timeout\"}"), "2");
  EXPECT_EQ(s.at("serialserver_connections_dropped_total{reason=\"handshake_failed\"}"), "0");
  EXPECT_EQ(s.at("serialserver_timeouts_total{kind=\"wait\"}"), "1");
  EXPECT_EQ(s.at("serialserver_timeouts_total{kind=\"read\"}"), "1");
  EXPECT_EQ(s.at("serialserver_timeouts_total{kind=\"write\"}"), "0");
  EXPECT_EQ(s.at("serialserver_timeouts_total{kind=\"handshake\"}"), "2");
}

TEST_F(PrometheusFormat, TasksByCodeAndOutcomeWithByteCounts) {
  metrics_.task_finished(*client_, task(1, "echo", TaskOutcome::ok, 1ms, 10, 10));
  metrics_.task_finished(*client_, task(1, "echo", TaskOutcome::ok, 1ms, 5, 5));
  metrics_.task_finished(*client_, task(1, "echo", TaskOutcome::dropped, 1ms, 3, 0));
  metrics_.task_finished(*client_, task(3, "fail", TaskOutcome::error, 1ms, 1, 0));
  metrics_.task_finished(*client_, task(kGoodbyeTaskCode, "", TaskOutcome::goodbye, 0ns));

  const std::string text = metrics_.render();
  const auto s = samples_of(text);
  EXPECT_EQ(s.at(R"(serialserver_tasks_total{code="1",name="echo",outcome="ok"})"), "2");
  EXPECT_EQ(s.at(R"(serialserver_tasks_total{code="1",name="echo",outcome="error"})"), "0");
  EXPECT_EQ(s.at(R"(serialserver_tasks_total{code="1",name="echo",outcome="dropped"})"), "1");
  EXPECT_EQ(s.at(R"(serialserver_tasks_total{code="1",name="echo",outcome="goodbye"})"), "0");
  EXPECT_EQ(s.at(R"(serialserver_tasks_total{code="3",name="fail",outcome="error"})"), "1");
  EXPECT_EQ(s.at(R"(serialserver_tasks_total{code="255",name="",outcome="goodbye"})"), "1");
  EXPECT_EQ(s.at(R"(serialserver_request_bytes_total{code="1",name="echo"})"), "18");
  EXPECT_EQ(s.at(R"(serialserver_response_bytes_total{code="1",name="echo"})"), "15");
  EXPECT_EQ(s.at(R"(serialserver_request_bytes_total{code="3",name="fail"})"), "1");
  // Goodbye answers run no task: no duration observed.
  EXPECT_EQ(s.at(R"(serialserver_task_duration_seconds_count{code="255",name=""})"), "0");
  // Codes without tasks have no series.
  EXPECT_EQ(text.find("code=\"2\""), std::string::npos);
}

TEST_F(PrometheusFormat, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  // 100 us exactly is in le="0.0001" (upper bounds are inclusive); 300 us in le="0.0005"; 1 ms
  // exactly in le="0.001"; 1.5 s in le="2.5"; 20 s only in +Inf.
  for (const auto d : {std::chrono::nanoseconds(100us), std::chrono::nanoseconds(300us),
                       std::chrono::nanoseconds(1ms), std::chrono::nanoseconds(1500ms),
                       std::chrono::nanoseconds(20s)}) {
    metrics_.task_finished(*client_, task(7, "t", TaskOutcome::ok, d));
  }
  const std::string text = metrics_.render();
  const std::string prefix = "serialserver_task_duration_seconds";
  // prometheus-cpp's TextSerializer writes _count and _sum before the buckets.
  const std::string expected = prefix + R"(_count{code="7",name="t"} 5
)" + prefix + R"(_sum{code="7",name="t"} 21.5014
)" + prefix + R"(_bucket{code="7",name="t",le="0.0001"} 1
)" + prefix + R"(_bucket{code="7",name="t",le="0.00025"} 1
)" + prefix + R"(_bucket{code="7",name="t",le="0.0005"} 2
)" + prefix + R"(_bucket{code="7",name="t",le="0.001"} 3
)" + prefix + R"(_bucket{code="7",name="t",le="0.0025"} 3
)" + prefix + R"(_bucket{code="7",name="t",le="0.005"} 3
)" + prefix + R"(_bucket{code="7",name="t",le="0.01"} 3
)" + prefix + R"(_bucket{code="7",name="t",le="0.025"} 3
)" + prefix + R"(_bucket{code="7",name="t",le="0.05"} 3
)" + prefix + R"(_bucket{code="7",name="t",le="0.1"} 3
)" + prefix + R"(_bucket{code="7",name="t",le="0.25"} 3
)" + prefix + R"(_bucket{code="7",name="t",le="0.5"} 3
)" + prefix + R"(_bucket{code="7",name="t",le="1"} 3
)" + prefix + R"(_bucket{code="7",name="t",le="2.5"} 4
)" + prefix + R"(_bucket{code="7",name="t",le="5"} 4
)" + prefix + R"(_bucket{code="7",name="t",le="10"} 4
)" + prefix + R"(_bucket{code="7",name="t",le="+Inf"} 5
)";
  EXPECT_NE(text.find("# TYPE " + prefix + " histogram\n" + expected), std::string::npos) << text;
}

TEST_F(PrometheusFormat, LabelValuesAreEscaped) {
  const std::string name = "a\"b\\c\nd";
  metrics_.task_finished(*client_, task(9, name, TaskOutcome::ok, 1ms));
  const std::string text = metrics_.render();
  EXPECT_NE(text.find(R"(serialserver_tasks_total{code="9",name="a\"b\\c\nd",outcome="ok"} 1)"),
            std::string::npos)
      << text;
}

TEST_F(PrometheusFormat, ANewNameForACodeStartsItsOwnSeries) {
  metrics_.task_finished(*client_, task(4, "old", TaskOutcome::ok, 1ms));
  metrics_.task_finished(*client_, task(4, "new", TaskOutcome::ok, 1ms));
  metrics_.task_finished(*client_, task(4, "new", TaskOutcome::ok, 1ms));
  const auto s = samples_of(metrics_.render());
  EXPECT_EQ(s.at(R"(serialserver_tasks_total{code="4",name="new",outcome="ok"})"), "2");
  // The old name's series stays, with its last value.
  EXPECT_EQ(s.at(R"(serialserver_tasks_total{code="4",name="old",outcome="ok"})"), "1");
  EXPECT_EQ(s.at(R"(serialserver_task_duration_seconds_count{code="4",name="new"})"), "2");
  EXPECT_EQ(s.at(R"(serialserver_task_duration_seconds_count{code="4",name="old"})"), "1");
}

TEST_F(PrometheusFormat, CollectableHasTheFamiliesInRenderOrder) {
  // Before any task: the per-code families have no series, so they are left out.
  std::vector<std::string> names;
  for (const auto& family : metrics_.collectable()->Collect()) {
    names.push_back(family.name);
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{
                "serialserver_connections_open", "serialserver_connections_total",
                "serialserver_connections_closed_total", "serialserver_connections_dropped_total",
                "serialserver_connections_evicted_total", "serialserver_timeouts_total"}));
  metrics_.task_finished(*client_, task(1, "echo", TaskOutcome::ok, 1ms, 2, 2));
  const auto families = metrics_.collectable()->Collect();
  ASSERT_EQ(families.size(), 10U);
  EXPECT_EQ(families[6].name, "serialserver_tasks_total");
  EXPECT_EQ(families[9].name, "serialserver_task_duration_seconds");
  EXPECT_EQ(prometheus::TextSerializer().Serialize(families), metrics_.render());
}

TEST(MetricsNames, CloseAndDropReasonsAndOutcomes) {
  EXPECT_EQ(close_reason_name({}), "none");
  EXPECT_EQ(close_reason_name(make_error_code(Errc::peer_closed)), "peer_closed");
  EXPECT_EQ(close_reason_name(make_error_code(Errc::write_timeout)), "write_timeout");
  EXPECT_EQ(close_reason_name(std::make_error_code(std::errc::broken_pipe)), "other");
  EXPECT_EQ(drop_reason_name(DropReason::max_connections_per_address),
            "max_connections_per_address");
  EXPECT_EQ(task_outcome_name(TaskOutcome::dropped), "dropped");
}

}  // namespace
}  // namespace serialserver
