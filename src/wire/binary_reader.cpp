#include <serialserver/binary_reader.hpp>

namespace serialserver {

std::string BinaryReader::read_string() {
  const std::size_t start = position_;
  const std::uint32_t length = read_u32();
  if (length > remaining()) {
    // Nothing consumed on failure, the prefix included, so the caller sees an unchanged reader.
    position_ = start;
    throw EndOfMessage();
  }
  const auto bytes = read_bytes(length);
  return {bytes.begin(), bytes.end()};
}

}  // namespace serialserver
