// Server::register_task(code, fn, TaskOptions) and Response::error over real sockets: the kind of
// a task follows its function's signature or the kind named, the name reaches the metrics, and a
// Response::error answer is Error + code for every kind, exactly as a thrown TaskError is, with the
// connection going on.

#include "support/loopback.hpp"

#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

constexpr TaskCode kInline = 1;
constexpr TaskCode kCoroutine = 2;
constexpr TaskCode kBlocking = 3;
constexpr TaskCode kGeneric = 4;

/// Answers Error + the request's first byte when there is one, else OK with "<kind>".
Response answer(std::span<const std::uint8_t> request, std::string_view kind) {
  if (!request.empty()) {
    return Response::error(request[0]);
  }
  return Response::copy_of(kind);
}

void register_tasks(Server& server, std::thread::id& blocking_thread) {
  server.register_task(kInline,
                       [](TaskContext& /*ctx*/, std::span<const std::uint8_t> request) {
                         return answer(request, "inline");
                       },
                       {.name = "inline"});
  server.register_task(kCoroutine,
                       [](TaskContext& ctx) -> asio::awaitable<Response> {
                         const Bytes request = co_await ctx.request().async_read_all();
                         co_return answer(request, "coroutine");
                       },
                       {.name = "coroutine"});
  server.register_task(kBlocking,
                       [&blocking_thread](TaskContext& ctx) {
                         blocking_thread = std::this_thread::get_id();
                         return answer(ctx.request().read_all(), "blocking");
                       },
                       {.name = "blocking"});
  // A generic lambda's signature says nothing: the kind is named.
  server.register_task(kGeneric,
                       [](auto& ctx) { return answer(ctx.request().read_all(), "generic"); },
                       {.name = "generic", .kind = TaskKind::blocking});
}

class TaskOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    register_tasks(server_.server(), blocking_thread_);
    server_.start();
  }

  std::thread::id blocking_thread_;
  std::shared_ptr<RecordingMetrics> metrics_ = std::make_shared<RecordingMetrics>();
  TestServer server_{options_with_metrics(metrics_)};
};

TEST_F(TaskOptionsTest, TheKindFollowsTheSignatureOrTheOptions) {
  auto& server = server_.server();
  ASSERT_TRUE(server.task(kInline).has_value());
  EXPECT_TRUE(static_cast<bool>(server.task(kInline)->inline_function));
  EXPECT_EQ(server.task(kInline)->name, "inline");
  EXPECT_TRUE(static_cast<bool>(server.task(kCoroutine)->function));
  EXPECT_FALSE(static_cast<bool>(server.task(kCoroutine)->inline_function));
  EXPECT_TRUE(static_cast<bool>(server.task(kBlocking)->blocking_function));
  EXPECT_TRUE(static_cast<bool>(server.task(kGeneric)->blocking_function));
  EXPECT_EQ(server.task(kGeneric)->name, "generic");

  RawClient c("127.0.0.1", server_.port());
  EXPECT_EQ(c.call(request(kInline, {}), 9), ok_response(Bytes{'i', 'n', 'l', 'i', 'n', 'e'}));
  const Bytes coroutine{'c', 'o', 'r', 'o', 'u', 't', 'i', 'n', 'e'};
  EXPECT_EQ(c.call(request(kCoroutine, {}), coroutine.size() + 3), ok_response(coroutine));
  const Bytes blocking{'b', 'l', 'o', 'c', 'k', 'i', 'n', 'g'};
  EXPECT_EQ(c.call(request(kBlocking, {}), blocking.size() + 3), ok_response(blocking));
  // A blocking task runs on the worker pool, not on this test's thread or an I/O thread that
  // the test could name: it ran somewhere other than here.
  EXPECT_NE(blocking_thread_, std::thread::id());
  EXPECT_NE(blocking_thread_, std::this_thread::get_id());
}

TEST_F(TaskOptionsTest, ResponseErrorAnswersErrorForEveryKindAndTheConnectionGoesOn) {
  RawClient c("127.0.0.1", server_.port());
  // Pipelined, so that the inline task's answer is served from the input buffer at once and the
  // others after a suspension: every path that takes a task's Response.
  Bytes pipelined;
  for (const TaskCode code : {kInline, kCoroutine, kBlocking, kGeneric}) {
    const Bytes one = request(code, {static_cast<std::uint8_t>(40 + code)});
    pipelined.insert(pipelined.end(), one.begin(), one.end());
  }
  c.send(pipelined);
  EXPECT_EQ(c.recv(8), bytes({0x01, 41, 0x01, 42, 0x01, 43, 0x01, 44}));
  // Still open and serving.
  EXPECT_EQ(c.call(request(kInline, {}), 9), ok_response(Bytes{'i', 'n', 'l', 'i', 'n', 'e'}));
  EXPECT_TRUE(eventually([&] { return metrics_->tasks_with_code(kGeneric).size() == 1; }, 5s));
  for (const TaskCode code : {kInline, kCoroutine, kBlocking, kGeneric}) {
    const auto tasks = metrics_->tasks_with_code(code);
    ASSERT_FALSE(tasks.empty()) << "code " << int{code};
    EXPECT_EQ(tasks[0].outcome, TaskOutcome::error) << "code " << int{code};
    EXPECT_EQ(tasks[0].error_code, 40 + code) << "code " << int{code};
  }
}

TEST(TaskOptionsRegistration, AKindTheFunctionCannotRunAsIsRefused) {
  Server server(TestServer::quiet_options());
  EXPECT_THROW(server.register_task(1, [](TaskContext& /*ctx*/) { return Response(); },
                                    {.name = "x", .kind = TaskKind::inline_call}),
               std::invalid_argument);
  EXPECT_THROW(server.register_task(1, [](TaskContext& /*ctx*/) { return Response(); },
                                    {.name = "x", .kind = TaskKind::coroutine}),
               std::invalid_argument);
  EXPECT_FALSE(server.task(1).has_value());
  EXPECT_THROW(server.register_task(250, [](TaskContext& /*ctx*/) { return Response(); },
                                    {.name = "reserved"}),
               std::invalid_argument);
}

}  // namespace
}  // namespace serialserver::test
