#include "sqlite_util.hpp"
#include "store.hpp"
#include "store_deletions.hpp"
#include "store_schema.hpp"

#include <limits>
#include <string>

#include <sqlite3.h>

// The store's maintenance connection, the delete task and the WAL checkpoint: in small
// transactions beside the writer's group commits. Retention: store_retention.cpp.

namespace logd {

using namespace sql;  // NOLINT(google-build-using-namespace): this file is all SQLite

sqlite3* Store::maintenance_connection() {
  if (maintenance_ == nullptr) {
    maintenance_ = open_db(options_.path, options_.uri, false);
    exec_on(maintenance_, synchronous_pragma(options_.synchronous_full));
  }
  return maintenance_;
}

std::uint64_t Store::delete_before(const std::string& log, std::int64_t before_ns) {
  std::lock_guard lock(maintenance_mutex_);
  sqlite3* db = maintenance_connection();
  sqlite3_stmt* find = nullptr;
  sqlite3_stmt* remove = nullptr;
  const FinalizeOnExit finalize{&find, &remove};
  find = prepare(db, "SELECT id FROM logs WHERE name = ?1");
  bind_text(db, find, 1, log);
  if (sqlite3_step(find) != SQLITE_ROW) {
    return 0;  // an unknown log
  }
  const std::int64_t log_id = sqlite3_column_int64(find, 0);
  sqlite3_reset(find);
  constexpr std::int64_t kAll = std::numeric_limits<std::int64_t>::max();
  {
    // Nothing to delete (retention asks about each log at every pass): keep the records kept
    // for its tails.
    sqlite3_stmt* any = nullptr;
    const FinalizeOnExit finalize_any{&any};
    any = prepare(db, before_ns == kAll
                          ? "SELECT 1 FROM messages WHERE log_id = ?1 LIMIT 1"
                          : "SELECT 1 FROM messages WHERE log_id = ?1 AND time < ?2 LIMIT 1");
    bind_i64(db, any, 1, log_id);
    if (before_ns != kAll) {
      bind_i64(db, any, 2, before_ns);
    }
    const int rc = sqlite3_step(any);
    check(db, rc, "find messages to delete");
    if (rc != SQLITE_ROW) {
      return 0;
    }
  }
  const auto deletion = recent_.begin_deletion();
  remove = prepare(db, std::string("DELETE FROM messages WHERE id IN (SELECT id FROM messages "
                                   "WHERE log_id = ?1 AND (?2 = 9223372036854775807 OR time < ?2) "
                                   "LIMIT 2000) RETURNING log_id, ") +
                           schema::kMessageBytes);
  DeletedFromLogs deleted;
  const std::uint64_t total = in_small_transactions(db, [&]() -> std::uint64_t {
    bind_i64(db, remove, 1, log_id);
    bind_i64(db, remove, 2, before_ns);
    deleted.collect(db, remove);
    return deleted.apply(db);
  });
  if (total > 0) {
    checkpoint();
  }
  return total;
}

void Store::checkpoint() noexcept {
  // Copies the WAL back into the database and starts it over, so that the WAL file stops
  // growing (a reader holding an old snapshot may delay that to a later checkpoint).
  sqlite3_wal_checkpoint_v2(maintenance_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
}

}  // namespace logd
