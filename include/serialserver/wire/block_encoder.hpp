#pragma once

// Encoding of message content into the block framing (docs/protocol.md section 2). A sender of this
// project emits full 255-byte blocks and then the remainder; only a streaming producer's explicit
// flush emits a shorter block early. Sans-I/O and allocation-free.

#include <serialserver/protocol.hpp>

#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace serialserver::wire {

/// Size of the block-encoded form of `n` content bytes: the full 255-byte blocks, the remainder
/// block (if any) and the end byte. Thread-safety: a pure function.
constexpr std::size_t encoded_size(std::size_t n) noexcept {
  return n + (n + kMaxBlockSize - 1) / kMaxBlockSize + 1;
}

/// Encodes a whole message (content, then blocks, then 0x00) into `out`, which must hold
/// encoded_size(content.size()) bytes. Returns the bytes written.
/// Thread-safety: a pure function on its arguments. Lifetime: keeps no reference to either span.
inline std::size_t encode_message(std::span<const std::uint8_t> content,
                                  std::span<std::uint8_t> out) noexcept {
  assert(out.size() >= encoded_size(content.size()));
  const std::uint8_t* src = content.data();
  std::size_t left = content.size();
  std::uint8_t* dst = out.data();
  while (left >= kMaxBlockSize) {
    *dst = static_cast<std::uint8_t>(kMaxBlockSize);
    std::memcpy(dst + 1, src, kMaxBlockSize);
    dst += kMaxBlockSize + 1;
    src += kMaxBlockSize;
    left -= kMaxBlockSize;
  }
  if (left != 0) {
    *dst = static_cast<std::uint8_t>(left);
    std::memcpy(dst + 1, src, left);
    dst += left + 1;
  }
  *dst++ = 0;
  return static_cast<std::size_t>(dst - out.data());
}

/// Streaming encoder for content that arrives in pieces. write() emits only full 255-byte blocks,
/// so the wire carries the same bytes as encode_message() of the whole content however the
/// content was split; the partial tail (< 255 bytes) waits inside the encoder until more content,
/// flush() or finish().
/// Thread-safety: none; one encoder belongs to one writer at a time. Lifetime: a plain value (it
/// copies the tail in, it keeps no reference to any buffer it was given).
class BlockEncoder {
 public:
  /// Upper bound of the bytes write() may produce for `n` more content bytes, given what is
  /// pending. Thread-safety: not thread-safe.
  std::size_t max_write_output(std::size_t n) const noexcept {
    return (pending_size_ + n) / kMaxBlockSize * (kMaxBlockSize + 1);
  }

  /// Encodes the full blocks of pending + `content` into `out`, which must hold
  /// max_write_output(content.size()) bytes, and keeps the rest pending. Returns the bytes
  /// written. Thread-safety: not thread-safe. Lifetime: keeps no reference to either span.
  std::size_t write(std::span<const std::uint8_t> content, std::span<std::uint8_t> out) noexcept {
    assert(out.size() >= max_write_output(content.size()));
    const std::uint8_t* src = content.data();
    std::size_t left = content.size();
    std::uint8_t* dst = out.data();
    if (pending_size_ != 0) {
      const std::size_t take =
          left < kMaxBlockSize - pending_size_ ? left : kMaxBlockSize - pending_size_;
      copy_bytes(pending_.data() + pending_size_, src, take);
      pending_size_ += take;
      src += take;
      left -= take;
      if (pending_size_ < kMaxBlockSize) {
        return 0;
      }
      *dst = static_cast<std::uint8_t>(kMaxBlockSize);
      std::memcpy(dst + 1, pending_.data(), kMaxBlockSize);
      dst += kMaxBlockSize + 1;
      pending_size_ = 0;
    }
    // Full blocks straight from the caller's buffer: the pending copy is only for the tail.
    while (left >= kMaxBlockSize) {
      *dst = static_cast<std::uint8_t>(kMaxBlockSize);
      std::memcpy(dst + 1, src, kMaxBlockSize);
      dst += kMaxBlockSize + 1;
      src += kMaxBlockSize;
      left -= kMaxBlockSize;
    }
    copy_bytes(pending_.data(), src, left);
    pending_size_ = left;
    return static_cast<std::size_t>(dst - out.data());
  }

  /// Emits the pending tail as one shorter block (a streaming producer's explicit flush, to
  /// deliver data promptly). Writes nothing when nothing is pending, since a zero length byte
  /// would end the message. `out` needs pending() + 1 <= 256 bytes. Returns the bytes written.
  /// Thread-safety: not thread-safe.
  std::size_t flush(std::span<std::uint8_t> out) noexcept {
    if (pending_size_ == 0) {
      return 0;
    }
    assert(out.size() >= pending_size_ + 1);
    out[0] = static_cast<std::uint8_t>(pending_size_);
    std::memcpy(out.data() + 1, pending_.data(), pending_size_);
    const std::size_t written = pending_size_ + 1;
    pending_size_ = 0;
    return written;
  }

  /// Emits the pending tail and the end byte, ending the message. `out` needs pending() + 2 <= 257
  /// bytes. Returns the bytes written; the encoder is then reset for the next message.
  /// Thread-safety: not thread-safe.
  std::size_t finish(std::span<std::uint8_t> out) noexcept {
    assert(out.size() >= pending_size_ + (pending_size_ != 0 ? 2 : 1));
    const std::size_t written = flush(out);
    out[written] = 0;
    reset();
    return written + 1;
  }

  /// Content bytes waiting for a full block, flush() or finish(); always < 255.
  /// Thread-safety: not thread-safe.
  std::size_t pending() const noexcept { return pending_size_; }

  /// Drops any pending content; the encoder is ready for a new message.
  /// Thread-safety: not thread-safe.
  void reset() noexcept { pending_size_ = 0; }

 private:
  // memcpy with a null pointer is undefined even for zero bytes, and empty spans may hold one.
  static void copy_bytes(std::uint8_t* dst, const std::uint8_t* src, std::size_t n) noexcept {
    if (n != 0) {
      std::memcpy(dst, src, n);
    }
  }

  std::array<std::uint8_t, kMaxBlockSize> pending_{};
  std::size_t pending_size_ = 0;
};

}  // namespace serialserver::wire
