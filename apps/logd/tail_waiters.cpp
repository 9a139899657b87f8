#include "tail_waiters.hpp"

#include <functional>

#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

namespace logd {

/// One waiting tail: a timer that only its own executor touches.
struct TailWaiters::Waiter {
  Waiter(const asio::any_io_executor& executor, std::size_t log_bucket)
      : timer(executor), bucket(log_bucket) {}
  asio::steady_timer timer;
  const std::size_t bucket;
};

std::size_t TailWaiters::bucket_of(std::string_view log) noexcept {
  return std::hash<std::string_view>{}(log) % kBuckets;
}

std::uint64_t TailWaiters::sequence(std::string_view log) const {
  std::lock_guard lock(mutex_);
  return sequences_[bucket_of(log)];
}

std::size_t TailWaiters::waiting() const {
  std::lock_guard lock(mutex_);
  return waiters_.size();
}

asio::awaitable<WaitOutcome> TailWaiters::wait(std::string_view log, std::uint64_t seen,
                                               std::chrono::steady_clock::time_point deadline) {
  const std::size_t bucket = bucket_of(log);
  auto waiter = std::make_shared<Waiter>(co_await asio::this_coro::executor, bucket);
  waiter->timer.expires_at(deadline);
  {
    std::lock_guard lock(mutex_);
    if (closing_) {
      co_return WaitOutcome::closing;
    }
    if (sequences_[bucket] != seen) {
      co_return WaitOutcome::committed;  // committed between the query and now
    }
    if (waiters_.size() >= max_waiting_) {
      co_return WaitOutcome::full;
    }
    waiters_.insert(waiter);
  }
  // Cancelled by a wake (a post to this executor) or by the server cancelling the task.
  std::error_code ignored;
  co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  std::lock_guard lock(mutex_);
  waiters_.erase(waiter);
  if (closing_) {
    co_return WaitOutcome::closing;
  }
  co_return sequences_[bucket] != seen ? WaitOutcome::committed : WaitOutcome::timed_out;
}

asio::awaitable<void> TailWaiters::pause(std::chrono::steady_clock::time_point until) {
  auto waiter = std::make_shared<Waiter>(co_await asio::this_coro::executor, kNoBucket);
  waiter->timer.expires_at(until);
  {
    std::lock_guard lock(mutex_);
    if (closing_) {
      co_return;
    }
    waiters_.insert(waiter);
  }
  std::error_code ignored;  // cancelled by close() or with its task: either way, the pause ends
  co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  std::lock_guard lock(mutex_);
  waiters_.erase(waiter);
}

void TailWaiters::wake_locked(std::size_t bucket) {
  for (const auto& waiter : waiters_) {
    if (waiter->bucket == bucket) {
      asio::post(waiter->timer.get_executor(), [waiter] { waiter->timer.cancel(); });
    }
  }
}

void TailWaiters::wake_all_locked() {
  for (const auto& waiter : waiters_) {
    asio::post(waiter->timer.get_executor(), [waiter] { waiter->timer.cancel(); });
  }
}

void TailWaiters::notify_commit(const std::vector<std::string>& logs) {
  std::lock_guard lock(mutex_);
  for (const auto& log : logs) {
    const std::size_t bucket = bucket_of(log);
    ++sequences_[bucket];
    if (!waiters_.empty()) {
      wake_locked(bucket);
    }
  }
}

void TailWaiters::close() {
  std::lock_guard lock(mutex_);
  closing_ = true;
  wake_all_locked();
}

}  // namespace logd
