#pragma once

#include <chrono>
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
#include <serialclient/retry.hpp>

namespace serialclient {

namespace detail {
class AddressRotation;
}

/// How long a Pool passes over an address it could not connect to (refused, unreachable, timed
/// out, a failed TLS or handshake): new connections go to its other addresses meanwhile. The
/// first failure starts `initial`; each further failure in a row doubles it, up to `max`; a
/// successful connect resets it. Zero `initial` disables it. Thread-safety: a plain value.
struct AddressBackoff {
  /// The first back-off of an address (default 1 s).
  std::chrono::nanoseconds initial = std::chrono::seconds(1);
  /// The longest back-off of an address (default 30 s).
  std::chrono::nanoseconds max = std::chrono::seconds(30);
};

/// Options of a Pool. Thread-safety: a plain value, copied into the Pool (which only reads it).
struct PoolOptions {
  /// The most connections open at once; a caller beyond them waits for a free one (default 16).
  std::size_t max_connections = 16;
  /// I/O threads shared by the pool's connections (default 1; 0 means 1).
  unsigned io_threads = 1;
  /// Options of every connection (Options' defaults).
  Options connection;
  /// When call() sends a call again (see RetryPolicy): on by default, with a 10 s budget per
  /// call; set `retry.enabled = false` for one attempt per call.
  RetryPolicy retry;
  /// How long an address that could not be connected to is passed over (1 s doubling to 30 s).
  AddressBackoff address_backoff;
};

/// A pool of blocking connections to a server at one or several addresses, for concurrent
/// callers: each call borrows an idle connection (connecting a new one while fewer than
/// max_connections are open, otherwise waiting for one) and returns it afterwards.
///
/// New connections are spread over the addresses round-robin; a host name stands for every
/// address it resolves to (resolved once, at the first new connection; a name that does not
/// resolve then is left to each connect to resolve). An address that could not be connected to
/// is passed over for a back-off (PoolOptions::address_backoff) and a new connection tries the
/// next address at once, so one address down costs no call while another answers. When every
/// address is backing off they are still tried, the soonest to end first.
/// A connection that failed or received Goodbye is
/// dropped rather than returned. An idle connection that the server said Goodbye to (or closed)
/// while it sat in the pool is found before the call is sent on it, dropped, and the call goes
/// to another connection at once. A call known not to have run (Goodbye, Error 253 busy, a
/// refused connect), or an idempotent one cut off unanswered, is retried with back-off within
/// a budget (PoolOptions::retry, CallOptions).
///
/// Thread-safety: every member function may be called from any number of threads.
/// Lifetime: the destructor closes every connection and joins the I/O threads; no call may be
/// running then.
class Pool {
 public:
  /// A pool for `address` ("host:port", "[v6]:port" or a Unix socket path). Connects lazily.
  explicit Pool(std::string address, PoolOptions options = {});
  /// A pool for several addresses (as above), at least one (else std::invalid_argument).
  /// Connects lazily. Pass a std::vector explicitly: a braced list of two strings would also
  /// match the single-address constructor.
  explicit Pool(std::vector<std::string> addresses, PoolOptions options = {});
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool();

  /// Calls task `code` on a pooled connection, as Client::call, retrying as
  /// PoolOptions::retry and `call` allow. What the last attempt gave is returned: its Result,
  /// or its error in `ec`. Errc::connection_closed at once once close() was called.
  Result call(TaskCode code, std::span<const std::uint8_t> request, std::error_code& ec,
              CallOptions call = {});
  /// A pipelined batch on one pooled connection, as Client::call_batch. Not retried by the
  /// policy (part of a batch may have run); only a departed idle connection is passed over.
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
  /// A new connection, to the first address of the rotation's plan that accepts it.
  std::unique_ptr<Client> connect_new(std::error_code& ec);
  void release(std::unique_ptr<Client> client);
  /// Sleeps `delay`, or less if close() is called; false if it was.
  bool sleep_unless_closed(std::chrono::nanoseconds delay);
  bool is_closed() const;

  const PoolOptions options_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::unique_ptr<detail::AddressRotation> addresses_;
  std::vector<std::thread> threads_;

  mutable std::mutex mutex_;  // guards what follows
  std::condition_variable available_;
  std::condition_variable closing_;  // wakes the callers sleeping between attempts
  std::vector<std::unique_ptr<Client>> idle_;
  std::size_t open_ = 0;  // idle, borrowed and connecting
  bool closed_ = false;
};

}  // namespace serialclient
