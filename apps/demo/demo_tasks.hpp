#pragma once

#include <serialserver/server.hpp>

namespace demo {

/// Error code the demo tasks send for a request that is too short for them.
inline constexpr serialserver::ErrorCode kBadRequest = 1;

/// Registers the demo tasks:
/// 1 echo; 2 empty response; 3 Error whose code is the first request byte (0 if empty);
/// 4 a response of N bytes (N = big-endian uint64 request), byte i being i mod 256, produced
/// while it streams; 5 sleep N ms (N = big-endian uint32 request), cancellable, then an empty OK;
/// 6 the number of request bytes as a big-endian uint64, counted in constant memory.
void register_demo_tasks(serialserver::Server& server);

}  // namespace demo
