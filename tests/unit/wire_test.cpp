// Tests of the block framing (docs/protocol.md sections 2, 3 and 8): BlockDecoder,
// find_message_end, encode_message and BlockEncoder.

#include <serialserver/wire/block_decoder.hpp>
#include <serialserver/wire/block_encoder.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include <gtest/gtest.h>

namespace serialserver::wire {
namespace {

using Bytes = std::vector<std::uint8_t>;

// 0, 1, 2, ... wrapping at 256: content whose bytes tell where they came from.
Bytes counting_bytes(std::size_t n, std::uint8_t first = 0) {
  Bytes bytes(n);
  for (std::size_t i = 0; i < n; ++i) {
    bytes[i] = static_cast<std::uint8_t>(first + i);
  }
  return bytes;
}

Bytes random_bytes(std::mt19937_64& rng, std::size_t n) {
  Bytes bytes(n);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : bytes) {
    b = static_cast<std::uint8_t>(byte(rng));
  }
  return bytes;
}

Bytes encode(const Bytes& content) {
  Bytes out(encoded_size(content.size()));
  const std::size_t written = encode_message(content, out);
  EXPECT_EQ(written, out.size());
  return out;
}

// Encodes `content` with blocks of the given sizes (a sender may split any way it likes).
Bytes encode_with_blocks(const Bytes& content, const std::vector<std::size_t>& sizes) {
  Bytes out;
  std::size_t pos = 0;
  for (std::size_t size : sizes) {
    out.push_back(static_cast<std::uint8_t>(size));
    out.insert(out.end(), content.begin() + static_cast<std::ptrdiff_t>(pos),
               content.begin() + static_cast<std::ptrdiff_t>(pos + size));
    pos += size;
  }
  EXPECT_EQ(pos, content.size());
  out.push_back(0);
  return out;
}

struct Decoded {
  Bytes content;
  std::size_t consumed = 0;
  bool end = false;
};

// Decodes with next(), feeding the input in pieces of at most `piece` bytes.
Decoded decode_with_next(std::span<const std::uint8_t> input, std::size_t piece) {
  BlockDecoder decoder;
  Decoded result;
  while (result.consumed < input.size() && !decoder.finished()) {
    const std::size_t avail = std::min(piece, input.size() - result.consumed);
    auto window = input.subspan(result.consumed, avail);
    while (!window.empty()) {
      const auto chunk = decoder.next(window);
      if (chunk.consumed == 0) {
        break;
      }
      EXPECT_LE(chunk.content.size(), kMaxBlockSize);
      result.content.insert(result.content.end(), chunk.content.begin(), chunk.content.end());
      result.consumed += chunk.consumed;
      window = window.subspan(chunk.consumed);
      if (chunk.end) {
        result.end = true;
        EXPECT_TRUE(decoder.finished());
        break;
      }
    }
  }
  EXPECT_EQ(decoder.content_bytes(), result.content.size());
  return result;
}

// Decodes with decode(), feeding input pieces of at most `piece` bytes into an output window of
// at most `out_piece` bytes.
Decoded decode_with_copy(std::span<const std::uint8_t> input, std::size_t piece,
                         std::size_t out_piece) {
  BlockDecoder decoder;
  Decoded result;
  Bytes out(out_piece);
  std::size_t idle = 0;
  while (!decoder.finished() && result.consumed < input.size()) {
    const std::size_t avail = std::min(piece, input.size() - result.consumed);
    const auto r = decoder.decode(input.subspan(result.consumed, avail), out);
    result.content.insert(result.content.end(), out.begin(),
                          out.begin() + static_cast<std::ptrdiff_t>(r.produced));
    result.consumed += r.consumed;
    if (r.end) {
      result.end = true;
      EXPECT_TRUE(decoder.finished());
    }
    idle = (r.consumed == 0) ? idle + 1 : 0;
    if (idle > 2) {
      ADD_FAILURE() << "decode() made no progress";
      break;
    }
  }
  EXPECT_EQ(decoder.content_bytes(), result.content.size());
  return result;
}

// ---- Worked bytes of docs/protocol.md
// -----------------------------------------------------------------

TEST(EncodedSize, CountsBlocksAndEndByte) {
  EXPECT_EQ(encoded_size(0), 1u);
  EXPECT_EQ(encoded_size(1), 3u);
  EXPECT_EQ(encoded_size(254), 256u);
  EXPECT_EQ(encoded_size(255), 257u);
  EXPECT_EQ(encoded_size(256), 259u);
  EXPECT_EQ(encoded_size(300), 303u);
  EXPECT_EQ(encoded_size(510), 513u);
  static_assert(encoded_size(0) == 1);
}

TEST(EncodeMessage, EmptyMessageIsSingleZero) { EXPECT_EQ(encode({}), Bytes{0x00}); }

TEST(EncodeMessage, FourBytesAsInWorkedTask) {
  // Section 8: task 7 with content 01 02 03 04 is 07 04 01 02 03 04 00 (the code is not ours).
  EXPECT_EQ(encode({0x01, 0x02, 0x03, 0x04}), (Bytes{0x04, 0x01, 0x02, 0x03, 0x04, 0x00}));
  // OK with "hi": 00 02 68 69 00.
  EXPECT_EQ(encode({0x68, 0x69}), (Bytes{0x02, 0x68, 0x69, 0x00}));
}

TEST(EncodeMessage, ThreeHundredBytes) {
  const Bytes content = counting_bytes(300);
  const Bytes wire = encode(content);
  ASSERT_EQ(wire.size(), 303u);
  EXPECT_EQ(wire[0], 0xFF);
  EXPECT_EQ(Bytes(wire.begin() + 1, wire.begin() + 256),
            Bytes(content.begin(), content.begin() + 255));
  EXPECT_EQ(wire[256], 0x2D);
  EXPECT_EQ(Bytes(wire.begin() + 257, wire.begin() + 302),
            Bytes(content.begin() + 255, content.end()));
  EXPECT_EQ(wire[302], 0x00);
}

TEST(EncodeMessage, ExactMultiplesOfBlockSizeHaveNoEmptyBlock) {
  const Bytes wire = encode(counting_bytes(510));
  ASSERT_EQ(wire.size(), 513u);
  EXPECT_EQ(wire[0], 0xFF);
  EXPECT_EQ(wire[256], 0xFF);
  EXPECT_EQ(wire[512], 0x00);
}

TEST(BlockDecoder, WorkedSplitDecodes) {
  const Bytes wire{0x03, 0x01, 0x02, 0x03, 0x01, 0x04, 0x00};
  for (std::size_t piece : {1u, 2u, 3u, 7u}) {
    const Decoded d = decode_with_next(wire, piece);
    EXPECT_EQ(d.content, (Bytes{0x01, 0x02, 0x03, 0x04})) << "piece " << piece;
    EXPECT_TRUE(d.end);
    EXPECT_EQ(d.consumed, wire.size());
    const Decoded c = decode_with_copy(wire, piece, 4);
    EXPECT_EQ(c.content, (Bytes{0x01, 0x02, 0x03, 0x04})) << "piece " << piece;
    EXPECT_TRUE(c.end);
    EXPECT_EQ(c.consumed, wire.size());
  }
}

TEST(BlockDecoder, WorkedSplitStepByStep) {
  const Bytes wire{0x03, 0x01, 0x02, 0x03, 0x01, 0x04, 0x00, 0x07};
  BlockDecoder decoder;
  auto chunk = decoder.next(wire);
  EXPECT_EQ(chunk.consumed, 4u);
  EXPECT_EQ(Bytes(chunk.content.begin(), chunk.content.end()), (Bytes{0x01, 0x02, 0x03}));
  EXPECT_FALSE(chunk.end);
  // The last block's content and the end byte come together; the pipelined 0x07 stays.
  chunk = decoder.next(std::span(wire).subspan(4));
  EXPECT_EQ(chunk.consumed, 3u);
  EXPECT_EQ(Bytes(chunk.content.begin(), chunk.content.end()), Bytes{0x04});
  EXPECT_TRUE(chunk.end);
  EXPECT_TRUE(decoder.finished());
  EXPECT_EQ(decoder.content_bytes(), 4u);
  chunk = decoder.next(std::span(wire).subspan(7));
  EXPECT_EQ(chunk.consumed, 0u);
  EXPECT_FALSE(chunk.end);
}

TEST(BlockDecoder, EmptyMessage) {
  const Bytes wire{0x00, 0x09};
  BlockDecoder decoder;
  const auto chunk = decoder.next(wire);
  EXPECT_EQ(chunk.consumed, 1u);
  EXPECT_TRUE(chunk.content.empty());
  EXPECT_TRUE(chunk.end);
  EXPECT_TRUE(decoder.finished());
  EXPECT_EQ(decoder.content_bytes(), 0u);

  BlockDecoder copier;
  std::uint8_t out[4];
  const auto r = copier.decode(wire, out);
  EXPECT_EQ(r.consumed, 1u);
  EXPECT_EQ(r.produced, 0u);
  EXPECT_TRUE(r.end);
  // Even with no room at all for content, the end byte is taken.
  BlockDecoder no_room;
  const auto z = no_room.decode(wire, std::span<std::uint8_t>());
  EXPECT_EQ(z.consumed, 1u);
  EXPECT_TRUE(z.end);
}

TEST(BlockDecoder, ThreeHundredBytesFromWire) {
  Bytes wire{0xFF};
  const Bytes content = counting_bytes(300, 7);
  wire.insert(wire.end(), content.begin(), content.begin() + 255);
  wire.push_back(0x2D);
  wire.insert(wire.end(), content.begin() + 255, content.end());
  wire.push_back(0x00);
  EXPECT_EQ(wire, encode(content));
  const Decoded d = decode_with_next(wire, wire.size());
  EXPECT_EQ(d.content, content);
  EXPECT_TRUE(d.end);
  EXPECT_EQ(d.consumed, 303u);
}

TEST(BlockDecoder, EmptyInputConsumesNothing) {
  BlockDecoder decoder;
  const auto chunk = decoder.next({});
  EXPECT_EQ(chunk.consumed, 0u);
  EXPECT_FALSE(chunk.end);
  EXPECT_FALSE(decoder.finished());
  std::uint8_t out[1];
  const auto r = decoder.decode({}, out);
  EXPECT_EQ(r.consumed, 0u);
  EXPECT_FALSE(r.end);
}

TEST(BlockDecoder, NextNeverReturnsMoreThanTheRestOfABlock) {
  const Bytes content = counting_bytes(600);
  const Bytes wire = encode(content);
  BlockDecoder decoder;
  std::span<const std::uint8_t> input = wire;
  std::vector<std::size_t> sizes;
  while (!decoder.finished()) {
    const auto chunk = decoder.next(input);
    ASSERT_GT(chunk.consumed, 0u);
    sizes.push_back(chunk.content.size());
    input = input.subspan(chunk.consumed);
  }
  EXPECT_EQ(sizes, (std::vector<std::size_t>{255, 255, 90}));
  EXPECT_TRUE(input.empty());
}

TEST(BlockDecoder, ResetStartsTheNextMessage) {
  const Bytes wire{0x01, 0xAA, 0x00, 0x02, 0xBB, 0xCC, 0x00};
  BlockDecoder decoder;
  auto chunk = decoder.next(wire);
  EXPECT_TRUE(chunk.end);
  EXPECT_EQ(chunk.consumed, 3u);
  EXPECT_EQ(decoder.next(std::span(wire).subspan(3)).consumed, 0u);
  decoder.reset();
  EXPECT_FALSE(decoder.finished());
  EXPECT_EQ(decoder.content_bytes(), 0u);
  chunk = decoder.next(std::span(wire).subspan(3));
  EXPECT_EQ(Bytes(chunk.content.begin(), chunk.content.end()), (Bytes{0xBB, 0xCC}));
  EXPECT_TRUE(chunk.end);
  EXPECT_EQ(decoder.content_bytes(), 2u);
}

// ---- Every split --------------------------------------------------------------------------------

TEST(BlockDecoder, EverySingleBlockSizeDecodes) {
  for (std::size_t n = 1; n <= 255; ++n) {
    const Bytes content = counting_bytes(n, static_cast<std::uint8_t>(n));
    const Bytes wire = encode_with_blocks(content, {n});
    ASSERT_EQ(wire.front(), n);
    for (std::size_t piece : {std::size_t{1}, std::size_t{2}, wire.size()}) {
      const Decoded d = decode_with_next(wire, piece);
      ASSERT_EQ(d.content, content) << "n " << n << " piece " << piece;
      ASSERT_TRUE(d.end);
      ASSERT_EQ(d.consumed, wire.size());
      const Decoded c = decode_with_copy(wire, piece, n);
      ASSERT_EQ(c.content, content) << "n " << n << " piece " << piece;
      ASSERT_TRUE(c.end);
      ASSERT_EQ(c.consumed, wire.size());
    }
    // Also a split of the same content into two blocks at every point.
    for (std::size_t first = 1; first < n; ++first) {
      const Bytes two = encode_with_blocks(content, {first, n - first});
      ASSERT_EQ(decode_with_next(two, two.size()).content, content);
      ASSERT_EQ(decode_with_copy(two, two.size(), 300).content, content);
    }
  }
}

TEST(BlockDecoder, EveryBlockSizeAsUniformSplit) {
  // 1000 bytes cut into blocks of size k (and a shorter remainder), for every k in 1..255.
  const Bytes content = counting_bytes(1000, 3);
  for (std::size_t k = 1; k <= 255; ++k) {
    std::vector<std::size_t> sizes;
    for (std::size_t left = content.size(); left > 0; left -= std::min(left, k)) {
      sizes.push_back(std::min(left, k));
    }
    const Bytes wire = encode_with_blocks(content, sizes);
    ASSERT_EQ(wire.size(), content.size() + sizes.size() + 1);
    ASSERT_EQ(find_message_end(wire), wire.size());
    ASSERT_EQ(decode_with_next(wire, wire.size()).content, content) << "k " << k;
    ASSERT_EQ(decode_with_copy(wire, wire.size(), 4096).content, content) << "k " << k;
    ASSERT_EQ(decode_with_copy(wire, 97, 113).content, content) << "k " << k;
  }
}

TEST(BlockDecoder, ByteAtATime) {
  const Bytes content = counting_bytes(700, 11);
  const Bytes wire = encode_with_blocks(content, {1, 255, 3, 254, 187});
  const Decoded d = decode_with_next(wire, 1);
  EXPECT_EQ(d.content, content);
  EXPECT_TRUE(d.end);
  EXPECT_EQ(d.consumed, wire.size());
  // decode(): one input byte at a time, and also one output byte at a time.
  const Decoded c = decode_with_copy(wire, 1, 64);
  EXPECT_EQ(c.content, content);
  EXPECT_TRUE(c.end);
  EXPECT_EQ(c.consumed, wire.size());
  const Decoded o = decode_with_copy(wire, wire.size(), 1);
  EXPECT_EQ(o.content, content);
  EXPECT_TRUE(o.end);
  EXPECT_EQ(o.consumed, wire.size());
}

TEST(BlockDecoder, DecodeStopsAtFullOutputWithoutTakingNextLengthByte) {
  const Bytes wire{0x02, 0xA1, 0xA2, 0x01, 0xB1, 0x00};
  BlockDecoder decoder;
  std::uint8_t out[2];
  auto r = decoder.decode(wire, out);
  EXPECT_EQ(r.consumed, 3u);
  EXPECT_EQ(r.produced, 2u);
  EXPECT_FALSE(r.end);
  EXPECT_EQ(out[0], 0xA1);
  EXPECT_EQ(out[1], 0xA2);
  r = decoder.decode(std::span(wire).subspan(3), out);
  EXPECT_EQ(r.consumed, 3u);
  EXPECT_EQ(r.produced, 1u);
  EXPECT_TRUE(r.end);
  EXPECT_EQ(out[0], 0xB1);
  EXPECT_EQ(decoder.content_bytes(), 3u);
}

TEST(BlockDecoder, DecodeTakesEndByteAfterExactlyFullOutput) {
  const Bytes wire{0x03, 0x01, 0x02, 0x03, 0x00, 0x05};
  BlockDecoder decoder;
  std::uint8_t out[3];
  const auto r = decoder.decode(wire, out);
  EXPECT_EQ(r.consumed, 5u);
  EXPECT_EQ(r.produced, 3u);
  EXPECT_TRUE(r.end);
}

TEST(BlockDecoder, DecodeNeverReadsPastTheEndByte) {
  const Bytes first = encode(counting_bytes(400));
  Bytes wire = first;
  wire.push_back(0x07);  // a pipelined task code
  const Bytes second = encode(counting_bytes(10));
  wire.insert(wire.end(), second.begin(), second.end());
  BlockDecoder decoder;
  Bytes out(1000);
  const auto r = decoder.decode(wire, out);
  EXPECT_TRUE(r.end);
  EXPECT_EQ(r.consumed, first.size());
  EXPECT_EQ(r.produced, 400u);
  EXPECT_EQ(decoder.decode(std::span(wire).subspan(r.consumed), out).consumed, 0u);
}

// ---- Random round trips
// --------------------------------------------------------------------------

TEST(BlockCodec, RandomRoundTripsWithRandomChunking) {
  std::mt19937_64 rng(20180101);
  std::uniform_int_distribution<std::size_t> size_dist(0, 3000);
  std::uniform_int_distribution<std::size_t> piece_dist(1, 600);
  for (int round = 0; round < 300; ++round) {
    const std::size_t n = round < 10 ? static_cast<std::size_t>(round) : size_dist(rng);
    const Bytes content = random_bytes(rng, n);
    const Bytes wire = encode(content);
    ASSERT_EQ(wire.size(), encoded_size(n));

    // next() with random input chunking (a fresh random size for every piece).
    BlockDecoder decoder;
    Bytes got;
    std::size_t pos = 0;
    bool end = false;
    while (!end) {
      ASSERT_LT(pos, wire.size());
      const std::size_t piece = std::min(piece_dist(rng), wire.size() - pos);
      auto window = std::span(wire).subspan(pos, piece);
      while (!window.empty() && !end) {
        const auto chunk = decoder.next(window);
        ASSERT_GT(chunk.consumed, 0u);
        got.insert(got.end(), chunk.content.begin(), chunk.content.end());
        window = window.subspan(chunk.consumed);
        pos += chunk.consumed;
        end = chunk.end;
      }
    }
    ASSERT_EQ(pos, wire.size());
    ASSERT_EQ(got, content) << "round " << round;

    // decode() with random input and output chunking.
    BlockDecoder copier;
    Bytes copied;
    pos = 0;
    end = false;
    Bytes out(600);
    while (!end) {
      ASSERT_LT(pos, wire.size());
      const std::size_t piece = std::min(piece_dist(rng), wire.size() - pos);
      const std::size_t out_size = piece_dist(rng);
      const auto r =
          copier.decode(std::span(wire).subspan(pos, piece), std::span(out).first(out_size));
      ASSERT_GT(r.consumed, 0u);
      copied.insert(copied.end(), out.begin(),
                    out.begin() + static_cast<std::ptrdiff_t>(r.produced));
      pos += r.consumed;
      end = r.end;
    }
    ASSERT_EQ(pos, wire.size());
    ASSERT_EQ(copied, content) << "round " << round;
    ASSERT_EQ(copier.content_bytes(), n);
  }
}

TEST(BlockCodec, RandomSplitsFromOtherSendersDecode) {
  // Senders other than ours may split content into blocks of any sizes 1..255.
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::size_t> block_dist(1, 255);
  for (int round = 0; round < 100; ++round) {
    const Bytes content = random_bytes(rng, 2000 + static_cast<std::size_t>(round));
    std::vector<std::size_t> sizes;
    for (std::size_t left = content.size(); left > 0;) {
      const std::size_t size = std::min(left, block_dist(rng));
      sizes.push_back(size);
      left -= size;
    }
    const Bytes wire = encode_with_blocks(content, sizes);
    ASSERT_EQ(find_message_end(wire), wire.size());
    ASSERT_EQ(decode_with_next(wire, 37).content, content);
    ASSERT_EQ(decode_with_copy(wire, 1000, 333).content, content);
  }
}

// ---- find_message_end
// ----------------------------------------------------------------------------

TEST(FindMessageEnd, CompleteMessages) {
  EXPECT_EQ(find_message_end(Bytes{0x00}), 1u);
  EXPECT_EQ(find_message_end(Bytes{0x03, 0x01, 0x02, 0x03, 0x01, 0x04, 0x00}), 7u);
  EXPECT_EQ(find_message_end(encode(counting_bytes(300))), 303u);
  // A zero content byte is content, not an end byte.
  EXPECT_EQ(find_message_end(Bytes{0x02, 0x00, 0x00, 0x00}), 4u);
}

TEST(FindMessageEnd, IncompleteMessages) {
  EXPECT_EQ(find_message_end(Bytes{}), std::nullopt);
  EXPECT_EQ(find_message_end(Bytes{0x03}), std::nullopt);
  EXPECT_EQ(find_message_end(Bytes{0x03, 0x00, 0x00}), std::nullopt);
  EXPECT_EQ(find_message_end(Bytes{0x03, 0x00, 0x00, 0x00}), std::nullopt);
  const Bytes wire = encode(counting_bytes(600));
  for (std::size_t cut = 0; cut < wire.size(); ++cut) {
    ASSERT_EQ(find_message_end(std::span(wire).first(cut)), std::nullopt) << "cut " << cut;
  }
  EXPECT_EQ(find_message_end(wire), wire.size());
}

TEST(FindMessageEnd, FirstOfSeveralMessages) {
  const Bytes a = encode(counting_bytes(260));
  const Bytes b = encode({});
  const Bytes c = encode(counting_bytes(5));
  Bytes wire = a;
  wire.insert(wire.end(), b.begin(), b.end());
  wire.insert(wire.end(), c.begin(), c.end());
  const auto first = find_message_end(wire);
  ASSERT_EQ(first, a.size());
  const auto second = find_message_end(std::span(wire).subspan(*first));
  ASSERT_EQ(second, 1u);
  const auto third = find_message_end(std::span(wire).subspan(*first + *second));
  ASSERT_EQ(third, c.size());
  // The third one cut short.
  EXPECT_EQ(find_message_end(std::span(wire).subspan(*first + *second, c.size() - 1)),
            std::nullopt);
}

// ---- BlockEncoder
// --------------------------------------------------------------------------------

// Streams `content` through a BlockEncoder in the given piece sizes, then finishes.
Bytes stream_encode(BlockEncoder& encoder, const Bytes& content,
                    const std::vector<std::size_t>& pieces) {
  Bytes wire;
  std::size_t pos = 0;
  for (std::size_t piece : pieces) {
    const auto part = std::span(content).subspan(pos, piece);
    Bytes out(encoder.max_write_output(piece));
    const std::size_t written = encoder.write(part, out);
    EXPECT_LE(written, out.size());
    EXPECT_EQ(written % 256, 0u) << "write() emits only full blocks";
    wire.insert(wire.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(written));
    pos += piece;
    EXPECT_LT(encoder.pending(), kMaxBlockSize);
  }
  EXPECT_EQ(pos, content.size());
  Bytes tail(257);
  const std::size_t written = encoder.finish(tail);
  EXPECT_LE(written, 257u);
  wire.insert(wire.end(), tail.begin(), tail.begin() + static_cast<std::ptrdiff_t>(written));
  EXPECT_EQ(encoder.pending(), 0u);
  return wire;
}

TEST(BlockEncoder, EmptyMessage) {
  BlockEncoder encoder;
  EXPECT_EQ(encoder.max_write_output(0), 0u);
  std::uint8_t out[257];
  EXPECT_EQ(encoder.write({}, out), 0u);
  EXPECT_EQ(encoder.finish(out), 1u);
  EXPECT_EQ(out[0], 0x00);
}

TEST(BlockEncoder, ThreeHundredBytesInPieces) {
  const Bytes content = counting_bytes(300);
  BlockEncoder encoder;
  EXPECT_EQ(stream_encode(encoder, content, {100, 100, 100}), encode(content));
  EXPECT_EQ(stream_encode(encoder, content, {300}), encode(content));
  EXPECT_EQ(stream_encode(encoder, content, {254, 1, 45}), encode(content));
}

TEST(BlockEncoder, WriteEmitsOnlyFullBlocks) {
  BlockEncoder encoder;
  const Bytes content = counting_bytes(600);
  Bytes out(1024);
  EXPECT_EQ(encoder.max_write_output(200), 0u);
  EXPECT_EQ(encoder.write(std::span(content).first(200), out), 0u);
  EXPECT_EQ(encoder.pending(), 200u);
  EXPECT_EQ(encoder.max_write_output(55), 256u);
  EXPECT_EQ(encoder.max_write_output(400), 512u);
  EXPECT_EQ(encoder.write(std::span(content).subspan(200, 400), out), 512u);
  EXPECT_EQ(encoder.pending(), 90u);
  EXPECT_EQ(out[0], 0xFF);
  EXPECT_EQ(Bytes(out.begin() + 1, out.begin() + 256),
            Bytes(content.begin(), content.begin() + 255));
  EXPECT_EQ(out[256], 0xFF);
  EXPECT_EQ(Bytes(out.begin() + 257, out.begin() + 512),
            Bytes(content.begin() + 255, content.begin() + 510));
}

TEST(BlockEncoder, RandomPiecesEqualEncodeMessage) {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::size_t> size_dist(0, 5000);
  std::uniform_int_distribution<std::size_t> piece_dist(0, 700);
  BlockEncoder encoder;  // reused: finish() must leave it ready for the next message
  for (int round = 0; round < 200; ++round) {
    const Bytes content = random_bytes(rng, size_dist(rng));
    std::vector<std::size_t> pieces;
    for (std::size_t left = content.size(); left > 0;) {
      const std::size_t piece = std::min(left, piece_dist(rng));
      pieces.push_back(piece);
      left -= piece;
    }
    ASSERT_EQ(stream_encode(encoder, content, pieces), encode(content)) << "round " << round;
  }
}

TEST(BlockEncoder, FlushEmitsShorterBlock) {
  BlockEncoder encoder;
  const Bytes content = counting_bytes(10, 0x40);
  Bytes wire(64);
  std::size_t n = encoder.write(std::span(content).first(3), wire);
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(encoder.pending(), 3u);
  n = encoder.flush(wire);
  ASSERT_EQ(n, 4u);
  EXPECT_EQ(Bytes(wire.begin(), wire.begin() + 4), (Bytes{0x03, 0x40, 0x41, 0x42}));
  EXPECT_EQ(encoder.pending(), 0u);
  // Nothing pending: flush writes nothing (a zero length byte would end the message).
  EXPECT_EQ(encoder.flush(wire), 0u);
  EXPECT_EQ(encoder.write(std::span(content).subspan(3), wire), 0u);
  n = encoder.finish(wire);
  ASSERT_EQ(n, 9u);
  EXPECT_EQ(Bytes(wire.begin(), wire.begin() + 9),
            (Bytes{0x07, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x00}));
}

TEST(BlockEncoder, FlushedStreamStillDecodes) {
  std::mt19937_64 rng(99);
  std::uniform_int_distribution<std::size_t> piece_dist(1, 400);
  const Bytes content = random_bytes(rng, 5000);
  BlockEncoder encoder;
  Bytes wire;
  for (std::size_t pos = 0; pos < content.size();) {
    const std::size_t piece = std::min(piece_dist(rng), content.size() - pos);
    Bytes out(encoder.max_write_output(piece) + 256);
    std::size_t n = encoder.write(std::span(content).subspan(pos, piece), out);
    n += encoder.flush(std::span(out).subspan(n));
    EXPECT_EQ(encoder.pending(), 0u);
    wire.insert(wire.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n));
    pos += piece;
  }
  std::uint8_t end[257];
  const std::size_t n = encoder.finish(end);
  ASSERT_EQ(n, 1u);
  wire.push_back(end[0]);
  EXPECT_EQ(find_message_end(wire), wire.size());
  EXPECT_EQ(decode_with_next(wire, 100).content, content);
}

TEST(BlockEncoder, ResetDropsPending) {
  BlockEncoder encoder;
  const Bytes content = counting_bytes(20);
  std::uint8_t out[257];
  encoder.write(content, out);
  EXPECT_EQ(encoder.pending(), 20u);
  encoder.reset();
  EXPECT_EQ(encoder.pending(), 0u);
  EXPECT_EQ(encoder.finish(out), 1u);
  EXPECT_EQ(out[0], 0x00);
}

}  // namespace
}  // namespace serialserver::wire
