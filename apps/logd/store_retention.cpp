#include "sqlite_util.hpp"
#include "store.hpp"
#include "store_deletions.hpp"
#include "store_schema.hpp"

#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sqlite3.h>

// The retention limits: by age, by each log's bytes, by the database's bytes. Each runs on the
// maintenance connection in transactions of at most kBatch messages, beside the writer's group
// commits, and checkpoints the WAL after what it deleted.

namespace logd {

using namespace sql;  // NOLINT(google-build-using-namespace): this file is all SQLite

namespace {

/// The most messages one retention transaction deletes.
constexpr int kBatch = 2000;

std::string column_text(sqlite3_stmt* s, int column) {
  return {reinterpret_cast<const char*>(sqlite3_column_text(s, column)),
          static_cast<std::size_t>(sqlite3_column_bytes(s, column))};
}

}  // namespace

std::uint64_t Store::enforce_retention(const RetentionOptions& retention, std::int64_t now_ns) {
  std::uint64_t deleted = enforce_age(retention, now_ns);
  deleted += enforce_log_bytes(retention);
  if (retention.max_bytes > 0) {
    deleted += enforce_total_bytes(retention.max_bytes);
  }
  return deleted;
}

std::uint64_t Store::enforce_age(const RetentionOptions& retention, std::int64_t now_ns) {
  std::vector<std::pair<std::string, std::int64_t>> due;  // a log, and its cutoff time
  if (retention.max_age.count() > 0) {
    std::lock_guard lock(maintenance_mutex_);
    sqlite3* db = maintenance_connection();
    sqlite3_stmt* all = nullptr;
    const FinalizeOnExit finalize{&all};
    // Only the logs that have something old enough, found by the (log_id, time) index.
    all = prepare(db,
                  "SELECT name FROM logs l WHERE EXISTS (SELECT 1 FROM messages m WHERE "
                  "m.log_id = l.id AND m.time < ?1)");
    const std::int64_t cutoff = now_ns - retention.max_age.count();
    bind_i64(db, all, 1, cutoff);
    while (sqlite3_step(all) == SQLITE_ROW) {
      std::string name = column_text(all, 0);
      if (!retention.logs.contains(name)) {  // those have their own limits
        due.emplace_back(std::move(name), cutoff);
      }
    }
  }
  for (const auto& [name, limits] : retention.logs) {
    if (limits.max_age.count() > 0) {
      due.emplace_back(name, now_ns - limits.max_age.count());
    }
  }
  std::uint64_t deleted = 0;
  for (const auto& [name, cutoff] : due) {
    deleted += delete_before(name, cutoff);  // nothing, quickly, for a log with nothing so old
  }
  return deleted;
}

std::uint64_t Store::enforce_log_bytes(const RetentionOptions& retention) {
  // The smallest byte limit in force: no log at or under it needs a look.
  std::uint64_t smallest = retention.max_log_bytes;
  for (const auto& [name, limits] : retention.logs) {
    if (limits.max_bytes > 0 && (smallest == 0 || limits.max_bytes < smallest)) {
      smallest = limits.max_bytes;
    }
  }
  if (smallest == 0) {
    return 0;
  }
  std::lock_guard lock(maintenance_mutex_);
  sqlite3* db = maintenance_connection();
  std::vector<std::pair<std::int64_t, std::uint64_t>> over;  // a log id, and its limit
  {
    sqlite3_stmt* candidates = nullptr;
    const FinalizeOnExit finalize{&candidates};
    candidates = prepare(db, "SELECT id, name, bytes FROM logs WHERE bytes > ?1");
    bind_i64(db, candidates, 1,
             static_cast<std::int64_t>(
                 std::min<std::uint64_t>(smallest, std::numeric_limits<std::int64_t>::max())));
    int rc = 0;
    while ((rc = sqlite3_step(candidates)) == SQLITE_ROW) {
      const std::uint64_t limit = retention.limits_of(column_text(candidates, 1)).max_bytes;
      if (limit > 0 && static_cast<std::uint64_t>(sqlite3_column_int64(candidates, 2)) > limit) {
        over.emplace_back(sqlite3_column_int64(candidates, 0), limit);
      }
    }
    check(db, rc, "logs over their byte limit");
  }
  if (over.empty()) {
    return 0;
  }
  const auto deletion = recent_.begin_deletion();
  std::uint64_t deleted = 0;
  for (const auto& [log_id, limit] : over) {
    deleted += trim_log(log_id, limit);
    checkpoint();
  }
  return deleted;
}

std::uint64_t Store::trim_log(std::int64_t log_id, std::uint64_t max_bytes) {
  sqlite3* db = maintenance_connection();
  sqlite3_stmt* size = nullptr;
  sqlite3_stmt* oldest = nullptr;
  sqlite3_stmt* remove = nullptr;
  const FinalizeOnExit finalize{&size, &oldest, &remove};
  size = prepare(db, "SELECT bytes FROM logs WHERE id = ?1");
  oldest = prepare(db, std::string("SELECT id, ") + schema::kMessageBytes +
                           " FROM messages WHERE log_id = ?1 ORDER BY id LIMIT " +
                           std::to_string(kBatch));
  remove = prepare(db, std::string("DELETE FROM messages WHERE log_id = ?1 AND id <= ?2 "
                                   "RETURNING log_id, ") +
                           schema::kMessageBytes);
  DeletedFromLogs deleted;
  return in_small_transactions(db, [&]() -> std::uint64_t {
    bind_i64(db, size, 1, log_id);
    const bool found = sqlite3_step(size) == SQLITE_ROW;
    const auto bytes = found ? static_cast<std::uint64_t>(sqlite3_column_int64(size, 0)) : 0;
    sqlite3_reset(size);
    if (bytes <= max_bytes) {
      return 0;
    }
    // The oldest messages whose bytes make up the excess, and no more (at most kBatch of them
    // in one transaction).
    const std::uint64_t excess = bytes - max_bytes;
    std::uint64_t covered = 0;
    std::int64_t last = 0;
    bind_i64(db, oldest, 1, log_id);
    int rc = 0;
    while (covered < excess && (rc = sqlite3_step(oldest)) == SQLITE_ROW) {
      last = sqlite3_column_int64(oldest, 0);
      covered += static_cast<std::uint64_t>(sqlite3_column_int64(oldest, 1));
    }
    sqlite3_reset(oldest);
    check(db, rc, "oldest messages");
    if (last == 0) {
      return 0;  // no messages left
    }
    bind_i64(db, remove, 1, log_id);
    bind_i64(db, remove, 2, last);
    deleted.collect(db, remove);
    return deleted.apply(db);
  });
}

std::uint64_t Store::enforce_total_bytes(std::uint64_t max_bytes) {
  std::lock_guard lock(maintenance_mutex_);
  sqlite3* db = maintenance_connection();
  sqlite3_stmt* used = nullptr;
  sqlite3_stmt* cutoff = nullptr;
  sqlite3_stmt* remove = nullptr;
  const FinalizeOnExit finalize{&used, &cutoff, &remove};
  // Pages in use: a deleted message's pages go to the free list, which new messages reuse, so
  // the file stops growing at about the limit.
  used = prepare(db,
                 "SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count "
                 "FROM pragma_freelist_count()), (SELECT page_size FROM pragma_page_size())");
  cutoff = prepare(db, "SELECT max(id) FROM (SELECT id FROM messages ORDER BY id LIMIT " +
                           std::to_string(kBatch) + ")");
  remove = prepare(db, std::string("DELETE FROM messages WHERE id <= ?1 RETURNING log_id, ") +
                           schema::kMessageBytes);
  DeletedFromLogs deleted;
  std::optional<RecentRecords::Deletion> deletion;
  const std::uint64_t total = in_small_transactions(db, [&]() -> std::uint64_t {
    if (sqlite3_step(used) != SQLITE_ROW) {
      sqlite3_reset(used);
      fail(db, "page count");
    }
    const auto bytes = static_cast<std::uint64_t>(sqlite3_column_int64(used, 0)) *
                       static_cast<std::uint64_t>(sqlite3_column_int64(used, 1));
    sqlite3_reset(used);
    if (bytes <= max_bytes) {
      return 0;
    }
    if (sqlite3_step(cutoff) != SQLITE_ROW || sqlite3_column_type(cutoff, 0) == SQLITE_NULL) {
      sqlite3_reset(cutoff);
      return 0;  // nothing left to delete
    }
    const std::int64_t last = sqlite3_column_int64(cutoff, 0);
    sqlite3_reset(cutoff);
    if (!deletion) {
      deletion.emplace(recent_);  // held until the last transaction has committed
    }
    bind_i64(db, remove, 1, last);
    deleted.collect(db, remove);
    return deleted.apply(db);
  });
  if (total > 0) {
    checkpoint();
  }
  return total;
}

}  // namespace logd
