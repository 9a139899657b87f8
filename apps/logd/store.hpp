#pragma once

// The SQLite store of logd: one writer connection owned by a writer thread that commits the
// appends of many connections together (group commit), and a pool of reader connections for
// reads, tails and the list. WAL mode, so readers never wait for the writer.

#include "database_lock.hpp"
#include "logd_protocol.hpp"
#include "message_inserter.hpp"
#include "reader_pool.hpp"
#include "recent_records.hpp"
#include "wal_checkpointer.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace logd {

/// Options of a Store.
struct StoreOptions {
  /// The database file; created with its schema if missing. A plain path: a name that starts
  /// with "file:" is a file of that name, not an SQLite URI (unless `uri` is set).
  std::string path = "logd.sqlite";
  /// Take `path` as an SQLite URI (file:...?mode=...).
  bool uri = false;
  /// PRAGMA synchronous: true for FULL (fsync of the WAL at every commit: an acknowledged
  /// message survives power loss), false for NORMAL (survives a crash of the process, which
  /// includes kill -9, but the last commits may be lost on power loss).
  bool synchronous_full = true;
  /// The most messages that one group commit takes from the queue.
  std::size_t max_group_messages = 50000;
  /// The most reader connections open at once (reads, tails and lists in progress).
  std::size_t max_readers = 64;
  /// A reader connection idle for this long is closed.
  std::chrono::nanoseconds reader_idle_timeout = std::chrono::seconds(30);
  /// The most log names whose ids the writer keeps in memory.
  std::size_t max_cached_names = 4096;
  /// The records kept in memory for the tails that follow a log.
  RecentRecordsLimits recent;
};

/// The limits of one log; 0 means no limit of that kind for it.
struct LogRetention {
  /// Its messages whose time is older than this are deleted.
  std::chrono::nanoseconds max_age{0};
  /// Its stored bytes (logs.bytes: see store_schema.hpp) are kept at or under this many by
  /// deleting its oldest messages (by id).
  std::uint64_t max_bytes = 0;
  bool operator==(const LogRetention&) const = default;
};

/// Limits on what the store keeps; 0 means no limit.
struct RetentionOptions {
  /// Messages whose time is older than this are deleted (in every log without its own limits).
  std::chrono::nanoseconds max_age{0};
  /// The database's pages in use are kept under this many bytes by deleting the oldest
  /// messages (of all logs, by id).
  std::uint64_t max_bytes = 0;
  /// Each log without its own limits is kept at or under this many stored bytes by deleting
  /// its oldest messages (by id).
  std::uint64_t max_log_bytes = 0;
  /// Logs with limits of their own, by name: instead of max_age and max_log_bytes (max_bytes
  /// still counts their messages).
  std::map<std::string, LogRetention, std::less<>> logs;

  /// The limits that apply to the log `name`.
  LogRetention limits_of(std::string_view name) const {
    if (auto it = logs.find(name); it != logs.end()) {
      return it->second;
    }
    return {max_age, max_log_bytes};
  }
  /// True if there is anything to enforce.
  bool any() const {
    if (max_age.count() > 0 || max_bytes > 0 || max_log_bytes > 0) {
      return true;
    }
    return std::any_of(logs.begin(), logs.end(), [](const auto& entry) {
      return entry.second.max_age.count() > 0 || entry.second.max_bytes > 0;
    });
  }
};

/// A SQLite failure; the operation wrote nothing. Thread-safety: an immutable value.
class StorageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Every reader connection is in use. Thread-safety: an immutable value.
class StoreBusy : public std::runtime_error {
 public:
  StoreBusy() : std::runtime_error("every reader connection is in use") {}
};

/// The store is closing and takes no more appends. Thread-safety: an immutable value.
class StoreClosed : public std::runtime_error {
 public:
  StoreClosed() : std::runtime_error("the store is closing") {}
};

namespace detail {
struct PendingAppend;
}  // namespace detail

class Store;

/// A read in progress: steps through the matching messages one at a time, so a result of any size
/// passes in constant memory. It holds a reader connection (and its read transaction) until it is
/// destroyed.
/// Thread-safety: one thread at a time (successive calls may come from different threads).
/// Lifetime: must not outlive the Store.
class ReadCursor {
 public:
  ReadCursor(const ReadCursor&) = delete;
  ReadCursor& operator=(const ReadCursor&) = delete;
  ~ReadCursor();
  /// The next record into `out`; false at the end. Throws StorageError.
  bool next(Record& out);

 private:
  friend class Store;
  ReadCursor(Store& store, std::unique_ptr<ReaderConnection> connection);
  Store& store_;
  std::unique_ptr<ReaderConnection> connection_;
  sqlite3_stmt* statement_ = nullptr;  // owned by connection_
};

/// The list of logs in progress, from one snapshot: the count first, then the logs one at a
/// time by name, in constant memory. Holds a reader connection until destroyed.
/// Thread-safety and lifetime: as ReadCursor.
class ListCursor {
 public:
  ListCursor(const ListCursor&) = delete;
  ListCursor& operator=(const ListCursor&) = delete;
  ~ListCursor();
  /// How many logs the snapshot holds (as many as next() gives).
  std::uint64_t count() const noexcept { return count_; }
  /// The next log into `out`; false at the end. Throws StorageError.
  bool next(LogInfo& out);

 private:
  friend class Store;
  ListCursor(Store& store, std::unique_ptr<ReaderConnection> connection);
  Store& store_;
  std::unique_ptr<ReaderConnection> connection_;
  std::uint64_t count_ = 0;
};

/// The message store.
/// Thread-safety: every public member function may be called from any thread at once.
/// Lifetime: close() (or the destructor) waits for the appends already queued to commit; the
/// Store must outlive every ReadCursor it made.
class Store {
 public:
  /// Opens (or creates) the database, sets WAL mode and the synchronous level, creates the
  /// schema and starts the writer thread. Throws StorageError.
  explicit Store(StoreOptions options);
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  ~Store();

  /// Appends `messages` (validated already; time_ns as given) in one transaction, which may be
  /// shared with other appends (group commit), and returns once it has committed: the id of the
  /// first message; the others follow consecutively. Blocks. Throws StorageError (nothing of
  /// these messages was written) or StoreClosed.
  std::uint64_t append(std::vector<Message> messages);

  /// Starts a read. Throws StorageError, StoreBusy.
  std::unique_ptr<ReadCursor> read(const ReadQuery& query);

  /// The messages of a tail query now (it does not wait). Throws StorageError, StoreBusy.
  std::vector<Record> tail(const TailQuery& query);

  /// The messages of a tail query from memory, without a query, if the store keeps every record
  /// of the log after query.after_id (see RecentRecords); otherwise nullopt: call tail(). Never
  /// blocks on the database. Marks the log as followed.
  std::optional<std::vector<Record>> recent_tail(const TailQuery& query);

  /// Starts listing every log with its message count and last id, by name. Throws
  /// StorageError, StoreBusy.
  std::unique_ptr<ListCursor> list();

  /// Deletes the messages of `log` older than `before_ns` (all of them if before_ns is
  /// INT64_MAX), in small transactions beside the appends, then checkpoints the WAL (if any were).
  /// The log stays in the list (with its new count). Returns how many were deleted. Blocks; one
  /// delete at a time. Throws StorageError (what was deleted by then stays deleted).
  std::uint64_t delete_before(const std::string& log, std::int64_t before_ns);

  /// Deletes what `retention` says is too old or too much, in small transactions, then
  /// checkpoints the WAL: first by age, then each log over its own byte limit, then the
  /// database over its byte limit. Returns how many messages were deleted. Blocks. Throws
  /// StorageError (what was deleted by then stays deleted).
  std::uint64_t enforce_retention(const RetentionOptions& retention, std::int64_t now_ns);

  /// Called by the writer thread after every commit with the names of the logs it wrote to, each
  /// once (set before the first append; it must not block).
  void set_commit_listener(std::function<void(const std::vector<std::string>&)> listener) {
    commit_listener_ = std::move(listener);
  }

  /// Closes reader connections idle past their timeout.
  void close_idle_readers() noexcept { readers_.close_idle(); }
  /// Reader connections open now.
  std::size_t open_readers() const { return readers_.open_count(); }
  /// Log names whose ids the writer keeps in memory now.
  std::size_t cached_names() const;

  /// Stops taking appends (they throw StoreClosed) and lets the writer commit what is queued
  /// and end. Does not wait. Idempotent.
  void refuse_appends();

  /// As refuse_appends, then waits for the writer thread to end. Idempotent.
  void close();

  /// The options the store was opened with.
  const StoreOptions& options() const noexcept { return options_; }

 private:
  friend class ReadCursor;
  friend class ListCursor;
  class ReaderLease;
  using PendingPtr = std::shared_ptr<detail::PendingAppend>;

  std::unique_ptr<ReaderConnection> open_reader();
  sqlite3* maintenance_connection();  // under maintenance_mutex_
  void checkpoint() noexcept;         // under maintenance_mutex_
  std::uint64_t enforce_age(const RetentionOptions& retention, std::int64_t now_ns);
  std::uint64_t enforce_log_bytes(const RetentionOptions& retention);
  std::uint64_t trim_log(std::int64_t log_id, std::uint64_t max_bytes);  // under the mutex
  std::uint64_t enforce_total_bytes(std::uint64_t max_bytes);
  std::unique_ptr<ReaderConnection> acquire_reader();
  void release_reader(std::unique_ptr<ReaderConnection> connection) noexcept;

  void writer_loop();
  void commit_group(std::vector<PendingPtr>& group);
  /// One transaction for `group`, each request in a savepoint if `savepoints`. False when a
  /// request failed without savepoints among others: nothing is written, and the group is to
  /// be written again with them. Else each request has its result.
  bool write_group(std::vector<PendingPtr>& group, bool savepoints);
  /// Gives the records of `group` that committed to recent_.
  void publish_recent(const std::vector<PendingPtr>& group, std::uint64_t generation);
  /// The names of the logs that `group` writes to, each once (in committed_logs_).
  const std::vector<std::string>& logs_of(const std::vector<PendingPtr>& group);
  std::int64_t log_id_for(const std::string& name);
  /// The ids of `count` messages just inserted, from `first` on as SQLite gave them, or moved
  /// to next_id_ and after if those ids were given before; returns the first and advances
  /// next_id_. Writer thread only. Throws StorageError.
  std::int64_t ids_never_given(std::int64_t first, std::size_t count);
  void exec(const char* sql);
  void add_bytes_column();
  /// Finalizes the writer's prepared statements, in the constructor's failure and the destructor.
  void finalize_writer_statements() noexcept;

  StoreOptions options_;
  // Taken first and released last: after every connection to the file is closed.
  std::optional<DatabaseLock> lock_;

  // Writer state: the connection and statements are used by the writer thread only.
  sqlite3* writer_ = nullptr;
  std::optional<MessageInserter> insert_messages_;
  // Declared after writer_ and destroyed after the destructor closes it: no commit calls its
  // hook once it is gone.
  std::optional<WalCheckpointer> checkpointer_;
  sqlite3_stmt* insert_log_ = nullptr;
  sqlite3_stmt* select_log_ = nullptr;
  sqlite3_stmt* update_log_ = nullptr;
  sqlite3_stmt* move_message_ = nullptr;
  std::int64_t next_id_ = 1;  // the id of the next message: larger than every id ever given
  std::unordered_map<std::string, std::int64_t> log_ids_;  // at most max_cached_names
  std::atomic<std::size_t> cached_names_{0};
  std::function<void(const std::vector<std::string>&)> commit_listener_;
  std::vector<std::string> committed_logs_;  // the writer's: the logs of the last commit
  std::vector<CommittedAppend> committed_;   // the writer's: the requests of the last commit
  RecentRecords recent_{options_.recent};

  std::mutex queue_mutex_;  // guards queue_, closing_ and every PendingAppend's result
  std::condition_variable queue_cv_;
  std::deque<PendingPtr> queue_;
  bool closing_ = false;
  std::thread writer_thread_;

  ReaderPool readers_;

  std::mutex maintenance_mutex_;    // guards maintenance_: deletes and retention, one at a time
  sqlite3* maintenance_ = nullptr;  // a second writing connection, opened on first use
};

}  // namespace logd
