#pragma once

// Decoding of the block framing of a message (docs/protocol.md section 2):
//   message := block* end;  block := N (1..255) + N bytes of content;  end := 0x00.
// Sans-I/O and allocation-free: the decoder only looks at the bytes it is given, so the same code
// serves sockets, in-memory streams and tests.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

namespace serialserver::wire {

/// Incremental decoder of one block-encoded message at a time. It keeps only the position inside
/// the current block, so input may arrive split anywhere (down to one byte at a time), and it never
/// consumes a byte past the message's end byte: whatever follows (a pipelined task code) stays
/// with the caller.
/// Thread-safety: none; one decoder belongs to one reader at a time. Lifetime: a plain value that
/// holds no pointers, so it may outlive every buffer it has seen.
class BlockDecoder {
 public:
  /// The result of one next() step. `content` views the input given to that call, so it is valid
  /// only as long as that input buffer is.
  struct Chunk {
    /// Input bytes used in this step (block length bytes and content).
    std::size_t consumed = 0;
    /// The content found in this step: a view into the input, possibly empty.
    std::span<const std::uint8_t> content;
    /// The end byte (0x00) was consumed in this step.
    bool end = false;
  };

  /// The result of decode(): input bytes consumed, content bytes written, end byte seen.
  struct CopyResult {
    std::size_t consumed = 0;  ///< input bytes used
    std::size_t produced = 0;  ///< content bytes written to the output
    bool end = false;          ///< the end byte (0x00) was consumed
  };

  /// Consumes block length bytes and at most one contiguous run of content (never more than the
  /// rest of the current block) from `input`, without copying. When the run completes its block
  /// and the end byte follows in `input`, the end byte is consumed too, so a reader learns about
  /// the end together with the last content. Returns consumed == 0 only when `input` is empty or
  /// the message has already ended.
  /// Thread-safety: not thread-safe. Lifetime: the returned content views `input`.
  Chunk next(std::span<const std::uint8_t> input) noexcept {
    Chunk chunk;
    if (finished_ || input.empty()) {
      return chunk;
    }
    std::size_t pos = 0;
    if (remaining_ == 0) {
      const std::uint8_t length = input[0];
      pos = 1;
      if (length == 0) {
        finished_ = true;
        chunk.consumed = 1;
        chunk.end = true;
        return chunk;
      }
      remaining_ = length;
    }
    const std::size_t take = std::min(remaining_, input.size() - pos);
    chunk.content = input.subspan(pos, take);
    pos += take;
    remaining_ -= take;
    content_bytes_ += take;
    if (remaining_ == 0 && pos < input.size() && input[pos] == 0) {
      ++pos;
      finished_ = true;
      chunk.end = true;
    }
    chunk.consumed = pos;
    return chunk;
  }

  /// Copying convenience: decodes from `input` into `out` as much content as fits, one memcpy per
  /// block. Stops after the end byte, when `input` is used up, or when `out` is full; an end byte
  /// that directly follows still counts, so a message whose content fills `out` exactly reports
  /// its end. A length byte is consumed as soon as `out` has room, so one byte of input at a time
  /// always makes progress.
  /// Thread-safety: not thread-safe. Lifetime: keeps no reference to `input` or `out`.
  CopyResult decode(std::span<const std::uint8_t> input, std::span<std::uint8_t> out) noexcept {
    CopyResult result;
    if (finished_) {
      return result;
    }
    const std::uint8_t* const in = input.data();
    const std::size_t in_size = input.size();
    std::uint8_t* const dst = out.data();
    const std::size_t out_size = out.size();
    std::size_t i = 0;
    std::size_t o = 0;
    // Finish the block that an earlier call left open.
    if (remaining_ != 0) {
      const std::size_t take = std::min({remaining_, in_size, out_size});
      copy_bytes(dst, in, take);
      i = take;
      o = take;
      remaining_ -= take;
    }
    if (remaining_ == 0) {
      // Whole blocks that fit in both buffers take the fast path: one length check, one memcpy.
      while (i < in_size) {
        const std::size_t length = in[i];
        if (length == 0) {
          ++i;
          finished_ = true;
          result.end = true;
          break;
        }
        if (length > in_size - i - 1 || length > out_size - o) {
          // A block cut off by the end of the input or of `out`: copy what is there and remember
          // the rest. With `out` already full, leave the length byte for the next call.
          if (o < out_size) {
            const std::size_t take = std::min({length, in_size - i - 1, out_size - o});
            copy_bytes(dst + o, in + i + 1, take);
            i += take + 1;
            o += take;
            remaining_ = length - take;
          }
          break;
        }
        std::memcpy(dst + o, in + i + 1, length);  // length >= 1, so both pointers are real
        i += length + 1;
        o += length;
      }
    }
    result.consumed = i;
    result.produced = o;
    content_bytes_ += o;
    return result;
  }

  /// True once the end byte has been consumed; the decoder then consumes nothing until reset().
  /// Thread-safety: not thread-safe.
  bool finished() const noexcept { return finished_; }

  /// The total content decoded since the last reset() (block contents only, not the framing),
  /// which is what a server's message size limit counts. Thread-safety: not thread-safe.
  std::uint64_t content_bytes() const noexcept { return content_bytes_; }

  /// Makes the decoder ready for the next message. Thread-safety: not thread-safe.
  void reset() noexcept {
    remaining_ = 0;
    content_bytes_ = 0;
    finished_ = false;
  }

 private:
  // memcpy with a null pointer is undefined even for zero bytes, and empty spans may hold one.
  static void copy_bytes(std::uint8_t* dst, const std::uint8_t* src, std::size_t n) noexcept {
    if (n != 0) {
      std::memcpy(dst, src, n);
    }
  }

  std::size_t remaining_ = 0;  // content bytes still due in the current block; 0: a length byte
  std::uint64_t content_bytes_ = 0;
  bool finished_ = false;
};

/// Offset just past the end byte of the first complete message at the start of `blocks` (which
/// starts at a block length byte), or std::nullopt if that message is not complete in `blocks`.
/// It reads only the length bytes, so it costs about one load per 256 bytes of a large message.
/// Thread-safety: a pure function. Lifetime: keeps no reference to `blocks`.
inline std::optional<std::size_t> find_message_end(std::span<const std::uint8_t> blocks) noexcept {
  const std::uint8_t* data = blocks.data();
  const std::size_t size = blocks.size();
  std::size_t i = 0;
  while (i < size) {
    const std::size_t length = data[i];
    if (length == 0) {
      return i + 1;
    }
    i += length + 1;
  }
  return std::nullopt;
}

}  // namespace serialserver::wire
