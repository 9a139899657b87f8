#pragma once

// How a task ended, between its function's return and its answer: what the engine (Session)
// and its driver pass along to answer and report it.

#include <serialserver/metrics.hpp>
#include <serialserver/protocol.hpp>
#include <serialserver/response.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace serialserver::detail {

/// A task that has run (or a code without a task function, once its request is read): how it
/// ended, until its answer is in the output buffer and reported. The OK response travels beside
/// it (an answer served at once needs no copy of it here).
struct TaskEnd {
  using Clock = std::chrono::steady_clock;
  TaskRecord record;                    ///< code and name; the outcome is set when it is answered
  Clock::time_point started;            ///< see Session::task_start_time()
  std::optional<ErrorCode> error_code;  ///< answer Error with this code
  std::optional<std::string> failure;   ///< the task failed: drop the connection
  bool refused = false;                 ///< the failure is an interceptor's Admission::drop()
};

/// An answer that has to wait (Session::Next::finish): the task's end and its OK response.
struct PendingAnswer {
  TaskEnd end;
  Response response;
};

}  // namespace serialserver::detail
