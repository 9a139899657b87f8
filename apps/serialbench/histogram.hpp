#pragma once

// A log-linear latency histogram in the manner of HdrHistogram: exact below 128 ns, then 64
// buckets per power of two (under 1.6 % relative error), fixed size, no allocation per value.

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>

namespace serialbench {

/// Latencies in nanoseconds. Thread-safety: none; one per thread, merged at the end.
/// Lifetime: a plain value (about 30 KiB: keep it out of hot stack frames).
class Histogram {
 public:
  /// Records one value.
  void record(std::uint64_t ns) noexcept {
    ++counts_[index_of(ns)];
    ++total_;
    sum_ += ns;
    min_ = std::min(min_, ns);
    max_ = std::max(max_, ns);
  }
  /// Adds every value of `other`.
  void merge(const Histogram& other) noexcept {
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      counts_[i] += other.counts_[i];
    }
    total_ += other.total_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }
  void clear() noexcept {
    counts_.fill(0);
    total_ = 0;
    sum_ = 0;
    min_ = ~std::uint64_t{0};
    max_ = 0;
  }
  /// The value at quantile q (0..1): the middle of the bucket that holds it; max() for q = 1.
  std::uint64_t quantile(double q) const noexcept {
    if (total_ == 0) {
      return 0;
    }
    auto rank = static_cast<std::uint64_t>(std::llround(q * static_cast<double>(total_)));
    rank = std::clamp<std::uint64_t>(rank, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        return std::min(middle_of(i), max_);
      }
    }
    return max_;
  }
  std::uint64_t max() const noexcept { return max_; }
  /// The smallest value recorded (exact); 0 when empty.
  std::uint64_t min() const noexcept { return total_ == 0 ? 0 : min_; }
  /// The mean of the values recorded (exact sum); 0 when empty.
  double mean() const noexcept {
    return total_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(total_);
  }
  std::uint64_t count() const noexcept { return total_; }

  /// Calls f(value, count) for every non-empty bucket in increasing order, `value` being the
  /// middle of the bucket kept within [min(), max()].
  template <class F>
  void for_each_bucket(F&& f) const {
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      if (counts_[i] != 0) {
        f(std::clamp(middle_of(i), min(), max_), counts_[i]);
      }
    }
  }

 private:
  static constexpr unsigned kSubBits = 7;  // 2^7 exact values, then 2^6 buckets per octave
  static constexpr std::uint64_t kHalf = std::uint64_t{1} << (kSubBits - 1);
  static constexpr std::size_t kBuckets = (64 - kSubBits + 2) * kHalf;

  static std::size_t index_of(std::uint64_t v) noexcept {
    if (v < 2 * kHalf) {
      return static_cast<std::size_t>(v);
    }
    const unsigned msb = 63U - static_cast<unsigned>(std::countl_zero(v));
    const unsigned shift = msb - (kSubBits - 1);
    return static_cast<std::size_t>(shift * kHalf + (v >> shift));
  }
  static std::uint64_t middle_of(std::size_t index) noexcept {
    if (index < 2 * kHalf) {
      return index;
    }
    const std::uint64_t shift = index / kHalf - 1;
    const std::uint64_t mantissa = index - shift * kHalf;
    return (mantissa << shift) + ((std::uint64_t{1} << shift) >> 1);
  }

  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t sum_ = 0;  // overflows after 584 years of latency: not a concern
  std::uint64_t min_ = ~std::uint64_t{0};
  std::uint64_t max_ = 0;
};

}  // namespace serialbench
