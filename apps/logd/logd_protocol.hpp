#pragma once

// The logd application protocol on top of the serial protocol: task codes, error codes, limits,
// and the codec of the payloads (docs/logd-protocol.md). Shared by the server, the CLI, the tests
// and the benchmark. Numbers use the connection's byte order; strings are a u32 length prefix and
// the bytes, as BinaryWriter::write_string writes them.

#include <serialserver/binary_reader.hpp>
#include <serialserver/binary_writer.hpp>
#include <serialserver/byte_order.hpp>
#include <serialserver/protocol.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace logd {

using serialserver::ByteOrder;

/// Task codes of logd.
inline constexpr serialserver::TaskCode kTaskAppend = 1;
inline constexpr serialserver::TaskCode kTaskAppendBatch = 2;
inline constexpr serialserver::TaskCode kTaskRead = 3;
inline constexpr serialserver::TaskCode kTaskTail = 4;
inline constexpr serialserver::TaskCode kTaskList = 5;
inline constexpr serialserver::TaskCode kTaskDelete = 6;

/// Error codes of logd (the byte after an Error response).
inline constexpr serialserver::ErrorCode kErrMalformed = 1;     ///< truncated or trailing bytes
inline constexpr serialserver::ErrorCode kErrBadName = 2;       ///< log name empty or too long
inline constexpr serialserver::ErrorCode kErrBadLevel = 3;      ///< level byte above kMaxLevel
inline constexpr serialserver::ErrorCode kErrTooLarge = 4;      ///< a text, field or batch limit
inline constexpr serialserver::ErrorCode kErrBadArgument = 5;   ///< inverted range, bad limit
inline constexpr serialserver::ErrorCode kErrStorage = 6;       ///< SQLite failed; nothing written
inline constexpr serialserver::ErrorCode kErrShuttingDown = 7;  ///< the store is closing
inline constexpr serialserver::ErrorCode kErrBusy = 8;  ///< a server bound reached; retry later

/// Limits that a valid payload respects.
inline constexpr std::size_t kMaxNameBytes = 255;
inline constexpr std::size_t kMaxTextBytes = std::size_t{1} << 20;
inline constexpr std::size_t kMaxFields = 64;
inline constexpr std::size_t kMaxKeyBytes = 255;
inline constexpr std::size_t kMaxValueBytes = std::size_t{64} << 10;
inline constexpr std::uint32_t kMaxBatch = 10000;
inline constexpr std::uint32_t kMaxTailLimit = 10000;
inline constexpr std::uint32_t kMaxTailWaitMs = 60000;
/// The tail cursor that asks for the last `limit` messages instead of those after an id.
inline constexpr std::uint64_t kTailLast = std::numeric_limits<std::uint64_t>::max();

/// Handshake bytes (docs/logd-protocol.md section 2).
inline constexpr std::uint8_t kHandshakeBig = 'B';
inline constexpr std::uint8_t kHandshakeLittle = 'L';
inline constexpr std::uint8_t kHandshakeNoToken = 0x00;
inline constexpr std::uint8_t kHandshakeTokenRequired = 0x01;
inline constexpr std::uint8_t kTokenAccepted = 0x00;
inline constexpr std::uint8_t kTokenRejected = 0x01;
inline constexpr std::size_t kMaxTokenBytes = 4096;

/// Severity levels, 0..5.
enum class Level : std::uint8_t { trace = 0, debug, info, warn, error, fatal };
inline constexpr std::uint8_t kMaxLevel = 5;

/// "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", or "L<n>" for others.
/// Thread-safety: a pure function.
std::string level_name(std::uint8_t level);
/// Parses a level name (any case) or a digit 0..5; nullopt otherwise.
/// Thread-safety: a pure function.
std::optional<std::uint8_t> parse_level(std::string_view text);

/// One key/value field of a message. Thread-safety: a plain value.
struct Field {
  std::string key;
  std::string value;
  bool operator==(const Field&) const = default;
};

/// A message to append. time_ns is nanoseconds since the Unix epoch; 0 asks the server to use
/// its clock. Thread-safety: a plain value.
struct Message {
  std::string log;
  std::int64_t time_ns = 0;
  std::uint8_t level = static_cast<std::uint8_t>(Level::info);
  std::string text;
  std::vector<Field> fields;
};

/// A stored message, as read, tail return it. Thread-safety: a plain value.
struct Record {
  std::uint64_t id = 0;
  std::int64_t time_ns = 0;
  std::uint8_t level = 0;
  std::string text;
  std::vector<Field> fields;
  bool operator==(const Record&) const = default;
};

/// A read query: messages with since_ns <= time <= until_ns and min_level <= level <= max_level,
/// by increasing time (then id), at most `limit` of them (0: no limit).
/// Thread-safety: a plain value.
struct ReadQuery {
  std::string log;
  std::int64_t since_ns = std::numeric_limits<std::int64_t>::min();
  std::int64_t until_ns = std::numeric_limits<std::int64_t>::max();
  std::uint8_t min_level = 0;
  std::uint8_t max_level = kMaxLevel;
  std::uint32_t limit = 0;
};

/// A tail query: messages of `log` with id > after_id (or the last `limit` when after_id is
/// kTailLast), by increasing id; if there are none, the server waits up to wait_ms for one.
/// Thread-safety: a plain value.
struct TailQuery {
  std::string log;
  std::uint64_t after_id = 0;
  std::uint32_t limit = 1000;
  std::uint32_t wait_ms = 0;
};

/// A delete query: removes the messages of `log` with time < before_ns; the default, INT64_MAX,
/// removes all of the log. Thread-safety: a plain value.
struct DeleteQuery {
  std::string log;
  std::int64_t before_ns = std::numeric_limits<std::int64_t>::max();
  bool operator==(const DeleteQuery&) const = default;
};

/// One entry of the list of logs. Thread-safety: a plain value.
struct LogInfo {
  std::string name;
  std::uint64_t count = 0;
  std::uint64_t last_id = 0;
  bool operator==(const LogInfo&) const = default;
};

/// A payload that breaks the protocol; code() is the error code the server answers with.
/// Thread-safety: an immutable value.
class ProtocolError : public std::runtime_error {
 public:
  ProtocolError(serialserver::ErrorCode code, const std::string& what)
      : std::runtime_error(what), code_(code) {}
  serialserver::ErrorCode code() const noexcept { return code_; }

 private:
  serialserver::ErrorCode code_;
};

// ---- encoding (client side, and the server's responses) ----------------------------------------
// Thread-safety of every function below: pure functions on their arguments.

/// Appends a message: string log, i64 time, u8 level, string text, u32 n, n x (string, string).
void encode_message(serialserver::BinaryWriter& w, const Message& m);
/// The payload of task 2: u32 count, then count messages.
void encode_batch(serialserver::BinaryWriter& w, std::span<const Message> messages);
/// The payload of task 3: string log, i64 since, i64 until, u8 min, u8 max, u32 limit.
void encode_read_query(serialserver::BinaryWriter& w, const ReadQuery& q);
/// The payload of task 4: string log, u64 after_id, u32 limit, u32 wait_ms.
void encode_tail_query(serialserver::BinaryWriter& w, const TailQuery& q);
/// A record: u64 id, i64 time, u8 level, string text, u32 n, n x (string, string).
void encode_record(serialserver::BinaryWriter& w, const Record& r);
/// Fields alone: u32 n, n x (string, string).
void encode_fields(serialserver::BinaryWriter& w, std::span<const Field> fields);
/// One list entry: string name, u64 count, u64 last_id.
void encode_log_info(serialserver::BinaryWriter& w, const LogInfo& info);
/// The payload of task 6: string log, i64 before.
void encode_delete_query(serialserver::BinaryWriter& w, const DeleteQuery& q);
/// The OK payload of task 6: u64 deleted (how many messages were removed).
void encode_delete_result(serialserver::BinaryWriter& w, std::uint64_t deleted);

// ---- decoding with validation (server side); they throw ProtocolError -----------------------
/// Decodes and validates one message (limits, level). time_ns 0 is left as is.
Message decode_message(serialserver::BinaryReader& r);
/// Decodes and validates a whole batch payload, which must end after the last message.
std::vector<Message> decode_batch(std::span<const std::uint8_t> payload, ByteOrder order);
/// Decodes a whole append payload (one message and nothing after it).
Message decode_append(std::span<const std::uint8_t> payload, ByteOrder order);
/// Decodes and validates a whole read payload.
ReadQuery decode_read_query(std::span<const std::uint8_t> payload, ByteOrder order);
/// Decodes and validates a whole tail payload.
TailQuery decode_tail_query(std::span<const std::uint8_t> payload, ByteOrder order);
/// Decodes and validates a whole delete payload (kErrBadName, kErrMalformed).
DeleteQuery decode_delete_query(std::span<const std::uint8_t> payload, ByteOrder order);
/// Decodes fields (u32 n + pairs), validating the limits.
std::vector<Field> decode_fields(serialserver::BinaryReader& r);

// ---- decoding of responses (client side); they throw serialserver::EndOfMessage when cut off -
/// Decodes one record.
Record decode_record(serialserver::BinaryReader& r);
/// Decodes one list entry.
LogInfo decode_log_info(serialserver::BinaryReader& r);
/// Decodes the OK payload of task 6: the number of messages removed.
std::uint64_t decode_delete_result(serialserver::BinaryReader& r);

/// Reads a token file: its content without trailing whitespace. Throws std::runtime_error if it
/// cannot be read, is empty, or exceeds kMaxTokenBytes. Thread-safety: a plain function.
std::string read_token_file(const std::string& path);

}  // namespace logd
