#pragma once

#include <serialserver/protocol.hpp>

#include <chrono>
#include <cstdint>
#include <string>

namespace serialserver {

/// What a connection is doing now (Go: serial.TaskMetadata). Client::metadata() returns a
/// snapshot; it is empty while the connection is idle.
/// Thread-safety: a plain value.
struct TaskMetadata {
  /// The task code being served.
  TaskCode code = 0;
  std::string name;  ///< the registered name (empty if none)
  /// When the task code arrived: the time of the latest read from the connection before the
  /// task began, so at or after the code's arrival and at or before the task's start. Requests
  /// that came in one read share its time, even when one waits behind another's task.
  std::chrono::system_clock::time_point start;
  std::uint64_t bytes_read = 0;     ///< request content read so far
  std::uint64_t bytes_written = 0;  ///< response content written so far
};

}  // namespace serialserver
