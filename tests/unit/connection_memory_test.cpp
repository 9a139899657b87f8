// The connection state machine (detail::StreamConnection) over the in-memory stream:
// docs/protocol.md sections 3, 4 and 8 under every input and output chunking, pipelining, draining,
// requests cut off by the end of the stream, goodbye, timeouts and cancellation of a pending read,
// the Client handle's cancel, close and disconnect called at every step of a pipelined workload,
// and a failure injected at every single stream operation, over the standard test tasks of every
// kind (support/task_fixtures.hpp). No sockets, no threads besides the worker pool of the blocking
// tasks; every run is bounded in time.

#include <serialserver/serialserver.hpp>
#include "net/stream_connection.hpp"
#include "support/handle_call.hpp"
#include "support/memory_stream.hpp"
#include "support/task_fixtures.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<std::uint8_t>;
using Conn = detail::StreamConnection<MemoryStream>;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kUnlimited = MemoryStream::kUnlimited;

Bytes bytes(std::initializer_list<int> list) {
  Bytes out;
  for (int v : list) {
    out.push_back(static_cast<std::uint8_t>(v));
  }
  return out;
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) {
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

std::string hex(std::span<const std::uint8_t> data, std::size_t max = 64) {
  std::string s;
  char buf[4];
  for (std::size_t i = 0; i < data.size() && i < max; ++i) {
    std::snprintf(buf, sizeof buf, "%02X ", data[i]);
    s += buf;
  }
  if (data.size() > max) {
    s += "... (" + std::to_string(data.size()) + " bytes)";
  }
  return s;
}

bool is_prefix(const Bytes& prefix, const Bytes& whole) {
  return prefix.size() <= whole.size() && std::equal(prefix.begin(), prefix.end(), whole.begin());
}

// ---- an independent model of the wire format and of the test's tasks ------------------------

/// Encodes content the way a sender of this project does: full 255-byte blocks, the remainder,
/// then the end byte (written here independently of the library's encoder).
Bytes encode_standard(const Bytes& content) {
  Bytes out;
  std::size_t i = 0;
  while (i < content.size()) {
    const std::size_t n = std::min<std::size_t>(255, content.size() - i);
    out.push_back(static_cast<std::uint8_t>(n));
    out.insert(out.end(), content.begin() + static_cast<std::ptrdiff_t>(i),
               content.begin() + static_cast<std::ptrdiff_t>(i + n));
    i += n;
  }
  out.push_back(0);
  return out;
}

/// Encodes content in blocks of random sizes (a receiver must accept every split).
Bytes encode_random_split(const Bytes& content, std::mt19937& rng) {
  Bytes out;
  std::size_t i = 0;
  while (i < content.size()) {
    const std::size_t max = std::min<std::size_t>(255, content.size() - i);
    const std::size_t n = (rng() % 3 == 0) ? max : 1 + rng() % max;
    out.push_back(static_cast<std::uint8_t>(n));
    out.insert(out.end(), content.begin() + static_cast<std::ptrdiff_t>(i),
               content.begin() + static_cast<std::ptrdiff_t>(i + n));
    i += n;
  }
  out.push_back(0);
  return out;
}

// The tasks: the standard set of support/task_fixtures.hpp (every kind), and its model.
using tasks::kBlockingEcho;
using tasks::kEcho;
using tasks::kEmpty;
using tasks::kError;
using tasks::kHi;
using tasks::kPartial;
using tasks::kProducer;
using tasks::kThrows;
using tasks::produced_content;
constexpr TaskCode kUnknown = tasks::kUnregistered;

Bytes ok(const Bytes& content) { return concat({bytes({0x00}), encode_standard(content)}); }

struct Request {
  TaskCode code;
  Bytes content;
};

/// What the server answers to `r` (docs/protocol.md sections 3 and 4, and the test tasks).
/// Workloads hold no failing task: every request is answered.
Bytes expected_response(const Request& r) {
  return tasks::expected_answer(r.code, r.content).value();
}

/// A client's bytes and the server's expected answer to them.
struct Workload {
  Bytes input;
  Bytes expected;
  std::error_code end;  // how the connection ends once the input has been served
};

Workload make_workload(const std::vector<Request>& requests, std::mt19937& rng, bool random_split) {
  Workload w;
  w.end = make_error_code(Errc::peer_closed);
  for (const auto& r : requests) {
    w.input.push_back(r.code);
    const Bytes body =
        random_split ? encode_random_split(r.content, rng) : encode_standard(r.content);
    w.input.insert(w.input.end(), body.begin(), body.end());
    const Bytes answer = expected_response(r);
    w.expected.insert(w.expected.end(), answer.begin(), answer.end());
    if (r.code == kGoodbyeTaskCode) {
      w.end = make_error_code(Errc::graceful_disconnect);
      break;
    }
  }
  return w;
}

/// docs/protocol.md section 8, as one pipelined conversation ending with goodbye.
Workload worked_bytes() {
  const Bytes c300 = produced_content(300);
  const Bytes head(c300.begin(), c300.begin() + 255);
  const Bytes tail(c300.begin() + 255, c300.end());
  Workload w;
  w.input = concat({
      bytes({0x07, 0x04, 0x01, 0x02, 0x03, 0x04, 0x00}),        // task 7, content 01 02 03 04
      bytes({0x07, 0x03, 0x01, 0x02, 0x03, 0x01, 0x04, 0x00}),  // the same content, split
      bytes({0x02, 0x00}),                                      // OK with no content
      bytes({0x03, 0x01, 0x03, 0x00}),                          // Error, code 3
      bytes({0x09, 0x00}),                                      // unknown task 9
      bytes({0xFB, 0x00, 0xFC, 0x00, 0xFD, 0x00, 0xFE, 0x00}),  // unassigned (describe is off)
      bytes({0xFA, 0x00}),                                      // keep-alive
      bytes({0x01, 0xFF}), head, bytes({0x2D}), tail,
      bytes({0x00}),        // echo of 300 bytes: FF + 255, 2D + 45, 00
      bytes({0xFF, 0x00}),  // goodbye
      bytes({0x01, 0x00}),  // after goodbye: never read
  });
  w.expected = concat({
      bytes({0x00, 0x02, 0x68, 0x69, 0x00}),
      bytes({0x00, 0x02, 0x68, 0x69, 0x00}),
      bytes({0x00, 0x00}),
      bytes({0x01, 0x03}),
      bytes({0x01, 0xFF}),
      bytes({0x01, 0xFF, 0x01, 0xFF, 0x01, 0xFF, 0x01, 0xFF}),
      bytes({0x00, 0x00}),
      bytes({0x00, 0xFF}),
      head,
      bytes({0x2D}),
      tail,
      bytes({0x00}),
      bytes({0x02}),
  });
  w.end = make_error_code(Errc::graceful_disconnect);
  return w;
}

Bytes random_bytes(std::mt19937& rng, std::size_t n) {
  Bytes out(n);
  for (auto& b : out) {
    b = static_cast<std::uint8_t>(rng());
  }
  return out;
}

/// `count` requests of every kind the model knows, with contents of assorted sizes.
std::vector<Request> mixed_requests(std::mt19937& rng, std::size_t count, bool with_blocking) {
  static constexpr TaskCode kCodes[] = {
      kEcho,    kEmpty, kError, kProducer,    kPartial, kHi, kKeepAliveTaskCode,
      kUnknown, 252,    kEcho,  kBlockingEcho};
  const std::size_t kinds = std::size(kCodes) - (with_blocking ? 0 : 1);
  std::vector<Request> out;
  for (std::size_t i = 0; i < count; ++i) {
    Request r{kCodes[rng() % kinds], {}};
    const unsigned size_class = rng() % 8;
    const std::size_t size = size_class < 4   ? rng() % 4
                             : size_class < 7 ? rng() % 300
                                              : 255 + rng() % 1000;
    r.content = random_bytes(rng, size);
    if (r.code == kProducer) {
      const std::size_t length = rng() % 3 == 0 ? 0 : rng() % 3000;
      r.content = bytes({static_cast<int>(length >> 8), static_cast<int>(length & 0xFF)});
    } else if (r.code == kHi && rng() % 2 == 0) {
      r.content = bytes({1, 2, 3, 4});
    } else if (r.code == kError && !r.content.empty()) {
      r.content[0] = static_cast<std::uint8_t>(r.content[0] % 200);
    }
    out.push_back(std::move(r));
  }
  return out;
}

// ---- the harness ----------------------------------------------------------------------------

ServerOptions quiet_options(Timeout timeout = {}) {
  ServerOptions options;
  options.logger = make_null_logger();
  options.timeout = timeout;
  options.worker_threads = 2;
  // The workloads end their input after whole requests (a half-close): every answer is due.
  options.cancel_task_on_end_of_stream = false;
  // The workloads' model answers 251 as an unassigned code: describe switched off (session_test
  // and the loopback worked bytes check the listing).
  options.describe = false;
  return options;
}

void register_tasks(Server& server) { tasks::register_standard_tasks(server); }

struct Outcome {
  bool finished = false;
  bool threw = false;
  std::error_code reason;
  Bytes output;
  std::uint64_t operations = 0;
  std::uint64_t injected_failures = 0;
  std::size_t clients_after = 0;
};

/// Called repeatedly while the connection runs (with the connection and the stream's peer);
/// lets a test act on the running connection.
using Poke = std::function<void(Conn&, const MemoryStream::Peer&)>;

/// Serves `stream` with a fresh connection of `server` until run() returns (at most `limit`),
/// running the io_context on this thread, then lets the connection's leftovers finish.
Outcome serve(Server& server, asio::io_context& io, MemoryStream stream,
              std::chrono::milliseconds limit = 5000ms, const Poke& poke = {}) {
  const auto peer = stream.peer();
  auto conn = std::make_shared<Conn>(server, std::move(stream), ByteOrder::big_endian,
                                     SessionData{}, "memory", "peer");
  auto result = std::make_shared<std::optional<std::error_code>>();
  auto threw = std::make_shared<bool>(false);
  asio::co_spawn(io, conn->run(),
                 asio::bind_cancellation_slot(
                     conn->task_cancellation_slot(),
                     [result, threw](const std::exception_ptr& e, std::error_code ec) {
                       *threw = e != nullptr;
                       *result = ec;
                     }));
  const auto deadline = Clock::now() + limit;
  io.restart();
  while (!*result && Clock::now() < deadline) {
    // One handler at a time, so that the run is seen to end at once; a wait for a timer or for
    // the worker pool is bounded too.
    if (io.run_one_for(2ms) == 0 && io.stopped()) {
      break;  // no work left although run() has not returned: it never will
    }
    if (poke && !*result) {
      poke(*conn, peer);
    }
  }
  Outcome out;
  out.finished = result->has_value();
  if (!out.finished) {
    // Hung: close the connection so that the server can be destroyed, and report it.
    conn->close();
    const auto hard_deadline = Clock::now() + 1000ms;
    io.restart();
    while (!*result && Clock::now() < hard_deadline) {
      if (io.run_one_for(5ms) == 0 && io.stopped()) {
        break;
      }
    }
  }
  // Let the watchdog and any posted leftovers finish.
  const auto drain_deadline = Clock::now() + 1000ms;
  while (Clock::now() < drain_deadline) {
    if (io.run_one_for(2ms) == 0 && io.stopped()) {
      break;
    }
  }
  out.threw = *threw;
  out.reason = result->value_or(std::error_code{});
  out.output = peer.output();
  out.operations = peer.operations();
  out.injected_failures = peer.injected_failures();
  out.clients_after = server.num_clients();
  if (out.clients_after != 0) {
    // ~Server waits for its clients: a connection that never ends would hang the test binary.
    std::fprintf(stderr, "connection never ended; aborting rather than hanging\n");
    std::abort();
  }
  return out;
}

MemoryStream make_stream(asio::io_context& io, const Bytes& input, std::size_t read_chunk,
                         std::size_t write_chunk,
                         MemoryStream::AtEnd at_end = MemoryStream::AtEnd::eof) {
  MemoryStream stream(io.get_executor(), input);
  stream.read_chunk(read_chunk).write_chunk(write_chunk).at_end(at_end);
  return stream;
}

std::string chunk_name(std::size_t n) { return n == kUnlimited ? "unlimited" : std::to_string(n); }

class ConnectionMemory : public ::testing::Test {
 protected:
  ConnectionMemory() : server_(quiet_options()) { register_tasks(server_); }

  Outcome run(const Bytes& input, std::size_t read_chunk, std::size_t write_chunk) {
    asio::io_context io;
    return serve(server_, io, make_stream(io, input, read_chunk, write_chunk));
  }

  Server server_;
};

// ---- the stream itself ----------------------------------------------------------------------

TEST(MemoryStream, DeliversInChunksCapturesWritesAndNeverCompletesInline) {
  asio::io_context io;
  MemoryStream stream(io.get_executor(), bytes({1, 2, 3, 4, 5}));
  stream.read_chunk(2).write_chunk(3);
  std::uint8_t buf[8];
  std::vector<std::size_t> reads;
  std::error_code last;
  bool inline_completion = false;
  bool initiating = false;  // true while async_read_some is being called
  std::function<void()> next = [&] {
    initiating = true;
    stream.async_read_some(asio::buffer(buf), [&](std::error_code ec, std::size_t n) {
      inline_completion = inline_completion || initiating;
      last = ec;
      if (!ec) {
        reads.push_back(n);
        next();
      }
    });
    initiating = false;
  };
  next();
  io.run();
  EXPECT_FALSE(inline_completion);
  EXPECT_EQ(reads, (std::vector<std::size_t>{2, 2, 1}));
  EXPECT_EQ(last, asio::error::eof);

  std::size_t written = 0;
  const Bytes data = bytes({9, 8, 7, 6, 5});
  stream.async_write_some(asio::buffer(data), [&](std::error_code ec, std::size_t n) {
    EXPECT_FALSE(ec);
    written = n;
  });
  EXPECT_EQ(written, 0U);
  io.restart();
  io.run();
  EXPECT_EQ(written, 3U);
  EXPECT_EQ(stream.output(), bytes({9, 8, 7}));
  EXPECT_EQ(stream.operations(), 5U);
}

TEST(MemoryStream, FailsTheNthOperationOnly) {
  asio::io_context io;
  MemoryStream stream(io.get_executor(), bytes({1, 2, 3}));
  stream.read_chunk(1).fail_at(2, asio::error::connection_reset);
  std::uint8_t buf[4];
  std::vector<std::error_code> results;
  for (int i = 0; i < 3; ++i) {
    stream.async_read_some(asio::buffer(buf),
                           [&](std::error_code ec, std::size_t) { results.push_back(ec); });
  }
  io.run();
  ASSERT_EQ(results.size(), 3U);
  EXPECT_FALSE(results[0]);
  EXPECT_EQ(results[1], asio::error::connection_reset);
  EXPECT_FALSE(results[2]);
  EXPECT_EQ(stream.peer().injected_failures(), 1U);
}

TEST(MemoryStream, PendingReadIsCancelledByCloseByItsSlotAndFedByInput) {
  asio::io_context io;
  MemoryStream stream(io.get_executor());
  stream.at_end(MemoryStream::AtEnd::pend);
  const auto peer = stream.peer();
  std::uint8_t buf[4];
  std::optional<std::error_code> result;
  std::size_t got = 0;
  auto handler = [&](std::error_code ec, std::size_t n) {
    result = ec;
    got = n;
  };

  // Fed by input.
  stream.async_read_some(asio::buffer(buf), handler);
  io.run_for(10ms);
  EXPECT_FALSE(result);
  EXPECT_TRUE(peer.read_pending());
  peer.append_input(bytes({7, 7}));
  io.restart();
  io.run_for(10ms);
  ASSERT_TRUE(result);
  EXPECT_FALSE(*result);
  EXPECT_EQ(got, 2U);

  // Cancelled through the handler's cancellation slot.
  result.reset();
  asio::cancellation_signal signal;
  stream.async_read_some(asio::buffer(buf), asio::bind_cancellation_slot(signal.slot(), handler));
  io.restart();
  io.run_for(10ms);
  EXPECT_FALSE(result);
  signal.emit(asio::cancellation_type::terminal);
  EXPECT_FALSE(result);  // not inline
  io.restart();
  io.run_for(10ms);
  ASSERT_TRUE(result);
  EXPECT_EQ(*result, asio::error::operation_aborted);
  EXPECT_FALSE(peer.read_pending());

  // Aborted by close; later operations fail.
  result.reset();
  stream.async_read_some(asio::buffer(buf), handler);
  io.restart();
  io.run_for(10ms);
  std::error_code ec;
  stream.close(ec);
  io.restart();
  io.run_for(10ms);
  ASSERT_TRUE(result);
  EXPECT_EQ(*result, asio::error::operation_aborted);
  result.reset();
  stream.async_write_some(asio::buffer(buf), handler);
  io.restart();
  io.run_for(10ms);
  ASSERT_TRUE(result);
  EXPECT_EQ(*result, asio::error::bad_descriptor);
  EXPECT_TRUE(peer.closed());
}

// ---- the connection -------------------------------------------------------------------------

TEST_F(ConnectionMemory, WorkedBytesUnderEveryChunking) {
  const Workload w = worked_bytes();
  for (std::size_t read_chunk :
       {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7}, kUnlimited}) {
    for (std::size_t write_chunk : {std::size_t{1}, kUnlimited}) {
      SCOPED_TRACE("read chunk " + chunk_name(read_chunk) + ", write chunk " +
                   chunk_name(write_chunk));
      const Outcome o = run(w.input, read_chunk, write_chunk);
      ASSERT_TRUE(o.finished);
      EXPECT_FALSE(o.threw);
      EXPECT_EQ(o.reason, make_error_code(Errc::graceful_disconnect)) << o.reason.message();
      EXPECT_EQ(o.output, w.expected) << "got " << hex(o.output) << "\nwant " << hex(w.expected);
    }
  }
  EXPECT_EQ(server_.num_clients(), 0U);
}

TEST_F(ConnectionMemory, PipelinedRequestsAreAnsweredInOrder) {
  std::mt19937 rng(20240607);
  const Workload w = make_workload(mixed_requests(rng, 200, /*with_blocking=*/true), rng, true);
  const std::pair<std::size_t, std::size_t> chunkings[] = {
      {1, kUnlimited}, {7, 5}, {3, 13}, {kUnlimited, kUnlimited}, {4096, 1000}};
  for (const auto& [read_chunk, write_chunk] : chunkings) {
    SCOPED_TRACE("read chunk " + chunk_name(read_chunk) + ", write chunk " +
                 chunk_name(write_chunk));
    const Outcome o = run(w.input, read_chunk, write_chunk);
    ASSERT_TRUE(o.finished);
    EXPECT_FALSE(o.threw);
    EXPECT_EQ(o.reason, w.end) << o.reason.message();
    ASSERT_EQ(o.output.size(), w.expected.size());
    const auto mismatch = std::mismatch(o.output.begin(), o.output.end(), w.expected.begin());
    EXPECT_TRUE(mismatch.first == o.output.end())
        << "first difference at byte " << (mismatch.first - o.output.begin());
  }
}

TEST_F(ConnectionMemory, TaskThatStopsReadingEarlyHasTheRestDrained) {
  std::mt19937 rng(5);
  const std::vector<Request> requests = {
      {kPartial, random_bytes(rng, 1000)},
      {kEcho, bytes({0x78, 0x79, 0x7A})},
      {kPartial, {}},
      {kPartial, random_bytes(rng, 255)},
      {kError, bytes({42})},
      {kPartial, random_bytes(rng, 256)},
      {kHi, bytes({1, 2, 3, 4})},
  };
  for (bool split : {false, true}) {
    const Workload w = make_workload(requests, rng, split);
    for (std::size_t read_chunk : {std::size_t{1}, std::size_t{5}, kUnlimited}) {
      SCOPED_TRACE("read chunk " + chunk_name(read_chunk) + (split ? ", random split" : ""));
      const Outcome o = run(w.input, read_chunk, kUnlimited);
      ASSERT_TRUE(o.finished);
      EXPECT_EQ(o.reason, make_error_code(Errc::peer_closed)) << o.reason.message();
      EXPECT_EQ(o.output, w.expected) << "got " << hex(o.output) << "\nwant " << hex(w.expected);
    }
  }
}

TEST(ConnectionMemoryLimit, OverTheLimitRequestIsAnswered254WhateverTheTaskRead) {
  // Found by fuzzing (fuzz/corpus/connection/limit-unread): a task that read little or nothing
  // of an over-the-limit request got OK, since only the drain saw the excess. docs/protocol.md
  // section 5: Error 254 for every task, and the connection stays usable.
  ServerOptions options = quiet_options();
  options.max_request_bytes = 8;
  Server server(std::move(options));
  register_tasks(server);
  std::mt19937 rng(11);
  const Bytes big = random_bytes(rng, 300);  // more than one block, so the excess is drained
  const Bytes input = concat({
      bytes({kEmpty}),
      encode_standard(big),  // reads nothing
      bytes({kPartial}),
      encode_standard(big),  // reads one byte
      bytes({kProducer}),
      encode_standard(bytes({0, 9})),  // under the limit: OK
      bytes({kEmpty}),
      encode_standard(random_bytes(rng, 9)),
      bytes({kEcho}),
      encode_standard(big),  // reads everything
      bytes({kBlockingEcho}),
      encode_standard(big),
      bytes({kEmpty}),
      encode_standard(random_bytes(rng, 8)),  // at the limit: OK
      bytes({kPartial}),
      encode_standard(bytes({0x61})),
  });
  const Bytes too_large = bytes({0x01, 0xFE});
  const Bytes expected = concat({too_large, too_large, ok(produced_content(9)), too_large,
                                 too_large, too_large, ok({}), ok(bytes({0x61}))});
  for (std::size_t read_chunk : {std::size_t{1}, std::size_t{7}, kUnlimited}) {
    SCOPED_TRACE("read chunk " + chunk_name(read_chunk));
    asio::io_context io;
    const Outcome o = serve(server, io, make_stream(io, input, read_chunk, kUnlimited));
    ASSERT_TRUE(o.finished);
    EXPECT_EQ(o.reason, make_error_code(Errc::peer_closed)) << o.reason.message();
    EXPECT_EQ(o.output, expected) << "got " << hex(o.output) << "\nwant " << hex(expected);
  }
}

TEST_F(ConnectionMemory, RequestCutOffByEndOfStreamGetsNoResponse) {
  const Bytes before = bytes({kEmpty, 0x00, kEcho, 0x01, 0x41, 0x00});
  const Bytes answered = concat({ok({}), ok(bytes({0x41}))});
  struct Cut {
    const char* what;
    Bytes tail;
  };
  const Cut cuts[] = {
      {"after the task code", bytes({kEcho})},
      {"after a block length", bytes({kEcho, 0x05})},
      {"mid-block, task reading", bytes({kEcho, 0x05, 0x61, 0x62})},
      {"after a whole block, task reading", bytes({kEcho, 0x02, 0x61, 0x62})},
      {"mid-block, task not reading", bytes({kEmpty, 0x05, 0x61})},
      {"mid-block, partial reader", bytes({kPartial, 0x05, 0x61, 0x62})},
      {"mid-block, unknown task", bytes({kUnknown, 0x05, 0x61})},
      {"mid-block, keep-alive", bytes({kKeepAliveTaskCode, 0x03})},
      {"mid-block, producer", bytes({kProducer, 0x02, 0x01})},
      {"mid-block, blocking task", bytes({kBlockingEcho, 0x04, 0x61})},
  };
  for (const auto& cut : cuts) {
    for (std::size_t read_chunk : {std::size_t{1}, kUnlimited}) {
      SCOPED_TRACE(std::string(cut.what) + ", read chunk " + chunk_name(read_chunk));
      const Outcome o = run(concat({before, cut.tail}), read_chunk, kUnlimited);
      ASSERT_TRUE(o.finished);
      EXPECT_FALSE(o.threw);
      EXPECT_EQ(o.reason, make_error_code(Errc::peer_closed)) << o.reason.message();
      EXPECT_EQ(o.output, answered) << "got " << hex(o.output);
    }
  }
  EXPECT_EQ(server_.num_clients(), 0U);
}

TEST_F(ConnectionMemory, GoodbyeAnswers02AndEndsGracefully) {
  {
    const Outcome o = run(bytes({0xFF, 0x00}), kUnlimited, kUnlimited);
    ASSERT_TRUE(o.finished);
    EXPECT_EQ(o.reason, make_error_code(Errc::graceful_disconnect)) << o.reason.message();
    EXPECT_EQ(o.output, bytes({0x02}));
  }
  {
    // Pipelined behind other tasks, with bytes after it that are never served.
    const Bytes input = concat({bytes({kEcho, 0x01, 0x41, 0x00, 0xFA, 0x00, 0xFF, 0x00}),
                                bytes({kEcho, 0x01, 0x42, 0x00})});
    for (std::size_t read_chunk : {std::size_t{1}, kUnlimited}) {
      const Outcome o = run(input, read_chunk, 1);
      ASSERT_TRUE(o.finished);
      EXPECT_EQ(o.reason, make_error_code(Errc::graceful_disconnect)) << o.reason.message();
      EXPECT_EQ(o.output, concat({ok(bytes({0x41})), bytes({0x00, 0x00, 0x02})}));
    }
  }
  EXPECT_EQ(server_.num_clients(), 0U);
}

TEST_F(ConnectionMemory, FailingTaskDropsTheConnectionWithoutResponse) {
  const Outcome o =
      run(bytes({kEmpty, 0x00, kThrows, 0x01, 0x41, 0x00, kEmpty, 0x00}), kUnlimited, kUnlimited);
  ASSERT_TRUE(o.finished);
  EXPECT_EQ(o.reason, make_error_code(Errc::task_failed)) << o.reason.message();
  // The response to the first task may or may not have gone out before the drop (the server is
  // free to close silently); nothing of the failed task's or the next task's may.
  EXPECT_TRUE(is_prefix(o.output, ok({}))) << hex(o.output);
}

TEST_F(ConnectionMemory, StandardTasksOfEveryKindAnswerAsModelled) {
  std::mt19937 rng(3);
  std::vector<Request> requests;
  for (TaskCode code :
       {tasks::kInlineEcho, tasks::kBlockingEcho, kEcho, tasks::kInlineError, tasks::kBlockingError,
        kError, tasks::kReadU32, tasks::kCount, kHi, kProducer}) {
    for (std::size_t size : {0, 3, 4, 600}) {
      Request r{code, random_bytes(rng, size)};
      if (!r.content.empty()) {
        r.content[0] = static_cast<std::uint8_t>(r.content[0] % 8);  // Error codes; short produce
      }
      requests.push_back(std::move(r));
    }
  }
  for (bool split : {false, true}) {
    const Workload w = make_workload(requests, rng, split);
    for (std::size_t read_chunk : {std::size_t{1}, std::size_t{9}, kUnlimited}) {
      SCOPED_TRACE("read chunk " + chunk_name(read_chunk) + (split ? ", random split" : ""));
      const Outcome o = run(w.input, read_chunk, kUnlimited);
      ASSERT_TRUE(o.finished);
      EXPECT_EQ(o.reason, make_error_code(Errc::peer_closed)) << o.reason.message();
      EXPECT_EQ(o.output, w.expected) << "got " << hex(o.output) << "\nwant " << hex(w.expected);
    }
  }
  for (TaskCode code : {kThrows, tasks::kReadThrow, tasks::kInlineThrows, tasks::kBlockingThrows}) {
    SCOPED_TRACE("task " + std::to_string(code));
    EXPECT_FALSE(tasks::expected_answer(code, {}).has_value());
    const Outcome o =
        run(bytes({kEmpty, 0x00, code, 0x01, 0x41, 0x00, kEmpty, 0x00}), kUnlimited, kUnlimited);
    ASSERT_TRUE(o.finished);
    EXPECT_EQ(o.reason, make_error_code(Errc::task_failed)) << o.reason.message();
    EXPECT_TRUE(is_prefix(o.output, ok({}))) << hex(o.output);
  }
}

// ---- the pending read: timeouts, close, disconnect, cancel ---------------------------------

TEST(ConnectionMemoryPending, WaitTimeoutEndsAnIdleConnection) {
  Server server(quiet_options(Timeout{.wait = 50ms, .read = 5s, .write = 5s}));
  register_tasks(server);
  asio::io_context io;
  auto stream =
      make_stream(io, bytes({kEcho, 0x01, 0x41, 0x00}), 1, kUnlimited, MemoryStream::AtEnd::pend);
  const Outcome o = serve(server, io, std::move(stream));
  ASSERT_TRUE(o.finished);
  EXPECT_EQ(o.reason, make_error_code(Errc::timeout_waiting_for_task)) << o.reason.message();
  EXPECT_EQ(o.output, ok(bytes({0x41})));
  EXPECT_EQ(server.num_clients(), 0U);
}

TEST(ConnectionMemoryPending, ReadTimeoutMidRequestDropsWithoutResponse) {
  Server server(quiet_options(Timeout{.wait = 5s, .read = 50ms, .write = 5s}));
  register_tasks(server);
  for (TaskCode code : {kEcho, kEmpty, kUnknown}) {
    SCOPED_TRACE("task " + std::to_string(code));
    asio::io_context io;
    auto stream = make_stream(io, bytes({kEmpty, 0x00, code, 0x03, 0x41}), kUnlimited, kUnlimited,
                              MemoryStream::AtEnd::pend);
    const Outcome o = serve(server, io, std::move(stream));
    ASSERT_TRUE(o.finished);
    EXPECT_EQ(o.reason, make_error_code(Errc::read_timeout)) << o.reason.message();
    EXPECT_EQ(o.output, ok({}));
  }
  EXPECT_EQ(server.num_clients(), 0U);
}

TEST_F(ConnectionMemory, CloseAbortsThePendingRead) {
  asio::io_context io;
  auto stream =
      make_stream(io, bytes({kEmpty, 0x00}), kUnlimited, kUnlimited, MemoryStream::AtEnd::pend);
  const Outcome o =
      serve(server_, io, std::move(stream), 5000ms, [](Conn& c, const MemoryStream::Peer& p) {
        if (p.read_pending() && p.output().size() == 2) {
          c.close();
        }
      });
  ASSERT_TRUE(o.finished);
  EXPECT_EQ(o.reason, make_error_code(Errc::closed_by_server)) << o.reason.message();
  EXPECT_EQ(o.output, ok({}));
}

TEST_F(ConnectionMemory, DisconnectSaysGoodbyeToAnIdleConnectionThenLingers) {
  asio::io_context io;
  auto stream = make_stream(io, bytes({kEmpty, 0x00}), 1, kUnlimited, MemoryStream::AtEnd::pend);
  const Outcome o =
      serve(server_, io, std::move(stream), 5000ms, [](Conn& c, const MemoryStream::Peer& p) {
        if (p.read_pending() && p.output().size() == 2) {
          c.disconnect(std::chrono::seconds(10));
        }
      });
  ASSERT_TRUE(o.finished);
  EXPECT_EQ(o.reason, make_error_code(Errc::graceful_disconnect)) << o.reason.message();
  Bytes expected = ok({});
  expected.push_back(0x02);  // unprompted; the client never closes, so the linger ends it
  EXPECT_EQ(o.output, expected);
}

TEST_F(ConnectionMemory, CancelReachesATaskWaitingForItsRequest) {
  // The echo task waits for the rest of its request; Client::cancel() must cancel the stream's
  // pending read through the cancellation slot, so the connection ends instead of waiting for
  // the Read timeout (5 s by default; the limit here is 3 s).
  asio::io_context io;
  auto stream = make_stream(io, bytes({kEcho, 0x05, 0x41}), kUnlimited, kUnlimited,
                            MemoryStream::AtEnd::pend);
  bool cancelled = false;
  const Outcome o =
      serve(server_, io, std::move(stream), 3000ms, [&](Conn& c, const MemoryStream::Peer& p) {
        if (!cancelled && p.read_pending() && p.input_left() == 0) {
          cancelled = true;
          c.cancel();
        }
      });
  EXPECT_TRUE(cancelled);
  ASSERT_TRUE(o.finished) << "the pending read was not cancelled";
  EXPECT_TRUE(o.reason) << "a cancelled task that fails drops the connection";
  EXPECT_TRUE(o.output.empty()) << hex(o.output);
}

// Client::cancel(), close() and disconnect() called from outside at every step of a pipelined
// workload (every kind but blocking, whose timing varies from run to run): each run ends in
// bounded time without throwing, and the client has received a prefix of the answers it would
// have had without the call, then at most an unprompted Goodbye.
TEST_F(ConnectionMemory, HandleCallsAtEveryStepEndCleanly) {
  std::mt19937 rng(2026);
  const Workload w = make_workload(mixed_requests(rng, 8, false), rng, false);
  for (const HandleCall action : {HandleCall::cancel, HandleCall::close, HandleCall::disconnect_now,
                                  HandleCall::disconnect_later}) {
    int cut_short = 0;  // runs in which the call cost the client answers
    int goodbyes = 0;   // runs that ended with an unprompted Goodbye
    for (int step = 1;; ++step) {
      SCOPED_TRACE("action " + std::to_string(static_cast<int>(action)) + " at step " +
                   std::to_string(step));
      asio::io_context io;
      int pokes = 0;
      bool acted = false;
      const Outcome o = serve(server_, io, make_stream(io, w.input, 16, 64), 5000ms,
                              [&](Conn& c, const MemoryStream::Peer&) {
                                if (++pokes != step) {
                                  return;
                                }
                                acted = true;
                                make_handle_call(c, action);
                              });
      ASSERT_TRUE(o.finished);
      EXPECT_FALSE(o.threw);
      if (!acted) {  // the run ended before this step: every later step would too
        EXPECT_EQ(o.output, w.expected);
        break;
      }
      Bytes answers = o.output;
      if (says_goodbye(action) && !answers.empty() && answers.back() == 0x02 &&
          !is_prefix(answers, w.expected)) {
        answers.pop_back();  // the Goodbye after the last answer
        ++goodbyes;
      }
      ASSERT_TRUE(is_prefix(answers, w.expected))
          << "output:   " << hex(o.output) << "\nexpected: " << hex(w.expected);
      cut_short += answers.size() < w.expected.size() ? 1 : 0;
    }
    // Each call reached the connection at some step, not only after the work was done.
    EXPECT_GT(cut_short, 0);
    if (says_goodbye(action)) {
      EXPECT_GT(goodbyes, 0);
    }
  }
}

TEST_F(ConnectionMemory, InputArrivingLaterIsServed) {
  asio::io_context io;
  auto stream = make_stream(io, bytes({kEcho, 0x02}), 1, kUnlimited, MemoryStream::AtEnd::pend);
  int step = 0;
  const Outcome o =
      serve(server_, io, std::move(stream), 5000ms, [&](Conn&, const MemoryStream::Peer& p) {
        if (!p.read_pending()) {
          return;
        }
        if (step == 0 && p.input_left() == 0) {
          p.append_input(bytes({0x41, 0x42, 0x00, kEmpty}));
          step = 1;
        } else if (step == 1 && p.input_left() == 0) {
          p.append_input(bytes({0x00}));
          step = 2;
        } else if (step == 2 && p.output().size() == 7) {
          p.end_input();
          step = 3;
        }
      });
  ASSERT_TRUE(o.finished);
  EXPECT_EQ(o.reason, make_error_code(Errc::peer_closed)) << o.reason.message();
  EXPECT_EQ(o.output, concat({ok(bytes({0x41, 0x42})), ok({})}));
}

TEST_F(ConnectionMemory, ServesAClientOnTheOtherEndOfAConnectedPair) {
  // With a small capacity, the server's writes wait for the client to read, and its reads wait
  // for the client to write: every pending operation of the stream is taken by the connection.
  std::mt19937 rng(9);
  const std::vector<Request> requests = {{kEcho, random_bytes(rng, 30)},
                                         {kHi, bytes({1, 2, 3, 4})},
                                         {kError, bytes({5})},
                                         {kProducer, bytes({0, 200})},
                                         {kPartial, random_bytes(rng, 20)},
                                         {tasks::kInlineEcho, random_bytes(rng, 10)},
                                         {kBlockingEcho, random_bytes(rng, 25)},
                                         {kEmpty, {}},
                                         {kUnknown, bytes({1})},
                                         {kKeepAliveTaskCode, {}},
                                         {tasks::kCount, random_bytes(rng, 33)}};
  const Workload w = make_workload(requests, rng, true);
  for (std::size_t capacity : {std::size_t{3}, std::size_t{64}, kUnlimited}) {
    SCOPED_TRACE("capacity " + chunk_name(capacity));
    asio::io_context io;
    auto ends = MemoryStream::pair(io.get_executor());
    MemoryStream& client = ends.first;
    client.write_capacity(capacity);
    ends.second.write_capacity(capacity).read_chunk(7);
    std::size_t sent = 0;
    Bytes received;
    bool write_waited = false;
    std::size_t turns = 0;
    auto client_turn = [&](Conn& /*conn*/, const MemoryStream::Peer& server_end) {
      write_waited =
          write_waited || server_end.write_pending() || server_end.write_waits_pending() > 0;
      std::error_code ec;
      if (sent < w.input.size()) {
        sent += client.write_some(asio::buffer(w.input.data() + sent, w.input.size() - sent), ec);
      }
      if (++turns % 2 == 0) {  // reads every other turn, so the server's writes find no room
        std::uint8_t buf[256];
        for (std::size_t n = client.read_some(asio::buffer(buf), ec); !ec;
             n = client.read_some(asio::buffer(buf), ec)) {
          received.insert(received.end(), buf, buf + n);
        }
      }
      if (sent == w.input.size() && received.size() == w.expected.size()) {
        client.shutdown(asio::socket_base::shutdown_send, ec);
      }
    };
    const Outcome o = serve(server_, io, std::move(ends.second), 5000ms, client_turn);
    ASSERT_TRUE(o.finished);
    EXPECT_EQ(o.reason, make_error_code(Errc::peer_closed)) << o.reason.message();
    EXPECT_EQ(received, w.expected) << "got " << hex(received) << "\nwant " << hex(w.expected);
    EXPECT_EQ(o.output, w.expected);
    EXPECT_EQ(write_waited, capacity != kUnlimited) << "the server's writes waited for room";
  }
}

// ---- a failure at every operation -----------------------------------------------------------

struct FailureCase {
  std::string name;
  Workload workload;
  std::size_t read_chunk;
  std::size_t write_chunk;
};

void fail_every_operation(Server& server, const FailureCase& c, std::error_code error) {
  SCOPED_TRACE(c.name + ", read chunk " + chunk_name(c.read_chunk) + ", write chunk " +
               chunk_name(c.write_chunk) + ", error " + error.message());
  Outcome clean;
  {
    asio::io_context io;
    clean = serve(server, io, make_stream(io, c.workload.input, c.read_chunk, c.write_chunk));
  }
  ASSERT_TRUE(clean.finished);
  ASSERT_EQ(clean.reason, c.workload.end) << clean.reason.message();
  ASSERT_EQ(clean.output, c.workload.expected);
  ASSERT_GT(clean.operations, 0U);

  for (std::uint64_t n = 1; n <= clean.operations + 2; ++n) {
    SCOPED_TRACE("failing operation " + std::to_string(n) + " of " +
                 std::to_string(clean.operations));
    asio::io_context io;
    auto stream = make_stream(io, c.workload.input, c.read_chunk, c.write_chunk);
    stream.fail_at(n, error);
    const Outcome o = serve(server, io, std::move(stream), 3000ms);
    ASSERT_TRUE(o.finished) << "hung";
    EXPECT_FALSE(o.threw);
    EXPECT_EQ(o.clients_after, 0U);
    EXPECT_TRUE(is_prefix(o.output, clean.output))
        << "wrote bytes that are not a prefix of the clean transcript: " << hex(o.output);
    if (n <= clean.operations) {
      EXPECT_EQ(o.injected_failures, 1U);
      EXPECT_TRUE(o.reason) << "a failed operation must end the connection with an error";
      // At most one operation follows: the failure of a readiness wait that watched the peer
      // during a task arrives after the task's end has cancelled the wait and written on.
      EXPECT_LE(o.operations, n + 1) << "operations after the failure";
    } else {
      EXPECT_EQ(o.injected_failures, 0U);
      EXPECT_EQ(o.reason, clean.reason) << o.reason.message();
      EXPECT_EQ(o.output, clean.output);
      EXPECT_EQ(o.operations, clean.operations);
    }
    if (::testing::Test::HasFatalFailure()) {
      return;
    }
  }
}

TEST_F(ConnectionMemory, FailureAtEveryOperationEndsCleanly) {
  std::mt19937 rng(77);
  std::vector<FailureCase> cases;
  cases.push_back({"worked bytes", worked_bytes(), 3, kUnlimited});
  cases.push_back({"worked bytes", worked_bytes(), kUnlimited, 2});
  {
    // Producer responses longer than a write chunk, a partial reader, pipelining, EOF at the end.
    std::vector<Request> requests = {
        {kEcho, random_bytes(rng, 40)},    {kProducer, bytes({0x03, 0x10})},
        {kPartial, random_bytes(rng, 30)}, {kError, bytes({9})},
        {kKeepAliveTaskCode, {}},          {kUnknown, bytes({1, 2})},
        {kEcho, random_bytes(rng, 300)},   {kEmpty, bytes({5})},
    };
    cases.push_back({"mixed", make_workload(requests, rng, true), 17, 64});
    cases.push_back({"mixed", make_workload(requests, rng, false), kUnlimited, 100});
  }
  {
    // A mix with the blocking task, ending with goodbye.
    std::vector<Request> requests = mixed_requests(rng, 8, /*with_blocking=*/true);
    requests.push_back({kBlockingEcho, random_bytes(rng, 20)});
    requests.push_back({kGoodbyeTaskCode, {}});
    cases.push_back({"mixed with blocking, goodbye", make_workload(requests, rng, true), 29, 50});
  }
  const std::error_code errors[] = {asio::error::connection_reset, asio::error::network_down};
  std::size_t i = 0;
  for (const auto& c : cases) {
    fail_every_operation(server_, c, errors[i++ % std::size(errors)]);
    if (HasFatalFailure()) {
      return;
    }
  }
  EXPECT_EQ(server_.num_clients(), 0U);
}

}  // namespace
}  // namespace serialserver::test
