// Fuzz target: the per-connection state machine (detail::StreamConnection) over the in-memory
// stream.
//
// The input is what a client sends, followed by a few bytes that choose how the stream delivers
// it (bytes per read and per write, an injected I/O failure), whether the server limits the
// request size, and whether the Client handle's cancel, close or disconnect is called after a
// number of handlers have run. The connection serves it with the standard tasks of
// support/task_fixtures.hpp, of all three kinds: coroutine (echo, empty, coded error, streamed
// response, partial reader, failing ones...), inline (echo, Error, throwing: run in the read's
// completion handler when the request is all buffered and within the limit, else as a coroutine)
// and blocking (echo, Error, throwing, on the server's worker pool). It must:
// - end, in bounded time, with nothing left registered with the server;
// - write exactly the responses that an independent model of docs/protocol.md sections 3-5 and of
//   these tasks predicts, and end for the reason the model predicts (with an injected failure:
//   a prefix of those responses; with a handle call, such a prefix and at most a Goodbye);
// - not leak, overflow or hit undefined behaviour (AddressSanitizer, UBSan).
//
// Blocking tasks run on another thread, so how the I/O thread's steps (the peer monitor's reads
// above all) interleave with one varies from run to run. The transcript and the end reason do not
// depend on it: the connection reads and writes only on its I/O thread, and the end of stream
// that ends every input is taken as a half-close (cancel_task_on_end_of_stream = false), so
// every whole request is answered whether or not a blocking task still ran when it was seen.
// Both are checked exactly. What varies is which stream operation an injected failure hits (the
// monitor's reads count): an input with a blocking task and an injected failure may not replay
// the same way, and is checked, as every injected failure, against a prefix of the responses.

#include <serialserver/serialserver.hpp>
#include "fuzz_check.hpp"
#include "net/stream_connection.hpp"
#include "support/handle_call.hpp"
#include "support/memory_stream.hpp"
#include "support/task_fixtures.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/error.hpp>
#include <asio/io_context.hpp>

namespace {

using namespace serialserver;
using Bytes = std::vector<std::uint8_t>;
using test::HandleCall;
using test::MemoryStream;
namespace tasks = test::tasks;
using Conn = detail::StreamConnection<MemoryStream>;

// The tasks: the standard set (support/task_fixtures.hpp), all three kinds: coroutine 1..8, 10
// and 11, inline 12, 14 and 16, blocking 13, 15 and 17. The other codes below 250 and the
// reserved codes 251..254 (describe is switched off) are unknown to the server.
constexpr tasks::Kinds kKinds{.inline_tasks = true, .blocking_tasks = true};

// The limited server's max_request_bytes and max_request_drain_bytes. Whether a request past the
// limit is answered Error 254 and the connection goes on, or answered so and closed, depends on
// its content length alone (what its task read and what the drain discarded count alike),
// whatever the kind of its task.
constexpr std::uint64_t kLimit = 256;
constexpr std::uint64_t kDrain = 512;

/// The longest one input may take to serve: a few milliseconds are usual.
constexpr std::chrono::seconds kRunBound{10};

/// The options of both servers; `limited`: the one with the small request size limit.
ServerOptions server_options(bool limited) {
  ServerOptions options;
  options.logger = make_null_logger();
  options.worker_threads = 1;
  // The input ends with end of stream right after its last byte, often while a task still runs:
  // taken as a half-close, so that every whole request is answered, and the transcript does
  // not depend on whether a blocking task was still running when the end was seen.
  options.cancel_task_on_end_of_stream = false;
  // The model answers 251 as an unassigned code: describe switched off (the engine's unit test
  // and the loopback worked bytes check the listing).
  options.describe = false;
  if (limited) {
    options.max_request_bytes = kLimit;
    options.max_request_drain_bytes = kDrain;
  }
  return options;
}

Server& server(bool limited) {
  // Built once and never destroyed: a server per input would dominate the run time, and the
  // connections are independent of each other.
  static Server* const kServers[2] = {
      [] {
        auto* s = new Server(server_options(false));
        tasks::register_standard_tasks(*s, kKinds);
        return s;
      }(),
      [] {
        auto* s = new Server(server_options(true));
        tasks::register_standard_tasks(*s, kKinds);
        return s;
      }(),
  };
  return *kServers[limited ? 1 : 0];
}

// ---- the model ---------------------------------------------------------------------------------

struct Expected {
  Bytes output;
  std::error_code end;
};

void append(Bytes& out, std::initializer_list<std::uint8_t> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

/// What the server writes in answer to `input`, and why the connection ends: the framing, the
/// size limit and the end of the connection (docs/protocol.md sections 3-5) here, each whole
/// request's answer from the fixtures' model (tasks::expected_answer).
Expected model(std::span<const std::uint8_t> input, bool limited) {
  Expected e;
  std::size_t pos = 0;
  for (;;) {
    if (pos == input.size()) {
      e.end = make_error_code(Errc::peer_closed);
      return e;
    }
    const TaskCode code = input[pos++];
    if (code == kGoodbyeTaskCode) {  // answered at once, whatever follows
      e.output.push_back(0x02);
      e.end = make_error_code(Errc::graceful_disconnect);
      return e;
    }
    Bytes content;
    bool complete = false;
    while (pos < input.size()) {
      const std::size_t n = input[pos++];
      if (n == 0) {
        complete = true;
        break;
      }
      const std::size_t take = std::min(n, input.size() - pos);
      content.insert(content.end(), input.begin() + static_cast<std::ptrdiff_t>(pos),
                     input.begin() + static_cast<std::ptrdiff_t>(pos + take));
      pos += take;
    }
    // The one task that fails before it reads anything: nothing of its request matters. The
    // other failing tasks read their whole request first (an inline task too: when its request
    // is not all buffered, or past the limit, it runs as a coroutine that reads it).
    if (code == tasks::kThrows) {
      e.end = make_error_code(Errc::task_failed);
      return e;
    }
    const bool too_large = limited && content.size() > kLimit;
    if (limited && content.size() > kLimit + kDrain) {  // section 5: Error 254, then close
      append(e.output, {0x01, kMessageTooLargeErrorCode});
      e.end = make_error_code(Errc::message_too_large);
      return e;
    }
    if (!complete) {
      e.end = make_error_code(Errc::peer_closed);
      return e;
    }
    if (too_large) {  // section 5: for every task, whatever it made of the request
      append(e.output, {0x01, kMessageTooLargeErrorCode});
      continue;
    }
    const std::optional<Bytes> answer = tasks::expected_answer(code, content, kKinds);
    if (!answer) {  // the task failed: the connection is dropped after the earlier answers
      e.end = make_error_code(Errc::task_failed);
      return e;
    }
    e.output.insert(e.output.end(), answer->begin(), answer->end());
  }
}

bool is_prefix(const Bytes& prefix, const Bytes& whole) {
  return prefix.size() <= whole.size() && std::equal(prefix.begin(), prefix.end(), whole.begin());
}

std::string hex(std::span<const std::uint8_t> data) {
  std::string s;
  char buf[4];
  for (std::size_t i = 0; i < data.size() && i < 96; ++i) {
    std::snprintf(buf, sizeof buf, "%02X ", data[i]);
    s += buf;
  }
  if (data.size() > 96) {
    s += "... (" + std::to_string(data.size()) + " bytes)";
  }
  return s;
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider provider(data, size);
  // Parameters from the end of the input; the front is the client's bytes as sent.
  const auto read_choice = provider.ConsumeIntegral<std::uint8_t>();
  const auto write_choice = provider.ConsumeIntegral<std::uint8_t>();
  const auto flags = provider.ConsumeIntegral<std::uint8_t>();
  const auto fail_op = provider.ConsumeIntegral<std::uint8_t>();
  const auto handle_choice = provider.ConsumeIntegral<std::uint8_t>();
  const auto handle_step = provider.ConsumeIntegral<std::uint8_t>();
  const Bytes input = provider.ConsumeRemainingBytes<std::uint8_t>();

  // Bytes per read and per write: mostly unlimited, else 1..64 (64 + n: unlimited).
  const std::size_t read_chunk =
      read_choice < 128 ? MemoryStream::kUnlimited : read_choice % 64 + 1;
  const std::size_t write_chunk =
      write_choice < 128 ? MemoryStream::kUnlimited : write_choice % 64 + 1;
  const bool limited = (flags & 1) != 0;
  const bool inject = (flags & 6) == 6;  // a quarter of the runs fail one stream operation
  // A quarter of the runs call the Client handle after `handle_step` handlers have run.
  const HandleCall handle_call =
      handle_choice < 192 ? HandleCall::none : static_cast<HandleCall>(handle_choice % 4 + 1);

  Server& srv = server(limited);
  asio::io_context io;
  MemoryStream stream(io.get_executor(), input);
  stream.read_chunk(read_chunk).write_chunk(write_chunk);
  if (inject) {
    stream.fail_at(std::uint64_t{fail_op} % 32 + 1,
                   (flags & 8) != 0 ? make_error_code(asio::error::connection_reset)
                                    : make_error_code(asio::error::timed_out));
  }
  const auto peer = stream.peer();
  {
    auto conn = std::make_shared<Conn>(srv, std::move(stream), ByteOrder::big_endian, SessionData{},
                                       "memory", "fuzz");
    std::optional<std::error_code> result;
    bool threw = false;
    asio::co_spawn(io, conn->run(),
                   asio::bind_cancellation_slot(
                       conn->task_cancellation_slot(),
                       [&result, &threw](const std::exception_ptr& e, std::error_code ec) {
                         threw = e != nullptr;
                         result = ec;
                       }));
    // Nothing here waits for a timer (the stream never pends) but the linger after a Goodbye,
    // which the end of the input ends: the run must end with the work, a blocking task's
    // included, well within this bound (libFuzzer's -timeout would only say that the run was
    // slow).
    const auto deadline = std::chrono::steady_clock::now() + kRunBound;
    if (handle_call != HandleCall::none) {
      for (unsigned i = 0; i < handle_step && !io.stopped(); ++i) {
        io.run_one_for(kRunBound);
      }
      test::make_handle_call(*conn, handle_call);
    }
    io.run_until(deadline);
    FUZZ_CHECK(io.stopped());
    FUZZ_CHECK(result.has_value());
    FUZZ_CHECK(!threw);

    const Expected expected = model(input, limited);
    const Bytes& output = peer.output();
    const bool failed = peer.injected_failures() != 0;
    // A handle call may end the connection early: the answers before it, then at most the
    // unprompted Goodbye of a disconnect.
    const bool called = handle_call != HandleCall::none;
    Bytes answers = output;
    if (called && !answers.empty() && answers.back() == 0x02 &&
        !is_prefix(answers, expected.output)) {
      answers.pop_back();
    }
    const bool matches = failed || called ? is_prefix(answers, expected.output)
                                          : output == expected.output && *result == expected.end;
    if (!matches) {
      std::fprintf(stderr,
                   "limited=%d read_chunk=%zu write_chunk=%zu injected=%d handle_call=%d at %d\n"
                   "input:    %s\noutput:   %s\nexpected: %s\nend: %s, expected %s\n",
                   limited ? 1 : 0, read_chunk, write_chunk, failed ? 1 : 0,
                   static_cast<int>(handle_call), static_cast<int>(handle_step), hex(input).c_str(),
                   hex(output).c_str(), hex(expected.output).c_str(), result->message().c_str(),
                   expected.end.message().c_str());
      FUZZ_CHECK(matches);
    }
    FUZZ_CHECK(!peer.read_pending());
  }
  FUZZ_CHECK(srv.num_clients() == 0);
  return 0;
}
