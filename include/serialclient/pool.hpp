#pragma once

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <serialclient/client.hpp>
#include <serialclient/options.hpp>
#include <serialclient/result.hpp>

namespace serialclient {

/// Options of a Pool. Thread-safety: a plain value.
struct PoolOptions {
  /// The most connections open at once; a caller beyond them waits for a free one.
  std::size_t max_connections = 16;
  /// I/O threads shared by the pool's connections.
  unsigned io_threads = 1;
  /// Options of every connection.
  Options connection;
};

/// A pool of blocking connections to one server, for concurrent callers: each call borrows an
/// idle connection (connecting a new one while fewer than max_connections are open, otherwise
/// waiting for one) and returns it afterwards. A connection that failed or received Goodbye is
/// dropped rather than returned. An idle connection that the server said Goodbye to (or closed)
/// while it sat in the pool is found before the call is sent on it, dropped, and the call goes
/// to another connection at once.
///
/// Thread-safety: every member function may be called from any number of threads.
/// Lifetime: the destructor closes every connection and joins the I/O threads; no call may be
/// running then.
class Pool {
 public:
  /// A pool for `address` ("host:port", "[v6]:port" or a Unix socket path). Connects lazily.
  explicit Pool(std::string address, PoolOptions options = {});
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool();

  /// Calls task `code` on a pooled connection, as Client::call.
  Result call(TaskCode code, std::span<const std::uint8_t> request, std::error_code& ec);
  /// A pipelined batch on one pooled connection, as Client::call_batch.
  std::vector<Result> call_batch(std::span<const Call> calls, std::error_code& ec);
  /// Connections open now (idle or borrowed).
  std::size_t size() const;
  /// Idle connections now.
  std::size_t idle() const;
  /// Closes the idle connections; borrowed ones close when returned. Later calls fail with
  /// Errc::connection_closed.
  void close();

 private:
  /// An idle connection (`reused` true) or a new one; null with `ec` set if none.
  std::unique_ptr<Client> acquire(std::error_code& ec, bool& reused);
  void release(std::unique_ptr<Client> client);

  const std::string address_;
  const PoolOptions options_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;

  mutable std::mutex mutex_;  // guards what follows
  std::condition_variable available_;
  std::vector<std::unique_ptr<Client>> idle_;
  std::size_t open_ = 0;  // idle, borrowed and connecting
  bool closed_ = false;
};

}  // namespace serialclient
