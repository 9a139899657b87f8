#pragma once

// `serialserver-log tail LOG [-n N] [--follow]`: the last messages, then the new ones as they
// arrive, across restarts of the server (as tail -F follows a file that is replaced).

#include "logd_client.hpp"
#include "logd_protocol.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace logd::cli {

/// What to tail and how to retry.
struct TailOptions {
  std::string log;
  /// How many of the last messages to print first (0: none).
  std::uint32_t last = 10;
  /// Keep printing new messages until interrupted.
  bool follow = false;
  /// The wait of each long poll.
  std::uint32_t wait_ms = 10000;
  /// The first pause before reconnecting after a lost connection; doubled at each failed
  /// attempt, up to reconnect_max.
  std::chrono::milliseconds reconnect_first{100};
  std::chrono::milliseconds reconnect_max{5000};
};

/// Prints one record; returns false when standard output has failed (following then stops).
using RecordPrinter = std::function<bool(const Record&)>;

/// Runs the tail. While following, a lost connection (an I/O error, the end of the stream, a
/// Goodbye, or Error 7 "shutting down") is reported with one line on stderr and followed by
/// reconnection attempts with growing pauses; after reconnecting the tail carries on after the
/// last id printed, so nothing is printed twice. A refused handshake (a bad token) ends it.
/// Throws the client's exceptions otherwise. Thread-safety: one thread.
void run_tail(const ClientOptions& client_options, const TailOptions& options,
              const RecordPrinter& print);

}  // namespace logd::cli
