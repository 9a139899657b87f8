#pragma once

// The one timer of a connection. It keeps every deadline the connection has (the Wait, Read and
// Write timeouts of the I/O wait in progress, the request's max_request_duration, the end of a
// disconnect's grace period) and is re-armed only when a deadline moves earlier than its expiry:
// a request that resets its I/O deadline later costs no timer operation. When it fires it finds
// which deadline passed and tells its owner.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <system_error>

#include <asio/any_io_executor.hpp>
#include <asio/steady_timer.hpp>

namespace serialserver::detail {

class Watchdog {
 public:
  using Clock = std::chrono::steady_clock;

  /// What the connection waits for under the I/O deadline.
  enum class Wait : std::uint8_t { none, request, reading, writing };
  /// Which deadline passed.
  enum class Expired : std::uint8_t {
    task,        // the task's time budget ended (the watchdog goes on)
    disconnect,  // the disconnect's grace period ended
    wait,        // the Wait timeout, waiting for a request
    read,        // the Read timeout, reading a request
    request,     // the request's max_request_duration
    write,       // the Write timeout
  };

  explicit Watchdog(const asio::any_io_executor& executor) : timer_(executor) {}

  /// Starts watching. `owner` is kept alive until the watchdog stops (cancel(), or a deadline
  /// passed); its `on_deadline(Expired)` is called on the timer's executor, unless its
  /// `finished()` is true by then.
  template <class Owner>
  void start(std::shared_ptr<Owner> owner) {
    set_expiry(Clock::time_point::max());
    arm(std::move(owner));
  }
  /// Stops watching; the owner is released once the pending wait completes.
  void cancel() { timer_.cancel(); }

  /// An I/O wait of kind `wait` begins, under `timeout`. A read is also capped by the request's
  /// deadline.
  void begin_wait(Wait wait, std::chrono::nanoseconds timeout) {
    wait_ = wait;
    io_deadline_ = Clock::now() + timeout;
    if (wait == Wait::reading) {
      io_deadline_ = std::min(io_deadline_, request_deadline_);
    }
    rearm_if_earlier(io_deadline_);
  }
  /// What the connection waits for now (Wait::none between waits).
  Wait waiting() const noexcept { return wait_; }
  /// The I/O wait ended.
  void end_wait() noexcept {
    wait_ = Wait::none;
    io_deadline_ = Clock::time_point::max();
  }
  /// A request that may have to be read begins: `max_duration` (0: none) from now.
  void begin_request(std::chrono::nanoseconds max_duration) {
    request_deadline_ =
        max_duration.count() > 0 ? Clock::now() + max_duration : Clock::time_point::max();
  }
  /// The running task's time budget ends at `deadline`.
  void set_task_deadline(Clock::time_point deadline) {
    task_deadline_ = deadline;
    rearm_if_earlier(task_deadline_);
  }
  /// The running task has ended. (The timer, if armed for the deadline, wakes and finds none.)
  void clear_task_deadline() noexcept { task_deadline_ = Clock::time_point::max(); }
  /// A disconnect's grace period ends at `deadline` (the earliest of several wins).
  void set_disconnect_deadline(Clock::time_point deadline) {
    if (deadline < disconnect_deadline_) {
      disconnect_deadline_ = deadline;
      rearm_if_earlier(deadline);
    }
  }

 private:
  template <class Owner>
  void arm(std::shared_ptr<Owner> owner) {
    timer_.async_wait(
        [this, owner = std::move(owner)](std::error_code) mutable { on_timer(std::move(owner)); });
  }

  /// Runs when the timer fires or its expiry moves (rearm_if_earlier): reports the deadline that
  /// has passed, or waits again until the earliest one.
  template <class Owner>
  void on_timer(std::shared_ptr<Owner> owner) {
    if (owner->finished()) {
      return;
    }
    const auto now = Clock::now();
    if (task_deadline_ <= now) {
      task_deadline_ = Clock::time_point::max();
      owner->on_deadline(Expired::task);  // the connection goes on: so does the watchdog
      if (owner->finished()) {
        return;
      }
    }
    if (disconnect_deadline_ <= now) {
      owner->on_deadline(Expired::disconnect);
      return;
    }
    if (io_deadline_ <= now && wait_ != Wait::none) {
      owner->on_deadline(wait_ == Wait::request ? Expired::wait
                         : wait_ == Wait::reading
                             ? (request_deadline_ <= now ? Expired::request : Expired::read)
                             : Expired::write);
      return;
    }
    const auto next = std::min({io_deadline_, disconnect_deadline_, task_deadline_});
    if (expiry_ != next) {
      set_expiry(next);
    }
    arm(std::move(owner));
  }

  void rearm_if_earlier(Clock::time_point deadline) {
    if (deadline < expiry_) {
      set_expiry(deadline);  // wakes the pending wait, which waits again
    }
  }
  /// Sets the timer's expiry and its copy in expiry_, which every request reads
  /// (rearm_if_earlier) beside the other deadlines: the timer's own is in a cache line of its own.
  void set_expiry(Clock::time_point expiry) {
    expiry_ = expiry;
    timer_.expires_at(expiry);
  }

  Clock::time_point io_deadline_ = Clock::time_point::max();
  Clock::time_point request_deadline_ = Clock::time_point::max();
  Clock::time_point expiry_ = Clock::time_point::max();
  Clock::time_point disconnect_deadline_ = Clock::time_point::max();
  Clock::time_point task_deadline_ = Clock::time_point::max();
  Wait wait_ = Wait::none;
  asio::steady_timer timer_;
};

}  // namespace serialserver::detail
