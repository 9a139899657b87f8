#pragma once

// The clocks serialbench measures with, and the decision to poll or sleep that rests on them.

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ctime>

namespace serialbench {

/// CPU time (user + system) of the whole process so far, in nanoseconds: the generator's own
/// cost, which tells whether it could have been the bottleneck.
inline std::uint64_t process_cpu_ns() noexcept {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  const auto ns = [](const timeval& tv) {
    return static_cast<std::uint64_t>(tv.tv_sec) * 1000000000ULL +
           static_cast<std::uint64_t>(tv.tv_usec) * 1000ULL;
  };
  return ns(usage.ru_utime) + ns(usage.ru_stime);
}

/// The monotonic clock in nanoseconds.
inline std::uint64_t now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// Decides whether a loop turn polls (asks the kernel for what is ready without sleeping) or
/// waits. A generator that sleeps between responses must be woken by the server's sends, and the
/// wake-up is work the kernel does on the server's core, inside its send: measured against the
/// limit server at C=50, that alone made the server slower under serialbench than under a
/// generator that was busy anyway. Polling for `spin` after the last progress keeps the
/// generator awake while responses flow, at the price of a busy core; an idle run still sleeps.
/// Thread-safety: one per worker thread.
class Spinner {
 public:
  explicit Spinner(std::chrono::nanoseconds spin) noexcept
      : spin_ns_(static_cast<std::uint64_t>(std::max<std::int64_t>(spin.count(), 0))),
        last_progress_ns_(spin_ns_ != 0 ? now_ns() : 0) {}

  /// True if this turn should poll rather than wait.
  bool spinning() const noexcept {
    return spin_ns_ != 0 && now_ns() - last_progress_ns_ < spin_ns_;
  }
  /// Records the outcome of a turn: `progress` if anything completed.
  void turn(bool progress) noexcept {
    if (progress && spin_ns_ != 0) {
      last_progress_ns_ = now_ns();
    }
  }

 private:
  std::uint64_t spin_ns_;
  std::uint64_t last_progress_ns_;
};

}  // namespace serialbench
