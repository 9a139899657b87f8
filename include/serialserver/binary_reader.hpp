#pragma once

// Typed reads from a message's content. Multi-byte numbers use the byte order that the
// connection's handshake chose (docs/protocol.md section 2).

#include <serialserver/byte_order.hpp>
#include <serialserver/error.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <type_traits>

namespace serialserver {

namespace detail {

static_assert(std::endian::native == std::endian::little || std::endian::native == std::endian::big,
              "mixed-endian platforms are not supported");
static_assert(std::numeric_limits<float>::is_iec559 && std::numeric_limits<double>::is_iec559,
              "the wire carries IEEE 754 floats");

/// Reverses the bytes of an unsigned integer. Thread-safety: a pure function.
template <typename T>
constexpr T byte_swap(T value) noexcept {
  static_assert(std::is_unsigned_v<T>);
  if constexpr (sizeof(T) == 1) {
    return value;
  } else if constexpr (sizeof(T) == 2) {
    return __builtin_bswap16(value);
  } else if constexpr (sizeof(T) == 4) {
    return __builtin_bswap32(value);
  } else {
    static_assert(sizeof(T) == 8);
    return __builtin_bswap64(value);
  }
}

/// Converts between the native byte order and `order` (the same operation both ways).
/// Thread-safety: a pure function.
template <typename T>
constexpr T to_from_order(T value, ByteOrder order) noexcept {
  const bool native_big = std::endian::native == std::endian::big;
  return (order == ByteOrder::big_endian) == native_big ? value : byte_swap(value);
}

}  // namespace detail

/// Reads typed values from a message's content in the connection's byte order. Every read past
/// the end throws EndOfMessage and consumes nothing, so a caller may catch it and try something
/// else at the same position.
/// Thread-safety: none; one reader belongs to one task at a time. Lifetime: views `data`, which
/// must outlive the reader and every span that read_bytes() returned.
class BinaryReader {
 public:
  /// A reader at the start of `data`. Thread-safety: not thread-safe. Lifetime: see the class.
  explicit BinaryReader(std::span<const std::uint8_t> data,
                        ByteOrder order = ByteOrder::big_endian) noexcept
      : data_(data), order_(order) {}

  /// Fixed-width reads in the reader's byte order; they throw EndOfMessage when too few bytes
  /// remain. Thread-safety: not thread-safe.
  std::uint8_t read_u8() { return read_unsigned<std::uint8_t>(); }
  /// See read_u8().
  std::uint16_t read_u16() { return read_unsigned<std::uint16_t>(); }
  /// See read_u8().
  std::uint32_t read_u32() { return read_unsigned<std::uint32_t>(); }
  /// See read_u8().
  std::uint64_t read_u64() { return read_unsigned<std::uint64_t>(); }
  /// Two's complement, as every C++20 implementation stores it. See read_u8().
  std::int8_t read_i8() { return static_cast<std::int8_t>(read_u8()); }
  /// See read_i8().
  std::int16_t read_i16() { return static_cast<std::int16_t>(read_u16()); }
  /// See read_i8().
  std::int32_t read_i32() { return static_cast<std::int32_t>(read_u32()); }
  /// See read_i8().
  std::int64_t read_i64() { return static_cast<std::int64_t>(read_u64()); }
  /// The IEEE 754 bits in the reader's byte order; NaN payloads survive. See read_u8().
  float read_f32() { return std::bit_cast<float>(read_u32()); }
  /// See read_f32().
  double read_f64() { return std::bit_cast<double>(read_u64()); }

  /// The next `n` bytes, without a copy. Throws EndOfMessage when fewer remain.
  /// Thread-safety: not thread-safe. Lifetime: the span views the reader's data.
  std::span<const std::uint8_t> read_bytes(std::size_t n) {
    if (n > remaining()) {
      throw EndOfMessage();
    }
    const auto bytes = data_.subspan(position_, n);
    position_ += n;
    return bytes;
  }

  /// A uint32 length prefix (in the byte order), then that many bytes. Throws EndOfMessage,
  /// consuming nothing (not even the prefix), when the string is cut off.
  /// Thread-safety: not thread-safe.
  std::string read_string();

  /// Bytes not yet read. Thread-safety: not thread-safe.
  std::size_t remaining() const noexcept { return data_.size() - position_; }
  /// Bytes already read. Thread-safety: not thread-safe.
  std::size_t position() const noexcept { return position_; }
  /// True when every byte has been read. Thread-safety: not thread-safe.
  bool at_end() const noexcept { return position_ == data_.size(); }
  /// The byte order of multi-byte reads. Thread-safety: not thread-safe.
  ByteOrder byte_order() const noexcept { return order_; }

 private:
  // Inline so that a sequence of reads compiles to bounds checks and loads.
  template <typename T>
  T read_unsigned() {
    if (sizeof(T) > remaining()) {
      throw EndOfMessage();
    }
    T value;
    std::memcpy(&value, data_.data() + position_, sizeof(T));
    position_ += sizeof(T);
    return detail::to_from_order(value, order_);
  }

  std::span<const std::uint8_t> data_;
  std::size_t position_ = 0;
  ByteOrder order_;
};

}  // namespace serialserver
