#pragma once

// StreamConnection's opening and closing: registering and reporting the connection, a
// disconnect's grace period, the Goodbye and the linger that end it, the deadlines the Watchdog
// reports, closing without losing the last answers, the TLS shutdown; and spawn_connection.
// Included by stream_connection.hpp; not a header of its own.

#include "net/stream_connection.hpp"  // IWYU pragma: keep

namespace serialserver::detail {

/// Registers the connection, reports it opened and starts the watchdog; returns the time.
template <class Stream>
typename StreamConnection<Stream>::Clock::time_point StreamConnection<Stream>::open(
    const std::shared_ptr<StreamConnection>& self) {
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
  if constexpr (NonBlockingStream<Stream>) {
    std::error_code ignored;
    stream_.non_blocking(true, ignored);
  }
  if constexpr (std::same_as<Stream, asio::ip::tcp::socket>) {
    enable_tcp_inq(stream_.native_handle());  // refused: reads behave as asio's own
  }
  watchdog_.start(self);
  return opened_at;
}

/// serve() threw `e`: logs it; returns the reason the connection ends with.
template <class Stream>
std::error_code StreamConnection<Stream>::failed(const std::exception& e) {
  snapshot_.logger->error("{}: connection failed: {}", to_string(), e.what());
  return close_reason_ ? close_reason_ : make_error_code(Errc::task_failed);
}

/// Closes the connection, reports it closed and unregisters it.
template <class Stream>
void StreamConnection<Stream>::finish(std::error_code reason, Clock::time_point opened_at) {
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
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - opened_at).count()},
         {"tasks", tasks_finished_},
         {"bytes_in", content_bytes_in_},
         {"bytes_out", content_bytes_out_},
         {"reason", close_reason_name(reason)},
         {"detail", close_detail(reason)}});
  }
  server().remove_client(*this);  // last: the server may be gone once its last client is
}

template <class Stream>
void StreamConnection<Stream>::begin_disconnect(std::chrono::nanoseconds grace) {
  disconnect_requested_ = true;
  grace_end_ = std::min(grace_end_, Clock::now() + std::max(grace, std::chrono::nanoseconds(0)));
  if (watchdog_.waiting() == Watchdog::Wait::request && in_.empty()) {
    // Idle: wake the wait for a request, so that serve() says Goodbye unprompted and lingers
    // (docs/protocol.md section 7). The grace period bounds only the linger then: a deadline
    // set now could close the connection before the Goodbye is written.
    cancel_stream(stream_);
    return;
  }
  // Otherwise the engine answers Next::disconnect once the request in flight has been answered,
  // or Goodbye to the next task code; a task still running at grace_end_ is cancelled.
  watchdog_.set_disconnect_deadline(grace_end_);
}

/// Closing a socket whose receive queue holds unread bytes sends a reset, which can make the
/// peer lose the last responses (a Goodbye among them). So: end our side, discard what is
/// readable now, then close.
template <class Stream>
void StreamConnection<Stream>::close_gracefully() noexcept {
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
template <class Stream>
asio::awaitable<void> StreamConnection<Stream>::tls_shutdown() {
  if constexpr (TlsStream<Stream>) {
    const auto timeout =
        std::min<std::chrono::nanoseconds>(server().options().timeout.write, kTlsShutdownTimeout);
    watchdog_.begin_wait(Watchdog::Wait::writing, timeout);
    std::error_code ignored;
    co_await stream_.async_shutdown(asio::redirect_error(asio::use_awaitable, ignored));
    watchdog_.end_wait();
  }
  co_return;
}

template <class Stream>
void StreamConnection<Stream>::on_deadline(Watchdog::Expired expired) {
  switch (expired) {
    case Watchdog::Expired::task:
      // The task's time budget ended: cancel it and answer Error 252 (settle()), or, if its
      // OK response is streaming, drop the connection (cancel_task()). The connection stays
      // otherwise. A task that has returned already is answered as it ended.
      if (stage() != Stage::idle && !task_cancelled_) {
        deadline_exceeded_ = true;
        cancel_task();
      }
      return;
    case Watchdog::Expired::disconnect:  // cancel what runs and close without a response
      set_close_reason(Errc::graceful_disconnect);
      break;
    case Watchdog::Expired::wait:
      set_close_reason(Errc::timeout_waiting_for_task);
      break;
    case Watchdog::Expired::read:
      set_close_reason(Errc::read_timeout);
      break;
    case Watchdog::Expired::request:
      set_close_reason(Errc::request_timeout);
      break;
    case Watchdog::Expired::write:
      set_close_reason(Errc::write_timeout);
      break;
  }
  cancel_task();
  close_now();
}

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
  auto connection = std::make_shared<StreamConnection<Stream>>(server, std::move(stream),
                                                               byte_order, std::move(session),
                                                               std::move(local), std::move(remote));
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

template <class Stream>
asio::awaitable<std::error_code> StreamConnection<Stream>::say_goodbye(
    std::optional<TaskCode> code) {
  if (auto ec = co_await reserve_output(1)) {
    co_return ec;
  }
  append_goodbye();
  if (code) {
    TaskRecord record;
    record.code = *code;
    record.outcome = TaskOutcome::goodbye;
    report_task(record);
  }
  if (auto ec = co_await flush()) {
    co_return ec;
  }
  if (disconnect_requested_) {
    co_await linger();
  }
  set_close_reason(Errc::graceful_disconnect);
  co_return close_reason_;
}

template <class Stream>
asio::awaitable<void> StreamConnection<Stream>::linger() {
  watchdog_.set_disconnect_deadline(std::min(grace_end_, Clock::now() + kGoodbyeLinger));
  if constexpr (TlsStream<Stream>) {
    // close_notify ends TLS's sending side. OpenSSL then waits for the client's, and gives up
    // at the first other record (a request sent meanwhile): the rest is discarded from the
    // socket below TLS.
    std::error_code ignored;
    co_await stream_.async_shutdown(asio::redirect_error(asio::use_awaitable, ignored));
  }
  auto& socket = lowest_socket(stream_);
  std::error_code ec;
  socket.shutdown(asio::socket_base::shutdown_send, ec);
  while (!ec && !stream_closed_) {
    co_await socket.async_read_some(asio::buffer(idle_in_),
                                    asio::redirect_error(asio::use_awaitable, ec));
  }
  close_now();  // TLS is shut down already: run() must not shut it down again
}

template <class Stream>
bool StreamConnection<Stream>::woken_to_disconnect(std::error_code ec) const noexcept {
  return ec == asio::error::operation_aborted && disconnect_requested_ && !stream_closed_ &&
         !deferred_error_;
}

}  // namespace serialserver::detail
