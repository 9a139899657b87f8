#pragma once

// The store's tables, and how it counts the bytes a log's messages take, in one place: the
// writer adds to each log's count of bytes what the deletes take away, so both must agree.

#include <cstdint>

namespace logd::schema {

/// The tables. logs.count and logs.bytes are kept by every append and every delete, so that
/// list and the per-log retention need no scan of the messages.
inline constexpr const char* kTables = R"sql(
CREATE TABLE IF NOT EXISTS logs(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  count INTEGER NOT NULL DEFAULT 0,
  last_id INTEGER NOT NULL DEFAULT 0,
  bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages(
  id INTEGER PRIMARY KEY,
  log_id INTEGER NOT NULL,
  time INTEGER NOT NULL,
  level INTEGER NOT NULL,
  text TEXT NOT NULL,
  fields BLOB
);
CREATE INDEX IF NOT EXISTS messages_by_log_time ON messages(log_id, time);
CREATE INDEX IF NOT EXISTS messages_by_log ON messages(log_id);
)sql";

/// What one message is counted for besides its text and fields: about what SQLite stores for
/// its id, log, time and level in the table and its two index entries (cell pointers, record
/// headers, varints), so that a log's bytes come near the pages its messages fill.
inline constexpr std::uint64_t kMessageOverheadBytes = 64;

/// The bytes a message of the `messages` table is counted for, as an SQL expression over its
/// columns: its text's bytes, its encoded fields' bytes and kMessageOverheadBytes (the 64
/// below: change both together).
inline constexpr const char* kMessageBytes =
    "(length(CAST(text AS BLOB)) + coalesce(length(fields), 0) + 64)";

/// The same for a message about to be stored.
inline constexpr std::uint64_t message_bytes(std::uint64_t text_bytes,
                                             std::uint64_t encoded_fields_bytes) {
  return text_bytes + encoded_fields_bytes + kMessageOverheadBytes;
}

}  // namespace logd::schema
