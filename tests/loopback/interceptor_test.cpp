// ServerOptions::interceptors over real sockets: a verdict before a registered task runs (run,
// Error, drop), for inline and coroutine tasks alike, and the record after every task.

#include "support/loopback.hpp"

#include <atomic>
#include <mutex>
#include <stdexcept>

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

/// Refuses task 7 with Error 42, drops the connection on task 8, throws on task 9; records what
/// it saw before and after each task.
class Gatekeeper final : public Interceptor {
 public:
  Admission before_task(const TaskCall& call) override {
    {
      const std::lock_guard lock(mutex_);
      seen_.push_back(std::to_string(call.code) + ":" + std::string(call.name) + "@" +
                      call.client.remote_address());
    }
    switch (call.code) {
      case 7:
        return Admission::error(42);
      case 8:
        return Admission::drop();
      case 9:
        throw std::runtime_error("no verdict");
      default:
        return Admission::run();
    }
  }
  void after_task(const Client& /*client*/, const TaskRecord& record) noexcept override {
    const std::lock_guard lock(mutex_);
    after_.push_back(record);
    after_.back().name = {};  // a view into the task table: not kept
  }
  std::vector<std::string> seen() const {
    const std::lock_guard lock(mutex_);
    return seen_;
  }
  std::vector<TaskRecord> after() const {
    const std::lock_guard lock(mutex_);
    return after_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> seen_;
  std::vector<TaskRecord> after_;
};

class Interceptors : public ::testing::Test {
 protected:
  Interceptors() : metrics_(std::make_shared<RecordingMetrics>()), server_(options()) {
    auto echo = [this](TaskContext&, std::span<const std::uint8_t> in) {
      ++runs_;
      return Response::copy_of(in);
    };
    auto echo_coroutine = [this](TaskContext& ctx) -> asio::awaitable<Response> {
      ++runs_;
      co_return Response::copy_of(co_await ctx.request().async_read_all());
    };
    server_.server().register_task(1, echo, {.name = "echo"});
    server_.server().register_task(7, echo, {.name = "refused"});
    server_.server().register_task(8, echo, {.name = "dropped"});
    server_.server().register_task(9, echo_coroutine, {.name = "throws"});
    server_.server().register_task(17, echo_coroutine, {.name = "refused-coroutine"});
    server_.start();
  }
  ServerOptions options() {
    ServerOptions o = options_with_metrics(metrics_);
    o.interceptors = {gatekeeper_, std::make_shared<RefuseCode>(17)};
    return o;
  }
  /// A second interceptor: consulted only when the first lets the task run.
  struct RefuseCode final : Interceptor {
    explicit RefuseCode(TaskCode c) : code(c) {}
    Admission before_task(const TaskCall& call) override {
      return call.code == code ? Admission::error(43) : Admission::run();
    }
    TaskCode code;
  };

  std::shared_ptr<Gatekeeper> gatekeeper_ = std::make_shared<Gatekeeper>();
  std::shared_ptr<RecordingMetrics> metrics_;
  TestServer server_;
  std::atomic<int> runs_{0};
};

TEST_F(Interceptors, AnErrorVerdictAnswersWithoutRunningAndTheConnectionGoesOn) {
  RawClient c(server_.port());
  // Inline: the whole request is drained, so the next one lines up.
  EXPECT_EQ(c.call(request(7, Bytes(600, 0x41)), 2), bytes({0x01, 42}));
  // Coroutine, refused by the second interceptor.
  EXPECT_EQ(c.call(request(17, bytes({1, 2})), 2), bytes({0x01, 43}));
  EXPECT_EQ(runs_.load(), 0) << "a refused task ran";
  EXPECT_EQ(c.call(request(1, bytes({'h', 'i'})), 5), bytes({0x00, 0x02, 'h', 'i', 0x00}));
  EXPECT_EQ(runs_.load(), 1);
  const auto seen = gatekeeper_->seen();
  ASSERT_EQ(seen.size(), 3U);
  EXPECT_TRUE(seen[0].starts_with("7:refused@127.0.0.1:")) << seen[0];
  EXPECT_TRUE(seen[2].starts_with("1:echo@")) << seen[2];
}

TEST_F(Interceptors, ADropVerdictClosesTheConnectionWithoutAnAnswer) {
  RawClient c(server_.port());
  c.send(request(8, bytes({1})));
  EXPECT_TRUE(c.closed_within(kTimingSlack));
  EXPECT_TRUE(c.unexpected_bytes().empty());
  EXPECT_EQ(runs_.load(), 0);
  ASSERT_TRUE(eventually([&] { return !metrics_->closed().empty(); }));
  EXPECT_EQ(metrics_->closed().front(), make_error_code(Errc::closed_by_server));
  EXPECT_TRUE(server_.logger()->contains("refused by an interceptor"));
}

TEST_F(Interceptors, AnInterceptorThatThrowsDropsTheConnectionAndIsLogged) {
  RawClient c(server_.port());
  c.send(request(9, bytes({1})));
  EXPECT_TRUE(c.closed_within(kTimingSlack));
  EXPECT_TRUE(c.unexpected_bytes().empty());
  EXPECT_EQ(runs_.load(), 0);
  EXPECT_TRUE(eventually([&] { return server_.logger()->contains("no verdict"); }));
}

TEST_F(Interceptors, AfterTaskSeesEveryAnsweredTaskWithItsRecord) {
  RawClient c(server_.port());
  EXPECT_EQ(c.call(request(1, bytes({'a', 'b', 'c'})), 6),
            bytes({0x00, 0x03, 'a', 'b', 'c', 0x00}));
  EXPECT_EQ(c.call(request(7), 2), bytes({0x01, 42}));
  EXPECT_EQ(c.call(request(250), 2), bytes({0x00, 0x00}));
  ASSERT_TRUE(eventually([&] { return gatekeeper_->after().size() == 3; }));
  const auto after = gatekeeper_->after();
  EXPECT_EQ(after[0].code, 1);
  EXPECT_EQ(after[0].outcome, TaskOutcome::ok);
  EXPECT_EQ(after[0].bytes_read, 3U);
  EXPECT_EQ(after[0].bytes_written, 3U);
  EXPECT_EQ(after[1].code, 7);
  EXPECT_EQ(after[1].outcome, TaskOutcome::error);
  EXPECT_EQ(after[1].error_code, 42);
  EXPECT_EQ(after[2].code, 250);
  // Reserved codes are not offered to before_task: only registered tasks are.
  EXPECT_EQ(gatekeeper_->seen().size(), 2U);
}

}  // namespace
}  // namespace serialserver::test
