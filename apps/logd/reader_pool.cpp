#include "reader_pool.hpp"

#include "store.hpp"

#include <algorithm>

#include <sqlite3.h>

namespace logd {

ReaderConnection::~ReaderConnection() {
  for (sqlite3_stmt* s : {read, tail_after, tail_last, list, count_logs}) {
    sqlite3_finalize(s);
  }
  sqlite3_close_v2(db);
}

std::unique_ptr<ReaderConnection> ReaderPool::acquire() {
  std::vector<std::unique_ptr<ReaderConnection>> closing;  // closed outside the lock
  {
    std::lock_guard lock(mutex_);
    close_idle_locked(closing);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
    if (open_count_ >= max_size_) {
      return nullptr;
    }
    ++open_count_;
  }
  try {
    return open_();
  } catch (...) {
    std::lock_guard lock(mutex_);
    --open_count_;
    throw;
  }
}

void ReaderPool::release(std::unique_ptr<ReaderConnection> connection) noexcept {
  if (!connection) {
    return;
  }
  std::vector<std::unique_ptr<ReaderConnection>> closing;
  std::lock_guard lock(mutex_);
  try {
    connection->idle_since = std::chrono::steady_clock::now();
    idle_.push_back(std::move(connection));
  } catch (...) {  // out of memory: the connection is closed instead of pooled
    --open_count_;
  }
  close_idle_locked(closing);
}

void ReaderPool::close_idle_locked(
    std::vector<std::unique_ptr<ReaderConnection>>& closing) noexcept {
  const auto cutoff = std::chrono::steady_clock::now() - idle_timeout_;
  // idle_ is ordered by idle_since: the oldest first.
  const auto end = std::find_if(idle_.begin(), idle_.end(),
                                [&](const auto& c) { return c->idle_since > cutoff; });
  const auto n = static_cast<std::size_t>(end - idle_.begin());
  if (n == 0) {
    return;
  }
  try {
    closing.reserve(n);
    for (auto it = idle_.begin(); it != end; ++it) {
      closing.push_back(std::move(*it));
    }
  } catch (...) {  // out of memory: destroyed here instead
  }
  idle_.erase(idle_.begin(), end);
  open_count_ -= n;
}

void ReaderPool::close_idle() noexcept {
  std::vector<std::unique_ptr<ReaderConnection>> closing;
  std::lock_guard lock(mutex_);
  close_idle_locked(closing);
}

void ReaderPool::clear() noexcept {
  std::vector<std::unique_ptr<ReaderConnection>> closing;
  std::lock_guard lock(mutex_);
  open_count_ -= idle_.size();
  closing.swap(idle_);
}

std::size_t ReaderPool::open_count() const {
  std::lock_guard lock(mutex_);
  return open_count_;
}

}  // namespace logd
