#pragma once

// Shared helpers of the fuzz targets: a check that aborts (so libFuzzer records a crash and keeps
// the input) whatever NDEBUG says, and a small deterministic generator for values that the
// targets derive from their input (chunk sizes and the like).

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (false)

namespace serialserver::fuzz {

/// xorshift64*: a deterministic stream of numbers from a seed taken from the input, so that one
/// input always runs the same way.
class Sequence {
 public:
  explicit Sequence(std::uint64_t seed) noexcept : state_(seed | 1) {}
  std::uint64_t next() noexcept {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1DULL;
  }
  /// A number in [lo, hi].
  std::uint64_t in(std::uint64_t lo, std::uint64_t hi) noexcept {
    return lo + next() % (hi - lo + 1);
  }

 private:
  std::uint64_t state_;
};

}  // namespace serialserver::fuzz
