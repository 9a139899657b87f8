// PrometheusMetrics behind a real server, scraped over real HTTP: known traffic (OK tasks, error
// tasks, a read timeout, a failed task that drops its connection, a Goodbye, and connections the
// listeners drop for a failed handshake, a slow handshake and the connection limit) must give
// exact values. Also the MetricsHttpServer's answers to other requests, and the structured log
// lines of the same traffic.

#include <serialserver/metrics_http_server.hpp>
#include <serialserver/prometheus_metrics.hpp>
#include "support/loopback.hpp"

#include <map>
#include <sstream>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

using Clock = std::chrono::steady_clock;

/// An HTTP response as read from a plain socket until the server closed it.
struct HttpResponse {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;
  bool closed = false;
  /// The value of a header (case-sensitive name), or "" if absent.
  std::string header(std::string_view name) const {
    const std::string needle = "\r\n" + std::string(name) + ": ";
    const auto at = head.find(needle);
    if (at == std::string::npos) {
      return {};
    }
    const auto start = at + needle.size();
    return head.substr(start, head.find("\r\n", start) - start);
  }
};

/// Sends `request` bytes as they are and reads the whole response (bounded by 5 s).
HttpResponse http_exchange(std::uint16_t port, const std::string& request) {
  RawClient c(port);
  c.send(Bytes(request.begin(), request.end()));
  const Bytes raw = c.recv(1 << 20, 5000ms);
  HttpResponse r;
  r.closed = c.closed_within(1000ms);
  const std::string text(raw.begin(), raw.end());
  const auto end = text.find("\r\n\r\n");
  if (end == std::string::npos) {
    r.head = text;
    return r;
  }
  r.head = text.substr(0, end);
  r.body = text.substr(end + 4);
  if (r.head.starts_with("HTTP/1.1 ") && r.head.size() >= 12) {
    r.status = std::stoi(r.head.substr(9, 3));
  }
  return r;
}

HttpResponse http_get(std::uint16_t port, const std::string& target = "/metrics",
                      const std::string& method = "GET") {
  return http_exchange(port, method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
}

/// The samples of a scrape: "name{labels}" -> value.
std::map<std::string, std::string> samples_of(const std::string& body) {
  std::map<std::string, std::string> samples;
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    const auto space = line.rfind(' ');
    samples[line.substr(0, space)] = line.substr(space + 1);
  }
  return samples;
}

std::string value_of(const std::map<std::string, std::string>& samples, const std::string& key) {
  const auto it = samples.find(key);
  return it == samples.end() ? "<absent>" : it->second;
}

constexpr TaskCode kEcho = 1;
constexpr TaskCode kFail = 3;
constexpr TaskCode kBoom = 4;
constexpr auto kReadTimeout = 300ms;

class MetricsOverHttp : public ::testing::Test {
 protected:
  MetricsOverHttp()
      : metrics_(std::make_shared<PrometheusMetrics>()), server_([this] {
          ServerOptions o = options_with_metrics(metrics_);
          o.timeout.read = kReadTimeout;
          return o;
        }()) {
    Server& s = server_.server();
    s.register_task(
        kEcho,
        [](TaskContext& ctx) -> asio::awaitable<Response> {
          co_return Response(co_await ctx.request().async_read_all());
        },
        "echo");
    s.register_task(
        kFail, [](TaskContext&) -> asio::awaitable<Response> { throw TaskError(7); }, "fail");
    s.register_task(
        kBoom, [](TaskContext&) -> asio::awaitable<Response> { throw std::runtime_error("boom"); },
        "boom");
    server_.start();
    http_ = std::make_unique<MetricsHttpServer>(
        MetricsHttpServerOptions{.address = "127.0.0.1:0", .timeout = 2000ms}, metrics_);
    http_->start();
  }
  ~MetricsOverHttp() override {
    http_.reset();
    server_.stop(0ms);
  }

  std::map<std::string, std::string> scrape() {
    const auto r = http_get(http_->port());
    EXPECT_EQ(r.status, 200) << r.head;
    return samples_of(r.body);
  }

  std::shared_ptr<PrometheusMetrics> metrics_;
  TestServer server_;
  std::unique_ptr<MetricsHttpServer> http_;
};

TEST_F(MetricsOverHttp, ScrapeAfterKnownTrafficGivesExactValues) {
  constexpr int kOk = 5;
  constexpr int kErrors = 3;
  const Bytes hello = {'h', 'e', 'l', 'l', 'o'};
  const Bytes hello_response = ok_response(hello);

  // Connection A: kOk echoes of 5 bytes, kErrors failures with 1 byte each, then Goodbye.
  {
    RawClient a(server_.port());
    for (int i = 0; i < kOk; ++i) {
      ASSERT_EQ(a.call(request(kEcho, hello), hello_response.size()), hello_response);
    }
    for (int i = 0; i < kErrors; ++i) {
      ASSERT_EQ(a.call(request(kFail, bytes({'x'})), 2), bytes({0x01, 0x07}));
    }
    ASSERT_EQ(a.call(bytes({kGoodbyeTaskCode}), 1), bytes({0x02}));
    EXPECT_TRUE(a.closed_within(5000ms));
  }
  // Connection B: a task code and no request: the Read timeout closes it, the task is dropped.
  {
    RawClient b(server_.port());
    b.send(bytes({kEcho}));
    EXPECT_TRUE(b.closed_within(kReadTimeout + kTimingSlack + 5000ms));
  }
  // Connection C: a task that throws drops the connection.
  {
    RawClient c(server_.port());
    c.send(request(kBoom));
    EXPECT_TRUE(c.closed_within(5000ms));
  }
  // Drops: a listener whose handshake always fails, one whose handshake never gets its byte, and
  // one that serves a single connection at a time.
  ListenerOptions failing = TestServer::default_listener_options();
  failing.handshake = [](HandshakeStream& stream) -> asio::awaitable<HandshakeResult> {
    std::array<std::uint8_t, 1> byte{};
    co_await stream.async_read_exact(byte);
    if (byte[0] != 'H') {
      throw std::runtime_error("bad greeting");
    }
    co_return HandshakeResult{};
  };
  ListenerOptions slow = TestServer::default_listener_options();
  slow.handshake_timeout = 200ms;
  slow.handshake = [](HandshakeStream& stream) -> asio::awaitable<HandshakeResult> {
    std::array<std::uint8_t, 1> byte{};
    co_await stream.async_read_exact(byte);
    co_return HandshakeResult{};
  };
  ListenerOptions single = TestServer::default_listener_options();
  single.max_connections = 1;
  Listener failing_listener(server_.server(), failing);
  Listener slow_listener(server_.server(), slow);
  Listener single_listener(server_.server(), single);
  failing_listener.start();
  slow_listener.start();
  single_listener.start();
  {
    RawClient f(failing_listener.port());
    f.send(bytes({'X'}));
    EXPECT_TRUE(f.closed_within(5000ms));
    RawClient s(slow_listener.port());
    EXPECT_TRUE(s.closed_within(200ms + kTimingSlack + 5000ms));
    RawClient first(single_listener.port());
    // `first` is busy (its echo waits for the end of its request), so `second` is refused
    // rather than making room by evicting it.
    const Bytes echo = request(kEcho, hello);
    first.send(Bytes(echo.begin(), echo.end() - 1));
    const std::string single_port = ":" + std::to_string(single_listener.port());
    ASSERT_TRUE(eventually([&] {
      for (const auto& client : server_.server().clients()) {
        if (client->local_address().ends_with(single_port) && client->metadata()) {
          return true;
        }
      }
      return false;
    }));
    RawClient second(single_listener.port());
    EXPECT_TRUE(second.closed_within(5000ms));
    EXPECT_EQ(first.call(Bytes(echo.end() - 1, echo.end()), hello_response.size()), hello_response);
  }  // `first` closes here: peer_closed

  // Every report is made before the connection is removed from the server.
  ASSERT_TRUE(eventually([&] { return server_.server().clients().empty(); }));
  const auto s = scrape();
  const std::map<std::string, std::string> expected = {
      {"serialserver_connections_open", "0"},
      {"serialserver_connections_total", "4"},
      {R"(serialserver_connections_closed_total{reason="graceful_disconnect"})", "1"},
      {R"(serialserver_connections_closed_total{reason="read_timeout"})", "1"},
      {R"(serialserver_connections_closed_total{reason="task_failed"})", "1"},
      {R"(serialserver_connections_closed_total{reason="peer_closed"})", "1"},
      {R"(serialserver_connections_closed_total{reason="timeout_waiting_for_task"})", "0"},
      {R"(serialserver_connections_closed_total{reason="other"})", "0"},
      {R"(serialserver_connections_dropped_total{reason="handshake_failed"})", "1"},
      {R"(serialserver_connections_dropped_total{reason="handshake_timeout"})", "1"},
      {R"(serialserver_connections_dropped_total{reason="max_connections"})", "1"},
      {R"(serialserver_connections_dropped_total{reason="max_connections_per_address"})", "0"},
      {R"(serialserver_timeouts_total{kind="wait"})", "0"},
      {R"(serialserver_timeouts_total{kind="read"})", "1"},
      {R"(serialserver_timeouts_total{kind="write"})", "0"},
      {R"(serialserver_timeouts_total{kind="handshake"})", "1"},
      {R"(serialserver_tasks_total{code="1",name="echo",outcome="ok"})", "6"},
      {R"(serialserver_tasks_total{code="1",name="echo",outcome="dropped"})", "1"},
      {R"(serialserver_tasks_total{code="1",name="echo",outcome="error"})", "0"},
      {R"(serialserver_tasks_total{code="3",name="fail",outcome="error"})", "3"},
      {R"(serialserver_tasks_total{code="3",name="fail",outcome="ok"})", "0"},
      {R"(serialserver_tasks_total{code="4",name="boom",outcome="dropped"})", "1"},
      {R"(serialserver_tasks_total{code="255",name="",outcome="goodbye"})", "1"},
      {R"(serialserver_request_bytes_total{code="1",name="echo"})", "30"},
      {R"(serialserver_response_bytes_total{code="1",name="echo"})", "30"},
      {R"(serialserver_request_bytes_total{code="3",name="fail"})", "3"},
      {R"(serialserver_response_bytes_total{code="3",name="fail"})", "0"},
      {R"(serialserver_task_duration_seconds_count{code="1",name="echo"})", "7"},
      {R"(serialserver_task_duration_seconds_bucket{code="1",name="echo",le="+Inf"})", "7"},
      {R"(serialserver_task_duration_seconds_count{code="3",name="fail"})", "3"},
      {R"(serialserver_task_duration_seconds_count{code="4",name="boom"})", "1"},
      {R"(serialserver_task_duration_seconds_count{code="255",name=""})", "0"},
  };
  for (const auto& [key, value] : expected) {
    EXPECT_EQ(value_of(s, key), value) << key;
  }
  // Codes that saw no task have no series.
  EXPECT_EQ(value_of(s, R"(serialserver_tasks_total{code="2",name="",outcome="ok"})"), "<absent>");
  // The dropped echo waited out the Read timeout, so the echo durations add up to at least it.
  EXPECT_GE(
      std::stod(value_of(s, R"(serialserver_task_duration_seconds_sum{code="1",name="echo"})")),
      std::chrono::duration<double>(kReadTimeout).count());
  EXPECT_EQ(
      value_of(s, R"(serialserver_task_duration_seconds_bucket{code="1",name="echo",le="0.25"})"),
      "6")
      << "the timed-out echo lasted at least 300 ms; the six others far less under any load";
}

TEST_F(MetricsOverHttp, StructuredLogLinesForConnectionsAndTasks) {
  auto* log = server_.logger();
  ASSERT_NE(log, nullptr);
  const Bytes hello = {'h', 'i'};
  std::string client;
  {
    RawClient a(server_.port());
    ASSERT_EQ(a.call(request(kEcho, hello), 5), bytes({0x00, 0x02, 'h', 'i', 0x00}));
    ASSERT_EQ(a.call(request(kFail, bytes({'x', 'y'})), 2), bytes({0x01, 0x07}));
    auto clients = server_.server().clients();
    ASSERT_EQ(clients.size(), 1U);
    client = clients[0]->to_string();
  }
  ASSERT_TRUE(eventually([&] { return log->contains("msg=\"connection closed\""); }));
  std::vector<std::string> mine;
  for (const auto& line : log->lines()) {
    if (line.find("client=" + client + " ") != std::string::npos) {
      mine.push_back(line);
    }
  }
  ASSERT_EQ(mine.size(), 4U) << ::testing::PrintToString(log->lines());
  const auto local = client.substr(client.find("->") + 2);
  const auto remote = client.substr(0, client.find("->"));
  EXPECT_TRUE(mine[0].starts_with("msg=\"connection opened\" client=" + client + " id="))
      << mine[0];
  EXPECT_TRUE(mine[0].ends_with(" remote=" + remote + " local=" + local)) << mine[0];
  EXPECT_TRUE(mine[1].starts_with("msg=\"task\" client=" + client + " id=")) << mine[1];
  EXPECT_NE(mine[1].find(" code=1 name=echo outcome=ok duration_us="), std::string::npos)
      << mine[1];
  EXPECT_TRUE(mine[1].ends_with(" bytes_in=2 bytes_out=2")) << mine[1];
  EXPECT_NE(mine[2].find(" code=3 name=fail outcome=error error_code=7 duration_us="),
            std::string::npos)
      << mine[2];
  EXPECT_TRUE(mine[2].ends_with(" bytes_in=2 bytes_out=0")) << mine[2];
  EXPECT_TRUE(mine[3].starts_with("msg=\"connection closed\" client=" + client + " id="))
      << mine[3];
  EXPECT_NE(mine[3].find(" duration_ms="), std::string::npos) << mine[3];
  EXPECT_TRUE(
      mine[3].ends_with(" tasks=2 bytes_in=4 bytes_out=2 reason=peer_closed "
                        "detail=\"peer closed the connection\""))
      << mine[3];
}

/// Counts the structured lines it is asked for; debug is off.
class InfoOnlyLogger final : public Logger {
 public:
  bool enabled(LogLevel level) const noexcept override { return level >= LogLevel::info; }
  void write(LogLevel /*level*/, std::string_view /*message*/) noexcept override {}
  void write_fields(LogLevel level, std::string_view /*message*/,
                    std::span<const LogField> /*fields*/) noexcept override {
    (level < LogLevel::info ? below_ : at_or_above_).fetch_add(1);
  }
  std::atomic<int> below_{0};
  std::atomic<int> at_or_above_{0};
};

TEST(StructuredLogLevel, NoTaskLinesAreMadeWhenDebugIsOff) {
  auto logger = std::make_shared<InfoOnlyLogger>();
  ServerOptions o;
  o.logger = logger;
  TestServer s(o);
  s.server().register_task(
      kEcho, [](TaskContext&) -> asio::awaitable<Response> { co_return Response(); }, "echo");
  s.start();
  {
    RawClient c(s.port());
    for (int i = 0; i < 10; ++i) {
      ASSERT_EQ(c.call(request(kEcho), 2), bytes({0x00, 0x00}));
    }
  }
  ASSERT_TRUE(eventually([&] { return logger->at_or_above_.load() == 2; }));  // opened, closed
  EXPECT_EQ(logger->below_.load(), 0);
}

TEST_F(MetricsOverHttp, HeadOtherPathsOtherMethodsAndBadRequests) {
  const auto get = http_get(http_->port(), "/metrics?x=1");
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(get.header("Connection"), "close");
  EXPECT_EQ(get.header("Content-Length"), std::to_string(get.body.size()));
  EXPECT_TRUE(get.body.starts_with("# HELP serialserver_connections_open ")) << get.body;
  EXPECT_TRUE(get.closed);

  const auto head = http_get(http_->port(), "/metrics", "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("Content-Length"), std::to_string(get.body.size()));
  EXPECT_TRUE(head.body.empty());

  const auto other = http_get(http_->port(), "/");
  EXPECT_EQ(other.status, 404);
  EXPECT_EQ(other.header("Connection"), "close");

  const auto post = http_exchange(
      http_->port(), "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.header("Allow"), "GET, HEAD");

  EXPECT_EQ(http_exchange(http_->port(), "nonsense\r\n\r\n").status, 400);
  EXPECT_EQ(http_exchange(http_->port(), "GET /metrics SPDY/3\r\n\r\n").status, 400);

  // A head past the limit (8 KiB by default) without its end: 431 and the connection closes.
  std::string big = "GET /metrics HTTP/1.1\r\nX-Filler: ";
  big.append(9000, 'a');
  const auto too_large = http_exchange(http_->port(), big);
  EXPECT_EQ(too_large.status, 431);
  EXPECT_TRUE(too_large.closed);
}

TEST_F(MetricsOverHttp, ASilentClientIsClosedAfterTheTimeout) {
  // The fixture's server allows 2 s for a request.
  const auto start = Clock::now();
  RawClient idle(http_->port());
  EXPECT_TRUE(idle.closed_within(2000ms + kTimingSlack + 2000ms));
  EXPECT_GE(elapsed_since(start), 2000ms - 50ms);
  EXPECT_TRUE(idle.unexpected_bytes().empty());
  // The server still answers afterwards.
  EXPECT_EQ(http_get(http_->port()).status, 200);
}

TEST(MetricsHttpServerLifetime, StopClosesOpenConnectionsPromptly) {
  MetricsHttpServer http(MetricsHttpServerOptions{.address = "127.0.0.1:0", .timeout = 30s}, [] {
    return MetricsHttpServer::Body{"x\n", "text/plain"};
  });
  http.start();
  RawClient idle(http.port());
  RawClient partial(http.port());
  partial.send(bytes({'G', 'E', 'T'}));
  const auto start = Clock::now();
  http.stop();
  EXPECT_LT(elapsed_since(start), 5000ms);
  EXPECT_TRUE(idle.closed_within(5000ms));
  EXPECT_TRUE(partial.closed_within(5000ms));
  http.stop();  // idempotent
}

TEST(MetricsHttpServerLifetime, BadAddressesAreRejected) {
  auto noop = [] { return MetricsHttpServer::Body{}; };
  EXPECT_THROW(MetricsHttpServer({.address = "no-port"}, noop).start(), std::invalid_argument);
  EXPECT_THROW(MetricsHttpServer({.address = "127.0.0.1:http"}, noop).start(),
               std::invalid_argument);
  MetricsHttpServer first({.address = "127.0.0.1:0"}, noop);
  first.start();
  MetricsHttpServer second({.address = "127.0.0.1:" + std::to_string(first.port())}, noop);
  EXPECT_THROW(second.start(), std::system_error);
  EXPECT_THROW(MetricsHttpServer({}, std::shared_ptr<PrometheusMetrics>()), std::invalid_argument);
}

}  // namespace
}  // namespace serialserver::test
