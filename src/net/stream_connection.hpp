#pragma once

// The driver of a server connection: the I/O glue that performs the engine's (Session's) actions
// on a stream, written once over the stream type (TCP and Unix sockets, TLS, the in-memory test
// stream). The engine decides; this reads, writes, waits, runs tasks and streams responses.
//
// One coroutine (serve) asks the engine what to do next and does it; idle non-blocking sockets
// serve what needs no waiting in the read's completion handler (async_serve_while_idle).
// Lifecycle and Goodbye: stream_connection_lifecycle.hpp; reads and writes: _io.hpp; tasks,
// streamed responses and the peer monitor: _tasks.hpp.

#include <serialserver/client.hpp>
#include <serialserver/error.hpp>
#include <serialserver/protocol.hpp>
#include <serialserver/server.hpp>
#include "core/blocking_pool.hpp"
#include "core/session.hpp"
#include "net/short_read_drains.hpp"
#include "net/stream_ops.hpp"
#include "net/watchdog.hpp"
#include "util/scope_exit.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <utility>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

namespace serialserver::detail {

/// The inline buffer that the first read of a request goes into while the input buffer is given
/// back (an idle connection): enough for small requests in one read, small enough to keep idle
/// connections cheap.
inline constexpr std::size_t kIdleReadBytes = 128;
/// The longest a TLS connection waits for the peer's close_notify when it ends.
inline constexpr std::chrono::nanoseconds kTlsShutdownTimeout = std::chrono::seconds(2);
/// The longest a disconnected connection reads and discards what its peer still sends after its
/// Goodbye (the grace period's end, if sooner, ends it too): docs/protocol.md section 7.
inline constexpr std::chrono::nanoseconds kGoodbyeLinger = std::chrono::seconds(1);
/// Staging buffer for response producers.
inline constexpr std::size_t kProducerChunk = std::size_t{16} * 1024;
/// Reads and writes in a row that did not have to wait, after which a connection lets the other
/// connections of its I/O thread run (a peer that keeps both directions flowing, by pipelining
/// or streaming, would otherwise keep the thread to itself).
inline constexpr unsigned kOpsPerTurn = 16;

/// Streams read and written with non-blocking calls and readiness waits (the fewest syscalls):
/// sockets, and the in-memory test stream that behaves as one; others (TLS) through
/// async_read_some / async_write_some only.
template <class Stream>
concept NonBlockingStream = PlainSocket<Stream> ||
    requires(Stream& stream, std::error_code& ec, asio::mutable_buffer in, asio::const_buffer out) {
  stream.non_blocking(true, ec);
  { stream.read_some(in, ec) } -> std::same_as<std::size_t>;
  { stream.write_some(out, ec) } -> std::same_as<std::size_t>;
  stream.async_wait(asio::socket_base::wait_read, [](std::error_code) {});
};

template <class Stream>
class StreamConnection final : public Session,
                               public RequestSource,
                               private AfterReadCompletion,
                               private ReadSpill {
 public:
  StreamConnection(Server& server, Stream stream, ByteOrder byte_order, SessionData session,
                   std::string local_address, std::string remote_address)
      : Session(server, byte_order, std::move(session), std::move(local_address),
                std::move(remote_address), *this),
        stream_(std::move(stream)),
        watchdog_(stream_.get_executor()) {}

  /// The cancellation slot that run() must be spawned with, so that a coroutine task's pending
  /// operation can be cancelled.
  asio::cancellation_slot task_cancellation_slot() noexcept { return task_cancel_.slot(); }

  /// When `stop` fires, the connection is disconnected gracefully, with the grace period in
  /// `*stop_grace_ns` (or the server's shutdown_grace if null). Call before run(); the callback
  /// is removed when run() ends.
  void disconnect_on_stop(std::stop_token stop, const std::atomic<std::int64_t>* stop_grace_ns) {
    if (stop.stop_possible()) {
      on_stop_.emplace(std::move(stop), OnStop{this, stop_grace_ns});
    }
  }

  /// Serves the connection until it ends; returns why it ended. The stream is closed on return.
  asio::awaitable<std::error_code> run() {
    // The bookkeeping before and after is in plain functions: whatever a coroutine declares
    // takes room in its frame, which an idle connection keeps.
    auto self = std::static_pointer_cast<StreamConnection>(shared_from_this());
    const auto opened_at = open(self);
    std::error_code reason;
    try {
      reason = co_await serve();
    } catch (const std::exception& e) {
      reason = failed(e);
    }
    if constexpr (TlsStream<Stream>) {
      if (!stream_closed_ && !peer_gone_ && reason != Errc::peer_closed) {
        co_await tls_shutdown();
      }
    }
    finish(reason, opened_at);
    co_return reason;
  }

  // RequestSource
  asio::awaitable<std::size_t> async_read_request(std::span<std::uint8_t> out) override;
  bool request_ended() const noexcept override { return request_ended_; }
  std::uint64_t request_bytes_read() const noexcept override { return request_bytes_; }
  asio::any_io_executor request_executor() const override {
    // get_executor() is not const on asio's streams; it only copies the executor.
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast)
    return const_cast<Stream&>(stream_).get_executor();
  }

  /// For the in-memory stream tests.
  Stream& stream() noexcept { return stream_; }

  // For the Watchdog.
  bool finished() const noexcept { return finished_; }
  void on_deadline(Watchdog::Expired expired);

 private:
  /// The stop callback of disconnect_on_stop: runs on the thread that requests the stop.
  struct OnStop {
    StreamConnection* connection;
    const std::atomic<std::int64_t>* grace_ns;
    void operator()() const {
      // A connection being destroyed is no longer locked; its destructor waits for this call.
      if (const auto self = connection->weak_from_this().lock()) {
        self->disconnect(grace_ns != nullptr ? std::chrono::nanoseconds(grace_ns->load())
                                             : self->server().options().shutdown_grace);
      }
    }
  };

  // ---- opening and closing (run) -----------------------------------------------------------
  /// Registers the connection, reports it opened and starts the watchdog; returns the time.
  Clock::time_point open(const std::shared_ptr<StreamConnection>& self);

  /// serve() threw `e`: logs it; returns the reason the connection ends with.
  std::error_code failed(const std::exception& e);

  /// Closes the connection, reports it closed and unregisters it.
  void finish(std::error_code reason, Clock::time_point opened_at);

  // ---- Client hooks: hop to the connection's executor --------------------------------------
  void do_cancel() override {
    post_to_self([](StreamConnection& c) { c.cancel_task(); });
  }
  void do_close() override {
    post_to_self([](StreamConnection& c) {
      c.set_close_reason(Errc::closed_by_server);
      c.cancel_task();
      c.close_now();
    });
  }
  void do_disconnect(std::chrono::nanoseconds grace) override {
    post_to_self([grace](StreamConnection& c) { c.begin_disconnect(grace); });
  }
  template <class F>
  void post_to_self(F f) {
    if (closed()) {
      return;
    }
    auto self = std::static_pointer_cast<StreamConnection>(shared_from_this());
    asio::post(stream_.get_executor(), [self = std::move(self), f = std::move(f)]() mutable {
      if (!self->finished_) {
        f(*self);
      }
    });
  }

  void begin_disconnect(std::chrono::nanoseconds grace);
  void on_request_too_large() override { cancel_task(); }

  void close_now() noexcept {
    if (!stream_closed_) {
      stream_closed_ = true;
      close_stream(stream_);
    }
  }
  /// Closing a socket whose receive queue holds unread bytes sends a reset, which can make the
  /// peer lose the last responses (a Goodbye among them). So: end our side, discard what is
  /// readable now, then close.
  void close_gracefully() noexcept;

  /// Sends close_notify and waits, under min(Write timeout, kTlsShutdownTimeout) kept by the
  /// watchdog, for the peer's: a peer that never answers costs at most that long.
  /// A no-op for other streams: a constraint instead of `if constexpr` would not keep clang 14
  /// from instantiating the body for them in server.cpp's explicit instantiations.
  asio::awaitable<void> tls_shutdown();

  // ---- reading -----------------------------------------------------------------------------
  std::error_code io_error(std::error_code ec) const {
    if (close_reason_) {
      return close_reason_;
    }
    if (is_peer_gone_error(ec)) {
      return make_error_code(Errc::peer_closed);
    }
    return ec;
  }

  /// A non-blocking read or write that no one waits on failed with `ec`: unless it only would
  /// have blocked, the next I/O step reports it instead of starting.
  /// End of stream is not deferred: the answers already earned still go out, and the next read
  /// sees it again.
  void defer_error(std::error_code ec) noexcept {
    if (ec != asio::error::would_block && ec != asio::error::try_again && ec != asio::error::eof &&
        !deferred_error_) {
      deferred_error_ = ec;
    }
  }
  /// Why no more I/O starts: the deferred error, or the stream's closing.
  std::error_code stopped_error() const noexcept {
    return deferred_error_ ? deferred_error_ : make_error_code(asio::error::operation_aborted);
  }

  /// The buffer for an asynchronous read: on TCP one that lets a read that drained the socket
  /// queue the next read on epoll at once, instead of that read failing with EAGAIN first (see
  /// short_read_drains.hpp). `input_drained_` tells which it was.
  auto read_buffer(std::uint8_t* data, std::size_t size) noexcept {
    if constexpr (std::same_as<Stream, asio::ip::tcp::socket>) {
      return ShortReadDrains{asio::mutable_buffer(data, size), &input_drained_};
    } else {
      return asio::mutable_buffer(data, size);
    }
  }

  /// The buffer of a read while the input buffer holds no storage: the small inline one, and on
  /// TCP, in the same recvmsg, up to an input buffer's worth more through this thread's spill
  /// buffer (take_spilled_read), so that a request longer than the small buffer still takes one
  /// read, and a read that drains the socket is known as such (see read_buffer).
  auto idle_read_buffer() noexcept {
    if constexpr (std::same_as<Stream, asio::ip::tcp::socket>) {
      return ShortReadDrains{asio::mutable_buffer(idle_in_.data(), idle_in_.size()),
                             &input_drained_, this, kInputCapacity - kIdleReadBytes};
    } else {
      return read_buffer(idle_in_.data(), idle_in_.size());
    }
  }
  /// The idle read overflowed into the spill buffer: both parts go to the (empty) input buffer.
  void take_spilled_read(std::span<const std::uint8_t> head,
                         std::span<const std::uint8_t> rest) noexcept override {
    in_.append(head);
    in_.append(rest);
  }

  /// The end of an idle read of `n` bytes: they go to the input buffer (unless the spill buffer
  /// took them there already); a read that filled the small buffer reads on without waiting
  /// where the spill buffer is not used, so that a request longer than that buffer is usually
  /// whole before it is served (which an inline task needs to run without a coroutine).
  void take_idle_read(std::size_t n) noexcept;

  /// Reads more bytes into the input buffer, waiting for a request (Wait::request) or for the
  /// rest of one (Wait::reading) under that wait's timeout.
  asio::awaitable<std::error_code> read_more(Watchdog::Wait wait);

  // ---- writing -----------------------------------------------------------------------------
  /// Writes out what the output buffer holds, under the rolling Write timeout.
  asio::awaitable<std::error_code> flush();

  /// Writes without waiting, as far as the stream takes it; true if the output buffer is empty
  /// after. Most responses go out here, without a coroutine call; flush() waits if need be.
  bool write_without_waiting() noexcept;

  /// The engine's next step once what needs no waiting is done: serve_buffered(), writing its
  /// responses without waiting as long as the stream takes them.
  Next serve_ready() {
    Next next = serve_buffered();
    while (next == Next::flush && write_without_waiting()) {
      next = serve_buffered();
    }
    return next;
  }

  /// Makes room for `room` bytes in the output buffer, flushing if need be.
  asio::awaitable<std::error_code> reserve_output(std::size_t room) {
    if (!output_fits(room)) {
      co_return co_await flush();
    }
    co_return std::error_code{};
  }

  // ---- the serve loop ----------------------------------------------------------------------
  asio::awaitable<std::error_code> serve() {
    Next next = serve_ready();
    for (;;) {
      switch (next) {
        case Next::read:
          if constexpr (NonBlockingStream<Stream>) {
            // Waits, and serves the requests that arrive, in plain completion handlers: the
            // coroutine resumes only for what has to wait (see async_serve_while_idle).
            IdleResult result = co_await async_serve_while_idle();
            if (result.exception) {
              std::rethrow_exception(result.exception);
            }
            if (result.ec) {
              if (!woken_to_disconnect(result.ec)) {
                co_return result.ec;
              }
              next = serve_ready();  // Next::disconnect, or the output before it
              break;
            }
            next = result.next;
          } else {
            const auto ec = co_await read_more(Watchdog::Wait::request);
            if (ec && !woken_to_disconnect(ec)) {
              co_return ec;
            }
            next = serve_ready();
          }
          break;
        case Next::flush:
          if (auto ec = co_await flush()) {
            co_return ec;
          }
          next = serve_ready();
          break;
        case Next::disconnect:
          co_return co_await say_goodbye(std::nullopt);
        case Next::goodbye:
          co_return co_await say_goodbye(next_code());
        case Next::task:
        case Next::finish: {
          const auto ec =
              next == Next::task ? co_await serve_task(next_code()) : co_await finish_pending();
          if (ec) {
            co_return ec;
          }
          next = serve_ready();
          break;
        }
      }
    }
  }

  // ---- serving while idle, without the coroutine (non-blocking streams) ----------------------
  /// How async_serve_while_idle() ended: an error of the read (the connection ends with it), an
  /// exception that serving threw (rethrown in serve(), as if thrown there), or what to do next.
  struct IdleResult {
    std::error_code ec;
    Next next = Next::read;
    std::exception_ptr exception;

    static IdleResult failed(std::error_code e) { return {e, Next::read, nullptr}; }
    static IdleResult then(Next n) { return {{}, n, nullptr}; }
    static IdleResult threw(std::exception_ptr x) { return {{}, Next::read, std::move(x)}; }
  };

  /// Waits for the next request as read_more(Wait::request) does, then serves what
  /// serve_ready() can, and while that ends idle, reads and serves again: all in the read's
  /// completion handler, without resuming the coroutine. A connection whose requests are inline
  /// tasks or keep-alives thus touches, per request, its own state and the read's, and not the
  /// frames of the coroutine chain, each in cache lines of its own (with many connections, each
  /// a cache miss), nor runs their resumption. Completes when something has to wait: a flush, a
  /// task, a Goodbye, an error.
  auto async_serve_while_idle() {
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(IdleResult)>(
        [this](auto handler) {
          // Inside the coroutine's suspension: completing here would resume it from within
          // itself, so a read that cannot start completes through a post.
          if (stream_closed_ || deferred_error_) {
            asio::post(stream_.get_executor(),
                       [handler = std::move(handler), ec = io_error(stopped_error())]() mutable {
                         std::move(handler)(IdleResult::failed(ec));
                       });
            return;
          }
          start_idle_read(std::move(handler));
        },
        asio::use_awaitable);
  }

  /// read_more(Wait::request)'s read, with `handler` (async_serve_while_idle's) carried along;
  /// requires !stream_closed_ and no input storage (serve_ready() returned Next::read).
  template <class Handler>
  void start_idle_read(Handler handler) {
    watchdog_.begin_wait(Watchdog::Wait::request, server().options().timeout.wait);
    // No cancellation slot: no task runs while the connection waits for a request, so nothing
    // emits on the task's signal, which spares asio a cancellation handler in every read.
    stream_.async_read_some(idle_read_buffer(), [this, handler = std::move(handler)](
                                                    std::error_code ec, std::size_t n) mutable {
      on_idle_read(handler, ec, n);
    });
  }

  /// `handler` stays in the completed read's handler, which asio destroys after this returns,
  /// unless the next read takes it: one move of it per request, not one per call.
  // Flattened: every call in it inlined, so that the compiler's inlining budget, which moves
  // with any change to these classes, cannot leave the hot path's steps as calls (measured at
  // +52 to +65 instructions per ping, C=50, bench/callgrind.sh).
  template <class Handler>
  [[gnu::flatten]] void on_idle_read(Handler& handler, std::error_code ec, std::size_t n) {
    watchdog_.end_wait();
    if (ec) {
      std::move(handler)(IdleResult::failed(io_error(ec)));
      return;
    }
    take_idle_read(n);
    Next next = Next::read;
    try {
      next = serve_ready();
    } catch (...) {
      std::move(handler)(IdleResult::threw(std::current_exception()));
      return;
    }
    if (next != Next::read) {
      std::move(handler)(IdleResult::then(next));
    } else if (stream_closed_ || deferred_error_) {
      std::move(handler)(IdleResult::failed(io_error(stopped_error())));
    } else {
      start_idle_read(std::move(handler));
    }
  }

  // ---- Goodbye -------------------------------------------------------------------------------
  /// Answers `code` with Goodbye (the goodbye code, or any code after a disconnect), or with no
  /// code, says Goodbye unprompted to a disconnected connection that is idle; after a
  /// disconnect, lingers. The connection then ends.
  asio::awaitable<std::error_code> say_goodbye(std::optional<TaskCode> code);

  /// After the Goodbye of a disconnect: shuts our sending side (the peer reads the Goodbye, then
  /// end of stream), then reads and discards what the peer still sends until it closes or
  /// kGoodbyeLinger passes. Closing with unread input would reset the connection, and a reset
  /// can destroy the Goodbye in flight. On TLS, close_notify first; the rest is below TLS.
  asio::awaitable<void> linger();

  /// True if `ec` ended the wait for a request because a disconnect woke it (begin_disconnect),
  /// so that the connection says Goodbye instead of ending with the error.
  bool woken_to_disconnect(std::error_code ec) const noexcept;

  // ---- tasks (stream_connection_tasks.hpp) -------------------------------------------------
  /// When the time budget of a task of `entry` that starts now ends, if it has one: its
  /// TaskOptions::deadline, else ServerOptions::task_deadline. Inline tasks have none.
  std::optional<Clock::time_point> task_deadline(const RegisteredTask& entry) const;
  asio::awaitable<std::error_code> serve_task(TaskCode code);
  asio::awaitable<Response> run_task(const RegisteredTask& entry, TaskContext& ctx);
  asio::awaitable<std::error_code> finish_task(TaskEnd& end, Response& response);
  asio::awaitable<std::error_code> finish_pending();
  asio::awaitable<std::error_code> drain_request();
  asio::awaitable<std::error_code> drop_after_task(TaskEnd& end);
  asio::awaitable<std::error_code> write_response(Response& response);
  asio::awaitable<std::error_code> encode_content(wire::BlockEncoder& encoder,
                                                  std::span<const std::uint8_t> content);
  std::error_code producer_cancelled();
  void cancel_task();
  void schedule_probe();
  void run_after_read_completion() noexcept override;
  void probe();
  void start_monitor();
  void stop_monitor();
  void on_monitor(std::uint64_t generation, std::uint64_t wait, std::error_code ec);

  // Fields that every request reads or writes come first, after the engine's.
  Stream stream_;
  Watchdog watchdog_;
  unsigned ops_without_wait_ = 0;  // reads and writes in a row that did not wait
  bool stream_closed_ = false;
  std::error_code deferred_error_;  // see defer_error()
  bool input_drained_ = false;      // the last asynchronous read drained the socket (TCP_INQ)
  std::array<std::uint8_t, kIdleReadBytes> idle_in_{};

  bool finished_ = false;
  Clock::time_point grace_end_ = Clock::time_point::max();  // the end of a disconnect's grace
  asio::cancellation_signal task_cancel_;
  std::uint64_t task_generation_ = 0;
  bool task_suspended_ = false;
  bool task_is_blocking_ = false;
  bool cancel_emitted_ = false;
  bool producing_blocking_ = false;  // the producer in flight runs on the worker pool
  asio::cancellation_signal monitor_cancel_;
  std::uint64_t monitor_wait_ = 0;  // numbers the waits: a cancelled one completes stale
  bool monitor_active_ = false;
  bool probe_pending_ = false;
  bool reading_request_ = false;  // the task waits in read_more for its request
  std::shared_ptr<StreamConnection> deferred_probe_owner_;  // set while a probe waits
  std::optional<std::stop_callback<OnStop>> on_stop_;
};

}  // namespace serialserver::detail

#include "net/stream_connection_io.hpp"         // IWYU pragma: keep
#include "net/stream_connection_lifecycle.hpp"  // IWYU pragma: keep
#include "net/stream_connection_tasks.hpp"      // IWYU pragma: keep
