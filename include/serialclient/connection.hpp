#pragma once

#include <serialserver/byte_order.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <serialclient/options.hpp>
#include <serialclient/result.hpp>

namespace serialclient {

namespace detail {
class ConnectionState;
}

/// Writes the content of a streaming request. Full 255-byte blocks go out as the write buffer
/// fills; the tail waits for more content, async_flush() or the end of the request.
/// Thread-safety: used by the producer of one call, on the connection's executor.
/// Lifetime: valid only while the producer that received it runs.
class RequestWriter {
 public:
  /// Appends content. Throws std::system_error on a transport failure.
  asio::awaitable<void> async_write(std::span<const std::uint8_t> content);
  /// Sends everything written so far, the tail as a shorter block, so that the server sees it
  /// now rather than when a block fills. Throws std::system_error on a transport failure.
  asio::awaitable<void> async_flush();

 private:
  friend class detail::ConnectionState;
  explicit RequestWriter(detail::ConnectionState& state) : state_(state) {}
  detail::ConnectionState& state_;
};

/// Reads the content of an OK response as it arrives, in constant memory.
/// Thread-safety: used by the consumer of one call, on the connection's executor.
/// Lifetime: valid only while the consumer that received it runs; what the consumer leaves
/// unread is drained afterwards, so the next call lines up.
class ResponseReader {
 public:
  /// Reads up to out.size() content bytes; returns 0 only at the end of the content (or for an
  /// empty `out`). Throws std::system_error on a transport failure or a read timeout.
  asio::awaitable<std::size_t> async_read_some(std::span<std::uint8_t> out);
  /// Reads the rest of the content.
  asio::awaitable<Bytes> async_read_all();
  /// True once the end of the content has been read.
  bool at_end() const noexcept;

 private:
  friend class detail::ConnectionState;
  explicit ResponseReader(detail::ConnectionState& state) : state_(state) {}
  detail::ConnectionState& state_;
};

/// Produces a streaming request through a RequestWriter. If it throws, the request cannot be
/// completed: the connection is closed and the exception propagates.
using RequestProducer = std::function<asio::awaitable<void>(RequestWriter&)>;
/// Consumes a streaming OK response through a ResponseReader. If it throws, the connection is
/// closed (the rest of the response is not drained) and the exception propagates.
using ResponseConsumer = std::function<asio::awaitable<void>(ResponseReader&)>;

/// One client connection, coroutine API (the Go serialclient's Client, as coroutines).
///
/// Every call is a task code plus request, answered by a Result: OK with the response, Error
/// with its code, or Goodbye. Transport failures (connection closed, timeouts, I/O errors)
/// throw std::system_error with an Errc or the system's error code, and leave the connection
/// closed. Calls are serialised: a call issued while another runs waits its turn, and the
/// keep-alive task is sent only between calls. A call that finds the unprompted Goodbye of a
/// server going away (docs/protocol.md section 7) waiting on the idle connection is answered
/// Goodbye without being sent (it throws Errc::connection_closed if the server just closed
/// instead); the connection is then closed. Calls are never retried here.
///
/// Thread-safety: the async_ functions must run on the executor the connection was made on,
/// which must not run handlers concurrently (a strand, or an io_context run by one thread).
/// close(), is_open(), byte_order() and remote_address() may be called from any thread.
/// Lifetime: a movable handle. Destroying it closes the connection; operations in flight then
/// fail with Errc::connection_closed. The executor's io_context must outlive the handle.
class Connection {
 public:
  /// Connects to "host:port", "[v6]:port" or a Unix socket path on the current coroutine's
  /// executor, then runs the handshake hook. Throws std::system_error on failure
  /// (Errc::invalid_address, Errc::connect_timeout, Errc::handshake_failed, or the system's
  /// error, such as connection_refused).
  static asio::awaitable<Connection> async_connect(std::string_view address, Options options = {});

  /// Takes over the connection of `other`, which is then empty.
  Connection(Connection&&) noexcept;
  /// Closes this connection, then takes over that of `other`.
  Connection& operator=(Connection&&) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  /// Calls task `code` with `request` and collects the response content. Throws
  /// std::system_error with Errc::reserved_task_code for codes 250..255 (nothing is sent).
  asio::awaitable<Result> async_call(TaskCode code, std::span<const std::uint8_t> request);
  /// Streaming form: `producer` writes the request, `consumer` (if given) reads an OK response;
  /// without a consumer the content is collected into Result::response.
  asio::awaitable<Result> async_call(TaskCode code, RequestProducer producer,
                                     ResponseConsumer consumer = {});
  /// Pipelining: writes every request back to back in one go, then reads the answers in order.
  /// After a Goodbye, the rest of the batch is reported as Goodbye too (not run).
  asio::awaitable<std::vector<Result>> async_call_batch(std::span<const Call> calls);
  /// Sends the keep-alive task (250); the server answers OK (or Goodbye while disconnecting).
  asio::awaitable<Result> async_keep_alive();
  /// Sends the goodbye task (255); the server answers Goodbye and closes.
  asio::awaitable<Result> async_goodbye();

  /// Closes the connection (from any thread); later calls fail with Errc::connection_closed.
  void close() noexcept;
  /// False once the connection has been closed, failed, or received Goodbye.
  bool is_open() const noexcept;
  /// The byte order the handshake chose (big-endian without a handshake).
  serialserver::ByteOrder byte_order() const noexcept;
  /// The server's address as given to async_connect.
  std::string remote_address() const;
  /// The executor the connection runs on.
  asio::any_io_executor get_executor() const noexcept;

 private:
  explicit Connection(std::shared_ptr<detail::ConnectionState> state);
  std::shared_ptr<detail::ConnectionState> state_;
};

}  // namespace serialclient
