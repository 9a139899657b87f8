#pragma once

#include <chrono>

namespace serialserver {

/// The server-side timeouts of docs/protocol.md section 6. Go: serialserver.Timeout.
/// Thread-safety: a plain value.
struct Timeout {
  /// Go: DefaultWait. The longest the server waits for the next task code.
  static constexpr std::chrono::nanoseconds kDefaultWait = std::chrono::minutes(30);
  /// Go: DefaultRead. The rolling read timeout while a request is read.
  static constexpr std::chrono::nanoseconds kDefaultRead = std::chrono::seconds(5);
  /// Go: DefaultWrite. The rolling write timeout while a response is written.
  static constexpr std::chrono::nanoseconds kDefaultWrite = std::chrono::seconds(5);

  std::chrono::nanoseconds wait = kDefaultWait;    ///< Go: Wait
  std::chrono::nanoseconds read = kDefaultRead;    ///< Go: Read
  std::chrono::nanoseconds write = kDefaultWrite;  ///< Go: Write
};

}  // namespace serialserver
