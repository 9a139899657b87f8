#pragma once

// What a run counts: per worker thread while it runs, merged into one Summary at the end.

#include "histogram.hpp"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace serialbench {

/// What came back, by kind. A request is answered OK, Error (with its code) or Goodbye; some
/// answers are not the expected ones and count as errors (see Summary::errors).
struct Answers {
  std::uint64_t ok = 0;
  std::array<std::uint64_t, 256> error_by_code{};
  std::uint64_t goodbye = 0;
  /// OK answers that were wrong: their content was not as expected, or an Error was expected.
  std::uint64_t wrong_ok = 0;
  /// Error answers that were wrong: an OK was expected.
  std::array<std::uint64_t, 256> wrong_error_by_code{};
  /// Connections lost otherwise: closed or reset by the server, bytes that are no answer. With
  /// --retry, the calls lost with their connection that were not sent again (they may have
  /// run, or their budget was spent), one each.
  std::uint64_t lost = 0;

  void add(const Answers& other) {
    ok += other.ok;
    goodbye += other.goodbye;
    wrong_ok += other.wrong_ok;
    lost += other.lost;
    for (std::size_t i = 0; i < error_by_code.size(); ++i) {
      error_by_code[i] += other.error_by_code[i];
      wrong_error_by_code[i] += other.wrong_error_by_code[i];
    }
  }
  std::uint64_t errors_answered() const {
    std::uint64_t sum = 0;
    for (const auto n : error_by_code) {
      sum += n;
    }
    return sum;
  }
  /// Everything that went wrong: wrong answers, Goodbyes, lost connections.
  std::uint64_t errors() const {
    std::uint64_t sum = wrong_ok + goodbye + lost;
    for (const auto n : wrong_error_by_code) {
      sum += n;
    }
    return sum;
  }
};

/// One worker's counters. Thread-safety: the plain fields belong to the worker thread until
/// `done` is set; the atomics are published for the progress line.
struct Stats {
  Histogram histogram;
  Answers answers;
  std::uint64_t completed = 0;
  std::uint64_t errors = 0;
  /// --retry: attempts sent again (answered busy or Goodbye, or their connection lost; not
  /// counted in `answers`).
  std::uint64_t retries = 0;
  /// --retry: lost connections opened again.
  std::uint64_t reconnects = 0;
  std::uint64_t end_ns = 0;
  std::atomic<std::uint64_t> live_completed{0};
  std::atomic<std::uint64_t> live_errors{0};
  std::atomic<bool> done{false};

  /// Forgets what the warm-up counted.
  void reset() {
    histogram.clear();
    answers = Answers{};
    completed = errors = retries = reconnects = 0;
  }
};

/// Every worker's counters added up, over the measured window.
struct Summary {
  Histogram histogram;
  Answers answers;
  std::uint64_t completed = 0;
  /// --retry: attempts sent again, over every request.
  std::uint64_t retries = 0;
  /// --retry: lost connections opened again.
  std::uint64_t reconnects = 0;
  double seconds = 0;
  std::uint64_t cpu_ns = 0;
  std::size_t threads = 0;
  bool interrupted = false;  // stopped by SIGINT before its end

  void add(const Stats& stats) {
    histogram.merge(stats.histogram);
    answers.add(stats.answers);
    completed += stats.completed;
    retries += stats.retries;
    reconnects += stats.reconnects;
  }
  std::uint64_t errors() const { return answers.errors(); }
  double requests_per_second() const {
    return seconds > 0 ? static_cast<double>(completed) / seconds : 0.0;
  }
  double cpu_percent() const {
    return seconds > 0 ? static_cast<double>(cpu_ns) / 1e9 / seconds * 100.0 : 0.0;
  }
};

}  // namespace serialbench
