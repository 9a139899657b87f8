#pragma once

// The writer's insert of messages: several rows with one INSERT statement rather than one
// statement a row. A statement opens its cursors on the table and its two indexes once; kept
// open from row to row, they append at the end without a search from the B-trees' roots, and
// the statement's set-up and tear-down are paid once for many rows rather than for each.

#include <serialserver/binary_writer.hpp>
#include "logd_protocol.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

struct sqlite3;
struct sqlite3_stmt;

namespace logd {

/// Inserts messages into the `messages` table, up to kMaxRows with one statement.
/// Thread-safety: none; used by the writer thread only. Lifetime: must not outlive its
/// connection; finalizes its statements when destroyed.
class MessageInserter {
 public:
  /// The most rows one insert() takes. A power of two: there is a statement for each power of
  /// two up to it (log2(kMaxRows) + 1 statements in all).
  static constexpr std::size_t kMaxRows = 64;

  /// Prepares the statements on `db`. Throws StorageError.
  explicit MessageInserter(sqlite3* db);
  MessageInserter(const MessageInserter&) = delete;
  MessageInserter& operator=(const MessageInserter&) = delete;
  ~MessageInserter();

  /// How many of `remaining` messages (at least 1) the next insert() takes: the largest power
  /// of two that is at most `remaining` and kMaxRows.
  static std::size_t rows_for(std::size_t remaining) noexcept;

  /// Inserts `rows` (a count that rows_for() gave), rows[i] into the log `log_ids[i]`, and
  /// returns the id SQLite gave rows[0]; the others have the ids that follow it, in order.
  /// Throws StorageError.
  std::int64_t insert(std::span<const Message> rows, std::span<const std::int64_t> log_ids);

  /// The size of the encoded fields of row `i` of the last insert().
  std::size_t fields_bytes(std::size_t i) const noexcept {
    return fields_end_[i + 1] - fields_end_[i];
  }

 private:
  static constexpr std::size_t kStatements = 7;  // 1, 2, 4, ..., kMaxRows rows
  static_assert(std::size_t{1} << (kStatements - 1) == kMaxRows);
  void finalize_statements() noexcept;

  sqlite3* db_;
  std::array<sqlite3_stmt*, kStatements> statements_{};  // [k] inserts 2^k rows
  // The rows' encoded fields, one after the other: bound without a copy, so kept until the
  // statement has run. Row i's are at [fields_end_[i], fields_end_[i + 1]).
  serialserver::BinaryWriter fields_{serialserver::ByteOrder::big_endian};
  std::array<std::size_t, kMaxRows + 1> fields_end_{};
};

}  // namespace logd
