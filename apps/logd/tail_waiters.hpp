#pragma once

// The tails that wait for new messages, each a timer on its connection's executor rather than a
// blocked thread: the writer's commit (or shutdown) wakes them all by cancelling their timers.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_set>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

namespace logd {

/// How a wait ended.
enum class WaitOutcome {
  committed,  ///< something committed since the sequence number given: look again
  timed_out,  ///< the deadline passed
  closing,    ///< the server is shutting down: answer what there is at once
  full,       ///< too many tails wait already
};

/// Registry of waiting tails. Thread-safety: every member function may be called from any
/// thread. Lifetime: must outlive every wait in progress.
class TailWaiters {
 public:
  /// At most `max_waiting` tails wait at once.
  explicit TailWaiters(std::size_t max_waiting) : max_waiting_(max_waiting) {}
  TailWaiters(const TailWaiters&) = delete;
  TailWaiters& operator=(const TailWaiters&) = delete;
  ~TailWaiters() = default;

  /// The commit sequence number: read it before a query, pass it to wait().
  std::uint64_t sequence() const;

  /// Waits on the calling coroutine's executor, holding no thread, until a commit after
  /// `seen`, the deadline, or close(). A cancelled coroutine (the server cancelling the task)
  /// gets timed_out.
  asio::awaitable<WaitOutcome> wait(std::uint64_t seen,
                                    std::chrono::steady_clock::time_point deadline);

  /// Called after every commit: wakes every waiting tail. Never blocks on a waiter.
  void notify_commit();

  /// Wakes every waiting tail with `closing`, now and from now on.
  void close();

  /// Tails waiting now.
  std::size_t waiting() const;

 private:
  struct Waiter;
  void wake_all_locked();

  const std::size_t max_waiting_;
  mutable std::mutex mutex_;  // guards the members below
  std::uint64_t sequence_ = 0;
  bool closing_ = false;
  std::unordered_set<std::shared_ptr<Waiter>> waiters_;
};

}  // namespace logd
