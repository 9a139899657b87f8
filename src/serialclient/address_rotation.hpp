#pragma once

// The addresses of a Pool (PoolOptions::address_backoff): which one each new connection tries
// first, and how long an address that could not be connected to is passed over.

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <serialclient/pool.hpp>

namespace serialclient::detail {

/// The configured addresses, host names expanded into the addresses they resolve to (once, at
/// the first new connection), taken round-robin, each with its own back-off.
/// Thread-safety: every member function may be called from any number of threads.
class AddressRotation {
 public:
  /// One address a connection may be opened to.
  struct Target {
    std::size_t index = 0;    ///< for succeeded() and failed()
    std::string address;      ///< what Client::connect gets
    std::string server_name;  ///< the host name it was resolved from; empty if none
  };

  /// `addresses` must not be empty. `executor` is only used to resolve names (synchronously).
  AddressRotation(std::vector<std::string> addresses, AddressBackoff backoff,
                  asio::any_io_executor executor);

  /// The order in which a new connection tries the addresses: those not backing off, from the
  /// one after the last address chosen, round-robin; then those backing off, the soonest to end
  /// first (a connection is still attempted when every address is backing off).
  std::vector<Target> plan();
  /// A connection to the target was opened: its back-off ends and is reset.
  void succeeded(std::size_t index);
  /// Connecting to the target failed: it is passed over for its back-off, which then doubles.
  void failed(std::size_t index);

 private:
  struct Entry {
    Target target;
    std::chrono::steady_clock::time_point skip_until{};
    std::chrono::nanoseconds next_backoff{};
  };

  void resolve_locked();

  const std::vector<std::string> configured_;
  const AddressBackoff backoff_;
  asio::any_io_executor executor_;

  std::mutex mutex_;  // guards what follows
  bool resolved_ = false;
  std::vector<Entry> entries_;
  std::size_t next_ = 0;  // where the round-robin scan starts
};

}  // namespace serialclient::detail
