#include "retry_rules.hpp"

#include <serialserver/protocol.hpp>

#include <algorithm>

namespace serialclient::detail {

namespace {

/// The connection ended under the call: the peer closed or reset it.
bool peer_gone(const std::error_code& ec) noexcept {
  return ec == Errc::connection_closed || ec == std::errc::connection_reset ||
         ec == std::errc::broken_pipe || ec == std::errc::connection_aborted;
}

}  // namespace

bool may_retry(const Attempt& attempt, const CallOptions& call) noexcept {
  const std::error_code& ec = attempt.error;
  if (!ec) {
    return is_retryable_answer(attempt.result);
  }
  if (!attempt.connected) {
    // Nothing listens (yet, or for the moment: a restart); a Unix socket file not there yet.
    return ec == std::errc::connection_refused || ec == std::errc::no_such_file_or_directory ||
           peer_gone(ec);
  }
  if (!attempt.written) {
    return peer_gone(ec);  // found closed before the request left: it cannot have run
  }
  return call.idempotent && peer_gone(ec);
}

}  // namespace serialclient::detail

namespace serialclient {

bool is_retryable_answer(const Result& answer) noexcept {
  // Goodbye: the task was not run. Busy: it was not started. Every other Error is the task's
  // (or 252, deadline exceeded: it ran, in part) and OK is final.
  return answer.is_goodbye() ||
         (answer.is_error() && answer.error_code == serialserver::kBusyErrorCode);
}

RetryBackoff::RetryBackoff(const RetryPolicy& policy)
    : RetryBackoff(policy, std::random_device{}()) {}

RetryBackoff::RetryBackoff(const RetryPolicy& policy, std::uint32_t seed)
    : base_(std::max(policy.initial_backoff, std::chrono::nanoseconds(1))),
      max_(std::max(policy.max_backoff, base_)),
      random_(seed) {}

std::chrono::nanoseconds RetryBackoff::next() {
  const std::chrono::nanoseconds bound = base_;
  base_ = base_ > max_ / 2 ? max_ : base_ * 2;
  // Half fixed, half random: callers that failed together do not come back together.
  std::uniform_int_distribution<std::int64_t> jitter(bound.count() / 2, bound.count());
  return std::chrono::nanoseconds(jitter(random_));
}

}  // namespace serialclient
