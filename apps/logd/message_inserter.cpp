#include "message_inserter.hpp"

#include "sqlite_util.hpp"

#include <bit>
#include <string>

#include <sqlite3.h>

namespace logd {

using namespace sql;  // NOLINT(google-build-using-namespace): this file is all SQLite

namespace {

constexpr int kColumns = 5;  // log_id, time, level, text, fields

std::string insert_sql(std::size_t rows) {
  // OR FAIL: a failed statement keeps the rows it inserted before, so SQLite keeps no journal
  // to undo the statement alone; the writer undoes the request's savepoint or the whole
  // transaction instead, after any failure.
  std::string sql = "INSERT OR FAIL INTO messages(log_id, time, level, text, fields) VALUES";
  for (std::size_t r = 0; r < rows; ++r) {
    sql += r == 0 ? "(?,?,?,?,?)" : ",(?,?,?,?,?)";
  }
  return sql;
}

}  // namespace

MessageInserter::MessageInserter(sqlite3* db) : db_(db) {
  try {
    for (std::size_t k = 0; k < kStatements; ++k) {
      statements_[k] = prepare(db_, insert_sql(std::size_t{1} << k));
    }
  } catch (...) {
    finalize_statements();
    throw;
  }
}

MessageInserter::~MessageInserter() { finalize_statements(); }

void MessageInserter::finalize_statements() noexcept {
  for (sqlite3_stmt* s : statements_) {
    sqlite3_finalize(s);  // a no-op on a statement never prepared (nullptr)
  }
}

std::size_t MessageInserter::rows_for(std::size_t remaining) noexcept {
  return std::bit_floor(std::min(remaining, kMaxRows));
}

std::int64_t MessageInserter::insert(std::span<const Message> rows,
                                     std::span<const std::int64_t> log_ids) {
  // Every row's fields are encoded before any is bound: binding does not copy them, so the
  // buffer must not move until the statement has run.
  fields_.clear();
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (!rows[i].fields.empty()) {
      encode_fields(fields_, rows[i].fields);
    }
    fields_end_[i + 1] = fields_.size();
  }
  sqlite3_stmt* s = statements_[static_cast<std::size_t>(std::countr_zero(rows.size()))];
  ResetOnExit reset{s};
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Message& m = rows[i];
    const int first = static_cast<int>(i) * kColumns;
    bind_i64(db_, s, first + 1, log_ids[i]);
    bind_i64(db_, s, first + 2, m.time_ns);
    bind_i64(db_, s, first + 3, m.level);
    bind_text(db_, s, first + 4, m.text);
    if (fields_bytes(i) > 0) {  // else NULL, as cleared
      check(db_,
            sqlite3_bind_blob64(s, first + 5, fields_.data().data() + fields_end_[i],
                                fields_bytes(i), SQLITE_STATIC),
            "bind");
    }
  }
  check(db_, sqlite3_step(s), "insert message");
  // One statement's rows get consecutive ids: each the largest id in the table + 1.
  return sqlite3_last_insert_rowid(db_) - static_cast<std::int64_t>(rows.size()) + 1;
}

}  // namespace logd
