#pragma once

// StreamConnection's reads and writes: taking an idle read's bytes, writing without waiting,
// reading more of a request (or the next one) under its timeout, and flushing the output buffer
// under the Write timeout. The buffers they use are in stream_connection.hpp. Included by
// stream_connection.hpp; not a header of its own.

#include "net/stream_connection.hpp"  // IWYU pragma: keep

namespace serialserver::detail {

template <class Stream>
void StreamConnection<Stream>::take_idle_read(std::size_t n) noexcept {
  note_input_arrived();
  if (n > idle_in_.size()) {
    return;  // take_spilled_read() has put all n bytes in the input buffer
  }
  append_input(std::span<const std::uint8_t>(idle_in_.data(), n));
  if constexpr (NonBlockingStream<Stream> && !std::same_as<Stream, asio::ip::tcp::socket>) {
    if (n == idle_in_.size()) {
      auto space = in_.writable();
      std::error_code ec;
      const std::size_t more = stream_.read_some(asio::buffer(space.data(), space.size()), ec);
      if (!ec) {
        in_.commit(more);
      } else {
        defer_error(ec);
      }
    }
  }
}

template <class Stream>
bool StreamConnection<Stream>::write_without_waiting() noexcept {
  if constexpr (NonBlockingStream<Stream>) {
    while (!out_.empty() && !stream_closed_ && !deferred_error_) {
      std::error_code ec;
      const auto data = out_.readable();
      const std::size_t n = stream_.write_some(asio::buffer(data.data(), data.size()), ec);
      if (ec) {
        defer_error(ec);
        return false;  // would block, or an error that the next flush reports
      }
      out_.consume(n);
    }
  }
  return out_.empty();
}

/// Reads more bytes into the input buffer, waiting for a request (Wait::request) or for the
/// rest of one (Wait::reading) under that wait's timeout.
template <class Stream>
asio::awaitable<std::error_code> StreamConnection<Stream>::read_more(Watchdog::Wait wait) {
  if (stream_closed_ || deferred_error_) {
    co_return io_error(stopped_error());
  }
  const Timeout& t = server().options().timeout;
  std::error_code ec;
  // Reads go through async_read_some, which reads at once unless the last read drained the
  // socket (see read_buffer) and otherwise queues on the socket's edge-triggered epoll
  // registration: one recv per request on TCP.
  if constexpr (std::same_as<Stream, asio::ip::tcp::socket>) {
    if (wait == Watchdog::Wait::reading && input_drained_) {
      // The last read drained the socket and left an incomplete request. An RST that came
      // with those bytes raised no edge of its own (TCP_INQ counts only a FIN), so the queued
      // read would wait for the Read timeout: read at once instead; EAGAIN means nothing,
      // RST included, is pending and any later byte raises an edge.
      auto space = in_.writable();
      const std::size_t n = stream_.read_some(asio::buffer(space.data(), space.size()), ec);
      if (!ec) {
        in_.commit(n);
        note_input_arrived();
        co_return std::error_code{};
      }
      if (ec != asio::error::would_block && ec != asio::error::try_again) {
        co_return io_error(ec);
      }
      ec.clear();
    }
  }
  watchdog_.begin_wait(wait, wait == Watchdog::Wait::request ? t.wait : t.read);
  if (!in_.has_storage()) {
    // Between requests: read into the small inline buffer, so that a connection waiting for
    // its next request holds no input buffer.
    const std::size_t n = co_await stream_.async_read_some(
        idle_read_buffer(), asio::redirect_error(asio::use_awaitable, ec));
    watchdog_.end_wait();
    if (ec) {
      co_return io_error(ec);
    }
    take_idle_read(n);
    co_return std::error_code{};
  }
  auto space = in_.writable();
  const std::size_t n = co_await stream_.async_read_some(
      read_buffer(space.data(), space.size()), asio::redirect_error(asio::use_awaitable, ec));
  watchdog_.end_wait();
  if (ec) {
    co_return io_error(ec);
  }
  in_.commit(n);
  note_input_arrived();
  co_return std::error_code{};
}

/// Writes out what the output buffer holds, under the rolling Write timeout.
template <class Stream>
asio::awaitable<std::error_code> StreamConnection<Stream>::flush() {
  const auto timeout = server().options().timeout.write;
  while (!out_.empty()) {
    if (NonBlockingStream<Stream> && ++ops_without_wait_ >= kOpsPerTurn) {  // take turns
      ops_without_wait_ = 0;
      co_await asio::post(stream_.get_executor(), asio::use_awaitable);
      continue;  // the stream may have been closed meanwhile
    }
    if (stream_closed_ || deferred_error_) {
      co_return io_error(stopped_error());
    }
    std::error_code ec;
    std::size_t n = 0;
    const auto data = out_.readable();
    if constexpr (NonBlockingStream<Stream>) {
      n = stream_.write_some(asio::buffer(data.data(), data.size()), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        watchdog_.begin_wait(Watchdog::Wait::writing, timeout);
        ops_without_wait_ = 0;
        co_await stream_.async_wait(asio::socket_base::wait_write,
                                    asio::redirect_error(asio::use_awaitable, ec));
        watchdog_.end_wait();
        if (ec) {
          co_return io_error(ec);
        }
        continue;
      }
    } else {
      watchdog_.begin_wait(Watchdog::Wait::writing, timeout);
      n = co_await stream_.async_write_some(asio::buffer(data.data(), data.size()),
                                            asio::redirect_error(asio::use_awaitable, ec));
      watchdog_.end_wait();
    }
    if (ec) {
      co_return io_error(ec);
    }
    out_.consume(n);
  }
  co_return std::error_code{};
}

}  // namespace serialserver::detail
