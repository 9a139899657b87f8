#include <serialserver/error.hpp>
#include <serialserver/request_reader.hpp>

#include <algorithm>

#include <asio/co_spawn.hpp>
#include <asio/use_future.hpp>

namespace serialserver {
namespace {
/// The first read of async_read_all(): requests up to this size take one allocation.
constexpr std::size_t kFirstChunk = 8192;
}  // namespace

asio::awaitable<std::size_t> RequestReader::async_read_some(std::span<std::uint8_t> out) {
  return source_->async_read_request(out);
}

asio::awaitable<void> RequestReader::async_read_exact(std::span<std::uint8_t> out) {
  while (!out.empty()) {
    const std::size_t n = co_await source_->async_read_request(out);
    if (n == 0) {
      throw EndOfMessage();
    }
    out = out.subspan(n);
  }
}

asio::awaitable<std::vector<std::uint8_t>> RequestReader::async_read_all() {
  // Most requests are small: read the first part into a scratch buffer and allocate the
  // result at its exact size, rather than grow a zero-filled vector from a guess (which cost
  // several allocations, copies and memsets per request).
  std::uint8_t first[kFirstChunk];
  std::size_t size = 0;
  bool ended = false;
  while (!ended && size < kFirstChunk) {
    const std::size_t n = co_await source_->async_read_request(std::span(first).subspan(size));
    size += n;
    ended = n == 0 || source_->request_ended();
  }
  std::vector<std::uint8_t> data(first, first + size);
  if (ended) {
    co_return data;
  }
  for (;;) {
    if (size == data.size()) {
      data.resize(std::max<std::size_t>(data.size() * 2, 2 * kFirstChunk));
    }
    const std::size_t n = co_await source_->async_read_request(std::span(data).subspan(size));
    if (n == 0) {
      break;
    }
    size += n;
  }
  data.resize(size);
  co_return data;
}

asio::awaitable<std::uint64_t> RequestReader::async_skip_all() {
  std::uint8_t scratch[4096];
  std::uint64_t total = 0;
  for (;;) {
    const std::size_t n = co_await source_->async_read_request(scratch);
    if (n == 0) {
      co_return total;
    }
    total += n;
  }
}

std::size_t RequestReader::read_some(std::span<std::uint8_t> out) {
  // The connection's state lives on its I/O thread: the read runs there, and this worker waits.
  return asio::co_spawn(source_->request_executor(), source_->async_read_request(out),
                        asio::use_future)
      .get();
}

void RequestReader::read_exact(std::span<std::uint8_t> out) {
  while (!out.empty()) {
    const std::size_t n = read_some(out);
    if (n == 0) {
      throw EndOfMessage();
    }
    out = out.subspan(n);
  }
}

std::vector<std::uint8_t> RequestReader::read_all() {
  return asio::co_spawn(source_->request_executor(), async_read_all(), asio::use_future).get();
}

}  // namespace serialserver
