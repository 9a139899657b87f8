// Fuzz target: the per-connection state machine (detail::StreamConnection) over the in-memory stream.
//
// The input is what a client sends, followed by a few bytes that choose how the stream delivers
// it (bytes per read and per write, an injected I/O failure) and whether the server limits the
// request size. The connection serves it with a set of coroutine tasks (echo, empty, coded
// error, streamed response, partial reader, failing ones...) and must:
// - end, in bounded time, with nothing left registered with the server;
// - write exactly the responses that an independent model of docs/protocol.md sections 3-5 and of
//   these tasks predicts, and end for the reason the model predicts (with an injected failure:
//   a prefix of those responses);
// - not leak, overflow or hit undefined behaviour (AddressSanitizer, UBSan).
// Only coroutine tasks are registered, so that every run is single-threaded and repeatable.

#include "net/stream_connection.hpp"

#include <serialserver/serialserver.hpp>
#include "fuzz_check.hpp"
#include "support/memory_stream.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <vector>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

namespace {

using namespace serialserver;
using Bytes = std::vector<std::uint8_t>;
using test::MemoryStream;
using Conn = detail::StreamConnection<MemoryStream>;

// The tasks. Codes not listed here (and 251..254) are unknown to the server.
constexpr TaskCode kEcho = 1;        // OK with the request content
constexpr TaskCode kEmpty = 2;       // OK with no content; reads nothing
constexpr TaskCode kError = 3;       // Error with the content's first byte (3 if empty)
constexpr TaskCode kProducer = 4;    // OK, streamed; length from the first two content bytes
constexpr TaskCode kPartial = 5;     // reads one byte and answers it; the rest is drained
constexpr TaskCode kThrows = 6;      // throws at once, reading nothing: the connection drops
constexpr TaskCode kHi = 7;          // "hi" for 01 02 03 04 (docs/protocol.md 8), else Error 3
constexpr TaskCode kReadU32 = 8;     // reads exactly 4 bytes and answers them reversed; Error 4 if
                                     // the message is shorter
constexpr TaskCode kReadThrow = 10;  // reads everything, then throws: the connection drops
constexpr TaskCode kCount = 11;      // counts the content in small reads; OK with the count (u64)

constexpr std::size_t kMaxProduced = 3000;
// The limited server's max_request_bytes and max_request_drain_bytes. The tasks read at most 256
// bytes past the limit before they notice it (async_read_all's buffer grows from 256 bytes), well
// inside the drain allowance, so the model knows where the connection must close.
constexpr std::uint64_t kLimit = 256;
constexpr std::uint64_t kDrain = 512;

Bytes produced(std::size_t length) {
  Bytes out(length);
  for (std::size_t i = 0; i < length; ++i) {
    out[i] = static_cast<std::uint8_t>((i * 7 + length) & 0xFF);
  }
  return out;
}

std::size_t producer_length(const Bytes& content) {
  const std::size_t n = content.size() < 2 ? 0 : (std::size_t{content[0]} << 8) | content[1];
  return std::min(n, kMaxProduced);
}

Bytes u64_be(std::uint64_t v) {
  Bytes out(8);
  for (int i = 7; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v & 0xFF);
    v >>= 8;
  }
  return out;
}

void register_tasks(Server& server) {
  server.register_task(
      kEcho,
      [](TaskContext& ctx) -> asio::awaitable<Response> {
        co_return Response(co_await ctx.request().async_read_all());
      },
      "echo");
  server.register_task(
      kEmpty, [](TaskContext&) -> asio::awaitable<Response> { co_return Response(); }, "empty");
  server.register_task(
      kError,
      [](TaskContext& ctx) -> asio::awaitable<Response> {
        const Bytes content = co_await ctx.request().async_read_all();
        throw TaskError(content.empty() ? ErrorCode{3} : content[0]);
      },
      "error");
  server.register_task(
      kProducer,
      [](TaskContext& ctx) -> asio::awaitable<Response> {
        const Bytes content = co_await ctx.request().async_read_all();
        auto data = std::make_shared<Bytes>(produced(producer_length(content)));
        auto pos = std::make_shared<std::size_t>(0);
        co_return Response::stream(
            [data, pos](std::span<std::uint8_t> out) -> asio::awaitable<std::size_t> {
              // Yield to the executor, as a producer waiting for its data would.
              co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
              const std::size_t n = std::min({out.size(), data->size() - *pos, std::size_t{777}});
              std::copy_n(data->begin() + static_cast<std::ptrdiff_t>(*pos), n, out.begin());
              *pos += n;
              co_return n;
            });
      },
      "producer");
  server.register_task(
      kPartial,
      [](TaskContext& ctx) -> asio::awaitable<Response> {
        std::uint8_t first = 0;
        const std::size_t n = co_await ctx.request().async_read_some(std::span(&first, 1));
        co_return n == 0 ? Response() : Response(Bytes{first});
      },
      "partial");
  server.register_task(
      kThrows,
      [](TaskContext&) -> asio::awaitable<Response> {
        throw std::runtime_error("task fails on purpose");
        co_return Response();
      },
      "throws");
  server.register_task(
      kHi,
      [](TaskContext& ctx) -> asio::awaitable<Response> {
        const Bytes content = co_await ctx.request().async_read_all();
        if (content != Bytes{1, 2, 3, 4}) {
          throw TaskError(3);
        }
        co_return Response::copy_of(std::string_view("hi"));
      },
      "hi");
  server.register_task(
      kReadU32,
      [](TaskContext& ctx) -> asio::awaitable<Response> {
        Bytes four(4);
        try {
          co_await ctx.request().async_read_exact(four);
        } catch (const EndOfMessage&) {
          throw TaskError(4);
        }
        std::reverse(four.begin(), four.end());
        co_return Response(std::move(four));
      },
      "read-u32");
  server.register_task(
      kReadThrow,
      [](TaskContext& ctx) -> asio::awaitable<Response> {
        (void)co_await ctx.request().async_read_all();
        throw std::runtime_error("task fails on purpose after reading");
      },
      "read-throw");
  server.register_task(
      kCount,
      [](TaskContext& ctx) -> asio::awaitable<Response> {
        std::uint8_t scratch[64];
        std::uint64_t total = 0;
        for (;;) {
          const std::size_t n = co_await ctx.request().async_read_some(scratch);
          if (n == 0) {
            break;
          }
          total += n;
        }
        co_return Response(u64_be(total));
      },
      "count");
}

Server& server(bool limited) {
  // Built once and never destroyed: a server per input would dominate the run time, and the
  // connections are independent of each other.
  static Server* const servers[2] = {
      [] {
        ServerOptions options;
        options.logger = make_null_logger();
        options.worker_threads = 1;
        auto* s = new Server(std::move(options));
        register_tasks(*s);
        return s;
      }(),
      [] {
        ServerOptions options;
        options.logger = make_null_logger();
        options.worker_threads = 1;
        options.max_request_bytes = kLimit;
        options.max_request_drain_bytes = kDrain;
        auto* s = new Server(std::move(options));
        register_tasks(*s);
        return s;
      }(),
  };
  return *servers[limited ? 1 : 0];
}

// ---- the model ---------------------------------------------------------------------------------

struct Expected {
  Bytes output;
  std::error_code end;
};

void append(Bytes& out, std::initializer_list<std::uint8_t> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

void append_ok(Bytes& out, const Bytes& content) {
  out.push_back(0x00);
  std::size_t i = 0;
  while (i < content.size()) {  // full blocks, the remainder, the end byte (section 2)
    const std::size_t n = std::min<std::size_t>(255, content.size() - i);
    out.push_back(static_cast<std::uint8_t>(n));
    out.insert(out.end(), content.begin() + static_cast<std::ptrdiff_t>(i),
               content.begin() + static_cast<std::ptrdiff_t>(i + n));
    i += n;
  }
  out.push_back(0x00);
}

/// What the server writes in answer to `input`, and why the connection ends.
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
    if (code == kThrows) {
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
    switch (code) {
      case kEcho:
        append_ok(e.output, content);
        break;
      case kEmpty:
      case kKeepAliveTaskCode:
        append_ok(e.output, {});
        break;
      case kError:
        append(e.output, {0x01, content.empty() ? std::uint8_t{3} : content[0]});
        break;
      case kProducer:
        append_ok(e.output, produced(producer_length(content)));
        break;
      case kPartial:
        append_ok(e.output, content.empty() ? Bytes{} : Bytes{content[0]});
        break;
      case kHi:
        if (content == Bytes{1, 2, 3, 4}) {
          append_ok(e.output, {0x68, 0x69});
        } else {
          append(e.output, {0x01, 0x03});
        }
        break;
      case kReadU32:
        if (content.size() < 4) {
          append(e.output, {0x01, 0x04});
        } else {
          append_ok(e.output, {content[3], content[2], content[1], content[0]});
        }
        break;
      case kReadThrow:
        e.end = make_error_code(Errc::task_failed);
        return e;
      case kCount:
        append_ok(e.output, u64_be(content.size()));
        break;
      default:  // unknown, and the unassigned reserved codes 251..254
        append(e.output, {0x01, kUnknownTaskErrorCode});
        break;
    }
  }
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

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider provider(data, size);
  // Parameters from the end of the input; the front is the client's bytes as sent.
  const auto read_choice = provider.ConsumeIntegral<std::uint8_t>();
  const auto write_choice = provider.ConsumeIntegral<std::uint8_t>();
  const auto flags = provider.ConsumeIntegral<std::uint8_t>();
  const auto fail_op = provider.ConsumeIntegral<std::uint8_t>();
  const Bytes input = provider.ConsumeRemainingBytes<std::uint8_t>();

  // Bytes per read and per write: mostly unlimited, else 1..64 (64 + n: unlimited).
  const std::size_t read_chunk =
      read_choice < 128 ? MemoryStream::kUnlimited : read_choice % 64 + 1;
  const std::size_t write_chunk =
      write_choice < 128 ? MemoryStream::kUnlimited : write_choice % 64 + 1;
  const bool limited = (flags & 1) != 0;
  const bool inject = (flags & 6) == 6;  // a quarter of the runs fail one stream operation

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
    // Nothing here waits for a timer (the stream never pends): the run must end with the work.
    io.run();
    FUZZ_CHECK(result.has_value());
    FUZZ_CHECK(!threw);

    const Expected expected = model(input, limited);
    const Bytes& output = peer.output();
    const bool failed = peer.injected_failures() != 0;
    const bool matches = failed
                             ? output.size() <= expected.output.size() &&
                                   std::equal(output.begin(), output.end(), expected.output.begin())
                             : output == expected.output && *result == expected.end;
    if (!matches) {
      std::fprintf(stderr,
                   "limited=%d read_chunk=%zu write_chunk=%zu injected=%d\n"
                   "input:    %s\noutput:   %s\nexpected: %s\nend: %s, expected %s\n",
                   limited ? 1 : 0, read_chunk, write_chunk, failed ? 1 : 0, hex(input).c_str(),
                   hex(output).c_str(), hex(expected.output).c_str(), result->message().c_str(),
                   expected.end.message().c_str());
      FUZZ_CHECK(matches);
    }
    FUZZ_CHECK(!peer.read_pending());
  }
  FUZZ_CHECK(srv.num_clients() == 0);
  return 0;
}
