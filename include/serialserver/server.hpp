#pragma once

#include <serialserver/byte_order.hpp>
#include <serialserver/client.hpp>
#include <serialserver/interceptor.hpp>
#include <serialserver/logger.hpp>
#include <serialserver/metrics.hpp>
#include <serialserver/protocol.hpp>
#include <serialserver/session_data.hpp>
#include <serialserver/task.hpp>
#include <serialserver/timeout.hpp>

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>

namespace serialserver {

namespace detail {
class BlockingPool;
class ListenerImpl;
struct TaskTable;
class Session;
template <class Stream>
class StreamConnection;
}  // namespace detail

/// Options of a Server. Every field has a safe default.
struct ServerOptions {
  /// Wait, Read and Write timeouts (docs/protocol.md section 6).
  Timeout timeout{};
  /// The largest request content accepted, in bytes; 0 means no limit. A larger request is
  /// answered with Error 254 (docs/protocol.md section 5). The default bounds what a task that
  /// collects its request (async_read_all) may be made to hold; a server whose tasks stream
  /// larger requests raises it or sets 0.
  std::uint64_t max_request_bytes = std::uint64_t{64} << 20;
  /// How far past max_request_bytes the server keeps draining before it answers Error 254 and
  /// closes the connection instead.
  std::uint64_t max_request_drain_bytes = std::uint64_t{64} << 20;
  /// Threads of the worker pool for blocking task functions (created on first use);
  /// 0 means the number of cores, at least 2.
  unsigned worker_threads = 0;
  /// The longest one request may take to arrive in full, from its task code to its end byte;
  /// 0 means no limit. The Read timeout is rolling, so a peer that sends a byte now and then
  /// (slowloris) never meets it; past this deadline the connection is closed without a response
  /// (Errc::request_timeout). The default equals the default Wait timeout: a slow sender holds a
  /// connection no longer than an idle one may.
  std::chrono::nanoseconds max_request_duration = std::chrono::minutes(30);
  /// Blocking tasks that may wait for a worker beyond those running; further connections wait
  /// (without reading) until there is room.
  std::size_t max_queued_blocking_tasks = 1024;
  /// Answer describe (task code 251, docs/protocol.md section 4) with the registered task codes
  /// and their names. False: describe is answered Error 255, as an unassigned code is.
  bool describe = true;
  /// What end of stream from the client means while a task runs. The server cannot tell a
  /// half-close (shutdown of the client's sending side) from a close. True (the default): the
  /// client has gone, so the task is cancelled and the connection closed without its answer.
  /// False: the task runs to its end and its answer (with those before it) is sent, then the
  /// connection closes; for clients that half-close after their last request and still read,
  /// at the price of finishing tasks whose client has really gone. Other errors (a reset)
  /// cancel the task either way. Noticed on TCP and Unix sockets, not under TLS.
  bool cancel_task_on_end_of_stream = true;
  /// The most tasks that may run at once across the server (docs/protocol.md section 5); 0 means
  /// no limit (the default). A task over the limit is not started: its request is read and
  /// discarded and it is answered Error 253 (kBusyErrorCode); the connection stays open. Inline
  /// tasks count while their function runs, coroutine and blocking tasks until their answer is
  /// written. Keep-alive, describe and unknown codes do not count.
  std::uint32_t max_concurrent_tasks = 0;
  /// The default time budget of a coroutine or blocking task (docs/protocol.md section 5), from
  /// the moment its function starts until its answer is complete; 0 means none (the default).
  /// TaskOptions::deadline overrides it per task. When it passes, the task's stop token fires
  /// and a coroutine task's pending operation is cancelled; once the function returns, the
  /// client is answered Error 252 (kDeadlineExceededErrorCode) and the connection stays open.
  /// A task whose OK response has started streaming is dropped with its connection instead.
  /// A blocking function that ignores its stop token is waited for.
  std::chrono::nanoseconds task_deadline{0};
  /// Hooks before every registered task runs and after every task is answered, in this order
  /// (see Interceptor). None by default; with none, serving costs nothing more.
  std::vector<std::shared_ptr<Interceptor>> interceptors;
  /// Grace period of the graceful disconnection that a connection's stop_token triggers.
  std::chrono::nanoseconds shutdown_grace = std::chrono::seconds(5);
  /// Logger; null means stderr at info level.
  std::shared_ptr<Logger> logger;
  /// Metrics; null means none.
  std::shared_ptr<Metrics> metrics;
};

/// Serves the serial protocol on connections it is handed (Go: serialserver.Server): a registry
/// of task functions, the live connections, and their timeouts.
///
/// Thread-safety: every member function may be called from any thread; task functions may be
/// registered while connections are being served.
/// Lifetime: must outlive every connection it handles; destroy it only after wait() returned
/// (the destructor disconnects what is left and waits).
class Server {
 public:
  /// A server with the given options (Go: New).
  explicit Server(ServerOptions options = {});
  /// A server with the given timeouts and default options otherwise (Go: New(&Timeout{...})).
  explicit Server(const Timeout& timeout);
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server();

  /// Registers a task function for `code`, of the kind options.kind says (by default the one
  /// its signature says: see TaskOptions), named options.name for logs and metrics. A second
  /// registration replaces the first. Throws std::invalid_argument for the reserved codes
  /// 250..255, an empty function, or a function that cannot run as the kind named.
  ///
  ///     server.register_task(1, echo, {.name = "echo"});  // a coroutine, from its signature
  ///     server.register_task(2, lookup, {.name = "lookup", .kind = TaskKind::blocking});
  template <class F>
  void register_task(TaskCode code, F function, TaskOptions options);

  /// Registers a coroutine task function for `code` (Go: Register); a second registration
  /// replaces the first. `name` is for logs and metrics. Throws std::invalid_argument for the
  /// reserved codes 250..255 or an empty function.
  void register_task(TaskCode code, TaskFunction function, std::string name = {});
  /// Deprecated: register_task(code, function, {.name = name, .kind = TaskKind::blocking}) does
  /// the same (a blocking task function, which runs on the worker pool).
  [[deprecated("use register_task(code, fn, {.name = ..., .kind = TaskKind::blocking})")]] void
  register_blocking_task(TaskCode code, BlockingTaskFunction function, std::string name = {});
  /// Deprecated: register_task(code, function, {.name = name, .kind = TaskKind::inline_call})
  /// does the same (an inline task function: see InlineTaskFunction).
  [[deprecated("use register_task(code, fn, {.name = ..., .kind = TaskKind::inline_call})")]] void
  register_inline_task(TaskCode code, InlineTaskFunction function, std::string name = {});
  /// The function and name registered for `code` (Go: TaskFunc), or nothing.
  std::optional<RegisteredTask> task(TaskCode code) const;
  /// The registered task codes, in increasing order (Go: RegisteredTaskCodes).
  std::vector<TaskCode> registered_task_codes() const;

  /// Serves an accepted, handshaken TCP connection until it ends, then closes it (Go:
  /// HandleConnection). Runs on the socket's executor, which must be a strand or an io_context
  /// run by one thread. `session` reaches every task function. When `stop` fires, the
  /// connection is disconnected gracefully with options().shutdown_grace. Returns why the
  /// connection ended: Errc::graceful_disconnect, Errc::timeout_waiting_for_task,
  /// Errc::peer_closed, or another error.
  asio::awaitable<std::error_code> async_handle_connection(asio::ip::tcp::socket socket,
                                                           ByteOrder byte_order,
                                                           SessionData session = {},
                                                           std::stop_token stop = {});
  /// As above, for a Unix domain socket.
  asio::awaitable<std::error_code> async_handle_connection(
      asio::local::stream_protocol::socket socket, ByteOrder byte_order, SessionData session = {},
      std::stop_token stop = {});
  /// Blocking form of async_handle_connection: the socket's io_context must be running on
  /// another thread; this thread waits until the connection ends.
  std::error_code handle_connection(asio::ip::tcp::socket socket, ByteOrder byte_order,
                                    SessionData session = {}, std::stop_token stop = {});
  /// Blocking form for a Unix domain socket.
  std::error_code handle_connection(asio::local::stream_protocol::socket socket,
                                    ByteOrder byte_order, SessionData session = {},
                                    std::stop_token stop = {});

  /// The connections being handled now, by increasing connect time (Go: Clients).
  std::vector<std::shared_ptr<Client>> clients() const;
  /// How many connections are being handled now (Go: NumClients).
  std::size_t num_clients() const;
  /// Calls Client::disconnect(grace) on every connection (Go: Disconnect).
  void disconnect(std::chrono::nanoseconds grace);
  /// Blocks until no connection is being handled (Go: Wait).
  void wait();
  /// As wait(), for at most `timeout`; true if no connection is left.
  bool wait_for(std::chrono::nanoseconds timeout);

  /// The server's logger (Go: Log).
  std::shared_ptr<Logger> log() const;
  /// Replaces the logger; connections that did not set their own pick it up (Go: SetLogger).
  void set_logger(std::shared_ptr<Logger> logger);
  /// The server's metrics, possibly null (Go: Metrics).
  std::shared_ptr<Metrics> metrics() const;
  /// Replaces the metrics (Go: SetMetrics).
  void set_metrics(std::shared_ptr<Metrics> metrics);

  /// The options the server was made with.
  const ServerOptions& options() const noexcept { return options_; }

 private:
  void add_coroutine_task(TaskCode code, TaskFunction function, std::string name,
                          std::optional<std::chrono::nanoseconds> deadline);
  void add_blocking_task(TaskCode code, BlockingTaskFunction function, std::string name,
                         std::optional<std::chrono::nanoseconds> deadline);
  void add_inline_task(TaskCode code, InlineTaskFunction function, std::string name);
  /// Takes one of options().max_concurrent_tasks slots for a task about to start; false if all
  /// are taken (the task is answered Error 253 instead). Always true without a limit, with no
  /// atomic operation.
  bool try_take_task_slot() noexcept {
    const std::uint32_t limit = options_.max_concurrent_tasks;
    if (limit == 0) {
      return true;
    }
    std::uint32_t running = running_tasks_.load(std::memory_order_relaxed);
    do {
      if (running >= limit) {
        return false;
      }
    } while (
        !running_tasks_.compare_exchange_weak(running, running + 1, std::memory_order_relaxed));
    return true;
  }
  /// Gives back a slot that try_take_task_slot() took.
  void give_back_task_slot() noexcept {
    if (options_.max_concurrent_tasks != 0) {
      running_tasks_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  friend class Client;
  friend class detail::Session;
  template <class Stream>
  friend class detail::StreamConnection;

  friend class detail::ListenerImpl;
  template <class Socket>
  asio::awaitable<std::error_code> async_handle_socket(
      Socket socket, ByteOrder byte_order, SessionData session, std::stop_token stop,
      const std::atomic<std::int64_t>* stop_grace_ns = nullptr);
  void add_client(const std::shared_ptr<Client>& client);
  void remove_client(const Client& client) noexcept;
  std::shared_ptr<const detail::TaskTable> task_table() const;
  std::uint64_t task_table_version() const noexcept {
    return table_version_.load(std::memory_order_acquire);
  }
  detail::BlockingPool& blocking_pool();
  void register_entry(TaskCode code, RegisteredTask entry);

  ServerOptions options_;

  mutable std::mutex table_mutex_;
  std::shared_ptr<const detail::TaskTable> table_;
  std::atomic<std::uint64_t> table_version_{0};

  mutable std::mutex clients_mutex_;
  std::condition_variable clients_empty_;
  std::vector<std::shared_ptr<Client>> clients_;  // by increasing id (= connect order)

  mutable std::mutex settings_mutex_;
  std::shared_ptr<Logger> logger_;
  std::shared_ptr<Metrics> metrics_;
  std::atomic<std::uint32_t> settings_version_{0};

  std::atomic<std::uint32_t> running_tasks_{0};  // see try_take_task_slot()

  std::once_flag pool_once_;
  std::unique_ptr<detail::BlockingPool> pool_;
};

template <class F>
void Server::register_task(TaskCode code, F function, TaskOptions options) {
  constexpr bool kCanInline =
      std::is_invocable_r_v<Response, F&, TaskContext&, std::span<const std::uint8_t>>;
  constexpr bool kCanCoroutine = std::is_invocable_r_v<asio::awaitable<Response>, F&, TaskContext&>;
  constexpr bool kCanBlock = !kCanCoroutine && std::is_invocable_r_v<Response, F&, TaskContext&>;
  TaskKind kind = options.kind;
  if (kind == TaskKind::automatic) {
    static_assert(kCanInline || kCanCoroutine || kCanBlock,
                  "a task function is callable as asio::awaitable<Response>(TaskContext&), "
                  "Response(TaskContext&) or Response(TaskContext&, std::span<const uint8_t>)");
    kind = kCanInline      ? TaskKind::inline_call
           : kCanCoroutine ? TaskKind::coroutine
                           : TaskKind::blocking;
  }
  switch (kind) {
    case TaskKind::inline_call:
      if constexpr (kCanInline) {
        add_inline_task(code, InlineTaskFunction(std::move(function)), std::move(options.name));
        return;
      }
      break;
    case TaskKind::coroutine:
      if constexpr (kCanCoroutine) {
        add_coroutine_task(code, TaskFunction(std::move(function)), std::move(options.name),
                           options.deadline);
        return;
      }
      break;
    case TaskKind::blocking:
      if constexpr (kCanBlock) {
        add_blocking_task(code, BlockingTaskFunction(std::move(function)), std::move(options.name),
                          options.deadline);
        return;
      }
      break;
    case TaskKind::automatic:
      break;
  }
  throw std::invalid_argument("register_task: the function cannot run as the kind of task named");
}

}  // namespace serialserver
