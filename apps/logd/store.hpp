#pragma once

// The SQLite store of logd: one writer connection owned by a writer thread that commits the
// appends of many connections together (group commit), and a pool of reader connections for
// reads, tails and the list. WAL mode, so readers never wait for the writer.

#include "logd_protocol.hpp"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace logd {

/// Options of a Store.
struct StoreOptions {
  /// The database file; created with its schema if missing.
  std::string path = "logd.sqlite";
  /// PRAGMA synchronous: true for FULL (fsync of the WAL at every commit: an acknowledged
  /// message survives power loss), false for NORMAL (survives a crash of the process, which
  /// includes kill -9, but the last commits may be lost on power loss).
  bool synchronous_full = true;
  /// The most messages that one group commit takes from the queue.
  std::size_t max_group_messages = 50000;
};

/// A SQLite failure; the operation wrote nothing. Thread-safety: an immutable value.
class StorageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The store is closing and takes no more appends. Thread-safety: an immutable value.
class StoreClosed : public std::runtime_error {
 public:
  StoreClosed() : std::runtime_error("the store is closing") {}
};

namespace detail {
struct ReaderConnection;
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
  ReadCursor(Store& store, std::unique_ptr<detail::ReaderConnection> connection);
  Store& store_;
  std::unique_ptr<detail::ReaderConnection> connection_;
  sqlite3_stmt* statement_ = nullptr;  // owned by connection_
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

  /// Starts a read. Throws StorageError.
  std::unique_ptr<ReadCursor> read(const ReadQuery& query);

  /// The messages of a tail query; if there are none, waits up to query.wait_ms for a commit
  /// (or until `stop` fires or the store closes) and looks again. Throws StorageError.
  std::vector<Record> tail(const TailQuery& query, const std::stop_token& stop);

  /// Every log with its message count and last id, by name. Throws StorageError.
  std::vector<LogInfo> list();

  /// Stops taking appends, commits what is queued, wakes tails, and stops the writer thread.
  /// Idempotent.
  void close();

  /// The options the store was opened with.
  const StoreOptions& options() const noexcept { return options_; }

 private:
  friend class ReadCursor;
  class ReaderLease;
  using PendingPtr = std::shared_ptr<detail::PendingAppend>;

  std::unique_ptr<detail::ReaderConnection> acquire_reader();
  void release_reader(std::unique_ptr<detail::ReaderConnection> connection) noexcept;
  std::vector<Record> tail_once(const TailQuery& query);

  void writer_loop();
  void commit_group(std::vector<PendingPtr>& group);
  std::int64_t log_id_for(const std::string& name);
  void exec(const char* sql);

  StoreOptions options_;

  // Writer state: the connection and statements are used by the writer thread only.
  sqlite3* writer_ = nullptr;
  sqlite3_stmt* insert_message_ = nullptr;
  sqlite3_stmt* insert_log_ = nullptr;
  sqlite3_stmt* select_log_ = nullptr;
  sqlite3_stmt* update_log_ = nullptr;
  std::unordered_map<std::string, std::int64_t> log_ids_;

  std::mutex queue_mutex_;  // guards queue_, closing_ and every PendingAppend's result
  std::condition_variable queue_cv_;
  std::condition_variable done_cv_;
  std::deque<PendingPtr> queue_;
  bool closing_ = false;
  std::thread writer_thread_;

  std::mutex commit_mutex_;  // guards commit_seq_ and tail_closing_
  std::condition_variable_any commit_cv_;
  std::uint64_t commit_seq_ = 0;
  bool tail_closing_ = false;

  std::mutex readers_mutex_;  // guards readers_
  std::vector<std::unique_ptr<detail::ReaderConnection>> readers_;
};

}  // namespace logd
