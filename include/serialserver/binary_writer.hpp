#pragma once

// Builds message content with typed values. Multi-byte numbers use the byte order that the
// connection's handshake chose (docs/protocol.md section 2); BinaryReader reads them back.

// binary_reader.hpp holds the byte-order conversion (detail::to_from_order) that both share.
#include <serialserver/binary_reader.hpp>
#include <serialserver/byte_order.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

namespace serialserver {

/// Builds message content in a byte order, in a growing buffer that it owns.
/// Thread-safety: none; one writer belongs to one task at a time. Lifetime: spans from data() are
/// invalidated by the next write, take() or clear().
class BinaryWriter {
 public:
  /// An empty writer. Thread-safety: not thread-safe.
  explicit BinaryWriter(ByteOrder order = ByteOrder::big_endian) : order_(order) {}

  /// Fixed-width writes in the writer's byte order. They throw std::bad_alloc only.
  /// Thread-safety: not thread-safe.
  void write_u8(std::uint8_t value) { write_unsigned(value); }
  /// See write_u8().
  void write_u16(std::uint16_t value) { write_unsigned(value); }
  /// See write_u8().
  void write_u32(std::uint32_t value) { write_unsigned(value); }
  /// See write_u8().
  void write_u64(std::uint64_t value) { write_unsigned(value); }
  /// Two's complement. See write_u8().
  void write_i8(std::int8_t value) { write_unsigned(static_cast<std::uint8_t>(value)); }
  /// See write_i8().
  void write_i16(std::int16_t value) { write_unsigned(static_cast<std::uint16_t>(value)); }
  /// See write_i8().
  void write_i32(std::int32_t value) { write_unsigned(static_cast<std::uint32_t>(value)); }
  /// See write_i8().
  void write_i64(std::int64_t value) { write_unsigned(static_cast<std::uint64_t>(value)); }
  /// The IEEE 754 bits in the writer's byte order; NaN payloads survive. See write_u8().
  void write_f32(float value) { write_unsigned(std::bit_cast<std::uint32_t>(value)); }
  /// See write_f32().
  void write_f64(double value) { write_unsigned(std::bit_cast<std::uint64_t>(value)); }

  /// Appends raw bytes, without a length prefix. Thread-safety: not thread-safe. Lifetime: copies.
  void write_bytes(std::span<const std::uint8_t> bytes);

  /// A uint32 length prefix (in the byte order), then the bytes. Throws std::length_error, writing
  /// nothing, when `text` is longer than 4 GiB - 1. Thread-safety: not thread-safe.
  void write_string(std::string_view text);

  /// The content written so far. Thread-safety: not thread-safe. Lifetime: see the class.
  std::span<const std::uint8_t> data() const noexcept { return buffer_; }
  /// Bytes written so far. Thread-safety: not thread-safe.
  std::size_t size() const noexcept { return buffer_.size(); }
  /// Moves the buffer out (no copy); the writer is then empty and keeps its byte order.
  /// Thread-safety: not thread-safe.
  std::vector<std::uint8_t> take() noexcept;
  /// Empties the writer, keeping its capacity for reuse. Thread-safety: not thread-safe.
  void clear() noexcept { buffer_.clear(); }
  /// The byte order of multi-byte writes. Thread-safety: not thread-safe.
  ByteOrder byte_order() const noexcept { return order_; }

 private:
  // Inline so that a sequence of writes compiles to a capacity check and a store each.
  template <typename T>
  void write_unsigned(T value) {
    const T ordered = detail::to_from_order(value, order_);
    const std::size_t old_size = buffer_.size();
    buffer_.resize(old_size + sizeof(T));
    std::memcpy(buffer_.data() + old_size, &ordered, sizeof(T));
  }

  std::vector<std::uint8_t> buffer_;
  ByteOrder order_;
};

}  // namespace serialserver
