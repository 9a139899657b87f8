#pragma once

#include <sched.h>

#include <algorithm>
#include <thread>

namespace serialserver::detail {

/// The cores this process may run on (its CPU affinity, e.g. under taskset), at least 1. This,
/// not the machine's core count, is what "one I/O thread per core" should mean.
inline unsigned available_cores() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    return std::max(1, CPU_COUNT(&set));
  }
  return std::max(1U, std::thread::hardware_concurrency());
}

}  // namespace serialserver::detail
