#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

namespace serialserver {

namespace detail {
/// Where a RequestReader's bytes come from: the connection, which decodes blocks as they arrive.
class RequestSource {
 public:
  virtual asio::awaitable<std::size_t> async_read_request(std::span<std::uint8_t> out) = 0;
  virtual bool request_ended() const noexcept = 0;
  virtual std::uint64_t request_bytes_read() const noexcept = 0;
  virtual asio::any_io_executor request_executor() const = 0;

 protected:
  ~RequestSource() = default;
};
}  // namespace detail

/// The request's content as a stream (Go: the BinaryReader 'in'): blocks are decoded as they
/// arrive, so a request of any size passes in constant memory. The end of the message is
/// reported by a read of 0 bytes (the async_/blocking read_some) or EndOfMessage (read_exact).
///
/// Coroutine task functions use the async_ functions; blocking task functions (which run on the
/// worker pool) use the plain ones, which must never be called from an I/O thread.
/// Errors: if the connection fails or times out while reading, the read throws
/// std::system_error; if the request exceeds the server's size limit, TaskError(254).
/// Thread-safety: one task uses it at a time. Lifetime: valid until the task function returns.
class RequestReader {
 public:
  /// Made by the server for each task; applications receive it, they do not make it.
  explicit RequestReader(detail::RequestSource& source) noexcept : source_(&source) {}

  /// Reads up to out.size() content bytes; returns 0 only at the end of the message (or when
  /// out is empty).
  asio::awaitable<std::size_t> async_read_some(std::span<std::uint8_t> out);
  /// Fills `out` completely; throws EndOfMessage if the message ends first.
  asio::awaitable<void> async_read_exact(std::span<std::uint8_t> out);
  /// Reads the rest of the message into memory (for requests known to be small).
  asio::awaitable<std::vector<std::uint8_t>> async_read_all();
  /// Reads and discards the rest of the message; returns how many bytes that was.
  asio::awaitable<std::uint64_t> async_skip_all();

  /// Blocking read_some, for blocking task functions.
  std::size_t read_some(std::span<std::uint8_t> out);
  /// Blocking read_exact, for blocking task functions.
  void read_exact(std::span<std::uint8_t> out);
  /// Blocking read_all, for blocking task functions.
  std::vector<std::uint8_t> read_all();

  /// True once the end of the message has been read.
  bool at_end() const noexcept { return source_->request_ended(); }
  /// Content bytes read so far.
  std::uint64_t bytes_read() const noexcept { return source_->request_bytes_read(); }

 private:
  detail::RequestSource* source_;
};

}  // namespace serialserver
