#pragma once

// StreamConnection's task steps: running a coroutine or blocking task function, reading its
// request for it, answering it (streamed responses included), cancelling it, and watching the
// peer while it runs. Included by stream_connection.hpp; not a header of its own.

#include "net/stream_connection.hpp"  // IWYU pragma: keep

namespace serialserver::detail {

template <class Stream>
asio::awaitable<std::size_t> StreamConnection<Stream>::async_read_request(
    std::span<std::uint8_t> out) {
  while (!request_ended_) {
    if (!in_.empty()) {
      const auto step = decode_request(out);
      if (!step.done) {
        continue;
      }
      if (task_suspended_) {  // it may wait before it reads again: notice the peer leaving
        if (task_is_blocking_) {
          start_monitor();
        } else {
          // A coroutine task may have suspended only for this read. A fresh probe (a post)
          // sees whether it waits again, for something else, and only then watches the socket:
          // watching at once cost an epoll_ctl per request that took a read.
          task_suspended_ = false;
          schedule_probe();
        }
      }
      co_return step.produced;
    }
    stop_monitor();  // one reader of the socket at a time
    reading_request_ = true;
    const auto ec = co_await read_more(Watchdog::Wait::reading);
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

/// Serves a request whose task is not inline or whose request is not all here: runs the task
/// function (none for keep-alive, reserved and unregistered codes), then answers.
template <class Stream>
asio::awaitable<std::error_code> StreamConnection<Stream>::serve_task(TaskCode code) {
  refresh_table();
  const std::shared_ptr<const RegisteredTask>& entry = task_entry(code);
  begin_request();
  watchdog_.begin_request(server().options().max_request_duration);
  TaskEnd end = begin_task_record(code, entry.get());
  if (!entry) {
    Response answer = reserved_answer(code, end);
    co_return co_await finish_task(end, answer);
  }
  if (refused(*entry, end)) {  // not run: answered Error, or the connection is dropped
    Response none;
    co_return co_await finish_task(end, none);
  }
  if (!server().try_take_task_slot()) {
    end.error_code = kBusyErrorCode;  // not started: its request is drained, then answered
    Response none;
    co_return co_await finish_task(end, none);
  }
  const ScopeExit give_back_slot{[this]() noexcept { server().give_back_task_slot(); }};
  if (stop_source_.stop_requested()) {
    stop_source_ = std::stop_source();  // a fresh one only after the last was used
  }
  const auto deadline = task_deadline(*entry);
  const ScopeExit end_deadline{[this]() noexcept { watchdog_.clear_task_deadline(); }};
  if (deadline) {
    watchdog_.set_task_deadline(*deadline);
  }
  RequestReader reader(*this);
  TaskContext ctx(*this, reader, *snapshot_.logger, session_, code, stop_source_.get_token(),
                  deadline);
  set_stage(Stage::task);
  task_suspended_ = false;
  task_is_blocking_ = static_cast<bool>(entry->blocking_function);
  ++task_generation_;
  Response response;
  try {
    response = co_await run_task(*entry, ctx);
  } catch (...) {
    note_task_exception(end);
  }
  set_stage(Stage::idle);
  stop_monitor();
  if (cancel_emitted_) {
    cancel_emitted_ = false;
    co_await asio::this_coro::reset_cancellation_state();
  }
  co_return co_await finish_task(end, response);
}

/// Answers what serve_buffered() could not answer at once (Next::finish).
template <class Stream>
asio::awaitable<std::error_code> StreamConnection<Stream>::finish_pending() {
  PendingAnswer pending = take_pending();
  co_return co_await finish_task(pending.end, pending.response);
}

template <class Stream>
asio::awaitable<Response> StreamConnection<Stream>::run_task(const RegisteredTask& entry,
                                                             TaskContext& ctx) {
  if (task_is_blocking_) {
    // A blocking task always suspends this coroutine: send what is pending first.
    write_without_waiting();
    task_suspended_ = true;
    co_return co_await server().blocking_pool().template async_run<Response>(
        [&ctx, &fn = entry.blocking_function]() { return fn(ctx); });
  }
  schedule_probe();
  co_return co_await entry.function(ctx);
}

/// The one place a task is answered after waiting (the engine answers the rest, answer_now):
/// its request is drained, then its Error, or its OK response (streamed if need be), goes out,
/// or the connection is dropped; and it is reported.
template <class Stream>
asio::awaitable<std::error_code> StreamConnection<Stream>::finish_task(TaskEnd& end,
                                                                       Response& response) {
  const EndTaskOnExit end_task_on_exit{this};
  settle(end, response);
  if (end.failure || stream_closed_ || peer_gone_) {
    co_return co_await drop_after_task(end);
  }
  drain_buffered();
  if (!drained()) {
    if (auto ec = co_await drain_request()) {
      report_task(end, TaskOutcome::dropped);
      co_return ec;
    }
  }
  settle(end, response);  // the drain may have found the request too large, whatever the task read
  if (answer_now(end, response)) {
    co_return std::error_code{};
  }
  if (end.error_code) {
    if (auto ec = co_await reserve_output(2)) {
      co_return ec;
    }
    append_error(*end.error_code);
    end.record.error_code = *end.error_code;
    report_task(end, TaskOutcome::error);
    co_return std::error_code{};
  }
  if (auto ec = co_await write_response(response)) {
    report_task(end, TaskOutcome::dropped);
    co_return ec;
  }
  report_task(end, TaskOutcome::ok);
  co_return std::error_code{};
}

/// Reads and discards the rest of the request's message.
template <class Stream>
asio::awaitable<std::error_code> StreamConnection<Stream>::drain_request() {
  for (;;) {
    drain_buffered();
    if (drain_overflow()) {
      if (!co_await reserve_output(2)) {
        append_error(kMessageTooLargeErrorCode);
        (void)co_await flush();
      }
      co_return make_error_code(Errc::message_too_large);
    }
    if (request_ended_) {
      co_return std::error_code{};
    }
    if (auto ec = co_await read_more(Watchdog::Wait::reading)) {
      co_return ec;
    }
  }
}

/// Ends a task after which the connection is dropped: its function failed, or the stream closed
/// or the peer left while it ran. The responses to the requests before it were earned: they
/// are sent first (under the Write timeout), so a pipelining peer loses only what failed.
/// Returns the close reason.
template <class Stream>
asio::awaitable<std::error_code> StreamConnection<Stream>::drop_after_task(TaskEnd& end) {
  report_task(end, TaskOutcome::dropped);
  if (end.failure && !stream_closed_ && !peer_gone_) {
    if (end.refused) {
      snapshot_.logger->info("{}: task {} ({}) refused by an interceptor; dropping the connection",
                             to_string(), end.record.code, end.record.name);
      set_close_reason(Errc::closed_by_server);
    } else {
      snapshot_.logger->error("{}: task {} ({}) failed: {}; dropping the connection", to_string(),
                              end.record.code, end.record.name, *end.failure);
      set_close_reason(Errc::task_failed);
    }
    (void)co_await flush();
  }
  if (peer_gone_) {
    set_close_reason(Errc::peer_closed);
  }
  set_close_reason(Errc::task_failed);
  co_return close_reason_;
}

/// Writes an OK response that answer_now() could not: one larger than the output buffer's room,
/// or streamed by a producer.
template <class Stream>
asio::awaitable<std::error_code> StreamConnection<Stream>::write_response(Response& response) {
  if (auto ec = co_await reserve_output(1)) {
    co_return ec;
  }
  append_ok();
  // The encoder (its partial block takes 255 bytes) lives in this frame, only while a response
  // is written here, rather than in every connection.
  wire::BlockEncoder encoder;
  if (auto* producer = response.producer(); producer != nullptr || response.blocking_producer()) {
    auto staging = std::make_unique_for_overwrite<std::uint8_t[]>(kProducerChunk);
    const std::span<std::uint8_t> chunk(staging.get(), kProducerChunk);
    // Client::cancel(), a timeout or the end of a disconnect's grace period may cancel the
    // producer as they cancel a task (cancel_task); its stop token is the task's.
    set_stage(Stage::producing);
    producing_blocking_ = producer == nullptr;
    const ScopeExit not_producing([this]() noexcept { set_stage(Stage::idle); });
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
  while (!finish_encoding(encoder)) {
    if (auto ec = co_await flush()) {
      co_return ec;
    }
  }
  co_return std::error_code{};
}

/// Appends `content` block-encoded, flushing whenever the output buffer fills.
template <class Stream>
asio::awaitable<std::error_code> StreamConnection<Stream>::encode_content(
    wire::BlockEncoder& encoder, std::span<const std::uint8_t> content) {
  while (!content.empty()) {
    const std::size_t n = encode_some(encoder, content);
    if (n == 0) {
      if (auto ec = co_await flush()) {
        co_return ec;
      }
      continue;
    }
    content = content.subspan(n);
  }
  co_return std::error_code{};
}

/// The producer of a streamed response was cancelled: the response stops part-way, so the
/// connection ends (the peer sees it close, never a shorter response taken for a whole one).
template <class Stream>
std::error_code StreamConnection<Stream>::producer_cancelled() {
  snapshot_.logger->info("{}: streamed response cancelled; dropping the connection", to_string());
  set_close_reason(Errc::cancelled);
  return close_reason_;
}

/// Cancels the task that runs, or the producer of its streamed response: its stop token fires,
/// and a coroutine's pending operation is cancelled. A cancelled producer ends the connection
/// (write_response): an OK that has started cannot become an Error.
template <class Stream>
void StreamConnection<Stream>::cancel_task() {
  if (stage() == Stage::idle || task_cancelled_) {
    return;
  }
  task_cancelled_ = true;
  const bool producing = stage() == Stage::producing;
  if (producing) {
    // Whichever step notices it (the producer, or a flush that waits), the connection ends.
    set_close_reason(Errc::cancelled);
  }
  stop_source_.request_stop();
  if (producing ? !producing_blocking_ : !task_is_blocking_) {
    cancel_emitted_ = true;
    task_cancel_.emit(asio::cancellation_type::terminal);
  }
}

// ---- noticing a suspended task ---------------------------------------------------------------
/// Posted when a coroutine task starts. If it runs while a task is running, that task has
/// suspended (the probe runs only when this connection's coroutine has yielded: one thread
/// serves the connection): the responses before it go out now, and the socket is watched so
/// that the task is cancelled if the peer goes away. At most one probe is queued at a time:
/// pipelined tasks that finish without suspending share it instead of posting one each.
/// On TCP, a task started inside the completion of a read (the common case: the read that
/// brought its request) is probed right after that completion's handler returns, instead of by
/// a post; the connection keeps itself alive until then.
template <class Stream>
void StreamConnection<Stream>::schedule_probe() {
  if (probe_pending_) {
    return;
  }
  probe_pending_ = true;
  auto self = std::static_pointer_cast<StreamConnection>(shared_from_this());
  if constexpr (std::same_as<Stream, asio::ip::tcp::socket>) {
    if (defer_until_read_completion_returns()) {
      deferred_probe_owner_ = std::move(self);
      return;
    }
  }
  asio::post(stream_.get_executor(), [self = std::move(self)]() { self->probe(); });
}

template <class Stream>
void StreamConnection<Stream>::run_after_read_completion() noexcept {
  const auto self = std::move(deferred_probe_owner_);
  probe();
}

template <class Stream>
void StreamConnection<Stream>::probe() {
  probe_pending_ = false;
  if (stage() != Stage::task || task_suspended_ || stream_closed_) {
    return;
  }
  task_suspended_ = true;
  write_without_waiting();
  if (!reading_request_) {  // waiting for something else than its request: watch the peer
    start_monitor();
  }
}

template <class Stream>
void StreamConnection<Stream>::start_monitor() {
  if constexpr (NonBlockingStream<Stream>) {
    if (monitor_active_ || stage() != Stage::task || stream_closed_ || deferred_error_ ||
        in_.tail_room() == 0) {
      return;
    }
    monitor_active_ = true;
    auto self = std::static_pointer_cast<StreamConnection>(shared_from_this());
    stream_.async_wait(asio::socket_base::wait_read,
                       asio::bind_cancellation_slot(
                           monitor_cancel_.slot(),
                           [self = std::move(self), gen = task_generation_, wait = ++monitor_wait_](
                               std::error_code ec) { self->on_monitor(gen, wait, ec); }));
  }
}

template <class Stream>
void StreamConnection<Stream>::stop_monitor() {
  if (monitor_active_) {
    monitor_active_ = false;
    monitor_cancel_.emit(asio::cancellation_type::terminal);
  }
}

template <class Stream>
void StreamConnection<Stream>::on_monitor(std::uint64_t generation, std::uint64_t wait,
                                          std::error_code ec) {
  if constexpr (NonBlockingStream<Stream>) {
    // A wait that stop_monitor() cancelled may complete after a new one has started for the
    // same task (a blocking task's request read in between finished at once): its
    // operation_aborted is not the peer's doing, and the new wait is the one that watches.
    if (generation != task_generation_ || wait != monitor_wait_ || !monitor_active_) {
      if (ec && ec != asio::error::operation_aborted) {
        defer_error(ec);  // the stream's error, whichever task watched it
      }
      return;  // a stale wake-up from an earlier task
    }
    monitor_active_ = false;
    if (stage() != Stage::task || stream_closed_) {
      return;
    }
    std::size_t n = 0;
    if (!ec) {  // else the wait failed: as a read would have
      auto space = in_.writable();
      n = stream_.read_some(asio::buffer(space.data(), space.size()), ec);
    }
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      start_monitor();
      return;
    }
    if (ec == asio::error::eof && !server().options().cancel_task_on_end_of_stream) {
      return;  // a half-close, perhaps: the task's answer is sent, then the connection ends
    }
    if (ec) {  // end of stream or an error: nobody is left to answer
      peer_gone_ = true;
      defer_error(ec);
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

template <class Stream>
std::optional<std::chrono::steady_clock::time_point> StreamConnection<Stream>::task_deadline(
    const RegisteredTask& entry) const {
  if (entry.inline_function) {
    return std::nullopt;
  }
  const auto budget = entry.deadline.value_or(server().options().task_deadline);
  if (budget.count() <= 0) {
    return std::nullopt;
  }
  return Clock::now() + budget;
}

}  // namespace serialserver::detail
