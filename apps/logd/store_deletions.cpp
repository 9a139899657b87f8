#include "store_deletions.hpp"

#include <sqlite3.h>

namespace logd::sql {

FinalizeOnExit::~FinalizeOnExit() {
  for (auto** s : statements_) {
    sqlite3_finalize(*s);
  }
}

void rollback_quietly(sqlite3* db) noexcept {
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
}

void DeletedFromLogs::collect(sqlite3* db, sqlite3_stmt* remove) {
  for (;;) {
    const int rc = sqlite3_step(remove);
    if (rc == SQLITE_DONE) {
      break;
    }
    if (rc != SQLITE_ROW) {
      sqlite3_reset(remove);
      fail(db, "delete");
    }
    auto& counts = by_log_[sqlite3_column_int64(remove, 0)];
    ++counts.messages;
    counts.bytes += sqlite3_column_int64(remove, 1);
  }
  sqlite3_reset(remove);
}

std::uint64_t DeletedFromLogs::apply(sqlite3* db) {
  if (by_log_.empty()) {
    return 0;
  }
  sqlite3_stmt* update = prepare(
      db, "UPDATE logs SET count = max(count - ?2, 0), bytes = max(bytes - ?3, 0) WHERE id = ?1");
  const FinalizeOnExit finalize{&update};
  std::uint64_t messages = 0;
  for (const auto& [log_id, counts] : by_log_) {
    bind_i64(db, update, 1, log_id);
    bind_i64(db, update, 2, counts.messages);
    bind_i64(db, update, 3, counts.bytes);
    const int rc = sqlite3_step(update);
    sqlite3_reset(update);
    check(db, rc, "recount");
    messages += static_cast<std::uint64_t>(counts.messages);
  }
  by_log_.clear();
  return messages;
}

}  // namespace logd::sql
