#pragma once

// An append waiting in the store's queue for the writer thread's commit: shared by the store's
// front (which queues it and waits) and its writer (which commits it and marks it done).

#include "logd_protocol.hpp"

#include <condition_variable>
#include <cstdint>
#include <string>
#include <vector>

namespace logd::detail {

/// One appended request waiting for its commit. Guarded by Store::queue_mutex_, except the
/// results, which the writer sets before `done` and the waiter reads after it.
struct PendingAppend {
  std::vector<Message> messages;
  /// Signalled once `done` is set: one per append, so that a commit wakes only the appends it
  /// committed, not every append waiting for a later commit.
  std::condition_variable committed;
  bool done = false;
  bool failed = false;
  std::string error;
  std::uint64_t first_id = 0;
};

}  // namespace logd::detail
