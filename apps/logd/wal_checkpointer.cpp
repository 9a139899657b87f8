#include "wal_checkpointer.hpp"

#include "sqlite_util.hpp"

#include <pthread.h>

#include <sqlite3.h>

namespace logd {

WalCheckpointer::WalCheckpointer(sqlite3* writer, const std::string& path, bool uri,
                                 bool synchronous_full)
    : db_(sql::open_db(path, uri, false)) {
  try {
    // The checkpoint's fsyncs, as the writer's own would be.
    sql::exec_on(db_, sql::synchronous_pragma(synchronous_full));
  } catch (...) {
    sqlite3_close_v2(db_);
    throw;
  }
  thread_ = std::thread([this] { run(); });
  // Replaces SQLite's automatic checkpoint on `writer` (which is itself a WAL hook).
  sqlite3_wal_hook(writer, &WalCheckpointer::on_commit, this);
}

WalCheckpointer::~WalCheckpointer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
  sqlite3_close_v2(db_);
}

int WalCheckpointer::on_commit(void* self, sqlite3* writer, const char* schema, int wal_pages) {
  auto& checkpointer = *static_cast<WalCheckpointer*>(self);
  if (wal_pages < checkpointer.asked_at_pages_) {
    checkpointer.asked_at_pages_ = 0;  // the WAL started over
  }
  // One checkpoint for each kBackgroundCheckpointPages written, as SQLite's own: small commits
  // asking for one each would have the database file fsynced thousands of times a second.
  if (wal_pages < checkpointer.asked_at_pages_ + kBackgroundCheckpointPages) {
    return SQLITE_OK;
  }
  checkpointer.asked_at_pages_ = wal_pages;
  if (wal_pages >= kWriterCheckpointPages) {
    // Waits for the thread's checkpoint in progress, which would make this one busy: a thread
    // slower than the writes would leave the WAL growing. The thread has copied most pages
    // already, so this copies few.
    std::lock_guard running(checkpointer.checkpointing_);
    sqlite3_wal_checkpoint_v2(writer, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  } else {
    {
      std::lock_guard lock(checkpointer.mutex_);
      checkpointer.requested_ = true;
    }
    checkpointer.wake_.notify_one();
  }
  return SQLITE_OK;  // a checkpoint that failed is retried later; the commit stands
}

void WalCheckpointer::run() {
  pthread_setname_np(pthread_self(), "logd-checkpoint");
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return requested_ || stopping_; });
    if (stopping_) {
      return;
    }
    requested_ = false;
    lock.unlock();
    {
      // PASSIVE: copies what no reader still needs, and never waits for the writer or a
      // reader (so the writer may wait for it).
      std::lock_guard running(checkpointing_);
      sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    }
    lock.lock();
  }
}

}  // namespace logd
