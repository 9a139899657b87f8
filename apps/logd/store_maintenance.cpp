#include "sqlite_util.hpp"
#include "store.hpp"

#include <initializer_list>
#include <string>
#include <vector>

#include <sqlite3.h>

// The store's maintenance: deletes and retention, on a connection of their own, in small
// transactions beside the writer's group commits.

namespace logd {

using namespace sql;  // NOLINT(google-build-using-namespace): this file is all SQLite

namespace {

/// Finalizes statements when leaving a scope.
struct FinalizeOnExit {
  std::vector<sqlite3_stmt**> statements;
  FinalizeOnExit(std::initializer_list<sqlite3_stmt**> list) : statements(list) {}
  FinalizeOnExit(const FinalizeOnExit&) = delete;
  FinalizeOnExit& operator=(const FinalizeOnExit&) = delete;
  ~FinalizeOnExit() {
    for (auto** s : statements) {
      sqlite3_finalize(*s);
    }
  }
};

/// Runs `step` in transactions of its own until it returns 0; returns the sum of what it
/// returned.
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
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    total += n;
    if (n == 0) {
      return total;
    }
  }
}

}  // namespace

sqlite3* Store::maintenance_connection() {
  if (maintenance_ == nullptr) {
    maintenance_ = open_db(options_.path, options_.uri, false);
    exec_on(maintenance_,
            options_.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
  }
  return maintenance_;
}

std::uint64_t Store::delete_before(const std::string& log, std::int64_t before_ns) {
  std::lock_guard lock(maintenance_mutex_);
  sqlite3* db = maintenance_connection();
  sqlite3_stmt* find = nullptr;
  sqlite3_stmt* remove = nullptr;
  sqlite3_stmt* recount = nullptr;
  const FinalizeOnExit finalize{&find, &remove, &recount};
  find = prepare(db, "SELECT id FROM logs WHERE name = ?1");
  bind_text(db, find, 1, log);
  if (sqlite3_step(find) != SQLITE_ROW) {
    return 0;  // an unknown log
  }
  const std::int64_t log_id = sqlite3_column_int64(find, 0);
  sqlite3_reset(find);
  remove = prepare(db,
                   "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE log_id = ?1 "
                   "AND (?2 = 9223372036854775807 OR time < ?2) LIMIT 2000)");
  recount = prepare(db, "UPDATE logs SET count = max(count - ?2, 0) WHERE id = ?1");
  // Small transactions: the writer waits at most one of them for its own commit.
  const std::uint64_t deleted = in_small_transactions(db, [&]() -> std::uint64_t {
    bind_i64(db, remove, 1, log_id);
    bind_i64(db, remove, 2, before_ns);
    const int rc = sqlite3_step(remove);
    sqlite3_reset(remove);
    check(db, rc, "delete");
    const int n = sqlite3_changes(db);
    if (n > 0) {
      bind_i64(db, recount, 1, log_id);
      bind_i64(db, recount, 2, n);
      const int rc2 = sqlite3_step(recount);
      sqlite3_reset(recount);
      check(db, rc2, "recount");
    }
    return static_cast<std::uint64_t>(n);
  });
  checkpoint();
  return deleted;
}

std::uint64_t Store::enforce_retention(const RetentionOptions& retention, std::int64_t now_ns) {
  std::uint64_t deleted = 0;
  if (retention.max_age.count() > 0) {
    std::vector<std::string> names;
    {
      std::lock_guard lock(maintenance_mutex_);
      sqlite3* db = maintenance_connection();
      sqlite3_stmt* all = nullptr;
      const FinalizeOnExit finalize{&all};
      // Only the logs that have something old enough, found by the (log_id, time) index.
      all = prepare(db,
                    "SELECT name FROM logs l WHERE EXISTS (SELECT 1 FROM messages m WHERE "
                    "m.log_id = l.id AND m.time < ?1)");
      bind_i64(db, all, 1, now_ns - retention.max_age.count());
      while (sqlite3_step(all) == SQLITE_ROW) {
        names.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(all, 0)),
                           static_cast<std::size_t>(sqlite3_column_bytes(all, 0)));
      }
    }
    for (const auto& name : names) {
      deleted += delete_before(name, now_ns - retention.max_age.count());
    }
  }
  if (retention.max_bytes > 0) {
    std::lock_guard lock(maintenance_mutex_);
    sqlite3* db = maintenance_connection();
    sqlite3_stmt* used = nullptr;
    sqlite3_stmt* cutoff = nullptr;
    sqlite3_stmt* recount = nullptr;
    sqlite3_stmt* remove = nullptr;
    const FinalizeOnExit finalize{&used, &cutoff, &recount, &remove};
    // Pages in use: a deleted message's pages go to the free list, which new messages reuse,
    // so the file stops growing at about the limit.
    used = prepare(db,
                   "SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count "
                   "FROM pragma_freelist_count()), (SELECT page_size FROM pragma_page_size())");
    cutoff = prepare(db, "SELECT max(id) FROM (SELECT id FROM messages ORDER BY id LIMIT 2000)");
    recount = prepare(db,
                      "UPDATE logs SET count = max(0, count - (SELECT count(*) FROM messages m "
                      "WHERE m.log_id = logs.id AND m.id <= ?1)) WHERE id IN (SELECT DISTINCT "
                      "log_id FROM messages WHERE id <= ?1)");
    remove = prepare(db, "DELETE FROM messages WHERE id <= ?1");
    deleted += in_small_transactions(db, [&]() -> std::uint64_t {
      if (sqlite3_step(used) != SQLITE_ROW) {
        sqlite3_reset(used);
        fail(db, "page count");
      }
      const auto bytes = static_cast<std::uint64_t>(sqlite3_column_int64(used, 0)) *
                         static_cast<std::uint64_t>(sqlite3_column_int64(used, 1));
      sqlite3_reset(used);
      if (bytes <= retention.max_bytes) {
        return 0;
      }
      if (sqlite3_step(cutoff) != SQLITE_ROW || sqlite3_column_type(cutoff, 0) == SQLITE_NULL) {
        sqlite3_reset(cutoff);
        return 0;  // nothing left to delete
      }
      const std::int64_t last = sqlite3_column_int64(cutoff, 0);
      sqlite3_reset(cutoff);
      bind_i64(db, recount, 1, last);
      const int rc = sqlite3_step(recount);
      sqlite3_reset(recount);
      check(db, rc, "recount");
      bind_i64(db, remove, 1, last);
      const int rc2 = sqlite3_step(remove);
      sqlite3_reset(remove);
      check(db, rc2, "delete oldest");
      return static_cast<std::uint64_t>(sqlite3_changes(db));
    });
  }
  if (deleted > 0) {
    std::lock_guard lock(maintenance_mutex_);
    checkpoint();
  }
  return deleted;
}

void Store::checkpoint() noexcept {
  // Copies the WAL back into the database and starts it over, so that the WAL file stops
  // growing (a reader holding an old snapshot may delay that to a later checkpoint).
  sqlite3_wal_checkpoint_v2(maintenance_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
}

}  // namespace logd
