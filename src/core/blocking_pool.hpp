#pragma once

#include "util/scope_exit.hpp"
#include "util/unique_function.hpp"

#include <cstddef>
#include <deque>
#include <exception>
#include <mutex>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/dispatch.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>

namespace serialserver::detail {

/// The worker pool for blocking task functions, with a bound on the tasks running or queued.
/// A connection that finds it full waits (without reading further input) until there is room.
/// Thread-safety: every member function may be called from any thread.
class BlockingPool {
 public:
  BlockingPool(unsigned threads, std::size_t max_queued)
      : pool_(threads), limit_(threads + max_queued) {}
  ~BlockingPool() { pool_.join(); }
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  /// Runs `f` on a worker and resumes the caller on its own executor with the result (or the
  /// exception f threw). Waits for room first.
  template <class R, class F>
  asio::awaitable<R> async_run(F f) {
    co_await async_acquire();
    const ScopeExit release_slot([this] { release(); });
    co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                            void(std::exception_ptr, R)>(
        [this](auto handler, F fn) {
          auto work = asio::make_work_guard(asio::get_associated_executor(handler));
          asio::post(pool_, [handler = std::move(handler), fn = std::move(fn),
                             work = std::move(work)]() mutable {
            std::exception_ptr error;
            R result{};
            try {
              result = fn();
            } catch (...) {
              error = std::current_exception();
            }
            auto ex = work.get_executor();
            // The error moves along with the result: the worker keeps no reference, so the
            // exception is destroyed on the caller's executor, never here after the caller
            // has read it.
            asio::dispatch(ex, [handler = std::move(handler), error = std::move(error),
                                result = std::move(result)]() mutable {
              std::move(handler)(error, std::move(result));
            });
          });
        },
        asio::use_awaitable, std::move(f));
  }

  void join() { pool_.join(); }

 private:
  asio::awaitable<void> async_acquire() {
    return asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [this](auto handler) {
          std::unique_lock lock(mutex_);
          if (in_use_ < limit_) {
            ++in_use_;
            lock.unlock();
            auto ex = asio::get_associated_executor(handler);
            asio::post(ex, std::move(handler));
            return;
          }
          auto work = asio::make_work_guard(asio::get_associated_executor(handler));
          waiters_.emplace_back([handler = std::move(handler), work = std::move(work)]() mutable {
            auto ex = work.get_executor();
            asio::post(ex, std::move(handler));
          });
        },
        asio::use_awaitable);
  }
  void release() {
    std::unique_lock lock(mutex_);
    if (!waiters_.empty()) {  // hand the slot straight to the next waiter
      auto next = std::move(waiters_.front());
      waiters_.pop_front();
      lock.unlock();
      next();
      return;
    }
    --in_use_;
  }

  asio::thread_pool pool_;
  std::mutex mutex_;
  std::size_t limit_;
  std::size_t in_use_ = 0;
  std::deque<UniqueFunction> waiters_;
};

}  // namespace serialserver::detail
