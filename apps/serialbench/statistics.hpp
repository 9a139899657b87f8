#pragma once

// What a run counts: per worker thread while it runs, merged into one Summary at the end.

#include "histogram.hpp"

#include <atomic>
#include <cstdint>

namespace serialbench {

/// One worker's counters. Thread-safety: the plain fields belong to the worker thread until
/// `done` is set; the atomics are published for the progress line.
struct Stats {
  Histogram histogram;
  std::uint64_t completed = 0;
  std::uint64_t errors = 0;
  std::uint64_t lost = 0;
  std::uint64_t end_ns = 0;
  std::atomic<std::uint64_t> live_completed{0};
  std::atomic<std::uint64_t> live_errors{0};
  std::atomic<bool> done{false};
};

/// Every worker's counters added up, over the measured window.
struct Summary {
  Histogram histogram;
  std::uint64_t completed = 0;
  std::uint64_t errors = 0;
  std::uint64_t lost = 0;
  double seconds = 0;
  std::uint64_t cpu_ns = 0;
  std::size_t threads = 0;

  void add(const Stats& stats) {
    histogram.merge(stats.histogram);
    completed += stats.completed;
    errors += stats.errors;
    lost += stats.lost;
  }
  double requests_per_second() const {
    return seconds > 0 ? static_cast<double>(completed) / seconds : 0.0;
  }
  double cpu_percent() const {
    return seconds > 0 ? static_cast<double>(cpu_ns) / 1e9 / seconds * 100.0 : 0.0;
  }
};

}  // namespace serialbench
