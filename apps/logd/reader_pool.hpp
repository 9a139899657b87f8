#pragma once

// The pool of SQLite reader connections of logd: bounded in size, idle connections closed.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace logd {

/// A reader connection with its prepared statements. Used by one thread at a time.
struct ReaderConnection {
  sqlite3* db = nullptr;
  sqlite3_stmt* read = nullptr;
  sqlite3_stmt* tail_after = nullptr;
  sqlite3_stmt* tail_last = nullptr;
  sqlite3_stmt* list = nullptr;
  sqlite3_stmt* count_logs = nullptr;
  std::chrono::steady_clock::time_point idle_since;
  ReaderConnection() = default;
  ReaderConnection(const ReaderConnection&) = delete;
  ReaderConnection& operator=(const ReaderConnection&) = delete;
  ~ReaderConnection();
};

/// Reader connections, opened on demand up to a maximum, reused, and closed after they have
/// been idle for a while (so a burst does not keep its descriptors and page caches).
/// Thread-safety: every member function may be called from any thread.
class ReaderPool {
 public:
  using Opener = std::function<std::unique_ptr<ReaderConnection>()>;
  ReaderPool(Opener open, std::size_t max_size, std::chrono::nanoseconds idle_timeout)
      : open_(std::move(open)), max_size_(max_size), idle_timeout_(idle_timeout) {}

  /// A connection, or nullptr if `max_size` are in use. Throws StorageError (opening failed).
  std::unique_ptr<ReaderConnection> acquire();
  /// Gives a connection back (idle from now).
  void release(std::unique_ptr<ReaderConnection> connection) noexcept;
  /// Closes the connections idle for longer than the idle timeout.
  void close_idle() noexcept;
  /// Closes every idle connection (at shutdown).
  void clear() noexcept;
  /// Open connections (in use and idle).
  std::size_t open_count() const;

 private:
  void close_idle_locked(std::vector<std::unique_ptr<ReaderConnection>>& closing) noexcept;

  Opener open_;
  const std::size_t max_size_;
  const std::chrono::nanoseconds idle_timeout_;
  mutable std::mutex mutex_;                             // guards idle_ and open_count_
  std::vector<std::unique_ptr<ReaderConnection>> idle_;  // most recently used last
  std::size_t open_count_ = 0;
};

}  // namespace logd
