#pragma once

#include <chrono>
#include <cstdint>
#include <random>

#include <serialclient/result.hpp>

namespace serialclient {

/// When a Pool sends a call again (docs/protocol.md sections 5 and 7). A call is retried, on
/// another connection where its own is closed, when it is known not to have run:
///   - the server answered Goodbye (it is going away; the task was not run);
///   - the server answered Error 253, busy (the task was not started);
///   - connecting was refused (nothing listens yet, or no longer: a restart), or the
///     connection was found closed before any byte of the request was written.
/// A call whose request was written and whose connection then dropped without an answer may
/// have run: it is retried only if the caller marked it idempotent (CallOptions). Error 252
/// (deadline exceeded: the task ran, in part), every other Error code, timeouts and local
/// errors (a reserved task code, a bad address, a failed TLS or handshake) are never retried.
///
/// Between attempts the calling thread sleeps an exponential back-off with jitter: the n-th
/// wait is drawn uniformly from [b/2, b] with b = min(initial_backoff * 2^(n-1), max_backoff).
/// An attempt that would start after the budget has run out is not made: the call returns what
/// the last attempt gave (its Result, or its error).
///
/// An idle pooled connection that the server said Goodbye to (or closed) while no call was
/// running is retired before the call is sent on it, whatever this policy says: the call then
/// takes another connection at once, with no back-off.
///
/// Thread-safety: a plain value, copied into the Pool.
struct RetryPolicy {
  /// Whether calls are retried at all. On by default in PoolOptions.
  bool enabled = true;
  /// The longest a call may go on retrying, counted from its start (default 10 s). A retry is
  /// not started past it; an attempt already running is not cut short (the connection's own
  /// timeouts bound it).
  std::chrono::nanoseconds budget = std::chrono::seconds(10);
  /// The back-off before the first retry, before jitter (default 10 ms).
  std::chrono::nanoseconds initial_backoff = std::chrono::milliseconds(10);
  /// The longest back-off between two attempts, before jitter (default 1 s).
  std::chrono::nanoseconds max_backoff = std::chrono::seconds(1);
};

/// Per-call options of Pool::call. Thread-safety: a plain value.
struct CallOptions {
  /// The task has the same effect when run twice (a read, or a write keyed by the caller): a
  /// call whose connection dropped after its request was written, without an answer, may then
  /// be retried. Default false: such a call fails with the connection's error.
  bool idempotent = false;
};

/// True if an answer says that its task was not run, so that the call may be sent again under
/// a RetryPolicy: Goodbye (the server is going away) or Error 253 (busy, not started). Every
/// other answer is final. For clients that read answers themselves (a Pool applies it, and the
/// rest of the policy, on its own). Thread-safety: a pure function.
bool is_retryable_answer(const Result& answer) noexcept;

/// The waits between the attempts of one call, as a RetryPolicy says: the n-th is drawn
/// uniformly from [b/2, b] with b = min(initial_backoff * 2^(n-1), max_backoff).
/// Thread-safety: one per call, used by one thread at a time.
class RetryBackoff {
 public:
  /// Seeded from std::random_device.
  explicit RetryBackoff(const RetryPolicy& policy);
  /// Seeded with `seed`: cheaper where many calls back off (no device read each).
  RetryBackoff(const RetryPolicy& policy, std::uint32_t seed);
  /// The wait before the next attempt.
  std::chrono::nanoseconds next();

 private:
  std::chrono::nanoseconds base_;
  std::chrono::nanoseconds max_;
  std::minstd_rand random_;
};

}  // namespace serialclient
