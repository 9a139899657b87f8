#pragma once

#include <serialserver/byte_order.hpp>
#include <serialserver/logger.hpp>
#include <serialserver/protocol.hpp>
#include <serialserver/request_reader.hpp>
#include <serialserver/response.hpp>
#include <serialserver/session_data.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stop_token>
#include <string>

#include <asio/awaitable.hpp>

namespace serialserver {

class Client;

/// Everything a task function receives (Go: ctx, c, in, lg, args...).
/// Thread-safety: used by one task at a time. Lifetime: valid until the task function returns;
/// do not keep references to it or its parts beyond that.
class TaskContext {
 public:
  /// Made by the server for each task; applications receive it, they do not make it.
  TaskContext(Client& client, RequestReader& request, Logger& logger, const SessionData& session,
              TaskCode code, std::stop_token stop,
              std::optional<std::chrono::steady_clock::time_point> deadline = {}) noexcept
      : client_(client),
        request_(request),
        logger_(logger),
        session_(session),
        code_(code),
        stop_(std::move(stop)),
        deadline_(deadline) {}

  /// The connection (Go: c *Client).
  Client& client() const noexcept { return client_; }
  /// The request content, decoded as it arrives (Go: in).
  RequestReader& request() const noexcept { return request_; }
  /// The logger for feedback (Go: lg).
  Logger& log() const noexcept { return logger_; }
  /// The session data given to handle_connection or returned by the handshake (Go: args).
  const SessionData& session() const noexcept { return session_; }
  /// The connection's byte order for numbers inside messages.
  ByteOrder byte_order() const noexcept;
  /// The task code being served.
  TaskCode code() const noexcept { return code_; }
  /// Fires when the task is cancelled: server shutdown past its grace period, Client::cancel(),
  /// the connection dying, the request exceeding the size limit, or the task's deadline passing
  /// (Go: ctx.Done()).
  /// A coroutine task function's pending asynchronous operation is also cancelled then.
  std::stop_token stop_token() const noexcept { return stop_; }
  /// True once the task has been cancelled.
  bool stop_requested() const noexcept { return stop_.stop_requested(); }
  /// When the task's time budget ends (ServerOptions::task_deadline, TaskOptions::deadline), or
  /// nothing if it has none (Go: ctx.Deadline()). Past it the stop token fires and the client is
  /// answered Error 252 (kDeadlineExceededErrorCode); a task that watches it can stop early.
  std::optional<std::chrono::steady_clock::time_point> deadline() const noexcept {
    return deadline_;
  }

 private:
  Client& client_;
  RequestReader& request_;
  Logger& logger_;
  const SessionData& session_;
  TaskCode code_;
  std::stop_token stop_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
};

/// A coroutine task function: runs on an I/O thread and must not block. It returns the response
/// for OK, throws TaskError for Error + code, and anything else drops the connection.
using TaskFunction = std::function<asio::awaitable<Response>(TaskContext&)>;

/// A blocking task function: runs on the server's bounded worker pool and may block; it should
/// watch ctx.stop_token(). Outcomes as for TaskFunction.
using BlockingTaskFunction = std::function<Response(TaskContext&)>;

/// An inline task function: receives the whole request content and returns the response at
/// once, on the I/O thread, without suspending; it must not block. For small, quick tasks, whose
/// cost is then little more than the function itself: when the whole request is already in the
/// connection's input buffer (the common case for small requests) the server calls it directly,
/// with no coroutine frame or task bookkeeping on the event loop; otherwise it first reads the
/// request as a coroutine task would. `request` is valid only during the call; ctx.request() has
/// nothing left to read. Outcomes as for TaskFunction (TaskError: Error + code; anything else
/// drops the connection); the stop token never fires during the call.
using InlineTaskFunction =
    std::function<Response(TaskContext&, std::span<const std::uint8_t> request)>;

/// How a task function runs; see TaskFunction, BlockingTaskFunction and InlineTaskFunction.
enum class TaskKind : std::uint8_t {
  automatic,    ///< deduced from the function's signature (Server::register_task)
  coroutine,    ///< a TaskFunction: a coroutine on the I/O thread
  blocking,     ///< a BlockingTaskFunction: a plain call on the worker pool
  inline_call,  ///< an InlineTaskFunction: the whole request in, the response out, at once
};

/// How a task is registered (Server::register_task). Thread-safety: a plain value.
struct TaskOptions {
  /// For logs and metrics (may be empty).
  std::string name;
  /// How the function runs. `automatic` takes it from the function's signature: (TaskContext&,
  /// std::span<const std::uint8_t>) is inline, (TaskContext&) returning asio::awaitable<Response>
  /// a coroutine, (TaskContext&) returning Response blocking. Name it for a callable whose
  /// signature does not say, such as a generic lambda.
  TaskKind kind = TaskKind::automatic;
  /// The task's time budget (docs/protocol.md section 5, Error 252), from the moment its
  /// function starts until its answer is complete: nothing means ServerOptions::task_deadline,
  /// zero means none. Coroutine and blocking tasks only: an inline task runs to its end.
  std::optional<std::chrono::nanoseconds> deadline = std::nullopt;
};

/// A registered task (Go: the TaskFunc and name returned by Server.TaskFunc). Exactly one of
/// `function` and `blocking_function` is set; `inline_function` is set as well for a task
/// registered as TaskKind::inline_call (`function` then runs it as a coroutine task).
struct RegisteredTask {
  std::string name;                        ///< for logs and metrics (may be empty)
  TaskFunction function;                   ///< a coroutine task function, or empty
  BlockingTaskFunction blocking_function;  ///< a blocking task function, or empty
  InlineTaskFunction inline_function;      ///< an inline task function, or empty
  /// The time budget of TaskOptions::deadline (nothing: the server's default).
  std::optional<std::chrono::nanoseconds> deadline = std::nullopt;
};

}  // namespace serialserver
