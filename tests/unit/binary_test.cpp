// Tests of BinaryReader and BinaryWriter: typed content in both byte orders (docs/protocol.md
// section 2), and the error category of error.hpp.

#include <serialserver/binary_reader.hpp>
#include <serialserver/binary_writer.hpp>
#include <serialserver/error.hpp>

#include <sys/mman.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

namespace serialserver {
namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes bytes_of(const BinaryWriter& writer) {
  return Bytes(writer.data().begin(), writer.data().end());
}

class BothOrders : public ::testing::TestWithParam<ByteOrder> {};

INSTANTIATE_TEST_SUITE_P(Binary, BothOrders,
                         ::testing::Values(ByteOrder::big_endian, ByteOrder::little_endian),
                         [](const auto& param_info) {
                           return param_info.param == ByteOrder::big_endian ? std::string("Big")
                                                                            : std::string("Little");
                         });

// ---- Exact bytes
// ---------------------------------------------------------------------------------

TEST(BinaryWriter, U32ExactBytes) {
  BinaryWriter big;
  big.write_u32(0x01020304u);
  EXPECT_EQ(bytes_of(big), (Bytes{0x01, 0x02, 0x03, 0x04}));
  BinaryWriter little(ByteOrder::little_endian);
  little.write_u32(0x01020304u);
  EXPECT_EQ(bytes_of(little), (Bytes{0x04, 0x03, 0x02, 0x01}));
}

TEST(BinaryWriter, F64ExactBytes) {
  // 1.5 = 0x3FF8000000000000; -2.0 = 0xC000000000000000.
  BinaryWriter big;
  big.write_f64(1.5);
  big.write_f64(-2.0);
  EXPECT_EQ(bytes_of(big), (Bytes{0x3F, 0xF8, 0, 0, 0, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0}));
  BinaryWriter little(ByteOrder::little_endian);
  little.write_f64(1.5);
  EXPECT_EQ(bytes_of(little), (Bytes{0, 0, 0, 0, 0, 0, 0xF8, 0x3F}));
}

TEST(BinaryWriter, OtherWidthsExactBytes) {
  BinaryWriter big;
  big.write_u8(0xAB);
  big.write_u16(0x0102);
  big.write_u64(0x0102030405060708ull);
  big.write_i16(-2);
  big.write_i32(-1);
  big.write_i8(-128);
  big.write_f32(1.0f);  // 0x3F800000
  big.write_i64(-0x0102030405060708ll);
  EXPECT_EQ(bytes_of(big), (Bytes{0xAB, 0x01, 0x02, 1,    2,    3,    4,    5,    6,    7,
                                  8,    0xFF, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0x80, 0x3F, 0x80,
                                  0x00, 0x00, 0xFE, 0xFD, 0xFC, 0xFB, 0xFA, 0xF9, 0xF8, 0xF8}));
  BinaryWriter little(ByteOrder::little_endian);
  little.write_u16(0x0102);
  little.write_u64(0x0102030405060708ull);
  little.write_f32(1.0f);
  EXPECT_EQ(bytes_of(little), (Bytes{0x02, 0x01, 8, 7, 6, 5, 4, 3, 2, 1, 0x00, 0x00, 0x80, 0x3F}));
}

TEST(BinaryReader, U32AndF64FromExactBytes) {
  const Bytes big{0x01, 0x02, 0x03, 0x04, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0};
  BinaryReader br(big);
  EXPECT_EQ(br.byte_order(), ByteOrder::big_endian);
  EXPECT_EQ(br.read_u32(), 0x01020304u);
  EXPECT_EQ(br.read_f64(), 1.5);
  EXPECT_TRUE(br.at_end());
  const Bytes little{0x04, 0x03, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F};
  BinaryReader lr(little, ByteOrder::little_endian);
  EXPECT_EQ(lr.read_u32(), 0x01020304u);
  EXPECT_EQ(lr.read_f64(), 1.5);
  EXPECT_TRUE(lr.at_end());
}

TEST(BinaryWriter, StringExactBytes) {
  BinaryWriter big;
  big.write_string("hi");
  big.write_string("");
  EXPECT_EQ(bytes_of(big), (Bytes{0, 0, 0, 2, 0x68, 0x69, 0, 0, 0, 0}));
  BinaryWriter little(ByteOrder::little_endian);
  little.write_string("hi");
  EXPECT_EQ(bytes_of(little), (Bytes{2, 0, 0, 0, 0x68, 0x69}));
}

// ---- Round trips
// ---------------------------------------------------------------------------------

TEST_P(BothOrders, EveryTypeRoundTrips) {
  const ByteOrder order = GetParam();
  BinaryWriter w(order);
  EXPECT_EQ(w.byte_order(), order);
  w.write_u8(0);
  w.write_u8(255);
  w.write_u16(0xBEEF);
  w.write_u32(0xDEADBEEFu);
  w.write_u64(0xFEDCBA9876543210ull);
  w.write_i8(-1);
  w.write_i8(std::numeric_limits<std::int8_t>::min());
  w.write_i16(-12345);
  w.write_i16(std::numeric_limits<std::int16_t>::min());
  w.write_i32(-123456789);
  w.write_i32(std::numeric_limits<std::int32_t>::min());
  w.write_i64(-1234567890123456789ll);
  w.write_i64(std::numeric_limits<std::int64_t>::min());
  w.write_i64(std::numeric_limits<std::int64_t>::max());
  w.write_f32(-3.25f);
  w.write_f32(std::numeric_limits<float>::infinity());
  w.write_f32(-std::numeric_limits<float>::infinity());
  w.write_f32(std::numeric_limits<float>::quiet_NaN());
  w.write_f32(std::bit_cast<float>(0x7FA12345u));  // a NaN with a payload
  w.write_f32(std::numeric_limits<float>::denorm_min());
  w.write_f64(-0.0);
  w.write_f64(3.141592653589793);
  w.write_f64(std::numeric_limits<double>::infinity());
  w.write_f64(-std::numeric_limits<double>::infinity());
  w.write_f64(std::numeric_limits<double>::quiet_NaN());
  w.write_f64(std::bit_cast<double>(0xFFF0000000000123ull));  // a negative NaN with a payload
  w.write_f64(std::numeric_limits<double>::lowest());
  w.write_string("hello, world");
  w.write_string("");
  w.write_string(std::string("\0\xff\x01", 3));
  const Bytes raw{9, 8, 7};
  w.write_bytes(raw);
  EXPECT_EQ(w.size(), 1u + 1 + 2 + 4 + 8 + 1 + 1 + 2 + 2 + 4 + 4 + 8 * 3 + 4 * 6 + 8 * 7 +
                          (4 + 12) + 4 + (4 + 3) + 3);

  const Bytes content = w.take();
  EXPECT_EQ(w.size(), 0u);
  BinaryReader r(content, order);
  EXPECT_EQ(r.byte_order(), order);
  EXPECT_EQ(r.read_u8(), 0u);
  EXPECT_EQ(r.read_u8(), 255u);
  EXPECT_EQ(r.read_u16(), 0xBEEFu);
  EXPECT_EQ(r.read_u32(), 0xDEADBEEFu);
  EXPECT_EQ(r.read_u64(), 0xFEDCBA9876543210ull);
  EXPECT_EQ(r.read_i8(), -1);
  EXPECT_EQ(r.read_i8(), std::numeric_limits<std::int8_t>::min());
  EXPECT_EQ(r.read_i16(), -12345);
  EXPECT_EQ(r.read_i16(), std::numeric_limits<std::int16_t>::min());
  EXPECT_EQ(r.read_i32(), -123456789);
  EXPECT_EQ(r.read_i32(), std::numeric_limits<std::int32_t>::min());
  EXPECT_EQ(r.read_i64(), -1234567890123456789ll);
  EXPECT_EQ(r.read_i64(), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(r.read_i64(), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(r.read_f32(), -3.25f);
  EXPECT_EQ(r.read_f32(), std::numeric_limits<float>::infinity());
  EXPECT_EQ(r.read_f32(), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(r.read_f32()));
  EXPECT_EQ(std::bit_cast<std::uint32_t>(r.read_f32()), 0x7FA12345u);
  EXPECT_EQ(r.read_f32(), std::numeric_limits<float>::denorm_min());
  const double negative_zero = r.read_f64();
  EXPECT_EQ(negative_zero, 0.0);
  EXPECT_TRUE(std::signbit(negative_zero));
  EXPECT_EQ(r.read_f64(), 3.141592653589793);
  EXPECT_EQ(r.read_f64(), std::numeric_limits<double>::infinity());
  EXPECT_EQ(r.read_f64(), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(r.read_f64()));
  EXPECT_EQ(std::bit_cast<std::uint64_t>(r.read_f64()), 0xFFF0000000000123ull);
  EXPECT_EQ(r.read_f64(), std::numeric_limits<double>::lowest());
  EXPECT_EQ(r.read_string(), "hello, world");
  EXPECT_EQ(r.read_string(), "");
  EXPECT_EQ(r.read_string(), std::string("\0\xff\x01", 3));
  const auto tail = r.read_bytes(3);
  EXPECT_EQ(Bytes(tail.begin(), tail.end()), raw);
  EXPECT_TRUE(r.at_end());
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_EQ(r.position(), content.size());
}

TEST_P(BothOrders, OrdersDisagree) {
  // Written in one order and read in the other, a multi-byte value comes back byte-swapped.
  const ByteOrder order = GetParam();
  const ByteOrder other =
      order == ByteOrder::big_endian ? ByteOrder::little_endian : ByteOrder::big_endian;
  BinaryWriter w(order);
  w.write_u16(0x0102);
  w.write_u32(0x01020304u);
  w.write_u64(0x0102030405060708ull);
  BinaryReader r(w.data(), other);
  EXPECT_EQ(r.read_u16(), 0x0201u);
  EXPECT_EQ(r.read_u32(), 0x04030201u);
  EXPECT_EQ(r.read_u64(), 0x0807060504030201ull);
}

TEST_P(BothOrders, LongString) {
  const std::string text(100000, 'x');
  BinaryWriter w(GetParam());
  w.write_string(text);
  EXPECT_EQ(w.size(), 100004u);
  BinaryReader r(w.data(), GetParam());
  EXPECT_EQ(r.read_string(), text);
  EXPECT_TRUE(r.at_end());
}

// ---- Truncation
// ----------------------------------------------------------------------------------

// Runs `read` on every truncation of `full` (which holds exactly one value) and checks that each
// throws EndOfMessage without consuming anything; then checks that the full input reads.
void expect_truncations_throw(const Bytes& full, ByteOrder order,
                              const std::function<void(BinaryReader&)>& read) {
  for (std::size_t cut = 0; cut < full.size(); ++cut) {
    const std::span<const std::uint8_t> truncated = std::span(full).first(cut);
    BinaryReader r(truncated, order);
    EXPECT_THROW(read(r), EndOfMessage) << "cut " << cut;
    EXPECT_EQ(r.position(), 0u) << "cut " << cut;
    EXPECT_EQ(r.remaining(), cut) << "cut " << cut;
  }
  BinaryReader r(full, order);
  EXPECT_NO_THROW(read(r));
  EXPECT_TRUE(r.at_end());
}

TEST_P(BothOrders, EveryTruncatedReadThrowsEndOfMessage) {
  const ByteOrder o = GetParam();
  const auto sized = [](std::size_t n) { return Bytes(n, 0x5A); };
  expect_truncations_throw(sized(1), o, [](BinaryReader& r) { r.read_u8(); });
  expect_truncations_throw(sized(2), o, [](BinaryReader& r) { r.read_u16(); });
  expect_truncations_throw(sized(4), o, [](BinaryReader& r) { r.read_u32(); });
  expect_truncations_throw(sized(8), o, [](BinaryReader& r) { r.read_u64(); });
  expect_truncations_throw(sized(1), o, [](BinaryReader& r) { r.read_i8(); });
  expect_truncations_throw(sized(2), o, [](BinaryReader& r) { r.read_i16(); });
  expect_truncations_throw(sized(4), o, [](BinaryReader& r) { r.read_i32(); });
  expect_truncations_throw(sized(8), o, [](BinaryReader& r) { r.read_i64(); });
  expect_truncations_throw(sized(4), o, [](BinaryReader& r) { r.read_f32(); });
  expect_truncations_throw(sized(8), o, [](BinaryReader& r) { r.read_f64(); });
  expect_truncations_throw(sized(5), o, [](BinaryReader& r) { r.read_bytes(5); });
  BinaryWriter w(o);
  w.write_string("abcde");
  expect_truncations_throw(bytes_of(w), o, [](BinaryReader& r) { r.read_string(); });
}

TEST(BinaryReader, ThrowsAfterPartialReadsAndKeepsPosition) {
  const Bytes data{1, 2, 3, 4, 5};
  BinaryReader r(data);
  EXPECT_EQ(r.read_u16(), 0x0102u);
  EXPECT_THROW(r.read_u32(), EndOfMessage);
  EXPECT_EQ(r.position(), 2u);
  EXPECT_EQ(r.remaining(), 3u);
  EXPECT_FALSE(r.at_end());
  EXPECT_THROW(r.read_bytes(4), EndOfMessage);
  EXPECT_EQ(r.read_bytes(0).size(), 0u);
  EXPECT_EQ(r.read_u8(), 3u);
  EXPECT_EQ(r.read_u16(), 0x0405u);
  EXPECT_TRUE(r.at_end());
  EXPECT_THROW(r.read_u8(), EndOfMessage);
}

TEST(BinaryReader, EndOfMessageCarriesItsCode) {
  BinaryReader r({});
  EXPECT_TRUE(r.at_end());
  try {
    r.read_u8();
    FAIL() << "expected EndOfMessage";
  } catch (const EndOfMessage& e) {
    EXPECT_EQ(e.code(), Errc::end_of_message);
    EXPECT_EQ(e.code().category().name(), std::string("serialserver"));
  }
}

TEST(BinaryReader, StringWithHugeLengthPrefixThrows) {
  const Bytes data{0xFF, 0xFF, 0xFF, 0xFF, 'a', 'b'};
  BinaryReader r(data);
  EXPECT_THROW(r.read_string(), EndOfMessage);
  EXPECT_EQ(r.position(), 0u);
}

TEST(BinaryReader, ReadBytesIsAView) {
  const Bytes data{1, 2, 3};
  BinaryReader r(data);
  const auto view = r.read_bytes(2);
  EXPECT_EQ(view.data(), data.data());
  EXPECT_EQ(view.size(), 2u);
  EXPECT_EQ(r.position(), 2u);
}

// ---- Writer bookkeeping
// --------------------------------------------------------------------------

TEST(BinaryWriter, TakeAndClear) {
  BinaryWriter w(ByteOrder::little_endian);
  w.write_u16(0x0102);
  EXPECT_EQ(w.size(), 2u);
  const Bytes taken = w.take();
  EXPECT_EQ(taken, (Bytes{0x02, 0x01}));
  EXPECT_EQ(w.size(), 0u);
  EXPECT_TRUE(w.data().empty());
  EXPECT_EQ(w.byte_order(), ByteOrder::little_endian);
  w.write_u8(7);
  EXPECT_EQ(bytes_of(w), Bytes{7});
  w.clear();
  EXPECT_EQ(w.size(), 0u);
  w.write_bytes({});
  EXPECT_EQ(w.size(), 0u);
}

TEST(BinaryWriter, StringTooLongThrowsLengthError) {
  if constexpr (sizeof(std::size_t) <= 4) {
    GTEST_SKIP() << "a 4 GiB string cannot exist here";
  } else {
    // 4 GiB of reserved, never-touched address space: a valid view without 4 GiB of memory. The
    // length check comes before any byte is read, so no page is ever faulted in.
    constexpr std::size_t kSize = std::size_t{1} << 32;
    void* const region =
        ::mmap(nullptr, kSize, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (region == MAP_FAILED) {
      GTEST_SKIP() << "cannot reserve 4 GiB of address space";
    }
    const std::string_view huge(static_cast<const char*>(region), kSize);
    BinaryWriter w;
    w.write_u8(1);
    EXPECT_THROW(w.write_string(huge), std::length_error);
    EXPECT_EQ(w.size(), 1u);
    ::munmap(region, kSize);
  }
}

// ---- Error category
// ------------------------------------------------------------------------------

TEST(ErrorCategory, NameAndMessages) {
  EXPECT_STREQ(error_category().name(), "serialserver");
  EXPECT_EQ(&error_category(), &make_error_code(Errc::peer_closed).category());
  EXPECT_EQ(std::error_code(Errc::graceful_disconnect).message(), "client requested to disconnect");
  EXPECT_EQ(std::error_code(Errc::timeout_waiting_for_task).message(),
            "timeout whilst waiting for task");
  EXPECT_EQ(std::error_code(Errc::peer_closed).message(), "peer closed the connection");
  for (int e = static_cast<int>(Errc::graceful_disconnect);
       e <= static_cast<int>(Errc::request_timeout); ++e) {
    const std::string message = error_category().message(e);
    EXPECT_FALSE(message.empty());
    EXPECT_EQ(message.find("unknown"), std::string::npos) << e;
  }
  EXPECT_NE(error_category().message(999).find("999"), std::string::npos);
  EXPECT_NE(std::error_code(Errc::read_timeout), std::error_code(Errc::write_timeout));
  EXPECT_TRUE(std::error_code(Errc::cancelled));
}

}  // namespace
}  // namespace serialserver
