#pragma once

// The state of one client connection and the steps of a call. Connection (coroutine API) and
// Client (blocking API) are thin fronts on it. Everything here runs on the connection's
// executor, except open_ (atomic) and close(), which posts.
//
// Its definitions are in three files:
//   connection_connect.cpp  connecting, the TLS handshake, the handshake hook, the keep-alive
//   connection_state.cpp    the call lock, the steps of a call, whole calls, timeouts, closing
//   connection.cpp          the public fronts: Connection, RequestWriter, ResponseReader

#include <serialserver/wire/block_decoder.hpp>
#include <serialserver/wire/block_encoder.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/steady_timer.hpp>
#include <serialclient/address.hpp>
#include <serialclient/connection.hpp>
#include <serialclient/error.hpp>
#include <serialclient/options.hpp>
#include <serialclient/result.hpp>

namespace serialclient::detail {

// Large enough that a big response arrives in few reads, small enough to keep per connection.
inline constexpr std::size_t kReadBufferSize = std::size_t{64} * 1024;
// A streaming request goes out whenever this much is buffered.
inline constexpr std::size_t kWriteFlushThreshold = std::size_t{64} * 1024;
// Content is encoded in pieces of this size so that the write buffer never grows past about
// twice the threshold, whatever the caller hands in at once.
inline constexpr std::size_t kEncodePiece = std::size_t{64} * 1024;

inline std::system_error system_error(Errc e) { return {make_error_code(e)}; }

/// Cancels a timer's waits. asio's cancel() reports a failure by exception, but the timer
/// service's cancel cannot fail (it only takes the waits off its queue), so the functions that
/// close and unlock can stay noexcept.
inline void cancel_waits(asio::steady_timer& timer) noexcept {
  try {
    timer.cancel();
  } catch (...) {  // not reached: see above
  }
}

/// Asio reports OS errors in its own "asio.system" category, which does not compare equal to
/// std::errc values; the system category does, so callers can test `ec == std::errc::...`.
inline std::error_code normalise(std::error_code ec) {
  if (ec.category() == asio::error::get_system_category()) {
    return {ec.value(), std::system_category()};
  }
  return ec;
}

/// The response code and, for Error, its code.
struct ResponseHead {
  Status status = Status::ok;
  ErrorCode error_code = 0;
};

class ConnectionState : public std::enable_shared_from_this<ConnectionState> {
 public:
  ConnectionState(asio::any_io_executor executor, Options options);
  ~ConnectionState();
  ConnectionState(const ConnectionState&) = delete;
  ConnectionState& operator=(const ConnectionState&) = delete;

  /// Resolves, connects, runs the handshake, starts the keep-alive loop.
  asio::awaitable<void> async_connect(std::string_view address);

  // Whole calls (each takes the call lock).
  asio::awaitable<Result> async_call(TaskCode code, std::span<const std::uint8_t> request);
  asio::awaitable<Result> async_call(TaskCode code, RequestProducer producer,
                                     ResponseConsumer consumer);
  asio::awaitable<std::vector<Result>> async_call_batch(std::span<const Call> calls);
  /// Any code, reserved ones included (keep-alive and goodbye).
  asio::awaitable<Result> async_call_any(TaskCode code, std::span<const std::uint8_t> request);

  // The steps of a call, for streaming. Order: async_lock, begin_request, async_write_content /
  // async_flush_content, async_end_request (returns the head), async_read_content /
  // async_read_content_all, async_finish_response, unlock. On any failure: fail() and unlock.
  asio::awaitable<void> async_lock();
  void unlock() noexcept;
  /// Throws the reason the connection is closed, if it is.
  void check_open() const;
  /// With the call lock held, before a request: takes what the server sent while no call was
  /// running (take_idle_input), then throws if the connection is closed. False if that was an
  /// unprompted Goodbye: the call is then answered Goodbye without being sent.
  bool ready_for_request();
  /// True once a byte of the current request (or batch) has been written to the socket: from
  /// then on the server may have run it.
  bool request_written() const noexcept { return request_written_; }
  void begin_request(TaskCode code);
  asio::awaitable<void> async_write_content(std::span<const std::uint8_t> content);
  asio::awaitable<void> async_flush_content();
  asio::awaitable<ResponseHead> async_end_request();
  asio::awaitable<std::size_t> async_read_content(std::span<std::uint8_t> out);
  asio::awaitable<void> async_read_content_all(Bytes& out);
  /// Drains unread content and records the end of the call (the idle clock restarts).
  asio::awaitable<void> async_finish_response();
  bool content_at_end() const noexcept { return decoder_.finished(); }

  /// Closes with `reason` (on the executor). Later calls throw `reason`.
  void fail(std::error_code reason) noexcept;
  /// Closes from any thread.
  void close() noexcept;
  bool is_open() const noexcept { return open_.load(std::memory_order_acquire); }
  serialserver::ByteOrder byte_order() const noexcept { return byte_order_; }
  const std::string& remote_address() const noexcept { return address_text_; }
  const asio::any_io_executor& executor() const noexcept { return executor_; }

 private:
  class Handshake;

  /// What the server sent while no call was running.
  enum class IdleInput : std::uint8_t {
    none,     ///< nothing: the connection may carry the next request
    goodbye,  ///< an unprompted Goodbye: the server is going away (closed now)
    closed,   ///< the end of the stream, a reset, or a stray byte (closed now)
  };
  /// Looks without blocking, so that a request is not sent on a connection the server has left.
  IdleInput take_idle_input() noexcept;
  /// Reads what has arrived into the empty read buffer without waiting; under TLS that may be
  /// records without content only (session tickets). False at the end of the stream or on an
  /// error.
  bool read_idle_input() noexcept;

  asio::awaitable<void> async_connect_socket(const Address& address);
  /// The client side of the TLS handshake, under the handshake timeout.
  asio::awaitable<void> async_tls_handshake(const Address& address);
  asio::awaitable<void> async_keep_alive_loop();
  /// Writes out the write buffer under the rolling write timeout.
  asio::awaitable<void> async_write_out();
  /// Reads more bytes into the read buffer; `timeout` with `on_timeout` as its error.
  asio::awaitable<void> async_fill(std::chrono::nanoseconds timeout, Errc on_timeout);
  asio::awaitable<ResponseHead> async_read_head();
  /// Arms the operation timer; its expiry cancels the socket and records `on_timeout`.
  void arm(std::chrono::nanoseconds timeout, Errc on_timeout);
  void disarm() noexcept;
  /// Turns an I/O error into the error a caller sees, closes, and throws it.
  [[noreturn]] void throw_io_error(std::error_code ec);
  void close_now(std::error_code reason) noexcept;

  asio::any_io_executor executor_;
  Options options_;
  std::string address_text_;
  asio::generic::stream_protocol::socket socket_;
  // With TLS, every read and write goes through tls_ (over socket_); the timers still cancel
  // and close socket_ itself.
  std::shared_ptr<asio::ssl::context> tls_context_;
  std::optional<asio::ssl::stream<asio::generic::stream_protocol::socket&>> tls_;
  std::optional<asio::ip::tcp::resolver> resolver_;
  asio::steady_timer op_timer_;
  asio::steady_timer keep_alive_timer_;
  std::uint64_t timer_generation_ = 0;
  std::optional<Errc> timed_out_;

  std::atomic<bool> open_{false};
  std::error_code closed_reason_;
  serialserver::ByteOrder byte_order_ = serialserver::ByteOrder::big_endian;

  // The call lock: one call at a time, keep-alives between calls.
  bool locked_ = false;
  std::deque<std::shared_ptr<asio::steady_timer>> waiters_;
  std::chrono::steady_clock::time_point last_activity_;

  bool request_written_ = false;

  std::vector<std::uint8_t> write_buffer_;
  serialserver::wire::BlockEncoder encoder_;
  std::vector<std::uint8_t> read_buffer_;
  std::size_t read_pos_ = 0;
  std::size_t read_end_ = 0;
  serialserver::wire::BlockDecoder decoder_;
};

/// Holds the call lock for a scope, so that every path out of a call releases it.
class LockGuard {
 public:
  explicit LockGuard(ConnectionState& state) : state_(state) {}
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;
  ~LockGuard() { state_.unlock(); }

 private:
  ConnectionState& state_;
};

}  // namespace serialclient::detail
