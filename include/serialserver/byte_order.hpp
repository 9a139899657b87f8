#pragma once

#include <cstdint>
#include <string_view>

namespace serialserver {

/// The byte order that a connection's handshake chose for multi-byte numbers inside message
/// content (docs/protocol.md section 2). Big-endian where there was no handshake.
/// Thread-safety: a plain value.
enum class ByteOrder : std::uint8_t {
  big_endian,
  little_endian,
};

/// "big-endian" or "little-endian".
constexpr std::string_view to_string(ByteOrder order) noexcept {
  return order == ByteOrder::big_endian ? "big-endian" : "little-endian";
}

}  // namespace serialserver
