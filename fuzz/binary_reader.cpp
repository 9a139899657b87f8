// Fuzz target: BinaryReader (typed reads from message content, in either byte order).
//
// The input holds the content to read and, after it, a script of reads. Every read is checked
// against a reference that assembles numbers byte by byte in the chosen order: the value, the
// position afterwards, and that a read past the end throws EndOfMessage and consumes nothing
// (read_string included, whose length prefix stays unread). Values that were read are written
// back with BinaryWriter in the same order and must reproduce the bytes they came from.

#include <serialserver/binary_reader.hpp>
#include <serialserver/binary_writer.hpp>
#include <serialserver/error.hpp>
#include "fuzz_check.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<std::uint8_t>;
using serialserver::BinaryReader;
using serialserver::BinaryWriter;
using serialserver::ByteOrder;
using serialserver::EndOfMessage;

/// The `size` bytes at `pos` as an unsigned number in `order`, assembled byte by byte.
std::uint64_t reference_number(std::span<const std::uint8_t> data, std::size_t pos,
                               std::size_t size, ByteOrder order) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < size; ++i) {
    const std::size_t index = order == ByteOrder::big_endian ? pos + i : pos + size - 1 - i;
    value = (value << 8) | data[index];
  }
  return value;
}

enum class Op : std::uint8_t { u8, u16, u32, u64, i8, i16, i32, i64, f32, f64, bytes, string };

std::size_t width(Op op) {
  switch (op) {
    case Op::u8:
    case Op::i8:
      return 1;
    case Op::u16:
    case Op::i16:
      return 2;
    case Op::u32:
    case Op::i32:
    case Op::f32:
      return 4;
    default:
      return 8;
  }
}

/// Performs a fixed-width read and returns its bits, writing the value back with `writer`.
std::uint64_t read_fixed(BinaryReader& reader, BinaryWriter& writer, Op op) {
  switch (op) {
    case Op::u8: {
      const auto v = reader.read_u8();
      writer.write_u8(v);
      return v;
    }
    case Op::u16: {
      const auto v = reader.read_u16();
      writer.write_u16(v);
      return v;
    }
    case Op::u32: {
      const auto v = reader.read_u32();
      writer.write_u32(v);
      return v;
    }
    case Op::u64: {
      const auto v = reader.read_u64();
      writer.write_u64(v);
      return v;
    }
    case Op::i8: {
      const auto v = reader.read_i8();
      writer.write_i8(v);
      return static_cast<std::uint8_t>(v);
    }
    case Op::i16: {
      const auto v = reader.read_i16();
      writer.write_i16(v);
      return static_cast<std::uint16_t>(v);
    }
    case Op::i32: {
      const auto v = reader.read_i32();
      writer.write_i32(v);
      return static_cast<std::uint32_t>(v);
    }
    case Op::i64: {
      const auto v = reader.read_i64();
      writer.write_i64(v);
      return static_cast<std::uint64_t>(v);
    }
    case Op::f32: {
      const auto v = reader.read_f32();  // NaN payloads must survive: compare the bits
      writer.write_f32(v);
      return std::bit_cast<std::uint32_t>(v);
    }
    default: {
      const auto v = reader.read_f64();
      writer.write_f64(v);
      return std::bit_cast<std::uint64_t>(v);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider provider(data, size);
  const ByteOrder order = provider.ConsumeBool() ? ByteOrder::little_endian : ByteOrder::big_endian;
  const Bytes content = provider.ConsumeBytes<std::uint8_t>(
      provider.ConsumeIntegralInRange<std::size_t>(0, provider.remaining_bytes()));

  BinaryReader reader(content, order);
  BinaryWriter writer(order);
  FUZZ_CHECK(reader.byte_order() == order);
  std::size_t pos = 0;
  for (int step = 0; step < 256 && provider.remaining_bytes() > 0; ++step) {
    FUZZ_CHECK(reader.position() == pos);
    FUZZ_CHECK(reader.remaining() == content.size() - pos);
    FUZZ_CHECK(reader.at_end() == (pos == content.size()));
    // Everything read so far, written back, is the content read so far.
    FUZZ_CHECK(writer.size() == pos);
    FUZZ_CHECK(std::equal(writer.data().begin(), writer.data().end(), content.begin()));

    const auto op =
        static_cast<Op>(provider.ConsumeIntegralInRange<int>(0, static_cast<int>(Op::string)));
    const std::size_t left = content.size() - pos;
    if (op == Op::bytes) {
      // Lengths around what is left, and now and then absurd ones.
      std::size_t n = provider.ConsumeIntegralInRange<std::size_t>(0, left + 2);
      if (provider.ConsumeIntegralInRange<int>(0, 15) == 0) {
        n = std::numeric_limits<std::size_t>::max() - provider.ConsumeIntegral<std::uint8_t>();
      }
      if (n > left) {
        bool threw = false;
        try {
          (void)reader.read_bytes(n);
        } catch (const EndOfMessage&) {
          threw = true;
        }
        FUZZ_CHECK(threw);
        continue;
      }
      const auto bytes = reader.read_bytes(n);
      FUZZ_CHECK(bytes.size() == n);
      FUZZ_CHECK(n == 0 || bytes.data() == content.data() + pos);  // a view, not a copy
      writer.write_bytes(bytes);
      pos += n;
      continue;
    }
    if (op == Op::string) {
      bool fits = left >= 4;
      std::uint64_t length = 0;
      if (fits) {
        length = reference_number(content, pos, 4, order);
        fits = length <= left - 4;
      }
      if (!fits) {
        bool threw = false;
        try {
          (void)reader.read_string();
        } catch (const EndOfMessage&) {
          threw = true;
        }
        FUZZ_CHECK(threw);
        continue;
      }
      const std::string text = reader.read_string();
      FUZZ_CHECK(text.size() == length);
      FUZZ_CHECK(std::equal(
          text.begin(), text.end(), content.begin() + static_cast<std::ptrdiff_t>(pos + 4),
          [](char c, std::uint8_t b) { return static_cast<std::uint8_t>(c) == b; }));
      writer.write_string(text);
      pos += 4 + length;
      continue;
    }
    const std::size_t n = width(op);
    if (n > left) {
      bool threw = false;
      try {
        (void)read_fixed(reader, writer, op);
      } catch (const EndOfMessage& e) {
        threw = true;
        FUZZ_CHECK(e.code() == serialserver::Errc::end_of_message);
      }
      FUZZ_CHECK(threw);
      continue;
    }
    const std::uint64_t bits = read_fixed(reader, writer, op);
    FUZZ_CHECK(bits == reference_number(content, pos, n, order));
    pos += n;
  }
  return 0;
}
