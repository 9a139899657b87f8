// Fuzz target: the block decoder (docs/protocol.md section 2) and its round trip with the encoder.
//
// The input is a stream of block-encoded messages (possibly cut off, possibly with anything in
// it), followed by a few bytes that choose how it is split into reads and how large the output
// buffer is. Checked:
// - BlockDecoder::next() and BlockDecoder::decode(), fed the stream in chunks, find exactly the
//   messages (content and end offset) that an independent reference parser finds, never consume
//   past a message's end byte, and always make progress;
// - find_message_end() agrees with the reference for every message start;
// - every message's content, encoded by encode_message() and by BlockEncoder written in pieces
//   (with and without flushes), decodes back to itself; without flushes the bytes equal
//   encode_message()'s, which sends full 255-byte blocks, then the remainder, then 0x00.

#include <serialserver/protocol.hpp>
#include <serialserver/wire/block_decoder.hpp>
#include <serialserver/wire/block_encoder.hpp>
#include "fuzz_check.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace {

using Bytes = std::vector<std::uint8_t>;
using serialserver::fuzz::Sequence;
using serialserver::wire::BlockDecoder;
using serialserver::wire::BlockEncoder;

struct Message {
  Bytes content;
  bool complete = false;
  std::size_t end = 0;  // offset just past the end byte (complete messages only)
  bool operator==(const Message&) const = default;
};

/// The grammar of section 2, read byte by byte: message := (N (1..255) + N bytes)* 0x00.
std::vector<Message> reference_parse(std::span<const std::uint8_t> data,
                                     std::vector<std::size_t>& starts) {
  std::vector<Message> out;
  std::size_t pos = 0;
  while (pos < data.size()) {
    starts.push_back(pos);
    Message m;
    for (;;) {
      if (pos == data.size()) {
        break;  // cut off
      }
      const std::size_t n = data[pos++];
      if (n == 0) {
        m.complete = true;
        m.end = pos;
        break;
      }
      const std::size_t take = std::min(n, data.size() - pos);
      m.content.insert(m.content.end(), data.begin() + static_cast<std::ptrdiff_t>(pos),
                       data.begin() + static_cast<std::ptrdiff_t>(pos + take));
      pos += take;
    }
    out.push_back(std::move(m));
  }
  return out;
}

/// Chunk sizes for feeding `size` bytes: mostly small, sometimes everything at once.
std::vector<std::size_t> make_chunks(std::size_t size, Sequence& seq, std::size_t max_chunk) {
  std::vector<std::size_t> chunks;
  std::size_t left = size;
  while (left > 0) {
    const std::size_t n =
        seq.in(0, 7) == 0 ? left : std::min<std::size_t>(left, seq.in(1, max_chunk));
    chunks.push_back(n);
    left -= n;
  }
  return chunks;
}

bool views_into(std::span<const std::uint8_t> inner, std::span<const std::uint8_t> outer) {
  if (inner.empty()) {
    return true;
  }
  return inner.data() >= outer.data() && inner.data() + inner.size() <= outer.data() + outer.size();
}

std::vector<Message> decode_with_next(std::span<const std::uint8_t> data,
                                      const std::vector<std::size_t>& chunks) {
  std::vector<Message> out;
  BlockDecoder decoder;
  Message current;
  bool started = false;
  std::size_t pos = 0;
  for (const std::size_t chunk : chunks) {
    std::span<const std::uint8_t> in = data.subspan(pos, chunk);
    while (!in.empty()) {
      const auto step = decoder.next(in);
      FUZZ_CHECK(step.consumed > 0);  // a decoder that has not finished always makes progress
      FUZZ_CHECK(step.consumed <= in.size());
      FUZZ_CHECK(views_into(step.content, in.first(step.consumed)));
      FUZZ_CHECK(step.content.size() <= serialserver::kMaxBlockSize);
      started = true;
      current.content.insert(current.content.end(), step.content.begin(), step.content.end());
      in = in.subspan(step.consumed);
      pos += step.consumed;
      FUZZ_CHECK(decoder.content_bytes() == current.content.size());
      FUZZ_CHECK(decoder.finished() == step.end);
      if (step.end) {
        // Nothing more is consumed until reset(): the next message's bytes stay with the caller.
        FUZZ_CHECK(decoder.next(in).consumed == 0);
        FUZZ_CHECK(decoder.next(data.subspan(pos)).consumed == 0);
        current.complete = true;
        current.end = pos;
        out.push_back(std::move(current));
        current = {};
        started = false;
        decoder.reset();
        FUZZ_CHECK(!decoder.finished() && decoder.content_bytes() == 0);
      }
    }
    FUZZ_CHECK(decoder.next({}).consumed == 0);
  }
  FUZZ_CHECK(pos == data.size());
  if (started) {
    out.push_back(std::move(current));
  }
  return out;
}

std::vector<Message> decode_with_copy(std::span<const std::uint8_t> data,
                                      const std::vector<std::size_t>& chunks,
                                      std::size_t out_size) {
  std::vector<Message> out;
  BlockDecoder decoder;
  Message current;
  bool started = false;
  std::size_t pos = 0;
  Bytes buffer(out_size);
  for (const std::size_t chunk : chunks) {
    std::span<const std::uint8_t> in = data.subspan(pos, chunk);
    while (!in.empty()) {
      const auto step = decoder.decode(in, buffer);
      FUZZ_CHECK(step.consumed <= in.size());
      FUZZ_CHECK(step.produced <= buffer.size());
      FUZZ_CHECK(step.produced <= step.consumed);
      // The output buffer is empty at every call, so one byte of input always makes progress.
      FUZZ_CHECK(step.consumed > 0);
      if (step.consumed > 0) {
        started = true;
      }
      current.content.insert(current.content.end(), buffer.begin(),
                             buffer.begin() + static_cast<std::ptrdiff_t>(step.produced));
      in = in.subspan(step.consumed);
      pos += step.consumed;
      FUZZ_CHECK(decoder.content_bytes() == current.content.size());
      FUZZ_CHECK(decoder.finished() == step.end);
      if (step.end) {
        const auto again = decoder.decode(in, buffer);
        FUZZ_CHECK(again.consumed == 0 && again.produced == 0 && !again.end);
        current.complete = true;
        current.end = pos;
        out.push_back(std::move(current));
        current = {};
        started = false;
        decoder.reset();
      }
    }
    // No input: nothing happens.
    const auto idle = decoder.decode({}, buffer);
    FUZZ_CHECK(idle.consumed == 0 && idle.produced == 0 && !idle.end);
  }
  FUZZ_CHECK(pos == data.size());
  if (started) {
    out.push_back(std::move(current));
  }
  return out;
}

/// Decodes one whole message from `encoded` in one call each way; it must end exactly at its end.
Bytes decode_whole(std::span<const std::uint8_t> encoded) {
  BlockDecoder decoder;
  Bytes content(encoded.size());
  const auto step = decoder.decode(encoded, content);
  FUZZ_CHECK(step.end && step.consumed == encoded.size());
  content.resize(step.produced);
  FUZZ_CHECK(serialserver::wire::find_message_end(encoded) == std::optional(encoded.size()));
  return content;
}

void check_round_trip(const Bytes& content, Sequence& seq) {
  const std::size_t size = serialserver::wire::encoded_size(content.size());
  Bytes encoded(size);
  FUZZ_CHECK(serialserver::wire::encode_message(content, encoded) == size);
  // This project's senders: full blocks, then the remainder, then the end byte.
  std::size_t pos = 0;
  std::size_t left = content.size();
  while (left > 0) {
    const std::size_t n = std::min(left, serialserver::kMaxBlockSize);
    FUZZ_CHECK(encoded[pos] == n);
    pos += n + 1;
    left -= n;
  }
  FUZZ_CHECK(pos == size - 1 && encoded[pos] == 0);
  FUZZ_CHECK(decode_whole(encoded) == content);

  // The streaming encoder, fed in pieces; flushes only when the sequence says so.
  const bool flushes = seq.in(0, 1) == 1;
  BlockEncoder encoder;
  Bytes streamed;
  std::size_t at = 0;
  while (at < content.size()) {
    const std::size_t n = std::min<std::size_t>(content.size() - at, seq.in(0, 600));
    const auto piece = std::span(content).subspan(at, n);
    Bytes out(encoder.max_write_output(n));
    const std::size_t written = encoder.write(piece, out);
    FUZZ_CHECK(written <= out.size());
    FUZZ_CHECK(written % (serialserver::kMaxBlockSize + 1) == 0);
    streamed.insert(streamed.end(), out.begin(),
                    out.begin() + static_cast<std::ptrdiff_t>(written));
    FUZZ_CHECK(encoder.pending() < serialserver::kMaxBlockSize);
    at += n;
    if (flushes && seq.in(0, 3) == 0) {
      Bytes tail(encoder.pending() + 1);
      const std::size_t pending = encoder.pending();
      const std::size_t flushed = encoder.flush(tail);
      FUZZ_CHECK(flushed == (pending == 0 ? 0 : pending + 1));
      FUZZ_CHECK(encoder.pending() == 0);
      streamed.insert(streamed.end(), tail.begin(),
                      tail.begin() + static_cast<std::ptrdiff_t>(flushed));
    }
  }
  Bytes tail(encoder.pending() + 2);
  const std::size_t finished = encoder.finish(tail);
  FUZZ_CHECK(finished <= tail.size() && finished >= 1 && tail[finished - 1] == 0);
  FUZZ_CHECK(encoder.pending() == 0);
  streamed.insert(streamed.end(), tail.begin(),
                  tail.begin() + static_cast<std::ptrdiff_t>(finished));
  if (!flushes) {
    FUZZ_CHECK(streamed == encoded);
  }
  FUZZ_CHECK(decode_whole(streamed) == content);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider provider(data, size);
  // Parameters come from the end of the input (FuzzedDataProvider takes integers from there), so
  // the front is the block stream as it would appear on the wire.
  const std::uint64_t seed = provider.ConsumeIntegral<std::uint64_t>();
  const std::size_t max_chunk = provider.ConsumeIntegralInRange<std::size_t>(1, 300);
  const std::size_t out_size = provider.ConsumeIntegralInRange<std::size_t>(1, 600);
  const Bytes stream = provider.ConsumeRemainingBytes<std::uint8_t>();
  Sequence seq(seed);

  std::vector<std::size_t> starts;
  const auto expected = reference_parse(stream, starts);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto end = serialserver::wire::find_message_end(std::span(stream).subspan(starts[i]));
    if (expected[i].complete) {
      FUZZ_CHECK(end == std::optional(expected[i].end - starts[i]));
    } else {
      FUZZ_CHECK(!end.has_value());
    }
  }

  FUZZ_CHECK(decode_with_next(stream, make_chunks(stream.size(), seq, max_chunk)) == expected);
  FUZZ_CHECK(decode_with_copy(stream, make_chunks(stream.size(), seq, max_chunk), out_size) ==
             expected);

  for (const auto& m : expected) {
    check_round_trip(m.content, seq);
  }
  return 0;
}
