#pragma once

// Decoding an append batch as its request arrives: every length is checked before its bytes
// are read, so a bad batch is refused at its first bad message, having held no more than the
// messages before it.

#include <serialserver/request_reader.hpp>
#include "logd_protocol.hpp"

#include <vector>

namespace logd {

/// Reads and validates a batch payload (task 2) from a blocking task's request; throws
/// ProtocolError with the first bad message's code (the rest of the request is drained).
/// Thread-safety: one call per request, from a worker thread.
std::vector<Message> read_batch(serialserver::RequestReader& request, ByteOrder order);

}  // namespace logd
