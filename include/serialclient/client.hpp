#pragma once

#include <serialserver/byte_order.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/strand.hpp>
#include <serialclient/options.hpp>
#include <serialclient/result.hpp>
#include <serialclient/retry.hpp>

namespace serialclient {

namespace detail {
class ConnectionState;
}

class Client;

/// Blocking writer of a streaming request. Thread-safety: used by the producer of one call, on
/// the calling thread. Lifetime: valid only while that producer runs.
class BlockingRequestWriter {
 public:
  /// Appends content; throws std::system_error on a transport failure (Client::call reports it
  /// through its error_code, so producers need not catch it).
  void write(std::span<const std::uint8_t> content);
  /// Sends everything written so far now (the tail as a shorter block).
  void flush();

 private:
  friend class Client;
  explicit BlockingRequestWriter(Client& client) : client_(client) {}
  Client& client_;
};

/// Blocking reader of a streaming OK response. Thread-safety: used by the consumer of one call,
/// on the calling thread. Lifetime: valid only while that consumer runs; what it leaves unread
/// is drained afterwards.
class BlockingResponseReader {
 public:
  /// Reads up to out.size() content bytes; 0 only at the end of the content. Throws
  /// std::system_error on a transport failure (reported by Client::call's error_code).
  std::size_t read_some(std::span<std::uint8_t> out);
  /// True once the end of the content has been read.
  bool at_end() const noexcept;

 private:
  friend class Client;
  explicit BlockingResponseReader(Client& client) : client_(client) {}
  Client& client_;
};

/// Produces a streaming request on the calling thread.
using BlockingProducer = std::function<void(BlockingRequestWriter&)>;
/// Consumes a streaming OK response on the calling thread.
using BlockingConsumer = std::function<void(BlockingResponseReader&)>;

/// One client connection, blocking API. It owns an I/O thread (or runs on an io_context given
/// to it) that serves the socket, the timeouts and the keep-alives, while callers block.
///
/// A remote Error is a value of Result; transport failures are reported through the
/// std::error_code argument (Errc values or the system's codes), and the returned Result is then
/// meaningless. After a transport failure or Goodbye the connection is closed.
///
/// A server going away sends an idle connection an unprompted Goodbye (docs/protocol.md
/// section 7). The next call finds it before sending anything and is answered Goodbye without
/// being sent (Errc::connection_closed if the server just closed instead); the connection is
/// then closed. A Client retries a call only when asked, through the call() that takes a
/// RetryPolicy; Pool retries by default.
///
/// Thread-safety: every member function may be called from several threads at once; calls on
/// one Client are serialised (each waits for the one before). Never call it from the thread
/// that runs its io_context (that would wait on itself).
/// Lifetime: the destructor closes the connection and joins the owned I/O thread; with an
/// external io_context, that io_context must outlive the Client.
class Client {
 public:
  /// A client with an I/O thread of its own.
  explicit Client(Options options = {});
  /// A client on `io`, which the caller runs on threads of its own (as Pool does).
  Client(asio::io_context& io, Options options);
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();

  /// Connects (closing any earlier connection) and runs the handshake hook. The address is kept
  /// (even when connecting fails) for the retrying call() to reconnect to.
  void connect(std::string_view address, std::error_code& ec);
  /// Calls task `code` with `request`. Errc::reserved_task_code for 250..255 (nothing sent).
  /// Never retried.
  Result call(TaskCode code, std::span<const std::uint8_t> request, std::error_code& ec);
  /// As call(), but sent again under `policy` when the attempt is known not to have run, as a
  /// Pool does (RetryPolicy: Goodbye, Error 253, a refused connect, a connection found closed
  /// before the request left; a connection dropped after it only when `call.idempotent`). A
  /// closed connection is reopened to the address of the last connect(): at once when the
  /// server left it idle, otherwise after the back-off. The calling thread sleeps the
  /// back-offs. Errc::connection_closed if connect() was never called.
  Result call(TaskCode code, std::span<const std::uint8_t> request, std::error_code& ec,
              const RetryPolicy& policy, CallOptions call = {});
  /// Streaming form: `producer` writes the request on this thread; `consumer` (if set) reads an
  /// OK response, otherwise the content goes into Result::response. Exceptions other than
  /// std::system_error from either callback close the connection and propagate.
  Result call(TaskCode code, const BlockingProducer& producer, const BlockingConsumer& consumer,
              std::error_code& ec);
  /// Pipelining: every request written back to back, the answers matched in order.
  std::vector<Result> call_batch(std::span<const Call> calls, std::error_code& ec);
  /// Sends the keep-alive task (250).
  Result keep_alive(std::error_code& ec);
  /// Sends the goodbye task (255); the server answers Goodbye and closes.
  Result goodbye(std::error_code& ec);
  /// Closes the connection; later calls fail with Errc::connection_closed.
  void close() noexcept;
  /// True while connected (not closed, failed, or said goodbye to).
  bool is_open() const noexcept;
  /// The byte order the handshake chose.
  serialserver::ByteOrder byte_order() const noexcept;

 private:
  friend class BlockingRequestWriter;
  friend class BlockingResponseReader;
  friend class Pool;
  /// call() and call_batch() that also say whether a byte of the request reached the socket
  /// (before it, the server cannot have run the call): the Pool's retry decision.
  Result call_reporting(TaskCode code, std::span<const std::uint8_t> request, std::error_code& ec,
                        bool& written);
  std::vector<Result> call_batch_reporting(std::span<const Call> calls, std::error_code& ec,
                                           bool& written);
  template <class T, class F>
  T run(F make_awaitable);
  std::shared_ptr<detail::ConnectionState> current() const;

  Options options_;
  std::unique_ptr<asio::io_context> own_io_;
  asio::io_context& io_;
  asio::strand<asio::io_context::executor_type> strand_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::mutex call_mutex_;           // held for a whole call: calls are serialised per connection
  mutable std::mutex state_mutex_;  // guards state_ (replaced by connect)
  std::shared_ptr<detail::ConnectionState> state_;
  std::string address_;                           // of the last connect(); guarded by state_mutex_
  detail::ConnectionState* streaming_ = nullptr;  // the state of the streaming call running
};

}  // namespace serialclient
