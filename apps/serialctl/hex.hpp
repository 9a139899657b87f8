#pragma once

// serialctl's hex: request content given as hex digits, and a terminal's view of a response.

#include <array>
#include <cstdint>
#include <cstdio>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace serialctl {

/// A usage mistake found after parsing (bad hex, bad duration, reserved task code).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The bytes of `text`: pairs of hex digits, with an optional 0x and separators (space, ':',
/// '-', tab, newline) between whole bytes. Throws UsageError naming --data.
std::vector<std::uint8_t> parse_hex(const std::string& text);

/// A hex dump in the style of `xxd`: offset, 16 bytes in hex, the printable characters.
class HexDumper {
 public:
  explicit HexDumper(std::FILE* out) : out_(out) {}
  void add(std::span<const std::uint8_t> data);
  void finish();

 private:
  void emit();

  std::FILE* out_;
  std::array<std::uint8_t, 16> line_{};
  std::size_t fill_ = 0;
  std::uint64_t offset_ = 0;
};

}  // namespace serialctl
