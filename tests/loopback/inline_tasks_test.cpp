// Inline task functions (Server::register_inline_task) over real sockets: the whole request
// reaches the function whether it came in one block, in many, or was longer than the input buffer
// (then the server reads it first, as a coroutine task); TaskError answers Error; another
// exception drops the connection after the earlier responses; answers longer than the output
// buffer keep their order; the size limit and the metrics records are those of any task;
// Client::metadata(), read from another thread while pipelined tasks run, is never a mix of two.

#include "support/loopback.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

constexpr TaskCode kReverse = 1;
constexpr TaskCode kFailWith = 3;
constexpr TaskCode kThrow = 4;
constexpr TaskCode kLarge = 5;
constexpr std::size_t kLargeAnswer = 8 * 1024;

Bytes pattern(std::size_t n) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<std::uint8_t>(i * 13 + 5);
  }
  return out;
}

/// kLarge's answer to a request whose first byte is `tag`.
Bytes large_answer(std::uint8_t tag) {
  Bytes out = pattern(kLargeAnswer);
  out[0] = tag;
  return out;
}

void register_inline_tasks(Server& server) {
  server.register_inline_task(
      kReverse,
      [](TaskContext& /*ctx*/, std::span<const std::uint8_t> request) {
        return Response(Bytes(request.rbegin(), request.rend()));
      },
      "reverse");
  server.register_inline_task(
      kFailWith,
      [](TaskContext& /*ctx*/, std::span<const std::uint8_t> request) -> Response {
        throw TaskError(request.empty() ? 0 : request[0]);
      },
      "fail_with");
  server.register_inline_task(
      kThrow,
      [](TaskContext& /*ctx*/, std::span<const std::uint8_t> /*request*/) -> Response {
        throw std::runtime_error("inline boom");
      },
      "throw");
  server.register_inline_task(
      kLarge,
      [](TaskContext& ctx, std::span<const std::uint8_t> request) {
        EXPECT_EQ(ctx.code(), kLarge);
        return Response(large_answer(request.empty() ? 0 : request[0]));
      },
      "large");
}

class InlineTasks : public ::testing::Test {
 protected:
  void SetUp() override {
    register_inline_tasks(server_.server());
    server_.start();
  }

  std::shared_ptr<RecordingMetrics> metrics_ = std::make_shared<RecordingMetrics>();
  TestServer server_{options_with_metrics(metrics_)};
};

TEST_F(InlineTasks, GetTheWholeRequestHoweverItArrives) {
  RawClient c("127.0.0.1", server_.port());
  // Empty, one block (a view into the input buffer), many blocks (joined), and longer than the
  // input buffer (read first, as a coroutine task).
  for (const std::size_t size : {0UL, 1UL, 255UL, 256UL, 4096UL, 16000UL, 100000UL, 1UL << 20}) {
    const Bytes content = pattern(size);
    const Bytes reversed(content.rbegin(), content.rend());
    const Bytes expected = ok_response(reversed);
    EXPECT_EQ(c.call(request(kReverse, content), expected.size()), expected) << "size " << size;
  }
  // The same, the request sent a byte at a time: never whole when the task starts.
  const Bytes content = pattern(300);
  const Bytes slow = request(kReverse, content);
  for (const std::uint8_t b : slow) {
    c.send({b});
  }
  const Bytes expected = ok_response(Bytes(content.rbegin(), content.rend()));
  EXPECT_EQ(c.recv(expected.size()), expected);
  const auto tasks = metrics_->tasks_with_code(kReverse);
  ASSERT_EQ(tasks.size(), 9U);
  EXPECT_EQ(tasks[4].bytes_read, 4096U);
  EXPECT_EQ(tasks[7].bytes_read, 1U << 20);
  for (const auto& t : tasks) {
    EXPECT_EQ(t.outcome, TaskOutcome::ok);
  }
}

TEST_F(InlineTasks, TaskErrorAnswersErrorAndTheConnectionGoesOn) {
  RawClient c("127.0.0.1", server_.port());
  EXPECT_EQ(c.call(request(kFailWith, {42, 1}), 2), bytes({0x01, 42}));
  EXPECT_EQ(c.call(request(kReverse, {1, 2}), 5), ok_response({2, 1}));
  const auto errors = metrics_->tasks_with_code(kFailWith);
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_EQ(errors[0].outcome, TaskOutcome::error);
  EXPECT_EQ(errors[0].error_code, 42);
}

TEST_F(InlineTasks, AFailureDropsTheConnectionAfterTheEarlierResponses) {
  RawClient c("127.0.0.1", server_.port());
  Bytes pipelined = request(kReverse, {7, 8});
  const Bytes failing = request(kThrow, {1});
  const Bytes after = request(kReverse, {9});
  pipelined.insert(pipelined.end(), failing.begin(), failing.end());
  pipelined.insert(pipelined.end(), after.begin(), after.end());
  c.send(pipelined);
  EXPECT_EQ(c.recv(5), ok_response({8, 7}));
  EXPECT_TRUE(c.closed_within(5000ms));
  EXPECT_TRUE(eventually([&] { return server_.logger()->contains("inline boom"); }, 5s));
  const auto dropped = metrics_->tasks_with_code(kThrow);
  ASSERT_EQ(dropped.size(), 1U);
  EXPECT_EQ(dropped[0].outcome, TaskOutcome::dropped);
  EXPECT_TRUE(eventually(
      [&] {
        const auto closed = metrics_->closed();
        return closed.size() == 1 && closed[0] == make_error_code(Errc::task_failed);
      },
      5s));
}

TEST_F(InlineTasks, AnswersLongerThanTheOutputBufferKeepTheirOrder) {
  RawClient c("127.0.0.1", server_.port());
  // 40 answers of 8 KiB, pipelined: several times the output buffer.
  constexpr int kCount = 40;
  Bytes pipelined;
  Bytes expected;
  for (int i = 0; i < kCount; ++i) {
    const Bytes r = request(kLarge, {static_cast<std::uint8_t>(i)});
    pipelined.insert(pipelined.end(), r.begin(), r.end());
    const Bytes answer = ok_response(large_answer(static_cast<std::uint8_t>(i)));
    expected.insert(expected.end(), answer.begin(), answer.end());
  }
  c.send(pipelined);
  EXPECT_EQ(c.recv(expected.size()), expected);
  EXPECT_EQ(metrics_->tasks_with_code(kLarge).size(), static_cast<std::size_t>(kCount));
}

TEST_F(InlineTasks, RegistrationKeepsACoroutineFormAndRefusesEmptyFunctions) {
  const auto task = server_.server().task(kReverse);
  ASSERT_TRUE(task.has_value());
  EXPECT_EQ(task->name, "reverse");
  EXPECT_TRUE(static_cast<bool>(task->inline_function));
  EXPECT_TRUE(static_cast<bool>(task->function));
  EXPECT_FALSE(static_cast<bool>(task->blocking_function));
  EXPECT_THROW(server_.server().register_inline_task(9, InlineTaskFunction{}),
               std::invalid_argument);
  EXPECT_THROW(server_.server().register_inline_task(
                   kKeepAliveTaskCode,
                   [](TaskContext&, std::span<const std::uint8_t>) { return Response(); }),
               std::invalid_argument);
}

// Client::metadata() is written by the connection's thread without a lock (a sequence lock) and
// read here from another thread while pipelined tasks of two codes start and end back to back:
// every copy it gives must be whole, the name and code of one task, never a mix of two.
TEST_F(InlineTasks, MetadataReadDuringPipelinedTasksIsNeverAMixOfTwo) {
  RawClient c("127.0.0.1", server_.port());
  ASSERT_TRUE(eventually([&] { return server_.server().num_clients() == 1; }));
  const auto client = server_.server().clients().front();
  const auto started = std::chrono::system_clock::now();

  constexpr int kPairs = 250;
  Bytes batch;
  Bytes answers;
  for (int i = 0; i < kPairs; ++i) {
    const Bytes reverse = request(kReverse, {7});
    const Bytes fail = request(kFailWith, {9});
    batch.insert(batch.end(), reverse.begin(), reverse.end());
    batch.insert(batch.end(), fail.begin(), fail.end());
    const Bytes ok = ok_response({7});
    answers.insert(answers.end(), ok.begin(), ok.end());
    answers.push_back(0x01);
    answers.push_back(9);
  }

  std::atomic<bool> done{false};
  std::atomic<int> seen{0};
  std::atomic<int> mixed{0};
  std::thread reader([&] {
    while (!done.load()) {
      const auto m = client->metadata();
      if (!m) {
        continue;
      }
      seen.fetch_add(1);
      const bool whole = (m->code == kReverse && m->name == "reverse") ||
                         (m->code == kFailWith && m->name == "fail_with");
      if (!whole || m->bytes_read > 1 || m->start < started ||
          m->start > std::chrono::system_clock::now()) {
        mixed.fetch_add(1);
      }
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (seen.load() < 100 && std::chrono::steady_clock::now() < deadline) {
    c.send(batch);
    ASSERT_EQ(c.recv(answers.size()), answers);
  }
  done = true;
  reader.join();
  EXPECT_GE(seen.load(), 100) << "too few reads landed inside a task to test anything";
  EXPECT_EQ(mixed.load(), 0) << "of " << seen.load();
}

TEST(InlineTaskLimits, TheRequestSizeLimitHoldsAsForAnyTask) {
  auto options = TestServer::quiet_options();
  options.max_request_bytes = 100;
  TestServer server(options);
  register_inline_tasks(server.server());
  server.start();
  RawClient c("127.0.0.1", server.port());
  const Bytes at_limit = pattern(100);
  const Bytes expected = ok_response(Bytes(at_limit.rbegin(), at_limit.rend()));
  EXPECT_EQ(c.call(request(kReverse, at_limit), expected.size()), expected);
  EXPECT_EQ(c.call(request(kReverse, pattern(101)), 2), bytes({0x01, kMessageTooLargeErrorCode}));
  // The connection goes on.
  EXPECT_EQ(c.call(request(kReverse, {3}), 4), ok_response({3}));
}

}  // namespace
}  // namespace serialserver::test
