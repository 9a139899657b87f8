#pragma once

// The handshake of serialserver-logd (docs/logd-protocol.md section 2): the byte order, then the
// token if one is required, with failed tokens throttled per address.

#include <serialserver/listener.hpp>
#include <serialserver/logger.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace logd {

/// The shortest token the server accepts to be configured with.
inline constexpr std::size_t kMinTokenBytes = 16;

/// Options of the handshake.
struct HandshakeOptions {
  /// The token clients must present; nothing: no token.
  std::optional<std::string> token;
  /// Set once the server can serve tasks; handshakes wait for it (bounded by the handshake
  /// timeout), so that no task arrives before the store is open. Null: always ready.
  std::shared_ptr<const std::atomic<bool>> ready;
  /// The delay after an address's first failed token; it doubles with each further failure
  /// from that address (within `failure_memory`), up to `max_delay`. A success resets it.
  std::chrono::milliseconds first_delay{100};
  std::chrono::milliseconds max_delay{5000};
  std::chrono::seconds failure_memory{600};
  /// Logs the throttled failures.
  std::shared_ptr<serialserver::Logger> logger;
};

/// The handshake hook. Thread-safety: the returned function may run for many connections at
/// once. Lifetime: it keeps what it needs.
serialserver::HandshakeFunction make_handshake(HandshakeOptions options);

/// The address part of a remote address ("1.2.3.4:5" gives "1.2.3.4", "[::1]:5" gives "[::1]";
/// a socket path stays as it is). Thread-safety: a pure function.
std::string address_without_port(const std::string& remote);

}  // namespace logd
