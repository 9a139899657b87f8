// Client::call under a RetryPolicy: the single connection's opt-in form of what Pool does.

#include <serialserver/protocol.hpp>
#include "retry_rules.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include <serialclient/client.hpp>
#include <serialclient/error.hpp>

namespace serialclient {

Result Client::call(TaskCode code, std::span<const std::uint8_t> request, std::error_code& ec,
                    const RetryPolicy& policy, CallOptions call) {
  ec.clear();
  if (serialserver::is_reserved_task_code(code)) {
    ec = make_error_code(Errc::reserved_task_code);
    return {};
  }
  const auto start = std::chrono::steady_clock::now();
  std::optional<RetryBackoff> backoff;  // made at the first retry: most calls need none
  for (;;) {
    detail::Attempt attempt;
    const bool was_open = is_open();
    if (!was_open) {
      std::string address;
      {
        std::lock_guard lock(state_mutex_);
        address = address_;
      }
      if (address.empty()) {
        ec = make_error_code(Errc::connection_closed);  // never connected: nowhere to go
        return {};
      }
      connect(address, ec);
    }
    if (!ec) {
      attempt.connected = true;
      attempt.result = call_reporting(code, request, ec, attempt.written);
      if (was_open && !attempt.written && (ec || attempt.result.is_goodbye()) && !is_open()) {
        // The server left the idle connection (an unprompted Goodbye, or its end) before the
        // call went out: the connection is closed now, and the next attempt reopens it at once.
        continue;
      }
    }
    attempt.error = ec;
    if (!policy.enabled || !detail::may_retry(attempt, call)) {
      return attempt.result;
    }
    if (!backoff) {
      backoff.emplace(policy);
    }
    const std::chrono::nanoseconds delay = backoff->next();
    if (std::chrono::steady_clock::now() - start + delay > policy.budget) {
      return attempt.result;  // with `ec` as the attempt left it
    }
    std::this_thread::sleep_for(delay);
  }
}

}  // namespace serialclient
