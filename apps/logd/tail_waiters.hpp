#pragma once

// The tails that wait for new messages, each a timer on its connection's executor rather than a
// blocked thread: the writer's commit wakes the tails of the logs it wrote to (shutdown wakes
// them all) by cancelling their timers.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

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

  /// The commit sequence number of `log`: read it before a query, pass it to wait().
  std::uint64_t sequence(std::string_view log) const;

  /// Waits on the calling coroutine's executor, holding no thread, until a commit to `log`
  /// after `seen`, the deadline, or close(). A cancelled coroutine (the server cancelling the
  /// task) gets timed_out.
  asio::awaitable<WaitOutcome> wait(std::string_view log, std::uint64_t seen,
                                    std::chrono::steady_clock::time_point deadline);

  /// Waits on the calling coroutine's executor, holding no thread, until `until` or close()
  /// (a commit does not end it): a woken tail's pause before it answers, which shutdown cuts
  /// short. Counted among the tails waiting.
  asio::awaitable<void> pause(std::chrono::steady_clock::time_point until);

  /// Called after every commit with the logs it wrote to: wakes the tails waiting on them.
  /// Never blocks on a waiter.
  void notify_commit(const std::vector<std::string>& logs);

  /// Wakes every waiting tail with `closing`, now and from now on.
  void close();

  /// Tails waiting now.
  std::size_t waiting() const;

 private:
  struct Waiter;
  /// Commits are counted per bucket of log names rather than per log, so that the count takes
  /// fixed memory however many logs there are. Two logs in one bucket only wake each other's
  /// tails for a query that finds nothing and waits again.
  static constexpr std::size_t kBuckets = 1024;
  /// The bucket of a pause: no commit wakes it.
  static constexpr std::size_t kNoBucket = kBuckets;
  static std::size_t bucket_of(std::string_view log) noexcept;
  void wake_locked(std::size_t bucket);
  void wake_all_locked();

  const std::size_t max_waiting_;
  mutable std::mutex mutex_;  // guards the members below
  std::array<std::uint64_t, kBuckets> sequences_{};
  bool closing_ = false;
  std::unordered_set<std::shared_ptr<Waiter>> waiters_;
};

}  // namespace logd
