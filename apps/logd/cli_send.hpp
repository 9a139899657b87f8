#pragma once

// `serialserver-log send LOG --stdin`: standard input as messages, sent in batches on one
// connection.

#include "logd_client.hpp"
#include "logd_protocol.hpp"

#include <cstdint>
#include <cstdio>

namespace logd::cli {

/// The most bytes of messages put in one batch request (besides kMaxBatch messages): well
/// under the server's request limit, and small enough that a long input is committed as it is
/// read.
inline constexpr std::size_t kBatchBytes = std::size_t{1} << 20;

/// Sends every line of `in` as a message like `base` (its text replaced by the line, without
/// the newline and a carriage return before it; empty lines are skipped), in batches of at most
/// kMaxBatch messages and about kBatchBytes, each batch one append-batch request and so one
/// commit. `stored` counts the messages acknowledged so far, also when an exception leaves:
/// std::runtime_error for a line longer than kMaxTextBytes (the lines before it are sent first),
/// or the client's exceptions. Thread-safety: one thread, as the client.
void send_lines(Client& client, const Message& base, std::FILE* in, std::uint64_t& stored);

/// Reads all of `in` (at most kMaxTextBytes; std::runtime_error beyond) as one text.
std::string read_whole(std::FILE* in);

}  // namespace logd::cli
