#pragma once

// The task functions and the handshake of serialserver-logd (docs/logd-protocol.md).

#include <serialserver/listener.hpp>
#include <serialserver/server.hpp>
#include "store.hpp"
#include "tail_waiters.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <asio/thread_pool.hpp>

namespace logd {

/// The bounds of the tasks other than appends (appends are bounded by the server's worker pool).
struct TaskLimits {
  /// Threads that run the SQLite queries of reads, tails and lists (never those of appends).
  unsigned query_threads = 4;
  /// Reads streaming at once; beyond: Error 8 (busy).
  std::size_t max_reads = 32;
  /// Lists streaming at once; beyond: Error 8 (busy).
  std::size_t max_lists = 4;
  /// Tails waiting for a commit at once; beyond: Error 8 (busy).
  std::size_t max_waiting_tails = 4096;
  /// A tail woken by a commit waits a random time up to 1 ms per tail that commit woke, and at
  /// most this, before it answers: the followers of one log answer spread out, each gathering
  /// the commits of that time, instead of all at once beside the appends. 0: at once.
  std::chrono::nanoseconds tail_spread = std::chrono::milliseconds(100);
};

/// The reader connections a Store needs for `limits`: every read and list in progress holds
/// one, and each query thread one more for a tail.
inline std::size_t readers_needed(const TaskLimits& limits) {
  return limits.max_reads + limits.max_lists + limits.query_threads;
}

/// The logd tasks: appends run on the server's worker pool (they wait there for their group
/// commit); reads, tails and lists are coroutine tasks whose queries run on a pool of their own,
/// and a waiting tail holds no thread at all (a timer woken by the writer's commit).
/// Thread-safety: every member function may be called from any thread.
/// Lifetime: must outlive the Server's connections (destroy it after Listener::wait()).
class LogdService {
 public:
  /// `retention` is enforced in the background every `retention_interval`, logged to `logger`.
  LogdService(std::shared_ptr<Store> store, TaskLimits limits, RetentionOptions retention = {},
              std::chrono::nanoseconds retention_interval = std::chrono::seconds(10),
              std::shared_ptr<serialserver::Logger> logger = nullptr);
  LogdService(const LogdService&) = delete;
  LogdService& operator=(const LogdService&) = delete;
  ~LogdService();

  /// Registers tasks 1..6 on `server`.
  void register_tasks(serialserver::Server& server);
  /// Shutdown begins: every waiting tail answers what it has (empty) at once, and tails no
  /// longer wait.
  void begin_shutdown();
  /// The grace period is over: streamed reads and lists still going end by dropping their
  /// connection (a cut-off stream must not look complete).
  void abandon_streams() { abandoned_->store(true); }
  /// Tails waiting now.
  std::size_t waiting_tails() const { return waiters_->waiting(); }

 private:
  std::shared_ptr<Store> store_;
  TaskLimits limits_;
  std::shared_ptr<TailWaiters> waiters_;
  asio::thread_pool queries_;
  asio::thread_pool deletes_{1};  // deletes run one at a time, beside everything else
  std::jthread maintenance_;      // closes idle reader connections and enforces the retention
  std::shared_ptr<std::atomic<std::size_t>> reads_ = std::make_shared<std::atomic<std::size_t>>(0);
  std::shared_ptr<std::atomic<std::size_t>> lists_ = std::make_shared<std::atomic<std::size_t>>(0);
  std::shared_ptr<std::atomic<bool>> abandoned_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace logd
