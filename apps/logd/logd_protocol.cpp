#include "logd_protocol.hpp"

#include <serialserver/error.hpp>

#include <array>
#include <cctype>
#include <fstream>
#include <sstream>

namespace logd {

using serialserver::BinaryReader;
using serialserver::BinaryWriter;

namespace {

constexpr std::array<std::string_view, kMaxLevel + 1> kLevelNames = {"TRACE", "DEBUG", "INFO",
                                                                     "WARN",  "ERROR", "FATAL"};

std::uint32_t checked_count(std::size_t n) {
  if (n > std::numeric_limits<std::uint32_t>::max()) {
    throw std::length_error("too many elements for a u32 count");
  }
  return static_cast<std::uint32_t>(n);
}

void check_name(const std::string& name) {
  if (name.empty() || name.size() > kMaxNameBytes) {
    throw ProtocolError(kErrBadName, "log name must have 1.." + std::to_string(kMaxNameBytes) +
                                         " bytes, got " + std::to_string(name.size()));
  }
}

void check_level(std::uint8_t level) {
  if (level > kMaxLevel) {
    throw ProtocolError(
        kErrBadLevel, "level " + std::to_string(level) + " is above " + std::to_string(kMaxLevel));
  }
}

/// Runs `f` on a reader over `payload`, maps a cut-off payload to kErrMalformed, and insists
/// that the payload ends where `f` stopped.
template <class F>
auto decode_whole(std::span<const std::uint8_t> payload, ByteOrder order, F f) {
  BinaryReader r(payload, order);
  try {
    auto value = f(r);
    if (!r.at_end()) {
      throw ProtocolError(kErrMalformed,
                          std::to_string(r.remaining()) + " trailing bytes after the payload");
    }
    return value;
  } catch (const serialserver::EndOfMessage&) {
    throw ProtocolError(kErrMalformed, "payload cut off at byte " + std::to_string(r.position()));
  }
}

}  // namespace

std::string level_name(std::uint8_t level) {
  if (level <= kMaxLevel) {
    return std::string(kLevelNames[level]);
  }
  std::string name = "L";  // not "L" + to_string(): GCC 12 warns falsely (-Wrestrict) at -O2
  name += std::to_string(level);
  return name;
}

std::optional<std::uint8_t> parse_level(std::string_view text) {
  if (text.size() == 1 && text[0] >= '0' && text[0] <= '0' + kMaxLevel) {
    return static_cast<std::uint8_t>(text[0] - '0');
  }
  std::string upper;
  for (char c : text) {
    upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  if (upper == "WARNING") {
    upper = "WARN";
  }
  for (std::size_t i = 0; i < kLevelNames.size(); ++i) {
    if (upper == kLevelNames[i]) {
      return static_cast<std::uint8_t>(i);
    }
  }
  return std::nullopt;
}

void encode_fields(BinaryWriter& w, std::span<const Field> fields) {
  w.write_u32(checked_count(fields.size()));
  for (const auto& f : fields) {
    w.write_string(f.key);
    w.write_string(f.value);
  }
}

void encode_message(BinaryWriter& w, const Message& m) {
  w.write_string(m.log);
  w.write_i64(m.time_ns);
  w.write_u8(m.level);
  w.write_string(m.text);
  encode_fields(w, m.fields);
}

void encode_batch(BinaryWriter& w, std::span<const Message> messages) {
  w.write_u32(checked_count(messages.size()));
  for (const auto& m : messages) {
    encode_message(w, m);
  }
}

void encode_read_query(BinaryWriter& w, const ReadQuery& q) {
  w.write_string(q.log);
  w.write_i64(q.since_ns);
  w.write_i64(q.until_ns);
  w.write_u8(q.min_level);
  w.write_u8(q.max_level);
  w.write_u32(q.limit);
}

void encode_tail_query(BinaryWriter& w, const TailQuery& q) {
  w.write_string(q.log);
  w.write_u64(q.after_id);
  w.write_u32(q.limit);
  w.write_u32(q.wait_ms);
}

void encode_record(BinaryWriter& w, const Record& r) {
  w.write_u64(r.id);
  w.write_i64(r.time_ns);
  w.write_u8(r.level);
  w.write_string(r.text);
  encode_fields(w, r.fields);
}

void encode_log_info(BinaryWriter& w, const LogInfo& info) {
  w.write_string(info.name);
  w.write_u64(info.count);
  w.write_u64(info.last_id);
}

void encode_delete_query(BinaryWriter& w, const DeleteQuery& q) {
  w.write_string(q.log);
  w.write_i64(q.before_ns);
}

void encode_delete_result(BinaryWriter& w, std::uint64_t deleted) { w.write_u64(deleted); }

std::vector<Field> decode_fields(BinaryReader& r) {
  const std::uint32_t n = r.read_u32();
  if (n > kMaxFields) {
    throw ProtocolError(kErrTooLarge,
                        std::to_string(n) + " fields, more than " + std::to_string(kMaxFields));
  }
  std::vector<Field> fields;
  fields.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    Field f;
    f.key = r.read_string();
    f.value = r.read_string();
    if (f.key.empty() || f.key.size() > kMaxKeyBytes || f.value.size() > kMaxValueBytes) {
      throw ProtocolError(kErrTooLarge, "field key must have 1.." + std::to_string(kMaxKeyBytes) +
                                            " bytes and value at most " +
                                            std::to_string(kMaxValueBytes));
    }
    fields.push_back(std::move(f));
  }
  return fields;
}

Message decode_message(BinaryReader& r) {
  Message m;
  m.log = r.read_string();
  check_name(m.log);
  m.time_ns = r.read_i64();
  m.level = r.read_u8();
  check_level(m.level);
  m.text = r.read_string();
  if (m.text.size() > kMaxTextBytes) {
    throw ProtocolError(kErrTooLarge, "text of " + std::to_string(m.text.size()) +
                                          " bytes, more than " + std::to_string(kMaxTextBytes));
  }
  m.fields = decode_fields(r);
  return m;
}

Message decode_append(std::span<const std::uint8_t> payload, ByteOrder order) {
  return decode_whole(payload, order, [](BinaryReader& r) { return decode_message(r); });
}

std::vector<Message> decode_batch(std::span<const std::uint8_t> payload, ByteOrder order) {
  return decode_whole(payload, order, [](BinaryReader& r) {
    const std::uint32_t n = r.read_u32();
    if (n > kMaxBatch) {
      throw ProtocolError(kErrTooLarge, "batch of " + std::to_string(n) + ", more than " +
                                            std::to_string(kMaxBatch));
    }
    std::vector<Message> messages;
    // Each message takes at least 21 bytes: do not trust n for the allocation beyond that.
    messages.reserve(std::min<std::size_t>(n, r.remaining() / 21));
    for (std::uint32_t i = 0; i < n; ++i) {
      messages.push_back(decode_message(r));
    }
    return messages;
  });
}

ReadQuery decode_read_query(std::span<const std::uint8_t> payload, ByteOrder order) {
  return decode_whole(payload, order, [](BinaryReader& r) {
    ReadQuery q;
    q.log = r.read_string();
    check_name(q.log);
    q.since_ns = r.read_i64();
    q.until_ns = r.read_i64();
    q.min_level = r.read_u8();
    q.max_level = r.read_u8();
    check_level(q.min_level);
    check_level(q.max_level);
    q.limit = r.read_u32();
    if (q.since_ns > q.until_ns || q.min_level > q.max_level) {
      throw ProtocolError(kErrBadArgument, "empty time or level range");
    }
    return q;
  });
}

TailQuery decode_tail_query(std::span<const std::uint8_t> payload, ByteOrder order) {
  return decode_whole(payload, order, [](BinaryReader& r) {
    TailQuery q;
    q.log = r.read_string();
    check_name(q.log);
    q.after_id = r.read_u64();
    q.limit = r.read_u32();
    q.wait_ms = r.read_u32();
    if (q.limit == 0 || q.limit > kMaxTailLimit || q.wait_ms > kMaxTailWaitMs) {
      throw ProtocolError(kErrBadArgument,
                          "tail limit must be 1.." + std::to_string(kMaxTailLimit) +
                              " and wait at most " + std::to_string(kMaxTailWaitMs) + " ms");
    }
    return q;
  });
}

DeleteQuery decode_delete_query(std::span<const std::uint8_t> payload, ByteOrder order) {
  return decode_whole(payload, order, [](BinaryReader& r) {
    DeleteQuery q;
    q.log = r.read_string();
    check_name(q.log);
    q.before_ns = r.read_i64();
    return q;
  });
}

Record decode_record(BinaryReader& r) {
  Record rec;
  rec.id = r.read_u64();
  rec.time_ns = r.read_i64();
  rec.level = r.read_u8();
  rec.text = r.read_string();
  const std::uint32_t n = r.read_u32();
  for (std::uint32_t i = 0; i < n; ++i) {
    Field f;
    f.key = r.read_string();
    f.value = r.read_string();
    rec.fields.push_back(std::move(f));
  }
  return rec;
}

LogInfo decode_log_info(BinaryReader& r) {
  LogInfo info;
  info.name = r.read_string();
  info.count = r.read_u64();
  info.last_id = r.read_u64();
  return info;
}

std::uint64_t decode_delete_result(BinaryReader& r) { return r.read_u64(); }

std::string read_token_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot read token file " + path);
  }
  std::ostringstream content;
  content << in.rdbuf();
  std::string token = content.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' ||
                            token.back() == '\t')) {
    token.pop_back();
  }
  if (token.empty() || token.size() > kMaxTokenBytes) {
    throw std::runtime_error("token file " + path + " must hold 1.." +
                             std::to_string(kMaxTokenBytes) + " bytes");
  }
  return token;
}

}  // namespace logd
