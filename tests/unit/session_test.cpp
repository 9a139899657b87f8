// The sans-I/O engine of a connection (src/core/session.hpp), driven by hand: bytes in through
// its input buffer, serve_buffered(), then the exact bytes it left in its output buffer and the
// Next it returned. No stream, no socket, no io_context: what the engine answers itself
// (docs/protocol.md sections 3, 4 and 8) and what it leaves to its driver.

#include "core/session.hpp"

#include <serialserver/serialserver.hpp>
#include "support/task_fixtures.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace serialserver::detail {
// GoogleTest prints a Next by its name. (Internal linkage: only this file's.)
static std::ostream& operator<<(std::ostream& os, Session::Next next) {
  static constexpr const char* kNames[] = {"read",    "flush", "disconnect",
                                           "goodbye", "task",  "finish"};
  return os << "Next::" << kNames[static_cast<std::size_t>(next)];
}
}  // namespace serialserver::detail

namespace serialserver::test {
namespace {

using detail::Session;
using Next = Session::Next;
using tasks::Bytes;

/// docs/protocol.md section 8's task 7, inline: "hi" for the content 01 02 03 04, else Error 3.
constexpr TaskCode kInlineHi = 7;
/// An inline task that throws TaskError with its content's first byte.
constexpr TaskCode kInlineTaskError = 20;

ServerOptions quiet_options() {
  ServerOptions options;
  options.logger = make_null_logger();
  options.worker_threads = 1;
  return options;
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& part : parts) {
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

/// `n` bytes of content: 0, 1, 2, ... modulo 256.
Bytes pattern(std::size_t n) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<std::uint8_t>(i & 0xFF);
  }
  return out;
}

/// A request: the code, then the content as this project's senders cut it (section 2).
Bytes request(TaskCode code, const Bytes& content) {
  Bytes out = tasks::ok_answer(content);  // 00, the blocks, 00
  out[0] = code;
  return out;
}

/// A Session with no driver: the RequestSource of its inline tasks, and the Client hooks, which
/// only count their calls (the engine must not make any of them here).
class SessionHarness final : public detail::RequestSource, public Session {
 public:
  // RequestSource is the first base, so it is constructed when Session stores the reference.
  explicit SessionHarness(Server& server)
      : Session(server, ByteOrder::big_endian, SessionData(), "local", "remote", *this) {}

  void feed(const Bytes& bytes) { append_input(bytes); }
  /// Takes the bytes in the output buffer, as a write that took them all.
  Bytes take_output() {
    const auto held = out_.readable();
    Bytes bytes(held.begin(), held.end());
    out_.consume(held.size());
    return bytes;
  }
  Bytes buffered_input() const {
    const auto held = in_.readable();
    return {held.begin(), held.end()};
  }
  std::size_t output_size() const noexcept { return out_.size(); }
  /// Appends `n` bytes to the output buffer, as answers not yet written.
  void fill_output(std::size_t n) { out_.append(Bytes(n, 0xEE)); }
  /// Drops `n` bytes from the front of the output buffer, as a partial write.
  void drop_output(std::size_t n) noexcept { out_.consume(n); }
  bool holds_buffers() const noexcept { return in_.has_storage() || out_.has_storage(); }
  void request_disconnect() noexcept { disconnect_requested_ = true; }
  /// After Next::finish, ends the task record as the driver does once it answered.
  void end_pending_task() noexcept { end_task(); }

  int hook_calls = 0;

 private:
  void do_cancel() override { ++hook_calls; }
  void do_close() override { ++hook_calls; }
  void do_disconnect(std::chrono::nanoseconds /*grace*/) override { ++hook_calls; }
  void on_request_too_large() override { ++hook_calls; }

  asio::awaitable<std::size_t> async_read_request(std::span<std::uint8_t> /*out*/) override {
    throw std::logic_error("the engine reads no request through its source");
  }
  bool request_ended() const noexcept override { return request_ended_; }
  std::uint64_t request_bytes_read() const noexcept override { return request_bytes_; }
  asio::any_io_executor request_executor() const override { return {}; }
};

/// The reports of Metrics::task_finished, copied.
struct Recorded {
  TaskCode code = 0;
  std::string name;
  TaskOutcome outcome = TaskOutcome::ok;
  ErrorCode error_code = 0;
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_written = 0;
  bool operator==(const Recorded&) const = default;
};
std::ostream& operator<<(std::ostream& os, const Recorded& r) {
  return os << "{code " << int{r.code} << " '" << r.name << "' " << task_outcome_name(r.outcome)
            << " error " << int{r.error_code} << " in " << r.bytes_read << " out "
            << r.bytes_written << "}";
}

class RecordingMetrics final : public Metrics {
 public:
  void task_finished(const Client& /*client*/, const TaskRecord& record) noexcept override {
    records.push_back({record.code, std::string(record.name), record.outcome, record.error_code,
                       record.bytes_read, record.bytes_written});
  }
  std::vector<Recorded> records;
};

/// A server with the standard tasks and this file's two, and a session on it.
struct Engine {
  explicit Engine(ServerOptions options = quiet_options()) : server(std::move(options)) {
    tasks::register_standard_tasks(server);
    server.register_task(kInlineHi,
                         [](TaskContext& /*ctx*/, std::span<const std::uint8_t> request) {
                           if (!std::ranges::equal(request, Bytes{1, 2, 3, 4})) {
                             return Response::error(3);
                           }
                           return Response::copy_of(std::string_view("hi"));
                         },
                         {.name = "inline-hi", .kind = TaskKind::inline_call});
    server.register_task(
        kInlineTaskError,
        [](TaskContext& /*ctx*/, std::span<const std::uint8_t> request) -> Response {
          throw TaskError(tasks::error_for(request));
        },
        {.name = "inline-task-error", .kind = TaskKind::inline_call});
  }

  /// Feeds `input`, serves it, and expects `next` with `output` in the output buffer (taken).
  void expect_answer(const Bytes& input, Next next, const Bytes& output) {
    session.feed(input);
    EXPECT_EQ(session.serve_buffered(), next);
    EXPECT_EQ(session.take_output(), output);
  }

  Server server;
  SessionHarness session{server};
};

// ---- what the engine answers itself -----------------------------------------------------------

TEST(SessionEngine, KeepAliveAnswersOkWithTheEmptyMessage) {
  Engine e;
  e.expect_answer({0xFA, 0x00}, Next::flush, {0x00, 0x00});
  EXPECT_EQ(e.session.serve_buffered(), Next::read);
  EXPECT_EQ(e.session.hook_calls, 0);
}

TEST(SessionEngine, UnregisteredAndUnassignedReservedCodesAnswerError255) {
  Engine e;
  for (const TaskCode code : std::initializer_list<TaskCode>{0, 9, 249, 252, 253, 254}) {
    SCOPED_TRACE(int{code});
    // The content is read and thrown away: nothing of the request is left.
    e.expect_answer({code, 0x02, 0xAA, 0xBB, 0x00}, Next::flush, {0x01, 0xFF});
    EXPECT_EQ(e.session.buffered_input(), Bytes{});
  }
}

TEST(SessionEngine, InlineTaskAnswersOkWithItsContentInBlocks) {
  Engine e;
  for (const std::size_t n :
       std::initializer_list<std::size_t>{0, 1, 2, 254, 255, 256, 300, 510, 511}) {
    SCOPED_TRACE(n);
    e.expect_answer(request(tasks::kInlineEcho, pattern(n)), Next::flush,
                    tasks::ok_answer(pattern(n)));
  }
  // Exactly one full block: 00 FF, 255 bytes, 00.
  e.session.feed(request(tasks::kInlineEcho, pattern(255)));
  ASSERT_EQ(e.session.serve_buffered(), Next::flush);
  const Bytes one_block = e.session.take_output();
  ASSERT_EQ(one_block.size(), 258U);
  EXPECT_EQ(one_block[1], 0xFF);
  EXPECT_EQ(one_block[256], 254);  // the last content byte
  EXPECT_EQ(one_block[257], 0x00);
}

TEST(SessionEngine, InlineTaskErrorsAnswerTheirCode) {
  Engine e;
  e.expect_answer({tasks::kInlineError, 0x01, 0x05, 0x00}, Next::flush, {0x01, 0x05});
  e.expect_answer({tasks::kInlineError, 0x01, 0x00, 0x00}, Next::flush, {0x01, 0x00});
  e.expect_answer({tasks::kInlineError, 0x00}, Next::flush, {0x01, 0x03});
  e.expect_answer({kInlineTaskError, 0x01, 0x2A, 0x00}, Next::flush, {0x01, 0x2A});
  e.expect_answer({kInlineTaskError, 0x01, 0xFF, 0x00}, Next::flush, {0x01, 0xFF});
}

TEST(SessionEngine, InlineTaskThatFailsIsFinishedWithoutAnswer) {
  Engine e;
  // The keep-alive behind the failing task is not served: the connection is to be dropped.
  e.session.feed({tasks::kInlineThrows, 0x01, 0x55, 0x00, 0xFA, 0x00});
  ASSERT_EQ(e.session.serve_buffered(), Next::finish);
  EXPECT_EQ(e.session.output_size(), 0U);
  EXPECT_EQ(e.session.buffered_input(), (Bytes{0xFA, 0x00}));
  const detail::PendingAnswer pending = e.session.take_pending();
  e.session.end_pending_task();
  EXPECT_EQ(pending.end.failure, "inline task fails on purpose");
  EXPECT_FALSE(pending.end.error_code.has_value());
  EXPECT_EQ(pending.end.record.code, tasks::kInlineThrows);
}

TEST(SessionEngine, GoodbyeCodeIsLeftToTheDriverToAnswer) {
  Engine e;
  e.session.feed({0xFF, 0x00});
  ASSERT_EQ(e.session.serve_buffered(), Next::goodbye);
  EXPECT_EQ(e.session.next_code(), kGoodbyeTaskCode);
  EXPECT_EQ(e.session.output_size(), 0U);
  e.session.append_goodbye();
  EXPECT_EQ(e.session.take_output(), Bytes{0x02});
}

TEST(SessionEngine, DescribeListsTheRegisteredTasksAsTheProtocolShows) {
  Server server(quiet_options());
  const auto none = [](TaskContext& /*ctx*/, std::span<const std::uint8_t> /*request*/) {
    return Response();
  };
  server.register_task(6, none, {.name = "count", .kind = TaskKind::inline_call});
  server.register_task(1, none, {.name = "echo", .kind = TaskKind::inline_call});
  SessionHarness session(server);
  // Section 8: tasks 1 "echo" and 6 "count"; any request content is read and thrown away.
  session.feed({0xFB, 0x02, 0xAA, 0xBB, 0x00});
  EXPECT_EQ(session.serve_buffered(), Next::flush);
  EXPECT_EQ(session.take_output(), (Bytes{0x00, 0x0E, 0x01, 0x01, 0x04, 0x65, 0x63, 0x68, 0x6F,
                                          0x06, 0x05, 0x63, 0x6F, 0x75, 0x6E, 0x74, 0x00}));
  EXPECT_EQ(session.buffered_input(), Bytes{});
  // A name longer than 255 bytes is cut to its first 255.
  server.register_task(9, none, {.name = std::string(300, 'n'), .kind = TaskKind::inline_call});
  session.feed({0xFB, 0x00});
  EXPECT_EQ(session.serve_buffered(), Next::flush);
  const Bytes out = session.take_output();
  ASSERT_EQ(out.size(), 1U + 1 + 255 + 1 + 16 + 1);  // OK, a full block, a block of 16, end
  EXPECT_EQ(out[1], 0xFF);
  EXPECT_EQ(out[2 + 14], 0x09);  // the third entry, after the format byte and 13 bytes
  EXPECT_EQ(out[2 + 15], 0xFF);  // its name's length, cut
}

TEST(SessionEngine, DescribeSwitchedOffIsAnUnknownTask) {
  ServerOptions options = quiet_options();
  options.describe = false;
  Engine e(std::move(options));
  e.expect_answer({0xFB, 0x00}, Next::flush, {0x01, 0xFF});
}

TEST(SessionEngine, WorkedBytesOfTheProtocol) {
  Engine e;
  const Bytes hi{0x00, 0x02, 0x68, 0x69, 0x00};
  e.expect_answer({0x07, 0x04, 0x01, 0x02, 0x03, 0x04, 0x00}, Next::flush, hi);
  // Section 2: the same content cut into a block of three and a block of one.
  e.expect_answer({0x07, 0x03, 0x01, 0x02, 0x03, 0x01, 0x04, 0x00}, Next::flush, hi);
  e.expect_answer({0x07, 0x00}, Next::flush, {0x01, 0x03});
  e.expect_answer({0x09, 0x00}, Next::flush, {0x01, 0xFF});
  e.expect_answer({0xFA, 0x00}, Next::flush, {0x00, 0x00});
  // 300 bytes of content: FF and 255 bytes, 2D and 45 bytes, 00.
  e.session.feed(request(tasks::kInlineEcho, pattern(300)));
  ASSERT_EQ(e.session.serve_buffered(), Next::flush);
  const Bytes out = e.session.take_output();
  ASSERT_EQ(out.size(), 1U + 1 + 255 + 1 + 45 + 1);
  EXPECT_EQ(out[0], 0x00);
  EXPECT_EQ(out[1], 0xFF);
  EXPECT_EQ(out[2 + 255], 0x2D);
  EXPECT_EQ(out.back(), 0x00);
  EXPECT_EQ(out, tasks::ok_answer(pattern(300)));
}

// ---- what the engine leaves to its driver -----------------------------------------------------

TEST(SessionEngine, CoroutineAndBlockingTasksAreLeftToTheDriver) {
  for (const TaskCode code : {tasks::kEcho, tasks::kBlockingEcho}) {
    SCOPED_TRACE(int{code});
    Engine e;
    e.session.feed({code, 0x02, 0xAA, 0xBB, 0x00});
    ASSERT_EQ(e.session.serve_buffered(), Next::task);
    EXPECT_EQ(e.session.next_code(), code);
    EXPECT_EQ(e.session.buffered_input(), (Bytes{0x02, 0xAA, 0xBB, 0x00}));
    EXPECT_EQ(e.session.output_size(), 0U);
  }
}

TEST(SessionEngine, IncompleteInlineRequestIsLeftToTheDriver) {
  const Bytes whole = request(tasks::kInlineEcho, pattern(300));
  // After the code, mid-block, after a whole block, before the end byte.
  for (const std::size_t cut :
       {std::size_t{1}, std::size_t{3}, std::size_t{257}, whole.size() - 1}) {
    SCOPED_TRACE(cut);
    Engine e;
    e.session.feed(Bytes(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(cut)));
    ASSERT_EQ(e.session.serve_buffered(), Next::task);
    EXPECT_EQ(e.session.next_code(), tasks::kInlineEcho);
    EXPECT_EQ(e.session.buffered_input(),
              Bytes(whole.begin() + 1, whole.begin() + static_cast<std::ptrdiff_t>(cut)));
    EXPECT_EQ(e.session.output_size(), 0U);
  }
}

TEST(SessionEngine, RequestSizeLimitLeavesLargerRequestsToTheDriver) {
  ServerOptions options = quiet_options();
  options.max_request_bytes = 8;
  // Answered only when the encoded message is within the limit: 6 content bytes are 8 encoded.
  Engine e(options);
  e.expect_answer(request(tasks::kInlineEcho, pattern(6)), Next::flush,
                  tasks::ok_answer(pattern(6)));
  // 7 and 8 content bytes are within the limit, but not their encoding; 9 are over it. The
  // driver reads them through the task (and answers Error 254 past the limit).
  for (const std::size_t n : std::initializer_list<std::size_t>{7, 8, 9}) {
    SCOPED_TRACE(n);
    Engine over(options);
    over.session.feed(request(tasks::kInlineEcho, pattern(n)));
    ASSERT_EQ(over.session.serve_buffered(), Next::task);
    EXPECT_EQ(over.session.next_code(), tasks::kInlineEcho);
    EXPECT_EQ(over.session.buffered_input().size(), n + 2);
    EXPECT_EQ(over.session.output_size(), 0U);
    EXPECT_EQ(over.session.hook_calls, 0);  // not the engine's to cancel
  }
}

// ---- pipelining and when output is due ------------------------------------------------------

TEST(SessionEngine, PipelinedRequestsAreAnsweredInOrderInOneCall) {
  Engine e;
  e.session.feed(concat({{0xFA, 0x00},
                         {tasks::kInlineEcho, 0x02, 0x61, 0x62, 0x00},
                         {0x09, 0x00},
                         {tasks::kInlineError, 0x01, 0x05, 0x00},
                         {0x07, 0x04, 0x01, 0x02, 0x03, 0x04, 0x00}}));
  ASSERT_EQ(e.session.serve_buffered(), Next::flush);
  EXPECT_TRUE(e.session.holds_buffers());
  EXPECT_EQ(e.session.take_output(), concat({{0x00, 0x00},
                                             {0x00, 0x02, 0x61, 0x62, 0x00},
                                             {0x01, 0xFF},
                                             {0x01, 0x05},
                                             {0x00, 0x02, 0x68, 0x69, 0x00}}));
  EXPECT_EQ(e.session.serve_buffered(), Next::read);
  EXPECT_FALSE(e.session.holds_buffers());  // an idle connection holds no buffer
}

TEST(SessionEngine, OutputWaitsWhileAWholeRequestIsBuffered) {
  Engine e;
  // Two keep-alives, then a coroutine task: the answers wait in the output buffer, to go out in
  // one write with the task's.
  e.session.feed({0xFA, 0x00, 0xFA, 0x00, tasks::kEcho, 0x01, 0x41, 0x00});
  ASSERT_EQ(e.session.serve_buffered(), Next::task);
  EXPECT_EQ(e.session.next_code(), tasks::kEcho);
  EXPECT_EQ(e.session.take_output(), (Bytes{0x00, 0x00, 0x00, 0x00}));
}

TEST(SessionEngine, OutputIsDueWhenNoWholeRequestIsLeft) {
  Engine e;
  // The keep-alive is answered; the inline request behind it is cut: flush before reading on.
  e.expect_answer({0xFA, 0x00, tasks::kInlineEcho, 0x02, 0x41}, Next::flush, {0x00, 0x00});
  EXPECT_EQ(e.session.serve_buffered(), Next::task);
  EXPECT_EQ(e.session.next_code(), tasks::kInlineEcho);
}

TEST(SessionEngine, OutputIsDueWhenHalfFull) {
  Engine e;
  e.session.fill_output(detail::kOutputCapacity / 2);
  e.session.feed({0xFA, 0x00});
  ASSERT_EQ(e.session.serve_buffered(), Next::flush);
  EXPECT_EQ(e.session.output_size(), detail::kOutputCapacity / 2);  // nothing served
  EXPECT_EQ(e.session.buffered_input(), (Bytes{0xFA, 0x00}));
  e.session.take_output();
  EXPECT_EQ(e.session.serve_buffered(), Next::flush);
  EXPECT_EQ(e.session.take_output(), (Bytes{0x00, 0x00}));
}

// ---- disconnection ----------------------------------------------------------------------------

TEST(SessionEngine, DisconnectAnswersABufferedRequestWithGoodbye) {
  Engine e;
  e.session.feed({0xFA, 0x00});
  e.session.request_disconnect();
  ASSERT_EQ(e.session.serve_buffered(), Next::goodbye);
  EXPECT_EQ(e.session.next_code(), kKeepAliveTaskCode);
  EXPECT_EQ(e.session.output_size(), 0U);
}

TEST(SessionEngine, DisconnectWhileIdleEndsTheConnection) {
  Engine e;
  e.session.request_disconnect();
  EXPECT_EQ(e.session.serve_buffered(), Next::disconnect);

  // After an answer: the answer goes out first.
  Engine served;
  served.session.feed({0xFA, 0x00});
  ASSERT_EQ(served.session.serve_buffered(), Next::flush);
  served.session.request_disconnect();
  EXPECT_EQ(served.session.serve_buffered(), Next::flush);
  EXPECT_EQ(served.session.take_output(), (Bytes{0x00, 0x00}));
  EXPECT_EQ(served.session.serve_buffered(), Next::disconnect);
  EXPECT_FALSE(served.session.holds_buffers());
}

// ---- an answer that does not fit --------------------------------------------------------------

TEST(SessionEngine, NearlyFullOutputIsFlushedBeforeTheNextRequest) {
  Engine e;
  e.session.fill_output(detail::kOutputCapacity - 10);
  e.session.feed(request(tasks::kInlineEcho, pattern(20)));
  ASSERT_EQ(e.session.serve_buffered(), Next::flush);
  EXPECT_EQ(e.session.output_size(), detail::kOutputCapacity - 10);
  EXPECT_EQ(e.session.buffered_input(), request(tasks::kInlineEcho, pattern(20)));
}

TEST(SessionEngine, AnswerThatDoesNotFitIsPending) {
  Engine e;
  // A partial write left 10 bytes at the end of the buffer: little output, no room behind it.
  e.session.fill_output(detail::kOutputCapacity - 10);
  e.session.drop_output(detail::kOutputCapacity - 20);
  e.session.feed(request(tasks::kInlineEcho, pattern(20)));
  ASSERT_EQ(e.session.serve_buffered(), Next::finish);
  EXPECT_EQ(e.session.output_size(), 10U);
  EXPECT_EQ(e.session.buffered_input(), Bytes{});  // the request was served
  detail::PendingAnswer pending = e.session.take_pending();
  e.session.end_pending_task();
  EXPECT_FALSE(pending.end.failure.has_value());
  EXPECT_FALSE(pending.end.error_code.has_value());
  EXPECT_EQ(pending.end.record.code, tasks::kInlineEcho);
  EXPECT_EQ(pending.response.bytes(), pattern(20));

  // An Error answer needs two bytes.
  e.session.fill_output(9);
  e.session.feed({tasks::kInlineError, 0x01, 0x05, 0x00});
  ASSERT_EQ(e.session.serve_buffered(), Next::finish);
  pending = e.session.take_pending();
  e.session.end_pending_task();
  EXPECT_EQ(pending.end.error_code, ErrorCode{5});
  EXPECT_EQ(e.session.output_size(), 19U);
}

// ---- the task report --------------------------------------------------------------------------

TEST(SessionEngine, ReportsEveryTaskItAnswers) {
  auto metrics = std::make_shared<RecordingMetrics>();
  ServerOptions options = quiet_options();
  options.metrics = metrics;
  Engine e(std::move(options));
  e.session.feed(concat({{0xFA, 0x00},
                         {tasks::kInlineEcho, 0x03, 0x61, 0x62, 0x63, 0x00},
                         request(tasks::kInlineEcho, pattern(300)),
                         {0x09, 0x02, 0xAA, 0xBB, 0x00},
                         {tasks::kInlineError, 0x01, 0x05, 0x00},
                         {kInlineTaskError, 0x01, 0x2A, 0x00}}));
  ASSERT_EQ(e.session.serve_buffered(), Next::flush);
  const std::vector<Recorded> expected{
      {kKeepAliveTaskCode, "", TaskOutcome::ok, 0, 0, 0},
      {tasks::kInlineEcho, "inline-echo", TaskOutcome::ok, 0, 3, 3},
      {tasks::kInlineEcho, "inline-echo", TaskOutcome::ok, 0, 300, 300},
      {9, "", TaskOutcome::error, kUnknownTaskErrorCode, 2, 0},
      {tasks::kInlineError, "inline-error", TaskOutcome::error, 5, 1, 0},
      {kInlineTaskError, "inline-task-error", TaskOutcome::error, 42, 1, 0},
  };
  EXPECT_EQ(metrics->records, expected);
}

}  // namespace
}  // namespace serialserver::test
