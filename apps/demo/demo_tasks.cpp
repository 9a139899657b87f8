#include "demo_tasks.hpp"

#include <serialserver/binary_reader.hpp>
#include <serialserver/binary_writer.hpp>
#include <serialserver/error.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>
#include <span>

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

namespace demo {

using serialserver::Response;
using serialserver::TaskContext;
using serialserver::TaskError;

namespace {

// Echo and empty are inline tasks: they only look at the whole request and answer at once.
Response echo(TaskContext& /*ctx*/, std::span<const std::uint8_t> request) {
  return Response::copy_of(request);
}

Response empty(TaskContext& /*ctx*/, std::span<const std::uint8_t> /*request*/) { return {}; }

asio::awaitable<Response> error_code(TaskContext& ctx) {
  std::array<std::uint8_t, 1> first{0};
  co_await ctx.request().async_read_some(first);
  throw TaskError(first[0]);
}

/// Reads a big-endian unsigned number of exactly sizeof(T) bytes.
template <class T>
asio::awaitable<T> read_number(TaskContext& ctx) {
  std::array<std::uint8_t, sizeof(T)> raw{};
  try {
    co_await ctx.request().async_read_exact(raw);
  } catch (const serialserver::EndOfMessage&) {
    throw TaskError(kBadRequest, "request too short");
  }
  serialserver::BinaryReader reader(raw, serialserver::ByteOrder::big_endian);
  if constexpr (sizeof(T) == 8) {
    co_return reader.read_u64();
  } else {
    co_return reader.read_u32();
  }
}

/// Produces `remaining` bytes, byte i being i mod 256.
class PatternProducer final : public serialserver::ResponseProducer {
 public:
  explicit PatternProducer(std::uint64_t size) : remaining_(size) {}
  asio::awaitable<std::size_t> async_produce(std::span<std::uint8_t> out) override {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, out.size()));
    // Copied from a table of two periods, 256 bytes at a time, not computed a byte at a time:
    // the producer's own cost should not hide the server's in the streaming benchmark.
    static constexpr auto kTable = [] {
      std::array<std::uint8_t, 512> table{};
      for (std::size_t i = 0; i < table.size(); ++i) {
        table[i] = static_cast<std::uint8_t>(i);
      }
      return table;
    }();
    for (std::size_t done = 0; done < n;) {
      const auto phase = static_cast<std::size_t>((offset_ + done) & 255U);
      const std::size_t chunk = std::min<std::size_t>(256, n - done);
      std::memcpy(out.data() + done, kTable.data() + phase, chunk);
      done += chunk;
    }
    offset_ += n;
    remaining_ -= n;
    co_return n;
  }

 private:
  std::uint64_t remaining_;
  std::uint64_t offset_ = 0;
};

asio::awaitable<Response> produce(TaskContext& ctx) {
  const auto size = co_await read_number<std::uint64_t>(ctx);
  co_return Response::stream(
      std::unique_ptr<serialserver::ResponseProducer>(std::make_unique<PatternProducer>(size)));
}

asio::awaitable<Response> sleep(TaskContext& ctx) {
  const auto ms = co_await read_number<std::uint32_t>(ctx);
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_after(std::chrono::milliseconds(ms));
  co_await timer.async_wait(asio::use_awaitable);  // cancellation aborts this wait
  co_return Response();
}

asio::awaitable<Response> count(TaskContext& ctx) {
  const std::uint64_t total = co_await ctx.request().async_skip_all();
  serialserver::BinaryWriter writer(serialserver::ByteOrder::big_endian);
  writer.write_u64(total);
  co_return Response(writer.take());
}

}  // namespace

void register_demo_tasks(serialserver::Server& server) {
  server.register_task(1, echo, {.name = "echo"});
  server.register_task(2, empty, {.name = "empty"});
  server.register_task(3, error_code, {.name = "error"});
  server.register_task(4, produce, {.name = "produce"});
  server.register_task(5, sleep, {.name = "sleep"});
  server.register_task(6, count, {.name = "count"});
}

}  // namespace demo
