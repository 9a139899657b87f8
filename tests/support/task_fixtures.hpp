#pragma once

// A standard set of task functions for tests and fuzz targets that serve connections (echo,
// coded Error answers, throwing tasks, a streamed response, partial readers... for the inline,
// coroutine and blocking kinds), registered on a Server with register_standard_tasks(), and an
// independent model of what each answers (expected_answer), written from docs/protocol.md
// sections 2-4 rather than from the library's encoder. No GoogleTest: fuzz targets include it.
//
// Use:
//   Server server(options);
//   tasks::register_standard_tasks(server);
//   ... serve a connection sending tasks::kEcho + content ...
//   tasks::expected_answer(tasks::kEcho, content)  // the bytes the server must write back
//
// Thread-safety: the task functions share no state; the blocking ones run on the server's
// worker pool. The Server must outlive the connections it serves, as always.

#include <serialserver/serialserver.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string_view>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

namespace serialserver::test::tasks {

using Bytes = std::vector<std::uint8_t>;

// Coroutine tasks (codes 1..11 as the connection fuzz target numbers them).
inline constexpr TaskCode kEcho = 1;          ///< OK with the request content
inline constexpr TaskCode kEmpty = 2;         ///< OK with no content; reads nothing
inline constexpr TaskCode kError = 3;         ///< Error with the content's first byte (3 if empty)
inline constexpr TaskCode kProducer = 4;      ///< OK, streamed; length from the first 2 bytes
inline constexpr TaskCode kPartial = 5;       ///< reads one byte and answers it; rest drained
inline constexpr TaskCode kThrows = 6;        ///< throws at once, reading nothing: dropped
inline constexpr TaskCode kHi = 7;            ///< "hi" for 01 02 03 04 (docs/protocol.md 8), else
                                              ///< Error 3
inline constexpr TaskCode kReadU32 = 8;       ///< the first 4 bytes reversed; Error 4 if fewer
inline constexpr TaskCode kUnregistered = 9;  ///< never registered: answered Error 255
inline constexpr TaskCode kReadThrow = 10;    ///< reads everything, then throws: dropped
inline constexpr TaskCode kCount = 11;        ///< OK with the content's length (8 bytes, BE)
// The same behaviours for the other kinds of task.
inline constexpr TaskCode kInlineEcho = 12;      ///< as kEcho, inline
inline constexpr TaskCode kBlockingEcho = 13;    ///< as kEcho, on the worker pool
inline constexpr TaskCode kInlineError = 14;     ///< as kError, by Response::error, inline
inline constexpr TaskCode kBlockingError = 15;   ///< as kError, by Response::error, blocking
inline constexpr TaskCode kInlineThrows = 16;    ///< throws: dropped, inline
inline constexpr TaskCode kBlockingThrows = 17;  ///< throws after reading: dropped, blocking

/// The most bytes kProducer streams, whatever its content asks for.
inline constexpr std::size_t kMaxProduced = 3000;

/// Which kinds of task register_standard_tasks registers (the coroutine ones always). Without
/// blocking tasks, serving stays on the calling thread: a fuzz target's runs stay repeatable.
struct Kinds {
  bool inline_tasks = true;
  bool blocking_tasks = true;
};

/// kProducer's content for a response of `length` bytes: a pattern.
inline Bytes produced_content(std::size_t length) {
  Bytes out(length);
  for (std::size_t i = 0; i < length; ++i) {
    out[i] = static_cast<std::uint8_t>((i * 7 + length) & 0xFF);
  }
  return out;
}

/// The length kProducer produces for a request's content.
inline std::size_t producer_length(std::span<const std::uint8_t> content) {
  const std::size_t n = content.size() < 2 ? 0 : (std::size_t{content[0]} << 8) | content[1];
  return std::min(n, kMaxProduced);
}

/// `v` as 8 bytes, big-endian.
inline Bytes u64_be(std::uint64_t v) {
  Bytes out(8);
  for (std::size_t i = 8; i-- > 0;) {
    out[i] = static_cast<std::uint8_t>(v & 0xFF);
    v >>= 8;
  }
  return out;
}

/// The Error code kError and its kinds answer for a content.
inline ErrorCode error_for(std::span<const std::uint8_t> content) {
  return content.empty() ? ErrorCode{3} : content[0];
}

/// Registers the standard set of tasks on `server` (replacing what those codes had).
inline void register_standard_tasks(Server& server, Kinds kinds = {}) {
  server.register_task(kEcho,
                       [](TaskContext& ctx) -> asio::awaitable<Response> {
                         co_return Response(co_await ctx.request().async_read_all());
                       },
                       {.name = "echo", .kind = TaskKind::coroutine});
  server.register_task(
      kEmpty, [](TaskContext& /*ctx*/) -> asio::awaitable<Response> { co_return Response(); },
      {.name = "empty", .kind = TaskKind::coroutine});
  server.register_task(kError,
                       [](TaskContext& ctx) -> asio::awaitable<Response> {
                         const Bytes content = co_await ctx.request().async_read_all();
                         throw TaskError(error_for(content));
                       },
                       {.name = "error", .kind = TaskKind::coroutine});
  server.register_task(
      kProducer,
      [](TaskContext& ctx) -> asio::awaitable<Response> {
        const Bytes content = co_await ctx.request().async_read_all();
        auto data = std::make_shared<Bytes>(produced_content(producer_length(content)));
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
      {.name = "producer", .kind = TaskKind::coroutine});
  server.register_task(kPartial,
                       [](TaskContext& ctx) -> asio::awaitable<Response> {
                         std::uint8_t first = 0;
                         const std::size_t n =
                             co_await ctx.request().async_read_some(std::span(&first, 1));
                         co_return n == 0 ? Response() : Response(Bytes{first});
                       },
                       {.name = "partial", .kind = TaskKind::coroutine});
  server.register_task(kThrows,
                       [](TaskContext& /*ctx*/) -> asio::awaitable<Response> {
                         throw std::runtime_error("task fails on purpose");
                         co_return Response();
                       },
                       {.name = "throws", .kind = TaskKind::coroutine});
  server.register_task(kHi,
                       [](TaskContext& ctx) -> asio::awaitable<Response> {
                         const Bytes content = co_await ctx.request().async_read_all();
                         if (content != Bytes{1, 2, 3, 4}) {
                           throw TaskError(3);
                         }
                         co_return Response::copy_of(std::string_view("hi"));
                       },
                       {.name = "hi", .kind = TaskKind::coroutine});
  server.register_task(kReadU32,
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
                       {.name = "read-u32", .kind = TaskKind::coroutine});
  server.register_task(kReadThrow,
                       [](TaskContext& ctx) -> asio::awaitable<Response> {
                         (void)co_await ctx.request().async_read_all();
                         throw std::runtime_error("task fails on purpose after reading");
                       },
                       {.name = "read-throw", .kind = TaskKind::coroutine});
  server.register_task(kCount,
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
                       {.name = "count", .kind = TaskKind::coroutine});

  if (kinds.inline_tasks) {
    server.register_task(kInlineEcho,
                         [](TaskContext& /*ctx*/, std::span<const std::uint8_t> request) {
                           return Response(Bytes(request.begin(), request.end()));
                         },
                         {.name = "inline-echo", .kind = TaskKind::inline_call});
    server.register_task(kInlineError,
                         [](TaskContext& /*ctx*/, std::span<const std::uint8_t> request) {
                           return Response::error(error_for(request));
                         },
                         {.name = "inline-error", .kind = TaskKind::inline_call});
    server.register_task(
        kInlineThrows,
        [](TaskContext& /*ctx*/, std::span<const std::uint8_t> /*request*/) -> Response {
          throw std::runtime_error("inline task fails on purpose");
        },
        {.name = "inline-throws", .kind = TaskKind::inline_call});
  }
  if (kinds.blocking_tasks) {
    server.register_task(kBlockingEcho,
                         [](TaskContext& ctx) { return Response(ctx.request().read_all()); },
                         {.name = "blocking-echo", .kind = TaskKind::blocking});
    server.register_task(
        kBlockingError,
        [](TaskContext& ctx) { return Response::error(error_for(ctx.request().read_all())); },
        {.name = "blocking-error", .kind = TaskKind::blocking});
    server.register_task(kBlockingThrows,
                         [](TaskContext& ctx) -> Response {
                           (void)ctx.request().read_all();
                           throw std::runtime_error("blocking task fails on purpose");
                         },
                         {.name = "blocking-throws", .kind = TaskKind::blocking});
  }
}

// ---- the model -----------------------------------------------------------------------------

/// An OK answer with `content`: 00, full 255-byte blocks, the remainder, the end byte 00.
inline Bytes ok_answer(std::span<const std::uint8_t> content) {
  Bytes out{0x00};
  std::size_t i = 0;
  while (i < content.size()) {
    const std::size_t n = std::min<std::size_t>(255, content.size() - i);
    out.push_back(static_cast<std::uint8_t>(n));
    out.insert(out.end(), content.begin() + static_cast<std::ptrdiff_t>(i),
               content.begin() + static_cast<std::ptrdiff_t>(i + n));
    i += n;
  }
  out.push_back(0x00);
  return out;
}

/// The bytes the server writes in answer to a whole request `code` + `content` to a server with
/// the standard tasks of `kinds` (and the reserved codes), or nothing when the task fails and
/// the connection is dropped without an answer. No request size limit is modelled.
inline std::optional<Bytes> expected_answer(TaskCode code, std::span<const std::uint8_t> content,
                                            Kinds kinds = {}) {
  const Bytes unknown{0x01, kUnknownTaskErrorCode};
  const bool is_inline = code == kInlineEcho || code == kInlineError || code == kInlineThrows;
  const bool is_blocking =
      code == kBlockingEcho || code == kBlockingError || code == kBlockingThrows;
  if ((is_inline && !kinds.inline_tasks) || (is_blocking && !kinds.blocking_tasks)) {
    return unknown;
  }
  switch (code) {
    case kEcho:
    case kInlineEcho:
    case kBlockingEcho:
      return ok_answer(content);
    case kEmpty:
    case kKeepAliveTaskCode:
      return ok_answer({});
    case kError:
    case kInlineError:
    case kBlockingError:
      return Bytes{0x01, error_for(content)};
    case kProducer:
      return ok_answer(produced_content(producer_length(content)));
    case kPartial:
      return content.empty() ? ok_answer({}) : ok_answer(content.first(1));
    case kHi:
      if (std::ranges::equal(content, Bytes{1, 2, 3, 4})) {
        return ok_answer(Bytes{'h', 'i'});
      }
      return Bytes{0x01, 0x03};
    case kReadU32:
      if (content.size() < 4) {
        return Bytes{0x01, 0x04};
      }
      return ok_answer(Bytes{content[3], content[2], content[1], content[0]});
    case kCount:
      return ok_answer(u64_be(content.size()));
    case kThrows:
    case kReadThrow:
    case kInlineThrows:
    case kBlockingThrows:
      return std::nullopt;
    case kGoodbyeTaskCode:
      return Bytes{0x02};
    default:  // unknown, the unassigned reserved codes 252..254, and 251 with describe off
      return unknown;
  }
}

}  // namespace serialserver::test::tasks
