#pragma once

// The sans-I/O engine of a server connection (docs/protocol.md sections 2 to 7): the protocol
// state of one connection, fed bytes and events by a driver (src/net/stream_connection.hpp) and
// answering with what to do next. It owns the input and output buffers, the block decoder, the
// task table lookup, the reserved codes, the request size limit and draining, the answers of
// codes without a task function and of inline tasks, and the report of every task. It performs
// no I/O and knows nothing of sockets or timers: bytes arrive through input_space() /
// commit_input(), leave through output() / consume_output(), and serve_buffered() says what
// has to wait (a read, a flush, a task, a Goodbye).
//
// The steps that every request takes are defined here and in session_inline.hpp, in headers, so
// that the driver's read completion handler inlines them (see StreamConnection::on_idle_read).

#include <serialserver/client.hpp>
#include <serialserver/error.hpp>
#include <serialserver/protocol.hpp>
#include <serialserver/request_reader.hpp>
#include <serialserver/server.hpp>
#include <serialserver/task.hpp>
#include <serialserver/wire/block_decoder.hpp>
#include <serialserver/wire/block_encoder.hpp>
#include "core/byte_buffer.hpp"
#include "core/task_end.hpp"
#include "core/task_table.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>

namespace serialserver::detail {

/// Input buffer size: enough for a burst of pipelined small requests in one read.
inline constexpr std::size_t kInputCapacity = std::size_t{16} * 1024;
/// Output buffer size: responses accumulate up to this before a flush is forced.
inline constexpr std::size_t kOutputCapacity = std::size_t{64} * 1024;
/// Room a streamed response needs to make progress: one full block plus the end byte.
inline constexpr std::size_t kMinEncodeRoom = 2 * (kMaxBlockSize + 1) + 1;

class Session : public Client {
 public:
  using Clock = std::chrono::steady_clock;

  /// What the driver does next, once serve_buffered() has served all it could without waiting.
  enum class Next : std::uint8_t {
    read,        // idle: wait for the next request
    flush,       // write out the output buffer, which the stream did not take at once
    disconnect,  // idle after a disconnect request: say Goodbye unprompted, linger, end
    goodbye,     // answer next_code() with Goodbye (the Goodbye code, or any after a disconnect)
    task,        // start the task function of next_code()
    finish,      // answer take_pending(): an answer that did not fit, or a failed inline task
  };

  /// Where the request in flight is.
  enum class Stage : std::uint8_t {
    idle,       // no task runs (between requests, or answering one without a task function)
    task,       // a task function runs
    producing,  // a task's streamed response is being produced
  };

  /// `source` is the driver's (the request reader of inline tasks): stored, not used here.
  Session(Server& server, ByteOrder byte_order, SessionData session, std::string local_address,
          std::string remote_address, RequestSource& source)
      : Client(server, byte_order, std::move(local_address), std::move(remote_address)),
        has_interceptors_(!server.options().interceptors.empty()),
        guarded_dispatch_(has_interceptors_ || server.options().max_concurrent_tasks != 0),
        source_(source),
        session_(std::move(session)) {}

  // ---- input -----------------------------------------------------------------------------
  /// Appends bytes that the driver read elsewhere (a small inline buffer).
  void append_input(std::span<const std::uint8_t> bytes) noexcept { in_.append(bytes); }
  /// Called after every read that added input. The task code of the next request served arrived
  /// in this read or an earlier one, and TaskMetadata::start is the time of the latest read
  /// before that request began. One clock read per read, not per request.
  void note_input_arrived() noexcept { input_arrived_at_ = std::chrono::system_clock::now(); }

  // ---- serving ---------------------------------------------------------------------------
  /// Serves the requests in the input buffer for as long as that takes no waiting: the inline
  /// tasks and the codes without a task function whose requests are whole and whose answers
  /// fit. Asks for a flush when no complete request is left to answer in the same write (or the
  /// output is half full), and gives the buffers back once the connection is idle. Returns what
  /// has to wait.
  Next serve_buffered() {
    for (;;) {
      if (output_due()) {  // after a request, before the next one starts
        return Next::flush;
      }
      if (in_.empty()) {
        // Idle now: give the buffers back. (Not after each flush, which a streamed response
        // does for every buffer's worth: that would free and allocate the buffer each time.)
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
      const RegisteredTask* entry = task_entry(code).get();
      if (entry != nullptr && !entry->inline_function) {
        return Next::task;
      }
      const auto whole = whole_request_within_limit();
      if (!whole) {
        return Next::task;  // the driver reads the rest (the code's task, or the drain)
      }
      if (!serve_whole_request(code, entry, *whole)) {
        return Next::finish;
      }
    }
  }

  /// The code of Next::goodbye and Next::task.
  TaskCode next_code() const noexcept { return next_code_; }
  /// The registered task of `code` (null for reserved and unregistered codes), from the task
  /// table as of the last refresh_table().
  const std::shared_ptr<const RegisteredTask>& task_entry(TaskCode code) const noexcept {
    return is_reserved_task_code(code) ? kNoTask : table_->entries[code];
  }
  /// The answer of Next::finish.
  PendingAnswer take_pending() noexcept {
    PendingAnswer pending = std::move(*pending_);
    pending_.reset();
    return pending;
  }

  /// True if the responses in the output buffer should go out now, after a request: no complete
  /// request is left in the input buffer to answer in the same write, or the buffer is half full.
  bool output_due() const noexcept {
    return !out_.empty() && (out_.size() >= kOutputCapacity / 2 || !complete_request_buffered());
  }

  // ---- a request ------------------------------------------------------------------------
  /// Starts a request that may have to be read: the per-request state is reset.
  void begin_request() noexcept {
    decoder_.reset();
    request_bytes_ = 0;
    request_ended_ = false;
    request_too_large_ = false;
    drain_overflow_ = false;
    task_cancelled_ = false;  // a cancel of an earlier task (or its producer) is spent
    deadline_exceeded_ = false;
    task_bytes_read_.store(0, std::memory_order_relaxed);
    task_bytes_written_.store(0, std::memory_order_relaxed);
  }
  /// Starts the task record and the Client::metadata() of `code`; ended by end_task().
  TaskEnd begin_task_record(TaskCode code, const RegisteredTask* entry) {
    refresh(snapshot_);
    TaskEnd end;
    end.started = task_start_time();
    end.record.code = code;
    if (entry != nullptr) {
      end.record.name = entry->name;
    }
    begin_task(code, entry != nullptr ? &entry->name : nullptr, input_arrived_at_);
    return end;
  }

  /// The result of decoding request content from the input buffer.
  struct RequestStep {
    std::size_t produced = 0;
    bool done = false;  // the caller has something to return: content, the end, or no room
  };
  /// Decodes request content from the input buffer into `out` (RequestSource's read). Throws
  /// TaskError(254) once the request passes the size limit.
  RequestStep decode_request(std::span<std::uint8_t> out) {
    const auto step = decoder_.decode(in_.readable(), out);
    in_.consume(step.consumed);
    if (step.end) {
      // Before the size check, which may throw: the end byte has been consumed, so the drain
      // that follows must not wait for another one.
      request_ended_ = true;
    }
    note_request_content(step.produced);
    return {step.produced, step.produced > 0 || step.end || out.empty()};
  }

  /// Consumes what the input buffer holds of the request's message, stopping at its end or when
  /// the request's content passes the drain limit (drain_overflow()).
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
  /// True if the request passed max_request_bytes by more than max_request_drain_bytes: the
  /// connection answers Error 254 and ends rather than read on.
  bool drain_overflow() const noexcept { return drain_overflow_; }
  /// True if nothing is left to read of the request after drain_buffered().
  bool drained() const noexcept { return request_ended_ && !drain_overflow_; }

  // ---- answers ---------------------------------------------------------------------------
  /// Settles what a task's answer is (once its function has returned): a Response::error is an
  /// Error; past its deadline, Error 252 however the task ended (its cancellation may have made
  /// it fail); and past the size limit the limit decides, whatever the task made of it.
  void settle(TaskEnd& end, const Response& response) const noexcept {
    if (response.is_error()) {
      end.error_code = response.error_code();
    }
    if (deadline_exceeded_) {
      end.error_code = kDeadlineExceededErrorCode;
      end.failure.reset();
    }
    if (request_too_large_) {
      end.error_code = kMessageTooLargeErrorCode;
      end.failure.reset();
    }
  }
  /// Answers `end` with `response` (settled, request drained, no failure) into the output buffer
  /// if the whole answer fits and needs no producer, and reports it; false (nothing done)
  /// otherwise.
  bool answer_now(TaskEnd& end, const Response& response) {
    if (end.error_code) {
      if (!output_fits(2)) {
        return false;
      }
      out_.push_back(static_cast<std::uint8_t>(ResponseCode::error));
      out_.push_back(*end.error_code);
      end.record.error_code = *end.error_code;
      report_task(end, TaskOutcome::error);
      return true;
    }
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
    report_task(end, TaskOutcome::ok);
    return true;
  }
  /// Appends an Error answer's bytes; requires output_fits(2).
  void append_error(ErrorCode code) noexcept {
    out_.push_back(static_cast<std::uint8_t>(ResponseCode::error));
    out_.push_back(code);
  }
  /// Appends a Goodbye; requires output_fits(1).
  void append_goodbye() noexcept {
    out_.push_back(static_cast<std::uint8_t>(ResponseCode::goodbye));
  }
  /// Appends the OK response code that starts a streamed response; requires output_fits(1).
  void append_ok() noexcept { out_.push_back(static_cast<std::uint8_t>(ResponseCode::ok)); }
  /// Encodes what fits of `content` into the output buffer; returns how much it took (0 if the
  /// buffer has less than kMinEncodeRoom free: flush first).
  std::size_t encode_some(wire::BlockEncoder& encoder, std::span<const std::uint8_t> content);
  /// Ends a streamed response; false if the output buffer needs a flush first.
  bool finish_encoding(wire::BlockEncoder& encoder);
  /// The answer of a code without a task function (its request read or to be drained): OK for
  /// keep-alive, the listing for describe (unless ServerOptions::describe is off), Error 255 for
  /// the rest (unregistered codes, unassigned reserved codes).
  Response reserved_answer(TaskCode code, TaskEnd& end) const {
    if (code == kKeepAliveTaskCode) {
      return {};
    }
    if (code == kDescribeTaskCode && server().options().describe) {
      return describe_listing();
    }
    end.error_code = kUnknownTaskErrorCode;
    return {};
  }
  /// The describe listing of the task table: format byte 1, then code, name length and name of
  /// each registered application code in increasing order (docs/protocol.md section 4).
  Response describe_listing() const;

  /// True if `room` bytes fit at the back of the output buffer without a flush (a flush empties
  /// the buffer, whose capacity exceeds every room asked for).
  bool output_fits(std::size_t room) const noexcept { return out_.tail_room() >= room; }

  /// The one place a task ends: its record (outcome, duration since it started, bytes) goes to
  /// the metrics and the debug log, and the connection's totals.
  void report_task(TaskEnd& end, TaskOutcome outcome) {
    end.record.outcome = outcome;
    end.record.duration = end.started == Clock::time_point{} ? std::chrono::nanoseconds(0)
                                                             : Clock::now() - end.started;
    report_task(end.record);
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
      log_task(record);
    }
    if (has_interceptors_) {
      call_after_task(record);
    }
  }

  /// True if an interceptor refuses the registered task `entry` about to run: `end` then says
  /// the answer (an Error code, or a failure that drops the connection).
  bool refused(const RegisteredTask& entry, TaskEnd& end);

  // ---- the connection --------------------------------------------------------------------
  /// The stage of the request in flight.
  Stage stage() const noexcept { return stage_; }
  void set_stage(Stage stage) noexcept { stage_ = stage; }
  /// The first reason set is the one the connection ends with.
  void set_close_reason(Errc e) noexcept {
    if (!close_reason_) {
      close_reason_ = make_error_code(e);
    }
  }
  std::error_code close_reason() const noexcept { return close_reason_; }
  /// The closing log line's detail: the reason's message, except that a graceful disconnect
  /// names who began it (Errc::graceful_disconnect's message is the Go package's, "client
  /// requested to disconnect", true only of the goodbye task).
  std::string close_detail(std::error_code reason) const;

 protected:
  /// Adopts a new task table if registration has published one.
  void refresh_table() {
    if (!table_ || server().task_table_version() != table_version_) {
      adopt_task_table();
    }
  }

  /// When a task starts, for TaskRecord::duration: read only when metrics or debug logs will see
  /// the duration (refresh(snapshot_) first); otherwise the zero time point, and no clock read.
  Clock::time_point task_start_time() const {
    return snapshot_.metrics != nullptr || snapshot_.logger->enabled(LogLevel::debug)
               ? Clock::now()
               : Clock::time_point{};
  }

  /// Counts response content for Client::metadata(). Only this connection's thread writes the
  /// counter, so a load and a store do: no atomic read-modify-write per response.
  void add_task_bytes_written(std::size_t n) noexcept {
    task_bytes_written_.store(task_bytes_written_.load(std::memory_order_relaxed) + n,
                              std::memory_order_relaxed);
  }

  /// Inside a catch block: what the exception a task function threw means. TaskError answers
  /// Error + its code; anything else fails the task (and drops the connection).
  static void note_task_exception(TaskEnd& end);

  // The engine's state, which the driver reads and fills. Fields that every request touches
  // come first, after Client's, so that a request touches as few cache lines as possible.
  // Whether the server's options have interceptors, or those or a task limit (fixed for the
  // server's life): one flag per request to test, instead of the options.
  const bool has_interceptors_;
  const bool guarded_dispatch_;
  ByteBuffer in_{kInputCapacity};
  ByteBuffer out_{kOutputCapacity};
  Snapshot snapshot_;
  std::shared_ptr<const TaskTable> table_;
  std::uint64_t table_version_ = 0;
  wire::BlockDecoder decoder_;
  std::chrono::system_clock::time_point input_arrived_at_;  // see note_input_arrived()
  std::uint64_t request_bytes_ = 0;
  // For the connection-closed log line: tasks and request/response content bytes so far.
  std::uint64_t tasks_finished_ = 0;
  std::uint64_t content_bytes_in_ = 0;
  std::uint64_t content_bytes_out_ = 0;
  Stage stage_ = Stage::idle;
  bool disconnect_requested_ = false;
  bool request_ended_ = false;
  bool request_too_large_ = false;
  bool drain_overflow_ = false;
  bool task_cancelled_ = false;     // the task (or its producer) in flight was cancelled
  bool deadline_exceeded_ = false;  // the task in flight ran past its deadline: Error 252
  bool peer_gone_ = false;          // the peer went away while a task ran
  TaskCode next_code_ = 0;
  std::error_code close_reason_;
  RequestSource& source_;
  SessionData session_;
  std::stop_source stop_source_;
  // The answer of Next::finish; on the heap, as it is rare and every idle connection would
  // otherwise hold its room.
  std::unique_ptr<PendingAnswer> pending_;

 private:
  void adopt_task_table();
  /// The interceptors' verdict on task `code` of `entry` (ServerOptions::interceptors).
  Admission admit(TaskCode code, const RegisteredTask& entry);
  /// Calls every interceptor's after_task.
  void call_after_task(const TaskRecord& record) const noexcept;
  /// The debug log line of a task.
  void log_task(const TaskRecord& record) const;
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
  /// The length of the request's message if it is all in the input buffer and surely within
  /// the size limit (its encoding is no longer than the limit).
  std::optional<std::size_t> whole_request_within_limit() const noexcept {
    const auto end = wire::find_message_end(in_.readable());
    const std::uint64_t limit = server().options().max_request_bytes;
    if (!end || (limit != 0 && *end > limit)) {
      return std::nullopt;
    }
    return end;
  }

  /// Serves a request that is all in the input buffer (`length` bytes of message): a code
  /// without a task function (`entry` null) or an inline task, whose request needs no reading.
  /// False if its answer must wait (pending_, Next::finish).
  bool serve_whole_request(TaskCode code, const RegisteredTask* entry, std::size_t length);

  /// The answer of a code without a task function, whose request is all in the input buffer.
  Response answer_without_task(TaskCode code, TaskEnd& end);

  /// Runs an inline task function on its request, which is all in the input buffer.
  Response run_inline(const RegisteredTask& entry, TaskEnd& end, std::size_t length);

  /// call_inline() where interceptors or a task limit may keep the task from running (answered
  /// as `end` then says: an interceptor's verdict, or Error 253).
  Response call_inline_guarded(const RegisteredTask& entry, TaskEnd& end,
                               std::span<const std::uint8_t> content);

  /// Calls an inline task function; if it throws, the empty response, and `end` says what the
  /// exception meant.
  Response call_inline(const RegisteredTask& entry, TaskEnd& end,
                       std::span<const std::uint8_t> content);

  /// The content of the whole message `blocks`: a view into `blocks` when it is one block, else
  /// joined in a buffer of this thread's (valid until the next call on this thread).
  static std::span<const std::uint8_t> message_content(std::span<const std::uint8_t> blocks);
  static std::span<const std::uint8_t> join_blocks(std::span<const std::uint8_t> blocks);

  void note_request_content(std::size_t n) {
    request_bytes_ += n;
    task_bytes_read_.store(request_bytes_, std::memory_order_relaxed);
    const std::uint64_t limit = server().options().max_request_bytes;
    if (limit != 0 && request_bytes_ > limit && !request_too_large_) {
      request_too_large_ = true;
      on_request_too_large();
      throw TaskError(kMessageTooLargeErrorCode, "request too large");
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
  /// The request passed the size limit while the task read it: the driver cancels the task.
  virtual void on_request_too_large() = 0;

 protected:
  /// Ends the task bookkeeping of begin_task_record when a scope ends, however it ends.
  struct EndTaskOnExit {
    explicit EndTaskOnExit(Session* s) noexcept : session(s) {}
    ~EndTaskOnExit() {
      if (session != nullptr) {
        session->end_task();
      }
    }
    EndTaskOnExit(const EndTaskOnExit&) = delete;
    EndTaskOnExit& operator=(const EndTaskOnExit&) = delete;
    Session* session;  // null once released
  };

 private:
  inline static const std::shared_ptr<const RegisteredTask> kNoTask{};
};

}  // namespace serialserver::detail

#include "core/session_inline.hpp"  // IWYU pragma: keep
