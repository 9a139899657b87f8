#pragma once

// How serialserver-logd opens its store: files private to its user, and a wait while another
// server holds the database file (docs/logd-protocol.md, "One server per database file").

#include <serialserver/logger.hpp>
#include "store.hpp"

#include <chrono>
#include <csignal>
#include <memory>

namespace logd {

/// The store, with its files readable by this user only. While another server holds the
/// database file (the old one of a --reuse-port hand-over, draining), tries again every 100 ms
/// for up to `wait`. Returns nullptr if SIGINT or SIGTERM comes meanwhile. Throws what the Store
/// throws: DatabaseInUse once `wait` has passed.
/// Thread-safety: call from the main thread, with `signals` blocked in every thread (it takes
/// them with sigtimedwait), and no other thread creating files (it sets the umask).
std::shared_ptr<Store> open_store(const StoreOptions& options, std::chrono::nanoseconds wait,
                                  const sigset_t& signals, serialserver::Logger& log);

}  // namespace logd
