#include "tail_waiters.hpp"

#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

namespace logd {

/// One waiting tail: a timer that only its own executor touches.
struct TailWaiters::Waiter {
  explicit Waiter(const asio::any_io_executor& executor) : timer(executor) {}
  asio::steady_timer timer;
};

std::uint64_t TailWaiters::sequence() const {
  std::lock_guard lock(mutex_);
  return sequence_;
}

std::size_t TailWaiters::waiting() const {
  std::lock_guard lock(mutex_);
  return waiters_.size();
}

asio::awaitable<WaitOutcome> TailWaiters::wait(std::uint64_t seen,
                                               std::chrono::steady_clock::time_point deadline) {
  auto waiter = std::make_shared<Waiter>(co_await asio::this_coro::executor);
  waiter->timer.expires_at(deadline);
  {
    std::lock_guard lock(mutex_);
    if (closing_) {
      co_return WaitOutcome::closing;
    }
    if (sequence_ != seen) {
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
  co_return sequence_ != seen ? WaitOutcome::committed : WaitOutcome::timed_out;
}

void TailWaiters::wake_all_locked() {
  for (const auto& waiter : waiters_) {
    asio::post(waiter->timer.get_executor(), [waiter] { waiter->timer.cancel(); });
  }
}

void TailWaiters::notify_commit() {
  std::lock_guard lock(mutex_);
  ++sequence_;
  wake_all_locked();
}

void TailWaiters::close() {
  std::lock_guard lock(mutex_);
  closing_ = true;
  wake_all_locked();
}

}  // namespace logd
