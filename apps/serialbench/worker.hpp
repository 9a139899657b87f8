#pragma once

// A worker thread's share of the connections, and what every I/O engine does alike: stamping
// and sending requests, parsing and validating responses, counting. How bytes move (epoll and
// non-blocking sockets, or an io_uring) is up to the engine that derives from it.

#include "connection.hpp"
#include "options.hpp"
#include "statistics.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <vector>

namespace serialbench {

/// Phases that the main thread announces to the workers.
enum class Phase { warmup, measure, stop };

/// Thread-safety: built and filled by the main thread, then run() on a thread of its own; the
/// main thread reads only stats()'s atomics until `done`. Lifetime: `config` and `phase` outlive
/// it; it closes its connections when run() ends.
class Worker {
 public:
  Worker(const Config& config, const std::atomic<Phase>& phase);
  virtual ~Worker() = default;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void add(std::unique_ptr<Conn> conn) {
    conn->index = conns_.size();
    if (config_.retry) {
      conn->retry_of.resize(config_.pipeline);
    }
    conns_.push_back(std::move(conn));
  }
  Stats& stats() { return stats_; }
  /// --tls: the context that lost connections are opened again with (--retry). Lifetime: it
  /// outlives run().
  void set_tls_context(SSL_CTX* context) { tls_context_ = context; }
  /// Connections that still owe requests (requests mode) or are alive (duration mode).
  void set_active(std::size_t n) { active_ = n; }

  /// Runs the loop until the phase is stop or (requests mode) every quota is done.
  virtual void run() = 0;

 protected:
  /// Writes the pending part of the connection's batch (or queues it).
  virtual void flush(Conn& c) = 0;
  /// Takes a connection out of the loop (its quota is done, or it is lost).
  virtual void retire(Conn& c);
  /// --retry: the engine forgets the socket of a lost connection, before it is closed.
  virtual void detach(Conn& c) = 0;
  /// --retry: the engine takes the new socket of a connection opened again.
  virtual void attach(Conn& c) = 0;
  /// --retry: false while the engine may still report on the lost socket of `c`; it is not
  /// opened again before.
  virtual bool settled(const Conn& /*c*/) const { return true; }

  /// The longest a loop turn waits for the kernel.
  static constexpr std::uint64_t kMaxWaitNs = 20'000'000;

  /// Starts every connection: a full pipeline of requests, or (--rps) its pacing schedule.
  void start_connections(std::uint64_t now);
  /// With --rps, sends what each connection's schedule says is due; returns how long the loop
  /// may wait for the kernel before the next request is due (at most kMaxWaitNs).
  std::uint64_t pace_all(std::uint64_t now);
  bool paced() const noexcept { return interval_ns_ != 0; }
  /// What is due by the clock: paced requests (--rps) and requests whose retry back-off is over
  /// (--retry). Returns how long the loop may wait for the kernel (at most kMaxWaitNs).
  std::uint64_t run_timers(std::uint64_t now);

  /// Follows the main thread's phases; false once the loop must end.
  bool keep_going(Phase& seen_phase);
  void publish();
  void finish();
  void close_all();
  void lose(Conn& c);
  /// Parses what was read; then retires the connection if its quota is done, or sends the
  /// requests that the responses made room for. False once the connection is out of the loop.
  bool consume(Conn& c, std::span<const std::uint8_t> data);
  /// Sends up to k more requests (fewer if the quota runs out), or owes them while an earlier
  /// write is pending.
  void send(Conn& c, std::uint64_t k, std::uint64_t now);
  /// Writes every owed request in one write(), stamped with its sequence number and `now`.
  void emit(Conn& c, std::uint64_t now);

  const Config& config_;
  const std::atomic<Phase>& phase_;
  std::vector<std::unique_ptr<Conn>> conns_;

 private:
  /// Parses responses out of `data`; returns how many completed.
  std::uint64_t parse(Conn& c, std::span<const std::uint8_t> data, std::uint64_t now);
  void check_content(Conn& c, std::span<const std::uint8_t> content);
  void complete(Conn& c, bool valid, std::uint64_t now);
  /// The Goodbye answer: the server ends the connection.
  void goodbye(Conn& c);
  /// --retry: if the Error answer `error_code` says the task was not started and the call's
  /// budget allows, puts the call aside to be sent again after its back-off; true if it did.
  bool retry_later(Conn& c, std::uint8_t error_code, std::uint64_t now);
  /// --retry: sends again the calls whose back-off is over; returns the wait until the next.
  std::uint64_t resend_due(std::uint64_t now);
  /// --retry: the connection is lost (`goodbye`: the server said Goodbye). Its calls that did
  /// not run (or, with --idempotent, may have) wait to be sent again; the others are errors.
  /// The socket is closed and the connection is down until reconnect_due() opens it again.
  void drop(Conn& c, bool goodbye);
  /// --retry: opens again the lost connections that are due; returns the wait until the next.
  std::uint64_t reconnect_due(std::uint64_t now);
  /// Opens a new socket for the down connection `c` and sends what it owes; false if refused.
  bool reconnect(Conn& c, std::uint64_t now);
  /// The down connection `c` gives up: its calls are errors, and it leaves the loop.
  void give_up(Conn& c);
  /// Sends what the pacing schedule of `c` says is due (as much as its pipeline has room for).
  void pace(Conn& c, std::uint64_t now);

  /// --rps: the time between two requests on one connection; 0 without pacing.
  std::uint64_t interval_ns_ = 0;

  std::minstd_rand retry_seeds_;  // seeds each retried call's back-off jitter
  std::vector<Conn*> down_;       // --retry: lost connections waiting to be opened again
  SSL_CTX* tls_context_ = nullptr;
  std::size_t active_ = 0;
  Stats stats_;
};

}  // namespace serialbench
