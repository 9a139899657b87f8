#include "batch_stream.hpp"

#include <serialserver/binary_reader.hpp>
#include <serialserver/error.hpp>

#include <array>
#include <string>

namespace logd {

namespace {

/// Reads fixed-width numbers and length-checked strings straight from the request.
class StreamReader {
 public:
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
  bool at_end() {
    std::array<std::uint8_t, 1> probe{};
    return request_.read_some(probe) == 0;
  }

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
    if (out.empty()) {
      return;
    }
    try {
      request_.read_exact(out);
    } catch (const serialserver::EndOfMessage&) {
      throw ProtocolError(kErrMalformed, "payload cut off");
    }
  }

  serialserver::RequestReader& request_;
  ByteOrder order_;
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
