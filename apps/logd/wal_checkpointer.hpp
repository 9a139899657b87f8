#pragma once

// Copies the WAL back into the database on a thread of its own. SQLite's automatic checkpoint
// runs inside the commit that passes 1000 WAL pages: it copies those pages and waits for the
// database file's fsync before the writer can answer anyone, a pause in every group commit's
// path. Here the writer's commit only wakes this thread, and checkpoints itself only when the
// WAL has grown past kWriterCheckpointPages (after the thread's checkpoint in progress, if
// any), so that the WAL stays bounded when this thread cannot keep up.

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

struct sqlite3;

namespace logd {

/// The store's background WAL checkpoint. Thread-safety: constructed and destroyed by the
/// store; its WAL hook runs on the writer's thread. Lifetime: must outlive the writer
/// connection's last commit, and is destroyed before the writer connection is closed or after.
class WalCheckpointer {
 public:
  /// Pages written to the WAL, since it started over or since the last checkpoint asked for,
  /// after which a commit asks for a checkpoint (SQLite's own default for its automatic one).
  static constexpr int kBackgroundCheckpointPages = 1000;
  /// Pages in the WAL from which the checkpoint a commit asks for is the writer's own, as
  /// SQLite's automatic checkpoint does: the bound on the WAL (within kBackgroundCheckpointPages)
  /// when the thread falls behind. Writes that never pause leave the thread no moment at which
  /// everything is copied and the WAL can start over.
  static constexpr int kWriterCheckpointPages = 4 * kBackgroundCheckpointPages;

  /// Opens a connection of its own to the database at `path` (a URI if `uri`), starts the
  /// thread, and takes over the checkpoints of `writer` (its WAL hook). Throws StorageError.
  WalCheckpointer(sqlite3* writer, const std::string& path, bool uri, bool synchronous_full);
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;
  /// Stops the thread (after the checkpoint in progress) and closes its connection.
  ~WalCheckpointer();

 private:
  static int on_commit(void* self, sqlite3* writer, const char* schema, int wal_pages);
  void run();

  sqlite3* db_;               // the thread's own connection
  std::mutex checkpointing_;  // held by the thread, or the writer, while it checkpoints
  int asked_at_pages_ = 0;    // the WAL's pages at the last checkpoint asked for (writer's)
  std::mutex mutex_;          // guards the two flags
  std::condition_variable wake_;
  bool requested_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace logd
