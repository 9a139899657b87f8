#include "batch_stream.hpp"

#include <serialserver/binary_reader.hpp>
#include <serialserver/error.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <vector>

namespace logd {

namespace {

/// Reads fixed-width numbers and length-checked strings from the request, through a buffer of
/// kChunk bytes: a blocking task's read waits for the connection's I/O thread, so reading field
/// by field cost a round trip per field (about 8 per message); this costs one per chunk.
class StreamReader {
 public:
  static constexpr std::size_t kChunk = 16384;

  StreamReader(serialserver::RequestReader& request, ByteOrder order)
      : request_(request), order_(order) {}

  std::uint32_t u32() { return number<std::uint32_t, 4>(); }
  std::int64_t i64() { return number<std::int64_t, 8>(); }
  std::uint8_t u8() { return number<std::uint8_t, 1>(); }

  /// A string of at most `max` bytes; longer: ProtocolError(code) before its bytes are read.
  std::string string(std::size_t max, serialserver::ErrorCode code, const char* what) {
    const std::uint32_t length = u32();
    if (length > max) {
      throw ProtocolError(code, std::string(what) + " of " + std::to_string(length) +
                                    " bytes, more than " + std::to_string(max));
    }
    std::string out(length, '\0');
    exact({reinterpret_cast<std::uint8_t*>(out.data()), out.size()});
    return out;
  }

  /// True if the request has no more bytes.
  bool at_end() { return next_ == filled_ && !fill(); }

 private:
  template <class T, std::size_t N>
  T number() {
    std::array<std::uint8_t, N> bytes{};
    exact(bytes);
    serialserver::BinaryReader r(bytes, order_);
    if constexpr (N == 1) {
      return r.read_u8();
    } else if constexpr (N == 4) {
      return r.read_u32();
    } else {
      return r.read_i64();
    }
  }

  void exact(std::span<std::uint8_t> out) {
    std::size_t done = 0;
    while (done < out.size()) {
      if (next_ == filled_ && !fill()) {
        throw ProtocolError(kErrMalformed, "payload cut off");
      }
      const std::size_t n = std::min(out.size() - done, filled_ - next_);
      std::copy_n(buffer_.begin() + static_cast<std::ptrdiff_t>(next_), n,
                  out.begin() + static_cast<std::ptrdiff_t>(done));
      next_ += n;
      done += n;
    }
  }

  /// Reads the next bytes of the request into the buffer; false at its end.
  bool fill() {
    next_ = 0;
    filled_ = request_.read_some(buffer_);
    return filled_ > 0;
  }

  serialserver::RequestReader& request_;
  ByteOrder order_;
  std::vector<std::uint8_t> buffer_ = std::vector<std::uint8_t>(kChunk);
  std::size_t next_ = 0;    // the next unread byte of buffer_
  std::size_t filled_ = 0;  // the bytes of buffer_ read from the request
};

Message read_message(StreamReader& in) {
  Message m;
  m.log = in.string(kMaxNameBytes, kErrBadName, "log name");
  if (m.log.empty()) {
    throw ProtocolError(kErrBadName, "empty log name");
  }
  m.time_ns = in.i64();
  m.level = in.u8();
  if (m.level > kMaxLevel) {
    throw ProtocolError(kErrBadLevel, "level " + std::to_string(m.level) + " is above " +
                                          std::to_string(kMaxLevel));
  }
  m.text = in.string(kMaxTextBytes, kErrTooLarge, "text");
  const std::uint32_t n = in.u32();
  if (n > kMaxFields) {
    throw ProtocolError(kErrTooLarge,
                        std::to_string(n) + " fields, more than " + std::to_string(kMaxFields));
  }
  m.fields.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    Field f;
    f.key = in.string(kMaxKeyBytes, kErrTooLarge, "field key");
    if (f.key.empty()) {
      throw ProtocolError(kErrTooLarge, "empty field key");
    }
    f.value = in.string(kMaxValueBytes, kErrTooLarge, "field value");
    m.fields.push_back(std::move(f));
  }
  return m;
}

/// Reads and drops what is left of the request.
void drain(serialserver::RequestReader& request) noexcept {
  try {
    std::array<std::uint8_t, 16384> sink{};
    while (request.read_some(sink) > 0) {
    }
  } catch (...) {  // the connection failed: the server ends it anyway
  }
}

}  // namespace

std::vector<Message> read_batch(serialserver::RequestReader& request, ByteOrder order) {
  StreamReader in(request, order);
  try {
    const std::uint32_t n = in.u32();
    if (n > kMaxBatch) {
      throw ProtocolError(kErrTooLarge, "batch of " + std::to_string(n) + ", more than " +
                                            std::to_string(kMaxBatch));
    }
    std::vector<Message> messages;
    for (std::uint32_t i = 0; i < n; ++i) {
      messages.push_back(read_message(in));
    }
    if (!in.at_end()) {
      throw ProtocolError(kErrMalformed, "bytes after the batch");
    }
    return messages;
  } catch (const ProtocolError&) {
    drain(request);
    throw;
  }
}

}  // namespace logd
