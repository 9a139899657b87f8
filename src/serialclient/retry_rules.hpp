#pragma once

// The Pool's retry policy (RetryPolicy, in serialclient/retry.hpp): which attempts may be sent
// again, and the back-off between them.

#include <chrono>
#include <cstdint>
#include <system_error>

#include <serialclient/result.hpp>
#include <serialclient/retry.hpp>

namespace serialclient::detail {

/// One attempt of a pooled call, as the retry policy sees it.
struct Attempt {
  Result result;           ///< the answer (meaningless when `error` is set)
  std::error_code error;   ///< a failed connect or a transport failure
  bool connected = false;  ///< false: connecting failed (`error` says why)
  bool written = false;    ///< a byte of the request reached the socket
};

/// True if the call may be sent again: it is known not to have run (Goodbye, Error 253, a
/// refused connect, a connection found closed before anything was written), or it is
/// idempotent and its connection dropped after the request was written, without an answer.
/// Thread-safety: a pure function.
bool may_retry(const Attempt& attempt, const CallOptions& call) noexcept;

/// The back-off between a pooled call's attempts.
using Backoff = RetryBackoff;

}  // namespace serialclient::detail
