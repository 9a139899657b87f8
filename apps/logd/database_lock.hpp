#pragma once

// One logd per database file: an advisory lock that a second server on the same file fails to
// take. The records kept in memory for tails assume that this server makes every write.

#include <stdexcept>
#include <string>

namespace logd {

/// Another process holds the lock on the database file. Thread-safety: an immutable value.
class DatabaseInUse : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An exclusive flock(2) on the database file, held for this object's lifetime and released by
/// the kernel if the process dies. It does not touch SQLite's own fcntl locks: Linux keeps the
/// two kinds apart, and the descriptor is closed only when this object is destroyed, which must
/// come after every SQLite connection to the file is closed (closing any descriptor of a file
/// drops the process's fcntl locks on it). Thread-safety: not to be shared; lifetime: owned by
/// the Store.
class DatabaseLock {
 public:
  /// Locks the existing file `path`; an empty path (a database in memory) locks nothing.
  /// Throws DatabaseInUse if another process holds it, std::system_error if it cannot be opened.
  explicit DatabaseLock(const std::string& path);
  DatabaseLock(const DatabaseLock&) = delete;
  DatabaseLock& operator=(const DatabaseLock&) = delete;
  ~DatabaseLock();

  bool held() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace logd
