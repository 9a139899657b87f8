#include "sqlite_util.hpp"

#include "store.hpp"

#include <sqlite3.h>

namespace logd::sql {

[[noreturn]] void fail(sqlite3* db, const std::string& what) {
  throw StorageError(what + ": " + (db != nullptr ? sqlite3_errmsg(db) : "out of memory"));
}

void check(sqlite3* db, int rc, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    fail(db, what);
  }
}

sqlite3_stmt* prepare(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  check(db, sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr),
        ("prepare " + sql).c_str());
  return s;
}

void exec_on(sqlite3* db, const char* sql) {
  char* message = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &message);
  if (rc != SQLITE_OK) {
    std::string text = message != nullptr ? message : sqlite3_errstr(rc);
    sqlite3_free(message);
    throw StorageError(std::string(sql).substr(0, 40) + ": " + text);
  }
}

std::int64_t select_int(sqlite3* db, const char* sql) {
  sqlite3_stmt* s = prepare(db, sql);
  const int rc = sqlite3_step(s);
  const std::int64_t value = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
  sqlite3_finalize(s);
  check(db, rc, "select");
  return value;
}

sqlite3* open_db(const std::string& path, bool uri, bool create) {
  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                    (create ? SQLITE_OPEN_CREATE : 0) | (uri ? SQLITE_OPEN_URI : 0);
  // SQLite may be built to read any name that starts with "file:" as a URI; "./" in front of a
  // relative path keeps it a plain file name.
  const std::string name = uri || path.empty() || path.front() == '/' ? path : "./" + path;
  const int rc = sqlite3_open_v2(name.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string text = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    throw StorageError("cannot open " + path + ": " + text);
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, 10000);
  return db;
}

void bind_text(sqlite3* db, sqlite3_stmt* s, int index, const std::string& text) {
  check(db, sqlite3_bind_text64(s, index, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8),
        "bind");
}

/// As bind_text, but SQLite keeps its own copy (for statements that outlive the text).
void bind_text_copy(sqlite3* db, sqlite3_stmt* s, int index, const std::string& text) {
  check(db, sqlite3_bind_text64(s, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
        "bind");
}

void bind_i64(sqlite3* db, sqlite3_stmt* s, int index, std::int64_t value) {
  check(db, sqlite3_bind_int64(s, index, value), "bind");
}

ResetOnExit::~ResetOnExit() {
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
}

}  // namespace logd::sql
