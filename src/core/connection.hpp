#pragma once

// The per-connection protocol state machine (docs/protocol.md sections 2 to 7), written once over a
// stream type so that it runs on TCP and Unix sockets, TLS streams and the in-memory test stream.
//
// Shape: one coroutine (serve) reads a task code, runs the task, drains what the task left of its
// request, and appends the response to an output buffer; the output is flushed when no complete
// request is left in the input (so pipelined requests cost one write for many responses). A
// timer handler (the watchdog) enforces the Wait, Read and Write timeouts and the disconnect
// deadline with one timer that is re-armed only when a deadline moves earlier.

#include <serialserver/client.hpp>
#include <serialserver/error.hpp>
#include <serialserver/protocol.hpp>
#include <serialserver/request_reader.hpp>
#include <serialserver/server.hpp>
#include <serialserver/task.hpp>
#include <serialserver/wire/block_decoder.hpp>
#include <serialserver/wire/block_encoder.hpp>
#include "core/blocking_pool.hpp"
#include "core/byte_buffer.hpp"
#include "core/task_table.hpp"
#include "net/short_read_drains.hpp"
#include "net/stream_ops.hpp"
#include "util/scope_exit.hpp"

#include <algorithm>
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
#include <vector>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

namespace serialserver::detail {

/// Input buffer size: enough for a burst of pipelined small requests in one read.
inline constexpr std::size_t kInputCapacity = std::size_t{16} * 1024;
/// Output buffer size: responses accumulate up to this before a flush is forced.
inline constexpr std::size_t kOutputCapacity = std::size_t{64} * 1024;
/// The inline buffer that the first read of a request goes into while the input buffer is
/// given back (an idle connection): enough for small requests in one read, small enough to
/// keep idle connections cheap.
inline constexpr std::size_t kIdleReadBytes = 128;
/// Room a streamed response needs to make progress: one full block plus the end byte.
inline constexpr std::size_t kMinEncodeRoom = 2 * (kMaxBlockSize + 1) + 1;
/// The longest a TLS connection waits for the peer's close_notify when it ends.
inline constexpr std::chrono::nanoseconds kTlsShutdownTimeout = std::chrono::seconds(2);
/// Staging buffer for response producers.
inline constexpr std::size_t kProducerChunk = std::size_t{16} * 1024;
/// Reads and writes in a row that did not have to wait, after which a connection lets the other
/// connections of its I/O thread run (a peer that keeps both directions flowing, by pipelining
/// or streaming, would otherwise keep the thread to itself).
inline constexpr unsigned kOpsPerTurn = 16;

template <class Stream>
class Connection final : public Client,
                         public RequestSource,
                         private AfterReadCompletion,
                         private ReadSpill {
 public:
  using Clock = std::chrono::steady_clock;

  Connection(Server& server, Stream stream, ByteOrder byte_order, SessionData session,
             std::string local_address, std::string remote_address)
      : Client(server, byte_order, std::move(local_address), std::move(remote_address)),
        stream_(std::move(stream)),
        session_(std::move(session)),
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
    auto self = std::static_pointer_cast<Connection>(shared_from_this());
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
  asio::awaitable<std::size_t> async_read_request(std::span<std::uint8_t> out) override {
    while (!request_ended_) {
      if (!in_.empty()) {
        const auto step = decoder_.decode(in_.readable(), out);
        in_.consume(step.consumed);
        if (step.end) {
          // Before the size check, which may throw: the end byte has been consumed, so the
          // drain that follows must not wait for another one.
          request_ended_ = true;
        }
        note_request_content(step.produced);
        if (step.produced > 0 || step.end || out.empty()) {
          if (task_suspended_) {  // it may wait before it reads again: notice the peer leaving
            if (task_is_blocking_) {
              start_monitor();
            } else {
              // A coroutine task may have suspended only for this read. A fresh probe (a post)
              // sees whether it waits again, for something else, and only then watches the
              // socket: watching at once cost an epoll_ctl per request that took a read.
              task_suspended_ = false;
              schedule_probe();
            }
          }
          co_return step.produced;
        }
        continue;
      }
      stop_monitor();  // one reader of the socket at a time
      reading_request_ = true;
      const auto ec = co_await read_more(Phase::reading);
      reading_request_ = false;
      if (ec) {
        if (ec == Errc::peer_closed) {
          peer_gone_ = true;  // so the connection ends as peer_closed, not as a failed task
        }
        throw std::system_error(ec);
      }
    }
    co_return 0;
  }
  bool request_ended() const noexcept override { return request_ended_; }
  std::uint64_t request_bytes_read() const noexcept override { return request_bytes_; }
  asio::any_io_executor request_executor() const override {
    // get_executor() is not const on asio's streams; it only copies the executor.
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast)
    return const_cast<Stream&>(stream_).get_executor();
  }

  /// For the in-memory stream tests.
  Stream& stream() noexcept { return stream_; }

 private:
  enum class Phase : std::uint8_t { none, waiting, reading, writing };

  /// The stop callback of disconnect_on_stop: runs on the thread that requests the stop.
  struct OnStop {
    Connection* connection;
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
  Clock::time_point open(const std::shared_ptr<Connection>& self) {
    server().add_client(self);
    refresh(snapshot_);
    const auto opened_at = Clock::now();
    if (snapshot_.metrics) {
      snapshot_.metrics->connection_opened(*this);
    }
    if (snapshot_.logger->enabled(LogLevel::info)) {
      snapshot_.logger->event(LogLevel::info, "connection opened",
                              {{"client", to_string()},
                               {"id", id()},
                               {"remote", remote_address()},
                               {"local", local_address()}});
    }
    if constexpr (PlainSocket<Stream>) {
      std::error_code ignored;
      stream_.non_blocking(true, ignored);
    }
    if constexpr (std::same_as<Stream, asio::ip::tcp::socket>) {
      enable_tcp_inq(stream_.native_handle());  // refused: reads behave as asio's own
    }
    set_watchdog_expiry(Clock::time_point::max());
    arm_watchdog(self);
    return opened_at;
  }

  /// serve() threw `e`: logs it; returns the reason the connection ends with.
  std::error_code failed(const std::exception& e) {
    snapshot_.logger->error("{}: connection failed: {}", to_string(), e.what());
    return close_reason_ ? close_reason_ : make_error_code(Errc::task_failed);
  }

  /// Closes the connection, reports it closed and unregisters it.
  void finish(std::error_code reason, Clock::time_point opened_at) {
    finished_ = true;
    on_stop_.reset();  // waits for a callback running on another thread, if any
    close_gracefully();
    watchdog_.cancel();
    mark_closed();
    refresh(snapshot_);
    if (snapshot_.metrics) {
      snapshot_.metrics->connection_closed(*this, reason);
    }
    if (snapshot_.logger->enabled(LogLevel::info)) {
      snapshot_.logger->event(
          LogLevel::info, "connection closed",
          {{"client", to_string()},
           {"id", id()},
           {"duration_ms",
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - opened_at)
                .count()},
           {"tasks", tasks_finished_},
           {"bytes_in", content_bytes_in_},
           {"bytes_out", content_bytes_out_},
           {"reason", close_reason_name(reason)},
           {"detail", close_detail(reason)}});
    }
    server().remove_client(*this);  // last: the server may be gone once its last client is
  }

  /// The closing log line's detail: the reason's message, except that a graceful disconnect
  /// names who began it (Errc::graceful_disconnect's message is the Go package's, "client
  /// requested to disconnect", true only of the goodbye task).
  std::string close_detail(std::error_code reason) const {
    if (reason == Errc::graceful_disconnect && disconnect_requested_) {
      return "the server disconnected gracefully";
    }
    return reason.message();
  }

  // ---- Client hooks: hop to the connection's executor --------------------------------------
  void do_cancel() override {
    post_to_self([](Connection& c) { c.cancel_task(); });
  }
  void do_close() override {
    post_to_self([](Connection& c) {
      c.set_close_reason(Errc::closed_by_server);
      c.cancel_task();
      c.close_now();
    });
  }
  void do_disconnect(std::chrono::nanoseconds grace) override {
    post_to_self([grace](Connection& c) { c.begin_disconnect(grace); });
  }
  template <class F>
  void post_to_self(F f) {
    if (closed()) {
      return;
    }
    auto self = std::static_pointer_cast<Connection>(shared_from_this());
    asio::post(stream_.get_executor(), [self = std::move(self), f = std::move(f)]() mutable {
      if (!self->finished_) {
        f(*self);
      }
    });
  }

  void begin_disconnect(std::chrono::nanoseconds grace) {
    disconnect_requested_ = true;
    if (phase_ == Phase::waiting && in_.empty()) {  // idle: close at once, sending nothing
      set_close_reason(Errc::graceful_disconnect);
      close_now();
      return;
    }
    const auto deadline = Clock::now() + std::max(grace, std::chrono::nanoseconds(0));
    if (deadline < disconnect_deadline_) {
      disconnect_deadline_ = deadline;
      rearm_if_earlier(deadline);
    }
  }

  void set_close_reason(Errc e) noexcept {
    if (!close_reason_) {
      close_reason_ = make_error_code(e);
    }
  }
  void close_now() noexcept {
    if (!stream_closed_) {
      stream_closed_ = true;
      close_stream(stream_);
    }
  }
  /// Closing a socket whose receive queue holds unread bytes sends a reset, which can make the
  /// peer lose the last responses (a Goodbye among them). So: end our side, discard what is
  /// readable now, then close.
  void close_gracefully() noexcept {
    if constexpr (PlainSocket<Stream> || TlsStream<Stream>) {
      if (!stream_closed_) {
        auto& socket = lowest_socket(stream_);
        std::error_code ignored;
        socket.non_blocking(true, ignored);  // already so for a plain socket
        socket.shutdown(asio::socket_base::shutdown_send, ignored);
        std::uint8_t scratch[4096];
        for (int i = 0; i < 16; ++i) {
          std::error_code ec;
          const std::size_t n = socket.read_some(asio::buffer(scratch), ec);
          if (ec || n == 0) {
            break;
          }
        }
      }
    }
    close_now();
  }

  /// Sends close_notify and waits, under min(Write timeout, kTlsShutdownTimeout) kept by the
  /// watchdog, for the peer's: a peer that never answers costs at most that long.
  /// A no-op for other streams: a constraint instead of `if constexpr` would not keep clang 14
  /// from instantiating the body for them in server.cpp's explicit instantiations.
  asio::awaitable<void> tls_shutdown() {
    if constexpr (TlsStream<Stream>) {
      const auto timeout =
          std::min<std::chrono::nanoseconds>(server().options().timeout.write, kTlsShutdownTimeout);
      set_io_deadline(Phase::writing, timeout);
      std::error_code ignored;
      co_await stream_.async_shutdown(asio::redirect_error(asio::use_awaitable, ignored));
      clear_io_deadline();
    }
    co_return;
  }

  /// Cancels the task that runs, or the producer of its streamed response: its stop token fires,
  /// and a coroutine's pending operation is cancelled. A cancelled producer ends the connection
  /// (write_response): an OK that has started cannot become an Error.
  void cancel_task() {
    if ((!task_running_ && !producing_) || task_cancelled_) {
      return;
    }
    task_cancelled_ = true;
    if (producing_) {
      // Whichever step notices it (the producer, or a flush that waits), the connection ends.
      set_close_reason(Errc::cancelled);
    }
    stop_source_.request_stop();
    if (producing_ ? !producing_blocking_ : !task_is_blocking_) {
      cancel_emitted_ = true;
      task_cancel_.emit(asio::cancellation_type::terminal);
    }
  }

  // ---- timeouts ----------------------------------------------------------------------------
  void set_io_deadline(Phase phase, std::chrono::nanoseconds timeout) {
    phase_ = phase;
    io_deadline_ = Clock::now() + timeout;
    if (phase == Phase::reading) {  // the rolling Read timeout, capped by the request's deadline
      io_deadline_ = std::min(io_deadline_, request_deadline_);
    }
    rearm_if_earlier(io_deadline_);
  }
  void clear_io_deadline() noexcept {
    phase_ = Phase::none;
    io_deadline_ = Clock::time_point::max();
  }
  void rearm_if_earlier(Clock::time_point deadline) {
    if (deadline < watchdog_expiry_) {
      set_watchdog_expiry(deadline);  // wakes the watchdog, which waits again
    }
  }
  /// Sets the watchdog's expiry and its copy in watchdog_expiry_, which every request reads
  /// (rearm_if_earlier) beside the connection's other per-request fields: the timer's own is in
  /// a cache line of its own.
  void set_watchdog_expiry(Clock::time_point expiry) {
    watchdog_expiry_ = expiry;
    watchdog_.expires_at(expiry);
  }

  /// The watchdog is a plain completion handler on the timer, not a coroutine: a coroutine
  /// would keep a spawned frame chain (about a KiB) alive for every idle connection.
  /// The handler holds a reference, so the connection lives until the watchdog has stopped.
  void arm_watchdog(std::shared_ptr<Connection> self) {
    watchdog_.async_wait(
        [self = std::move(self)](std::error_code) mutable { on_watchdog(std::move(self)); });
  }

  /// Runs when the timer fires or its expiry moves (rearm_if_earlier): enforces the deadline
  /// that has passed, or waits again until the earliest one.
  static void on_watchdog(std::shared_ptr<Connection> self) {
    Connection& c = *self;
    if (c.finished_) {
      return;
    }
    const auto now = Clock::now();
    if (c.disconnect_deadline_ <= now) {
      // The grace period is over: cancel what runs and close without a response.
      c.set_close_reason(Errc::graceful_disconnect);
      c.cancel_task();
      c.close_now();
      return;
    }
    if (c.io_deadline_ <= now && c.phase_ != Phase::none) {
      c.set_close_reason(
          c.phase_ == Phase::waiting ? Errc::timeout_waiting_for_task
          : c.phase_ == Phase::reading
              ? (c.request_deadline_ <= now ? Errc::request_timeout : Errc::read_timeout)
              : Errc::write_timeout);
      c.cancel_task();
      c.close_now();
      return;
    }
    const auto next = std::min(c.io_deadline_, c.disconnect_deadline_);
    if (c.watchdog_expiry_ != next) {
      c.set_watchdog_expiry(next);
    }
    c.arm_watchdog(std::move(self));
  }

  // ---- reading -----------------------------------------------------------------------------
  std::error_code read_error(std::error_code ec) const {
    if (close_reason_) {
      return close_reason_;
    }
    if (is_peer_gone_error(ec)) {
      return make_error_code(Errc::peer_closed);
    }
    return ec;
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

  /// Reads more bytes into the input buffer under the phase's timeout.
  asio::awaitable<std::error_code> read_more(Phase phase) {
    if (stream_closed_) {
      co_return read_error(asio::error::operation_aborted);
    }
    const Timeout& t = server().options().timeout;
    const auto timeout = phase == Phase::waiting ? t.wait : t.read;
    std::error_code ec;
    // Reads go through async_read_some, which reads at once unless the last read drained the
    // socket (see read_buffer) and otherwise queues on the socket's edge-triggered epoll
    // registration: one recv per request on TCP. A readiness wait (async_wait) would re-arm the
    // registration with an epoll_ctl on every request.
    if constexpr (std::same_as<Stream, asio::ip::tcp::socket>) {
      if (phase == Phase::reading && input_drained_) {
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
          co_return read_error(ec);
        }
        ec.clear();
      }
    }
    set_io_deadline(phase, timeout);
    if (!in_.has_storage()) {
      // Idle (or between requests): read into the small inline buffer, so that a connection
      // waiting for its next request holds no input buffer. On TCP the same recvmsg reads a
      // longer request on into the thread's spill buffer (idle_read_buffer); elsewhere it takes
      // a second read (read_rest_now).
      const auto buffer = idle_read_buffer();
      std::size_t n = 0;
      if (phase == Phase::waiting) {
        // No task runs while the connection waits for a request, so nothing emits on the
        // task's cancellation signal (cancel_task): the read goes without a cancellation slot,
        // which spares asio installing a cancellation handler in it on every request.
        n = co_await stream_.async_read_some(
            buffer, asio::bind_cancellation_slot(asio::cancellation_slot(),
                                                 asio::redirect_error(asio::use_awaitable, ec)));
      } else {
        n = co_await stream_.async_read_some(buffer, asio::redirect_error(asio::use_awaitable, ec));
      }
      clear_io_deadline();
      if (ec) {
        co_return read_error(ec);
      }
      note_input_arrived();
      if (n <= idle_in_.size()) {  // else take_spilled_read() has put all n bytes in in_
        in_.append(std::span<const std::uint8_t>(idle_in_.data(), n));
        if (n == idle_in_.size()) {
          read_rest_now();
        }
      }
      co_return std::error_code{};
    }
    auto space = in_.writable();
    const std::size_t n = co_await stream_.async_read_some(
        read_buffer(space.data(), space.size()), asio::redirect_error(asio::use_awaitable, ec));
    clear_io_deadline();
    if (ec) {
      co_return read_error(ec);
    }
    in_.commit(n);
    note_input_arrived();
    co_return std::error_code{};
  }

  /// Called after every read that added bytes to the input buffer. The task code of the next
  /// request served arrived in this read or an earlier one, and TaskMetadata::start is the time
  /// of the latest read before that request began: between the code's arrival and the task's
  /// start. One clock read per read, not per request: pipelined requests share their read's.
  void note_input_arrived() noexcept { input_arrived_at_ = std::chrono::system_clock::now(); }

  /// After a read that filled the small idle buffer: reads what else the socket holds now,
  /// without waiting, so that a request longer than that buffer is usually whole before it is
  /// served (which an inline task needs to run without a coroutine). An error or end of stream
  /// is left for the next read to report.
  void read_rest_now() noexcept {
    // TCP reads the rest in the same recvmsg already (idle_read_buffer): a read that filled the
    // small buffer there left nothing behind.
    if constexpr (PlainSocket<Stream> && !std::same_as<Stream, asio::ip::tcp::socket>) {
      auto space = in_.writable();
      std::error_code ec;
      const std::size_t n = stream_.read_some(asio::buffer(space.data(), space.size()), ec);
      if (!ec) {
        in_.commit(n);
      }
    }
  }

  // ---- writing -----------------------------------------------------------------------------
  std::error_code write_error(std::error_code ec) const { return read_error(ec); }

  /// Writes out what the output buffer holds, under the rolling Write timeout.
  asio::awaitable<std::error_code> flush() {
    const auto timeout = server().options().timeout.write;
    while (!out_.empty()) {
      if (PlainSocket<Stream> && ++ops_without_wait_ >= kOpsPerTurn) {  // take turns
        ops_without_wait_ = 0;
        co_await asio::post(stream_.get_executor(), asio::use_awaitable);
        continue;  // the stream may have been closed meanwhile
      }
      if (stream_closed_) {
        co_return write_error(asio::error::operation_aborted);
      }
      std::error_code ec;
      std::size_t n = 0;
      const auto data = out_.readable();
      if constexpr (PlainSocket<Stream>) {
        n = stream_.write_some(asio::buffer(data.data(), data.size()), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
          set_io_deadline(Phase::writing, timeout);
          ops_without_wait_ = 0;
          co_await stream_.async_wait(asio::socket_base::wait_write,
                                      asio::redirect_error(asio::use_awaitable, ec));
          clear_io_deadline();
          if (ec) {
            co_return write_error(ec);
          }
          continue;
        }
      } else {
        set_io_deadline(Phase::writing, timeout);
        n = co_await stream_.async_write_some(asio::buffer(data.data(), data.size()),
                                              asio::redirect_error(asio::use_awaitable, ec));
        clear_io_deadline();
      }
      if (ec) {
        co_return write_error(ec);
      }
      out_.consume(n);
    }
    co_return std::error_code{};
  }

  /// Writes without waiting, as far as the socket takes it (used when a task suspends, so that
  /// the responses before it are not held back).
  void write_without_waiting() noexcept {
    if constexpr (PlainSocket<Stream>) {
      while (!out_.empty() && !stream_closed_) {
        std::error_code ec;
        const auto data = out_.readable();
        const std::size_t n = stream_.write_some(asio::buffer(data.data(), data.size()), ec);
        if (ec) {
          return;  // would block, or an error that the next flush reports
        }
        out_.consume(n);
      }
    }
  }

  /// True if `room` bytes fit at the back of the output buffer without a flush. The callers
  /// flush only when this is false (a flush empties the buffer, whose capacity exceeds every
  /// room asked for): checked inline, since a coroutine call costs a frame per response.
  bool output_fits(std::size_t room) const noexcept { return out_.tail_room() >= room; }

  // ---- the task loop -----------------------------------------------------------------------
  /// True if a whole request (task code and message) is waiting in the input buffer.
  bool complete_request_buffered() const noexcept {
    const auto data = in_.readable();
    if (data.empty()) {
      return false;
    }
    if (data[0] == kGoodbyeTaskCode) {
      return true;
    }
    return wire::find_message_end(data.subspan(1)).has_value();
  }

  /// What serve() must do next, once serve_buffered() has served all it could without waiting.
  enum class Next : std::uint8_t {
    read,        // idle: wait for the next request
    flush,       // write out the output buffer, which the socket did not take at once
    disconnect,  // idle after a disconnect request: end the connection
    goodbye,     // answer next_code_ (the Goodbye code, or any code after a disconnect request)
    task,        // serve next_code_ with serve_task()
    rest,        // co_await rest_: the end of an inline task that serve_inline_now() began
  };

  /// Serves the requests in the input buffer for as long as that takes no waiting: the inline
  /// tasks, and the codes without a task function, whose answers fit in the output buffer. Writes
  /// the responses when no complete request is left (or half the output buffer is full), and
  /// gives the buffers back once the connection is idle. Returns what has to wait.
  Next serve_buffered() {
    for (;;) {
      if (in_.empty()) {
        // Most responses go out here without a coroutine call; flush() waits if need be.
        write_without_waiting();
        if (!out_.empty()) {
          return Next::flush;
        }
        // Idle now: give the buffers back. (Not in flush(), which a streamed response calls
        // for every buffer's worth: that would free and allocate the buffer each time.)
        in_.release_if_empty();
        out_.release_if_empty();
        return disconnect_requested_ ? Next::disconnect : Next::read;
      }
      const TaskCode code = in_.pop_front();
      next_code_ = code;
      if (disconnect_requested_ || code == kGoodbyeTaskCode) {
        return Next::goodbye;
      }
      refresh_table();
      const RegisteredTask* entry =
          is_reserved_task_code(code) ? nullptr : table_->entries[code].get();
      InlineStep step = InlineStep::not_taken;
      if (entry == nullptr) {
        step = serve_without_task_now(code) ? InlineStep::done : InlineStep::not_taken;
      } else if (entry->inline_function) {
        step = serve_inline_now(code, *entry, rest_);
      }
      if (step == InlineStep::not_taken) {
        return Next::task;
      }
      if (step == InlineStep::unfinished) {
        return Next::rest;
      }
      if (output_due()) {
        write_without_waiting();
        if (!out_.empty()) {
          return Next::flush;
        }
      }
    }
  }

  /// True if the responses in the output buffer should go out now, after a request: no complete
  /// request is left in the input buffer to answer in the same write, or the buffer is half full.
  bool output_due() const noexcept {
    return !out_.empty() && (out_.size() >= kOutputCapacity / 2 || !complete_request_buffered());
  }

  asio::awaitable<std::error_code> serve() {
    Next next = serve_buffered();
    for (;;) {
      switch (next) {
        case Next::read:
          if constexpr (PlainSocket<Stream>) {
            // Waits, and serves the requests that arrive, in plain completion handlers: the
            // coroutine resumes only for what has to wait (see async_serve_while_idle).
            IdleResult result = co_await async_serve_while_idle();
            if (result.exception) {
              std::rethrow_exception(result.exception);
            }
            if (result.ec) {
              co_return result.ec;
            }
            next = result.next;
          } else {
            if (auto ec = co_await read_more(Phase::waiting)) {
              co_return ec;
            }
            next = serve_buffered();
          }
          break;
        case Next::flush:
          if (auto ec = co_await flush()) {
            co_return ec;
          }
          next = serve_buffered();
          break;
        case Next::disconnect:
          co_return make_error_code(Errc::graceful_disconnect);
        case Next::goodbye:
          co_return co_await say_goodbye(next_code_);
        case Next::task:
        case Next::rest: {
          std::error_code ec;
          if (next == Next::task) {
            ec = co_await serve_task(next_code_);
          } else {
            ec = co_await std::move(rest_);
          }
          if (ec) {
            co_return ec;
          }
          if (output_due()) {
            write_without_waiting();
            if (!out_.empty()) {
              if (auto flush_ec = co_await flush()) {
                co_return flush_ec;
              }
            }
          }
          next = serve_buffered();
          break;
        }
      }
    }
  }

  // ---- serving while idle, without the coroutine (plain sockets) ------------------------------
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

  /// Waits for the next request as read_more(Phase::waiting) does, then serves what
  /// serve_buffered() can, and while that ends idle, reads and serves again: all in the read's
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
          if (stream_closed_) {
            asio::post(stream_.get_executor(),
                       [handler = std::move(handler),
                        ec = read_error(asio::error::operation_aborted)]() mutable {
                         std::move(handler)(IdleResult::failed(ec));
                       });
            return;
          }
          start_idle_read(std::move(handler));
        },
        asio::use_awaitable);
  }

  /// read_more(Phase::waiting)'s read, with `handler` (async_serve_while_idle's) carried along;
  /// requires !stream_closed_ and no input storage (serve_buffered() returned Next::read).
  template <class Handler>
  void start_idle_read(Handler handler) {
    set_io_deadline(Phase::waiting, server().options().timeout.wait);
    // No cancellation slot: nothing emits on the task's signal while no task runs (read_more).
    stream_.async_read_some(idle_read_buffer(), [this, handler = std::move(handler)](
                                                    std::error_code ec, std::size_t n) mutable {
      on_idle_read(handler, ec, n);
    });
  }

  /// `handler` stays in the completed read's handler, which asio destroys after this returns,
  /// unless the next read takes it: one move of it per request, not one per call.
  // Flattened: every call in it inlined, so that the compiler's inlining budget, which moves
  // with any change to this class, cannot leave the hot path's steps as calls (measured at +52
  // to +65 instructions per ping, C=50, bench/callgrind.sh).
  template <class Handler>
  [[gnu::flatten]] void on_idle_read(Handler& handler, std::error_code ec, std::size_t n) {
    clear_io_deadline();
    if (ec) {
      std::move(handler)(IdleResult::failed(read_error(ec)));
      return;
    }
    // The end of read_more()'s idle read, written out again: a function shared by both measured
    // 37 instructions more per ping (callgrind, C=50).
    note_input_arrived();
    if (n <= idle_in_.size()) {  // else take_spilled_read() has put all n bytes in in_
      in_.append(std::span<const std::uint8_t>(idle_in_.data(), n));
      if (n == idle_in_.size()) {
        read_rest_now();
      }
    }
    Next next = Next::read;
    try {
      next = serve_buffered();
    } catch (...) {
      std::move(handler)(IdleResult::threw(std::current_exception()));
      return;
    }
    if (next != Next::read) {
      std::move(handler)(IdleResult::then(next));
    } else if (stream_closed_) {
      std::move(handler)(IdleResult::failed(read_error(asio::error::operation_aborted)));
    } else {
      start_idle_read(std::move(handler));
    }
  }

  asio::awaitable<std::error_code> say_goodbye(TaskCode code) {
    if (!output_fits(1)) {
      if (auto ec = co_await flush()) {
        co_return ec;
      }
    }
    out_.push_back(static_cast<std::uint8_t>(ResponseCode::goodbye));
    TaskRecord record;
    record.code = code;
    record.outcome = TaskOutcome::goodbye;
    report_task(record);
    if (auto ec = co_await flush()) {
      co_return ec;
    }
    set_close_reason(Errc::graceful_disconnect);
    co_return close_reason_;
  }

  void note_request_content(std::size_t n) {
    request_bytes_ += n;
    task_bytes_read_.store(request_bytes_, std::memory_order_relaxed);
    const std::uint64_t limit = server().options().max_request_bytes;
    if (limit != 0 && request_bytes_ > limit && !request_too_large_) {
      request_too_large_ = true;
      cancel_task();
      throw TaskError(kMessageTooLargeErrorCode, "request too large");
    }
  }

  /// Consumes what the input buffer holds of the request's message, stopping at its end or
  /// when the request's content passes the drain limit (drain_overflow_: the connection answers
  /// Error 254 and ends rather than read on). Small requests end here, with no coroutine call.
  void drain_buffered() noexcept {
    note_drain_limit();  // the task may have read past it already, end byte and all
    while (!request_ended_ && !in_.empty() && !drain_overflow_) {
      const auto step = decoder_.next(in_.readable());
      in_.consume(step.consumed);
      request_bytes_ += step.content.size();
      task_bytes_read_.store(request_bytes_, std::memory_order_relaxed);
      request_ended_ = step.end;
      note_drain_limit();
    }
  }
  void note_drain_limit() noexcept {
    const auto& options = server().options();
    if (options.max_request_bytes != 0 && request_bytes_ > options.max_request_bytes) {
      request_too_large_ = true;
      drain_overflow_ =
          request_bytes_ - options.max_request_bytes > options.max_request_drain_bytes;
    }
  }

  /// True if drain_request() has nothing left to do after drain_buffered().
  bool drained() const noexcept { return request_ended_ && !drain_overflow_; }

  /// Reads and discards the rest of the request's message.
  asio::awaitable<std::error_code> drain_request() {
    for (;;) {
      drain_buffered();
      if (drain_overflow_) {
        co_await append_error(kMessageTooLargeErrorCode);
        (void)co_await flush();
        co_return make_error_code(Errc::message_too_large);
      }
      if (request_ended_) {
        co_return std::error_code{};
      }
      if (auto ec = co_await read_more(Phase::reading)) {
        co_return ec;
      }
    }
  }

  asio::awaitable<std::error_code> append_error(ErrorCode code) {
    if (!output_fits(2)) {
      if (auto ec = co_await flush()) {
        co_return ec;
      }
    }
    out_.push_back(static_cast<std::uint8_t>(ResponseCode::error));
    out_.push_back(code);
    co_return std::error_code{};
  }

  void refresh_table() {
    const auto version = server().task_table_version();
    if (!table_ || version != table_version_) {
      // The old table (freed after the swap, outside the lock) holds the name that a reader of
      // Client::metadata() may be copying: end_task does not take the lock, so this does.
      auto table = server().task_table();
      {
        const auto lock = lock_task_metadata();
        table_.swap(table);
      }
      table_version_ = version;
    }
  }

  /// Starts a request that may have to be read: its deadline (max_request_duration) starts now.
  void begin_request() noexcept {
    const auto max_duration = server().options().max_request_duration;
    begin_buffered_request();
    if (max_duration.count() > 0) {
      request_deadline_ = Clock::now() + max_duration;
    }
  }
  /// Starts a request that is all in the input buffer: nothing will be read for it, so it needs
  /// no deadline (and no clock read).
  void begin_buffered_request() noexcept {
    request_deadline_ = Clock::time_point::max();
    decoder_.reset();
    request_bytes_ = 0;
    request_ended_ = false;
    request_too_large_ = false;
    drain_overflow_ = false;
    task_cancelled_ = false;  // a cancel of an earlier task (or its producer) is spent
    task_bytes_read_.store(0, std::memory_order_relaxed);
    task_bytes_written_.store(0, std::memory_order_relaxed);
  }

  /// The one place a task ends: its record (outcome, duration since `started`, bytes) goes to
  /// the metrics and the debug log, and the connection's totals.
  void report_task(TaskRecord& record, TaskOutcome outcome, Clock::time_point started) {
    record.outcome = outcome;
    report_task(record, started);
  }
  void report_task(TaskRecord& record, Clock::time_point started) {
    record.duration = task_duration(started);
    report_task(record);
  }
  void report_task(TaskRecord& record) {
    record.bytes_read = request_bytes_;
    record.bytes_written = task_bytes_written_.load(std::memory_order_relaxed);
    ++tasks_finished_;
    content_bytes_in_ += record.bytes_read;
    content_bytes_out_ += record.bytes_written;
    if (snapshot_.metrics) {
      snapshot_.metrics->task_finished(*this, record);
    }
    if (snapshot_.logger->enabled(LogLevel::debug)) {  // nothing is formatted otherwise
      const std::string client = to_string();
      const auto micros =
          std::chrono::duration_cast<std::chrono::microseconds>(record.duration).count();
      const std::string_view outcome = task_outcome_name(record.outcome);
      if (record.outcome == TaskOutcome::error) {
        snapshot_.logger->event(LogLevel::debug, "task",
                                {{"client", client},
                                 {"id", id()},
                                 {"code", record.code},
                                 {"name", record.name},
                                 {"outcome", outcome},
                                 {"error_code", record.error_code},
                                 {"duration_us", micros},
                                 {"bytes_in", record.bytes_read},
                                 {"bytes_out", record.bytes_written}});
      } else {
        snapshot_.logger->event(LogLevel::debug, "task",
                                {{"client", client},
                                 {"id", id()},
                                 {"code", record.code},
                                 {"name", record.name},
                                 {"outcome", outcome},
                                 {"duration_us", micros},
                                 {"bytes_in", record.bytes_read},
                                 {"bytes_out", record.bytes_written}});
      }
    }
  }

  /// serve_task() for a code without a task function (keep-alive, the unassigned reserved codes,
  /// unregistered codes) whose request is in the input buffer, within the size limit, and whose
  /// answer fits in the output buffer: the same answer and report, without a coroutine call.
  /// Besides the call, this spares an idle connection that sends keep-alives a larger frame:
  /// asio recycles a finished frame for any smaller one, so serve_task()'s would become the
  /// frame of the read that waits for the next request. False (nothing done) if serve_task()
  /// must serve the request.
  /// Ends the task bookkeeping of begin_task when the serving scope ends, however it ends.
  struct EndTaskGuard {
    explicit EndTaskGuard(Connection* c) noexcept : connection(c) {}
    ~EndTaskGuard() {
      if (connection != nullptr) {
        connection->end_task();
      }
    }
    EndTaskGuard(const EndTaskGuard&) = delete;
    EndTaskGuard& operator=(const EndTaskGuard&) = delete;
    Connection* connection;  // null once released
  };

  /// The answer to a code with no task function, once its request is drained: OK for a
  /// keep-alive, Error 254 past the size limit, Error for an unknown code.
  void set_outcome_without_task(TaskRecord& record) const noexcept {
    if (request_too_large_) {
      record.outcome = TaskOutcome::error;
      record.error_code = kMessageTooLargeErrorCode;
    } else if (record.code == kKeepAliveTaskCode) {
      record.outcome = TaskOutcome::ok;
    } else {
      record.outcome = TaskOutcome::error;
      record.error_code = kUnknownTaskErrorCode;
    }
  }

  bool serve_without_task_now(TaskCode code) {
    const auto end = wire::find_message_end(in_.readable());
    const std::uint64_t limit = server().options().max_request_bytes;
    if (!end || (limit != 0 && *end > limit) || !output_fits(2)) {
      return false;  // the request is not all here, may be too large, or the answer must wait
    }
    refresh(snapshot_);
    const auto started = task_start_time();
    begin_buffered_request();
    begin_task(code, nullptr, input_arrived_at_);
    const EndTaskGuard end_task_guard{this};
    drain_buffered();  // the whole message, within the limit: request_ended_, not too large
    TaskRecord record;
    record.code = code;
    set_outcome_without_task(record);
    if (record.outcome == TaskOutcome::ok) {
      out_.push_back(static_cast<std::uint8_t>(ResponseCode::ok));
      out_.push_back(0);
    } else {
      out_.push_back(static_cast<std::uint8_t>(ResponseCode::error));
      out_.push_back(record.error_code);
    }
    report_task(record, started);
    return true;
  }

  /// When a task starts, for TaskRecord::duration: read only when metrics or debug logs will see
  /// the duration (refresh(snapshot_) first); otherwise the zero time point, and no clock read.
  Clock::time_point task_start_time() const {
    return snapshot_.metrics != nullptr || snapshot_.logger->enabled(LogLevel::debug)
               ? Clock::now()
               : Clock::time_point{};
  }
  static std::chrono::nanoseconds task_duration(Clock::time_point started) {
    return started == Clock::time_point{} ? std::chrono::nanoseconds(0) : Clock::now() - started;
  }

  enum class InlineStep : std::uint8_t {
    not_taken,   // serve_task() must serve the request
    done,        // answered and reported
    unfinished,  // the task ran; `rest` (a coroutine) writes the answer and reports it
  };

  /// Serves a request for an inline task function (InlineTaskFunction) whose whole request is in
  /// the input buffer and within the size limit, without a coroutine unless the answer does not
  /// fit in the output buffer or the task failed. The bookkeeping is serve_task()'s: the same
  /// reports, the same outcomes, the same bytes. Nothing is done if it returns not_taken.
  /// `entry` (an inline task of table_) stays alive until the next request's refresh_table().
  InlineStep serve_inline_now(TaskCode code, const RegisteredTask& entry,
                              asio::awaitable<std::error_code>& rest) {
    const auto input = in_.readable();
    const auto end = wire::find_message_end(input);
    const std::uint64_t limit = server().options().max_request_bytes;
    if (!end || (limit != 0 && *end > limit)) {  // not all here, or possibly too large
      return InlineStep::not_taken;
    }
    refresh(snapshot_);
    const auto started = task_start_time();
    begin_buffered_request();
    begin_task(code, &entry.name, input_arrived_at_);
    EndTaskGuard end_task_guard{this};
    const std::span<const std::uint8_t> content = message_content(input.first(*end));
    request_bytes_ = content.size();
    request_ended_ = true;
    task_bytes_read_.store(request_bytes_, std::memory_order_relaxed);

    RequestReader reader(*this);
    // Nothing can cancel the task during the call (the documented contract of an inline task),
    // so its stop token is one that never fires: no reference count to take and drop.
    TaskContext ctx(*this, reader, *snapshot_.logger, session_, code, std::stop_token());
    TaskRecord record;
    record.code = code;
    record.name = entry.name;
    std::optional<ErrorCode> error_code;
    std::optional<std::string> failure;
    Response response = call_inline(entry.inline_function, ctx, content, error_code, failure);
    in_.consume(*end);  // after the call: `content` may view the input buffer
    if (response.is_error()) {
      error_code = response.error_code();
    }
    if (failure) {
      end_task_guard.connection = nullptr;
      rest = fail_inline_task(std::move(*failure), record, started);
      return InlineStep::unfinished;
    }
    if (error_code) {
      record.outcome = TaskOutcome::error;
      record.error_code = *error_code;
      if (!output_fits(2)) {
        end_task_guard.connection = nullptr;
        rest = finish_inline_task(std::move(response), record, started);
        return InlineStep::unfinished;
      }
      out_.push_back(static_cast<std::uint8_t>(ResponseCode::error));
      out_.push_back(*error_code);
    } else {
      record.outcome = TaskOutcome::ok;
      if (!write_response_now(response)) {
        end_task_guard.connection = nullptr;
        rest = finish_inline_task(std::move(response), record, started);
        return InlineStep::unfinished;
      }
    }
    report_task(record, started);
    return InlineStep::done;
  }

  /// Calls an inline task function. The response is built in the caller's variable (guaranteed
  /// copy elision: no move or second destructor per request); if the function threw, the empty
  /// response, and `error_code` (TaskError) or `failure` is set.
  static Response call_inline(const InlineTaskFunction& function, TaskContext& ctx,
                              std::span<const std::uint8_t> content,
                              std::optional<ErrorCode>& error_code,
                              std::optional<std::string>& failure) {
    try {
      return function(ctx, content);
    } catch (...) {
      note_task_exception(error_code, failure);
    }
    return {};
  }

  /// Inside a catch block: what the exception a task function threw means. TaskError answers
  /// Error + its code; anything else fails the task (and drops the connection), `failure` saying
  /// what.
  static void note_task_exception(std::optional<ErrorCode>& error_code,
                                  std::optional<std::string>& failure) {
    try {
      throw;
    } catch (const TaskError& e) {
      error_code = e.code();
    } catch (const std::exception& e) {
      failure = e.what();
    } catch (...) {
      failure = "unknown exception";
    }
  }

  /// The content of the whole message `blocks` (block length bytes, content, end byte): a view
  /// into `blocks` when it is one block, else joined in a buffer of this thread's (valid until
  /// the next call on this thread).
  static std::span<const std::uint8_t> message_content(std::span<const std::uint8_t> blocks) {
    const std::size_t first = blocks[0];
    if (first == 0 || blocks.size() == first + 2) {
      return blocks.subspan(first == 0 ? 0 : 1, first);
    }
    // Grows to the longest message seen (at most the input buffer); zero-filled only then.
    static thread_local std::vector<std::uint8_t> joined;
    if (joined.size() < blocks.size()) {
      joined.resize(blocks.size());
    }
    wire::BlockDecoder decoder;
    const auto decoded = decoder.decode(blocks, joined);
    return {joined.data(), decoded.produced};
  }

  /// The rest of serve_inline_now() when the answer must wait for room in the output buffer.
  asio::awaitable<std::error_code> finish_inline_task(Response response, TaskRecord record,
                                                      Clock::time_point started) {
    const EndTaskGuard end_task_guard{this};
    if (record.outcome == TaskOutcome::error) {
      if (auto ec = co_await append_error(record.error_code)) {
        co_return ec;
      }
    } else if (auto ec = co_await write_response(response)) {
      report_task(record, TaskOutcome::dropped, started);
      co_return ec;
    }
    report_task(record, started);
    co_return std::error_code{};
  }

  /// The rest of serve_inline_now() when the task failed.
  asio::awaitable<std::error_code> fail_inline_task(std::string failure, TaskRecord record,
                                                    Clock::time_point started) {
    const EndTaskGuard end_task_guard{this};
    co_return co_await drop_after_task(record, started, &failure);
  }

  /// Ends a task after which the connection is dropped: its function failed (`failure`: how;
  /// null if it did not fail), or the stream closed or the peer left while it ran. The responses
  /// to the requests before it were earned: they are sent first (under the Write timeout), so a
  /// pipelining peer loses only what failed. Returns the close reason.
  asio::awaitable<std::error_code> drop_after_task(TaskRecord& record, Clock::time_point started,
                                                   const std::string* failure) {
    report_task(record, TaskOutcome::dropped, started);
    if (failure != nullptr && !stream_closed_ && !peer_gone_) {
      snapshot_.logger->error("{}: task {} ({}) failed: {}; dropping the connection", to_string(),
                              record.code, record.name, *failure);
      set_close_reason(Errc::task_failed);
      (void)co_await flush();
    }
    if (peer_gone_) {
      set_close_reason(Errc::peer_closed);
    }
    set_close_reason(Errc::task_failed);
    co_return close_reason_;
  }

  asio::awaitable<std::error_code> serve_task(TaskCode code) {
    refresh_table();
    refresh(snapshot_);
    const auto started = task_start_time();
    const std::shared_ptr<const RegisteredTask>& entry =
        is_reserved_task_code(code) ? kNoTask : table_->entries[code];
    begin_request();
    begin_task(code, entry ? &entry->name : nullptr, input_arrived_at_);
    const EndTaskGuard end_task_guard{this};

    TaskRecord record;
    record.code = code;
    if (entry) {
      record.name = entry->name;
    }

    if (!entry) {  // keep-alive, the unassigned reserved codes, and unregistered codes
      drain_buffered();
      if (!drained()) {
        if (auto ec = co_await drain_request()) {
          report_task(record, TaskOutcome::dropped, started);
          co_return ec;
        }
      }
      set_outcome_without_task(record);
      if (record.outcome == TaskOutcome::ok) {
        if (!output_fits(2)) {
          if (auto ec = co_await flush()) {
            co_return ec;
          }
        }
        out_.push_back(static_cast<std::uint8_t>(ResponseCode::ok));
        out_.push_back(0);
      } else if (auto ec = co_await append_error(record.error_code)) {
        co_return ec;
      }
      report_task(record, started);
      co_return std::error_code{};
    }

    // Run the task function.
    if (stop_source_.stop_requested()) {
      stop_source_ = std::stop_source();  // a fresh one only after the last was used
    }
    RequestReader reader(*this);
    TaskContext ctx(*this, reader, *snapshot_.logger, session_, code, stop_source_.get_token());
    Response response;
    std::optional<ErrorCode> error_code;
    std::optional<std::string> failure;
    task_running_ = true;
    task_cancelled_ = false;
    task_suspended_ = false;
    task_is_blocking_ = static_cast<bool>(entry->blocking_function);
    ++task_generation_;
    try {
      if (task_is_blocking_) {
        // A blocking task always suspends this coroutine: send what is pending first.
        write_without_waiting();
        task_suspended_ = true;
        response = co_await server().blocking_pool().template async_run<Response>(
            [&ctx, &fn = entry->blocking_function]() { return fn(ctx); });
      } else {
        schedule_probe();
        response = co_await entry->function(ctx);
      }
    } catch (...) {
      note_task_exception(error_code, failure);
    }
    if (response.is_error()) {
      error_code = response.error_code();
    }
    task_running_ = false;
    stop_monitor();
    if (cancel_emitted_) {
      cancel_emitted_ = false;
      co_await asio::this_coro::reset_cancellation_state();
    }
    if (request_too_large_) {  // the limit decides, whatever the task made of it
      error_code = kMessageTooLargeErrorCode;
      failure.reset();
    }
    if (failure || stream_closed_ || peer_gone_) {
      co_return co_await drop_after_task(record, started, failure ? &*failure : nullptr);
    }
    drain_buffered();
    if (!drained()) {
      if (auto ec = co_await drain_request()) {
        report_task(record, TaskOutcome::dropped, started);
        co_return ec;
      }
    }
    if (request_too_large_) {
      // Also when only the drain found the excess (a task that read little or nothing of its
      // request): the limit holds for every task (docs/protocol.md section 5).
      error_code = kMessageTooLargeErrorCode;
    }
    if (error_code) {
      record.outcome = TaskOutcome::error;
      record.error_code = *error_code;
      if (auto ec = co_await append_error(*error_code)) {
        co_return ec;
      }
    } else {
      if (!write_response_now(response)) {
        if (auto ec = co_await write_response(response)) {
          report_task(record, TaskOutcome::dropped, started);
          co_return ec;
        }
      }
      record.outcome = TaskOutcome::ok;
    }
    report_task(record, started);
    co_return std::error_code{};
  }

  /// Counts response content for Client::metadata(). Only this connection's thread writes the
  /// counter, so a load and a store do: no atomic read-modify-write (a locked instruction) per
  /// response.
  void add_task_bytes_written(std::size_t n) noexcept {
    task_bytes_written_.store(task_bytes_written_.load(std::memory_order_relaxed) + n,
                              std::memory_order_relaxed);
  }

  /// Appends an OK response held in memory when its whole encoding fits in the output buffer
  /// (the common case, done without a coroutine call); false if write_response() must do it.
  /// The bytes are those write_response() would produce: the encoding does not depend on how
  /// the content is split.
  bool write_response_now(const Response& response) {
    if (response.producer() != nullptr || response.blocking_producer()) {
      return false;
    }
    const std::span<const std::uint8_t> content = response.bytes();  // a view, not a copy
    if (!output_fits(1 + wire::encoded_size(content.size()))) {
      return false;
    }
    out_.push_back(static_cast<std::uint8_t>(ResponseCode::ok));
    out_.commit(wire::encode_message(content, out_.writable()));
    add_task_bytes_written(content.size());
    return true;
  }

  /// Appends `content` block-encoded, flushing whenever the output buffer fills.
  asio::awaitable<std::error_code> encode_content(wire::BlockEncoder& encoder,
                                                  std::span<const std::uint8_t> content) {
    while (!content.empty()) {
      if (!output_fits(kMinEncodeRoom)) {
        if (auto ec = co_await flush()) {
          co_return ec;
        }
      }
      auto space = out_.writable();
      // Content whose encoding surely fits: whole blocks of 256 encoded bytes per 255.
      const std::size_t fits = (space.size() / (kMaxBlockSize + 1) - 1) * kMaxBlockSize;
      const std::size_t n = std::min(content.size(), fits);
      const std::size_t written = encoder.write(content.first(n), space);
      out_.commit(written);
      content = content.subspan(n);
      add_task_bytes_written(n);
    }
    co_return std::error_code{};
  }

  asio::awaitable<std::error_code> write_response(Response& response) {
    if (!output_fits(1)) {
      if (auto ec = co_await flush()) {
        co_return ec;
      }
    }
    out_.push_back(static_cast<std::uint8_t>(ResponseCode::ok));
    // The encoder (its partial block takes 255 bytes) lives in this frame, only while a response
    // is written here, rather than in every connection.
    wire::BlockEncoder encoder;
    if (auto* producer = response.producer(); producer != nullptr || response.blocking_producer()) {
      auto staging = std::make_unique_for_overwrite<std::uint8_t[]>(kProducerChunk);
      const std::span<std::uint8_t> chunk(staging.get(), kProducerChunk);
      // Client::cancel(), a timeout or the end of a disconnect's grace period may cancel the
      // producer as they cancel a task (cancel_task); its stop token is the task's.
      producing_ = true;
      producing_blocking_ = producer == nullptr;
      const ScopeExit not_producing([this]() noexcept { producing_ = false; });
      for (;;) {
        std::size_t n = 0;
        try {
          if (producer != nullptr) {
            n = co_await producer->async_produce(chunk);
          } else {
            n = co_await server().blocking_pool().template async_run<std::size_t>(
                [p = response.blocking_producer(), chunk]() { return p->produce(chunk); });
          }
        } catch (const std::exception& e) {
          if (!task_cancelled_) {  // else it failed because it was cancelled: see below
            snapshot_.logger->error("{}: response producer failed after OK: {}", to_string(),
                                    e.what());
            co_return make_error_code(Errc::response_failed);
          }
        }
        if (task_cancelled_) {
          if (cancel_emitted_) {  // so that the connection's last steps are not cancelled too
            cancel_emitted_ = false;
            co_await asio::this_coro::reset_cancellation_state();
          }
          co_return producer_cancelled();
        }
        if (n == 0) {
          break;
        }
        if (auto ec = co_await encode_content(encoder, chunk.first(std::min(n, chunk.size())))) {
          co_return ec;
        }
      }
    } else if (auto ec = co_await encode_content(encoder, response.bytes())) {
      co_return ec;
    }
    if (!output_fits(kMaxBlockSize + 2)) {
      if (auto ec = co_await flush()) {
        co_return ec;
      }
    }
    out_.commit(encoder.finish(out_.writable()));
    co_return std::error_code{};
  }

  /// The producer of a streamed response was cancelled: the response stops part-way, so the
  /// connection ends (the peer sees it close, never a shorter response taken for a whole one).
  std::error_code producer_cancelled() {
    snapshot_.logger->info("{}: streamed response cancelled; dropping the connection", to_string());
    set_close_reason(Errc::cancelled);
    return close_reason_;
  }

  // ---- noticing a suspended task -----------------------------------------------------------
  /// Posted when a coroutine task starts. If it runs while a task is running, that task has
  /// suspended (the probe runs only when this connection's coroutine has yielded: one thread
  /// serves the connection): the responses before it go out now, and the socket is watched so
  /// that the task is cancelled if the peer goes away. At most one probe is queued at a time:
  /// pipelined tasks that finish without suspending share it instead of posting one each.
  /// On TCP, a task started inside the completion of a read (the common case: the read that
  /// brought its request) is probed right after that completion's handler returns, instead of by
  /// a post; the connection keeps itself alive until then.
  void schedule_probe() {
    if (probe_pending_) {
      return;
    }
    probe_pending_ = true;
    auto self = std::static_pointer_cast<Connection>(shared_from_this());
    if constexpr (std::same_as<Stream, asio::ip::tcp::socket>) {
      if (defer_until_read_completion_returns()) {
        deferred_probe_owner_ = std::move(self);
        return;
      }
    }
    asio::post(stream_.get_executor(), [self = std::move(self)]() { self->probe(); });
  }
  void run_after_read_completion() noexcept override {
    const auto self = std::move(deferred_probe_owner_);
    probe();
  }
  void probe() {
    probe_pending_ = false;
    if (!task_running_ || task_suspended_ || stream_closed_) {
      return;
    }
    task_suspended_ = true;
    write_without_waiting();
    if (!reading_request_) {  // waiting for something else than its request: watch the peer
      start_monitor();
    }
  }

  void start_monitor() {
    if constexpr (PlainSocket<Stream>) {
      if (monitor_active_ || !task_running_ || stream_closed_ || in_.tail_room() == 0) {
        return;
      }
      monitor_active_ = true;
      auto self = std::static_pointer_cast<Connection>(shared_from_this());
      stream_.async_wait(
          asio::socket_base::wait_read,
          asio::bind_cancellation_slot(monitor_cancel_.slot(),
                                       [self = std::move(self), gen = task_generation_](
                                           std::error_code ec) { self->on_monitor(gen, ec); }));
    }
  }
  void stop_monitor() {
    if (monitor_active_) {
      monitor_active_ = false;
      monitor_cancel_.emit(asio::cancellation_type::terminal);
    }
  }
  void on_monitor(std::uint64_t generation, std::error_code ec) {
    if constexpr (PlainSocket<Stream>) {
      if (generation != task_generation_ || !monitor_active_) {
        return;  // a stale wake-up from an earlier task
      }
      monitor_active_ = false;
      if (ec || !task_running_ || stream_closed_) {
        return;
      }
      auto space = in_.writable();
      const std::size_t n = stream_.read_some(asio::buffer(space.data(), space.size()), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        start_monitor();
        return;
      }
      if (ec) {  // end of stream or an error: nobody is left to answer
        peer_gone_ = true;
        snapshot_.logger->info("{}: peer went away while a task was running; cancelling it",
                               to_string());
        cancel_task();
        return;
      }
      in_.commit(n);  // pipelined input: keep it, and keep watching while there is room
      note_input_arrived();
      start_monitor();
    }
  }

  inline static const std::shared_ptr<const RegisteredTask> kNoTask{};

  // Fields that every request reads or writes come first, after Client's (which end with its
  // own such fields), so that a request touches as few cache lines as possible: with many
  // connections a request finds its connection's state out of the cache, and each line is a
  // miss. The rest follow idle_in_, of which a short request touches the first line only.
  Stream stream_;
  ByteBuffer in_{kInputCapacity};
  ByteBuffer out_{kOutputCapacity};
  Snapshot snapshot_;
  std::shared_ptr<const TaskTable> table_;
  std::uint64_t table_version_ = 0;
  wire::BlockDecoder decoder_;
  Clock::time_point io_deadline_ = Clock::time_point::max();
  Clock::time_point request_deadline_ = Clock::time_point::max();
  Clock::time_point watchdog_expiry_ = Clock::time_point::max();  // see set_watchdog_expiry()
  std::chrono::system_clock::time_point input_arrived_at_;        // see note_input_arrived()
  std::uint64_t request_bytes_ = 0;
  // For the connection-closed log line: tasks and request/response content bytes so far.
  std::uint64_t tasks_finished_ = 0;
  std::uint64_t content_bytes_in_ = 0;
  std::uint64_t content_bytes_out_ = 0;
  unsigned ops_without_wait_ = 0;  // reads and writes in a row that did not wait
  Phase phase_ = Phase::none;
  bool stream_closed_ = false;
  bool disconnect_requested_ = false;
  bool request_ended_ = false;
  bool request_too_large_ = false;
  bool drain_overflow_ = false;
  bool input_drained_ = false;  // the last asynchronous read drained the socket (TCP_INQ)
  TaskCode next_code_ = 0;      // the code of Next::goodbye and Next::task
  std::array<std::uint8_t, kIdleReadBytes> idle_in_{};

  SessionData session_;
  asio::steady_timer watchdog_;
  Clock::time_point disconnect_deadline_ = Clock::time_point::max();
  std::error_code close_reason_;
  bool finished_ = false;

  std::stop_source stop_source_;
  asio::cancellation_signal task_cancel_;
  std::uint64_t task_generation_ = 0;
  bool task_running_ = false;
  bool task_cancelled_ = false;
  bool task_suspended_ = false;
  bool task_is_blocking_ = false;
  bool cancel_emitted_ = false;
  bool peer_gone_ = false;
  bool producing_ = false;           // write_response() is running a response producer
  bool producing_blocking_ = false;  // ... on the worker pool

  asio::cancellation_signal monitor_cancel_;
  bool monitor_active_ = false;
  bool probe_pending_ = false;
  std::shared_ptr<Connection> deferred_probe_owner_;  // set while a probe waits for a handler
  bool reading_request_ = false;                      // the task waits in read_more for its request
  asio::awaitable<std::error_code> rest_;             // the coroutine of Next::rest

  std::optional<std::stop_callback<OnStop>> on_stop_;
};

/// Serves `stream` on its executor, as Server::async_handle_socket does, but without a
/// coroutine frame of the caller's kept for the connection's lifetime (an idle connection holds
/// only its own): `done(reason)` is called on the stream's executor once the connection has ended
/// (with Errc::task_failed if run() ended by an exception).
template <class Stream, class Done>
void spawn_connection(Server& server, Stream stream, ByteOrder byte_order, SessionData session,
                      std::stop_token stop, const std::atomic<std::int64_t>* stop_grace_ns,
                      Done done) {
  auto [local, remote] = socket_addresses(lowest_socket(stream));
  auto executor = stream.get_executor();
  auto connection =
      std::make_shared<Connection<Stream>>(server, std::move(stream), byte_order,
                                           std::move(session), std::move(local), std::move(remote));
  connection->disconnect_on_stop(std::move(stop), stop_grace_ns);
  const auto slot = connection->task_cancellation_slot();
  auto run = connection->run();
  asio::co_spawn(executor, std::move(run),
                 asio::bind_cancellation_slot(
                     slot, [connection = std::move(connection), done = std::move(done)](
                               const std::exception_ptr& error, std::error_code reason) mutable {
                       connection.reset();
                       done(error ? make_error_code(Errc::task_failed) : reason);
                     }));
}

}  // namespace serialserver::detail
