#include <serialserver/binary_writer.hpp>

#include <limits>
#include <stdexcept>
#include <utility>

namespace serialserver {

void BinaryWriter::write_bytes(std::span<const std::uint8_t> bytes) {
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

void BinaryWriter::write_string(std::string_view text) {
  if (text.size() > std::numeric_limits<std::uint32_t>::max()) {
    throw std::length_error("serialserver::BinaryWriter::write_string: longer than 4 GiB - 1");
  }
  // Reserve first so that an allocation failure leaves no orphaned length prefix behind.
  buffer_.reserve(buffer_.size() + sizeof(std::uint32_t) + text.size());
  write_u32(static_cast<std::uint32_t>(text.size()));
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(text.data());
  buffer_.insert(buffer_.end(), bytes, bytes + text.size());
}

std::vector<std::uint8_t> BinaryWriter::take() noexcept {
  std::vector<std::uint8_t> taken = std::move(buffer_);
  // A moved-from vector is only "valid but unspecified": make the promised emptiness explicit.
  buffer_.clear();
  return taken;
}

}  // namespace serialserver
