#pragma once

#include <chrono>

namespace serialserver {

/// The server-side timeouts of docs/protocol.md section 6. Go: serialserver.Timeout.
/// A timeout of zero (or less) expires at once: a zero Wait closes a connection as soon as it is
/// idle with nothing buffered, a zero Read or Write as soon as a read or write has to wait. There
/// is no "no timeout" value; use a long one.
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
