#include <serialserver/server.hpp>
#include "core/blocking_pool.hpp"
#include "core/task_table.hpp"
#include "net/cores.hpp"
#include "net/stream_connection.hpp"
#include "net/stream_ops.hpp"

#include <algorithm>
#include <stdexcept>
#include <thread>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>

namespace serialserver {

Server::Server(ServerOptions options)
    : options_(std::move(options)),
      table_(std::make_shared<detail::TaskTable>()),
      logger_(options_.logger ? options_.logger : make_stderr_logger(LogLevel::info)),
      metrics_(options_.metrics) {}

Server::Server(const Timeout& timeout)
    : Server([&] {
        ServerOptions options;
        options.timeout = timeout;
        return options;
      }()) {}

Server::~Server() {
  disconnect(std::chrono::nanoseconds(0));
  wait();
  if (pool_) {
    pool_->join();
  }
}

void Server::register_entry(TaskCode code, RegisteredTask entry) {
  if (is_reserved_task_code(code)) {
    throw std::invalid_argument("task code " + std::to_string(code) +
                                " is reserved (250..255 cannot be registered)");
  }
  std::lock_guard lock(table_mutex_);
  auto table = std::make_shared<detail::TaskTable>(*table_);
  table->entries[code] = std::make_shared<const RegisteredTask>(std::move(entry));
  table_ = std::move(table);
  table_version_.fetch_add(1, std::memory_order_release);
}

void Server::register_task(TaskCode code, TaskFunction function, std::string name) {
  add_coroutine_task(code, std::move(function), std::move(name), std::nullopt);
}

void Server::add_coroutine_task(TaskCode code, TaskFunction function, std::string name,
                                std::optional<std::chrono::nanoseconds> deadline) {
  if (!function) {
    throw std::invalid_argument("register_task: empty task function");
  }
  register_entry(code, RegisteredTask{std::move(name), std::move(function), {}, {}, deadline});
}

void Server::register_blocking_task(TaskCode code, BlockingTaskFunction function,
                                    std::string name) {
  add_blocking_task(code, std::move(function), std::move(name), std::nullopt);
}

void Server::add_blocking_task(TaskCode code, BlockingTaskFunction function, std::string name,
                               std::optional<std::chrono::nanoseconds> deadline) {
  if (!function) {
    throw std::invalid_argument("register_blocking_task: empty task function");
  }
  register_entry(code, RegisteredTask{std::move(name), {}, std::move(function), {}, deadline});
}

void Server::register_inline_task(TaskCode code, InlineTaskFunction function, std::string name) {
  add_inline_task(code, std::move(function), std::move(name));
}

void Server::add_inline_task(TaskCode code, InlineTaskFunction function, std::string name) {
  if (!function) {
    throw std::invalid_argument("register_inline_task: empty task function");
  }
  // The coroutine form, for a request that is not all buffered when the task starts.
  TaskFunction as_coroutine = [function](TaskContext& ctx) -> asio::awaitable<Response> {
    const std::vector<std::uint8_t> request = co_await ctx.request().async_read_all();
    co_return function(ctx, request);
  };
  register_entry(
      code, RegisteredTask{
                std::move(name), std::move(as_coroutine), {}, std::move(function), std::nullopt});
}

std::optional<RegisteredTask> Server::task(TaskCode code) const {
  auto table = task_table();
  if (const auto& entry = table->entries[code]) {
    return *entry;
  }
  return std::nullopt;
}

std::vector<TaskCode> Server::registered_task_codes() const {
  auto table = task_table();
  std::vector<TaskCode> codes;
  for (unsigned code = 0; code < table->entries.size(); ++code) {
    if (table->entries[code]) {
      codes.push_back(static_cast<TaskCode>(code));
    }
  }
  return codes;
}

std::shared_ptr<const detail::TaskTable> Server::task_table() const {
  std::lock_guard lock(table_mutex_);
  return table_;
}

detail::BlockingPool& Server::blocking_pool() {
  std::call_once(pool_once_, [this] {
    unsigned threads = options_.worker_threads;
    if (threads == 0) {
      threads = std::max(2U, detail::available_cores());
    }
    pool_ = std::make_unique<detail::BlockingPool>(threads, options_.max_queued_blocking_tasks);
  });
  return *pool_;
}

template <class Socket>
asio::awaitable<std::error_code> Server::async_handle_socket(
    Socket socket, ByteOrder byte_order, SessionData session, std::stop_token stop,
    const std::atomic<std::int64_t>* stop_grace_ns) {
  auto [local, remote] = detail::socket_addresses(detail::lowest_socket(socket));
  auto executor = socket.get_executor();
  auto connection = std::make_shared<detail::StreamConnection<Socket>>(
      *this, std::move(socket), byte_order, std::move(session), std::move(local),
      std::move(remote));
  // The stop token asks for a graceful disconnection; the callback only posts.
  connection->disconnect_on_stop(std::move(stop), stop_grace_ns);
  co_return co_await asio::co_spawn(
      executor, connection->run(),
      asio::bind_cancellation_slot(connection->task_cancellation_slot(), asio::use_awaitable));
}

asio::awaitable<std::error_code> Server::async_handle_connection(asio::ip::tcp::socket socket,
                                                                 ByteOrder byte_order,
                                                                 SessionData session,
                                                                 std::stop_token stop) {
  return async_handle_socket(std::move(socket), byte_order, std::move(session), std::move(stop));
}

asio::awaitable<std::error_code> Server::async_handle_connection(
    asio::local::stream_protocol::socket socket, ByteOrder byte_order, SessionData session,
    std::stop_token stop) {
  return async_handle_socket(std::move(socket), byte_order, std::move(session), std::move(stop));
}

std::error_code Server::handle_connection(asio::ip::tcp::socket socket, ByteOrder byte_order,
                                          SessionData session, std::stop_token stop) {
  auto executor = socket.get_executor();
  return asio::co_spawn(executor,
                        async_handle_connection(std::move(socket), byte_order, std::move(session),
                                                std::move(stop)),
                        asio::use_future)
      .get();
}

std::error_code Server::handle_connection(asio::local::stream_protocol::socket socket,
                                          ByteOrder byte_order, SessionData session,
                                          std::stop_token stop) {
  auto executor = socket.get_executor();
  return asio::co_spawn(executor,
                        async_handle_connection(std::move(socket), byte_order, std::move(session),
                                                std::move(stop)),
                        asio::use_future)
      .get();
}

void Server::add_client(const std::shared_ptr<Client>& client) {
  std::lock_guard lock(clients_mutex_);
  // Ids increase with connect order, so appending keeps the list sorted by timestamp almost
  // always; insert in place for the rare out-of-order arrival across threads.
  auto pos = std::upper_bound(clients_.begin(), clients_.end(), client->id(),
                              [](std::uint64_t id, const auto& c) { return id < c->id(); });
  clients_.insert(pos, client);
}

void Server::remove_client(const Client& client) noexcept {
  std::lock_guard lock(clients_mutex_);
  auto it = std::find_if(clients_.begin(), clients_.end(),
                         [&](const auto& c) { return c.get() == &client; });
  if (it != clients_.end()) {
    clients_.erase(it);
  }
  if (clients_.empty()) {
    clients_empty_.notify_all();
  }
}

std::vector<std::shared_ptr<Client>> Server::clients() const {
  std::lock_guard lock(clients_mutex_);
  auto result = clients_;
  std::stable_sort(result.begin(), result.end(),
                   [](const auto& a, const auto& b) { return a->timestamp() < b->timestamp(); });
  return result;
}

std::size_t Server::num_clients() const {
  std::lock_guard lock(clients_mutex_);
  return clients_.size();
}

void Server::disconnect(std::chrono::nanoseconds grace) {
  for (const auto& client : clients()) {
    client->disconnect(grace);
  }
}

void Server::wait() {
  std::unique_lock lock(clients_mutex_);
  clients_empty_.wait(lock, [this] { return clients_.empty(); });
}

bool Server::wait_for(std::chrono::nanoseconds timeout) {
  std::unique_lock lock(clients_mutex_);
  return clients_empty_.wait_for(lock, timeout, [this] { return clients_.empty(); });
}

std::shared_ptr<Logger> Server::log() const {
  std::lock_guard lock(settings_mutex_);
  return logger_;
}

void Server::set_logger(std::shared_ptr<Logger> logger) {
  std::lock_guard lock(settings_mutex_);
  logger_ = logger ? std::move(logger) : make_null_logger();
  settings_version_.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<Metrics> Server::metrics() const {
  std::lock_guard lock(settings_mutex_);
  return metrics_;
}

void Server::set_metrics(std::shared_ptr<Metrics> metrics) {
  std::lock_guard lock(settings_mutex_);
  metrics_ = std::move(metrics);
  settings_version_.fetch_add(1, std::memory_order_release);
}

namespace detail {
// Also used by the listener (listener.cpp), which declares them extern.
template class StreamConnection<asio::ip::tcp::socket>;
template class StreamConnection<asio::local::stream_protocol::socket>;
}  // namespace detail

template asio::awaitable<std::error_code> Server::async_handle_socket(
    asio::ip::tcp::socket, ByteOrder, SessionData, std::stop_token,
    const std::atomic<std::int64_t>*);
template asio::awaitable<std::error_code> Server::async_handle_socket(
    asio::local::stream_protocol::socket, ByteOrder, SessionData, std::stop_token,
    const std::atomic<std::int64_t>*);
template asio::awaitable<std::error_code> Server::async_handle_socket(
    detail::TlsSocket, ByteOrder, SessionData, std::stop_token, const std::atomic<std::int64_t>*);

}  // namespace serialserver
