#pragma once

// Small helpers over the SQLite C API for the store: every failure becomes a StorageError.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

struct sqlite3;
struct sqlite3_stmt;

namespace logd::sql {

/// Throws StorageError with `what` and the connection's last error message.
[[noreturn]] void fail(sqlite3* db, const std::string& what);
/// Throws (as fail) unless `rc` is SQLITE_OK, SQLITE_DONE or SQLITE_ROW.
void check(sqlite3* db, int rc, const char* what);
/// A persistent prepared statement. Throws StorageError.
sqlite3_stmt* prepare(sqlite3* db, const std::string& sql);
/// Runs SQL without results. Throws StorageError.
void exec_on(sqlite3* db, const char* sql);
/// The integer in the first column of the first row of `sql`; 0 if there is no row. Throws
/// StorageError.
std::int64_t select_int(sqlite3* db, const char* sql);
/// Opens the database: `path` is a plain file name unless `uri`. Throws StorageError.
sqlite3* open_db(const std::string& path, bool uri, bool create);
/// The PRAGMA that sets a writing connection's fsyncs: FULL if `full`, else NORMAL. Every
/// connection that writes or checkpoints sets the same.
constexpr const char* synchronous_pragma(bool full) {
  return full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
}
/// Binds text that outlives the statement's use.
void bind_text(sqlite3* db, sqlite3_stmt* s, int index, const std::string& text);
/// Binds text that SQLite copies (for statements that outlive the text).
void bind_text_copy(sqlite3* db, sqlite3_stmt* s, int index, const std::string& text);
/// Binds an integer.
void bind_i64(sqlite3* db, sqlite3_stmt* s, int index, std::int64_t value);

/// Resets a statement and clears its bindings when leaving a scope.
struct ResetOnExit {
  sqlite3_stmt* s;
  explicit ResetOnExit(sqlite3_stmt* statement) noexcept : s(statement) {}
  ResetOnExit(const ResetOnExit&) = delete;
  ResetOnExit& operator=(const ResetOnExit&) = delete;
  ResetOnExit(ResetOnExit&&) = delete;
  ResetOnExit& operator=(ResetOnExit&&) = delete;
  ~ResetOnExit();
};

/// The u64 ids and counts of the protocol, clamped into SQLite's signed integers.
inline std::int64_t to_sql(std::uint64_t value) {
  return static_cast<std::int64_t>(
      std::min<std::uint64_t>(value, std::numeric_limits<std::int64_t>::max()));
}

}  // namespace logd::sql
