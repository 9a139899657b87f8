#pragma once

// What the store's deletes share (the delete task and every retention limit): small
// transactions, and keeping each log's count and bytes in step with the messages deleted.
// For the maintenance connection's thread only.

#include "sqlite_util.hpp"

#include <cstdint>
#include <initializer_list>
#include <map>
#include <vector>

namespace logd::sql {

/// Finalizes statements when leaving a scope.
class FinalizeOnExit {
 public:
  FinalizeOnExit(std::initializer_list<sqlite3_stmt**> list) : statements_(list) {}
  FinalizeOnExit(const FinalizeOnExit&) = delete;
  FinalizeOnExit& operator=(const FinalizeOnExit&) = delete;
  ~FinalizeOnExit();

 private:
  std::vector<sqlite3_stmt**> statements_;
};

/// Rolls back the transaction in progress on `db`, if any. Never throws.
void rollback_quietly(sqlite3* db) noexcept;

/// Runs `step` in transactions of its own until it returns 0; returns the sum of what it
/// returned. Small transactions: the writer waits at most one of them for its own commit.
template <class Step>
std::uint64_t in_small_transactions(sqlite3* db, Step step) {
  std::uint64_t total = 0;
  for (;;) {
    exec_on(db, "BEGIN IMMEDIATE");
    std::uint64_t n = 0;
    try {
      n = step();
      exec_on(db, "COMMIT");
    } catch (...) {
      rollback_quietly(db);
      throw;
    }
    total += n;
    if (n == 0) {
      return total;
    }
  }
}

/// What deletes took from each log, to be taken from its count and bytes in the same
/// transaction.
class DeletedFromLogs {
 public:
  /// Steps `remove`, a DELETE ... RETURNING log_id, <schema::kMessageBytes>, to its end and
  /// counts what it returns; then resets it. Throws StorageError.
  void collect(sqlite3* db, sqlite3_stmt* remove);
  /// Takes what was counted from logs.count and logs.bytes, and starts over. Returns how many
  /// messages that was. Throws StorageError.
  std::uint64_t apply(sqlite3* db);

 private:
  struct Counts {
    std::int64_t messages = 0;
    std::int64_t bytes = 0;
  };
  std::map<std::int64_t, Counts> by_log_;
};

}  // namespace logd::sql
