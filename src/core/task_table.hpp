#pragma once

#include <serialserver/task.hpp>

#include <array>
#include <memory>

namespace serialserver::detail {

/// An immutable snapshot of the registered task functions. Registration publishes a new one;
/// connections keep the snapshot they have until the version changes, so a lookup on the hot
/// path takes no lock.
struct TaskTable {
  std::array<std::shared_ptr<const RegisteredTask>, 256> entries;
};

}  // namespace serialserver::detail
