// The store's write side: appends queue their messages, and one writer thread commits whatever
// is queued together (group commit). A request that fails is undone alone: the group is then
// written again with each request in a savepoint of its own.

#include "sqlite_util.hpp"
#include "store.hpp"
#include "store_pending.hpp"
#include "store_schema.hpp"

#include <pthread.h>

#include <algorithm>
#include <array>
#include <map>
#include <span>
#include <string_view>
#include <unordered_set>
#include <utility>

#include <sqlite3.h>

namespace logd {

using namespace sql;  // NOLINT(google-build-using-namespace): this file is all SQLite

std::uint64_t Store::append(std::vector<Message> messages) {
  auto pending = std::make_shared<detail::PendingAppend>();
  pending->messages = std::move(messages);
  std::unique_lock lock(queue_mutex_);
  if (closing_) {
    throw StoreClosed();
  }
  queue_.push_back(pending);
  queue_cv_.notify_one();
  pending->committed.wait(lock, [&] { return pending->done; });
  if (pending->failed) {
    throw StorageError(pending->error);
  }
  return pending->first_id;
}

void Store::writer_loop() {
  // Named, so that top -H and perf tell the thread that commits from the tasks' threads.
  pthread_setname_np(pthread_self(), "logd-writer");
  for (;;) {
    std::vector<PendingPtr> group;
    {
      std::unique_lock lock(queue_mutex_);
      queue_cv_.wait(lock, [&] { return !queue_.empty() || closing_; });
      if (queue_.empty()) {
        return;  // closing, and everything queued has been committed
      }
      std::size_t messages = 0;
      while (!queue_.empty() && (group.empty() || messages + queue_.front()->messages.size() <=
                                                      options_.max_group_messages)) {
        messages += queue_.front()->messages.size();
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    const std::uint64_t generation = recent_.generation();
    commit_group(group);
    // Before the appends are answered and the tails woken: a client that has its OK, and a
    // woken tail, find these records in memory as they would in the database.
    publish_recent(group, generation);
    {
      std::lock_guard lock(queue_mutex_);
      for (auto& p : group) {
        p->done = true;
      }
    }
    for (auto& p : group) {  // `group` keeps each condition variable alive while it is signalled
      p->committed.notify_one();
    }
    if (commit_listener_) {
      commit_listener_(logs_of(group));
    }
  }
}

void Store::publish_recent(const std::vector<PendingPtr>& group, std::uint64_t generation) {
  committed_.clear();
  for (const auto& p : group) {
    if (!p->failed && !p->messages.empty()) {
      committed_.push_back(CommittedAppend{.messages = &p->messages, .first_id = p->first_id});
    }
  }
  recent_.publish(committed_, generation);
}

const std::vector<std::string>& Store::logs_of(const std::vector<PendingPtr>& group) {
  committed_logs_.clear();
  std::unordered_set<std::string_view> seen;  // views of the group's names, alive meanwhile
  for (const auto& p : group) {
    for (const Message& m : p->messages) {
      // Batches mostly write one log: compare with the last name before hashing.
      if ((committed_logs_.empty() || committed_logs_.back() != m.log) &&
          seen.insert(m.log).second) {
        committed_logs_.push_back(m.log);
      }
    }
  }
  return committed_logs_;
}

std::int64_t Store::log_id_for(const std::string& name) {
  if (auto it = log_ids_.find(name); it != log_ids_.end()) {
    return it->second;
  }
  {
    ResetOnExit reset{insert_log_};
    bind_text(writer_, insert_log_, 1, name);
    check(writer_, sqlite3_step(insert_log_), "insert log");
  }
  ResetOnExit reset{select_log_};
  bind_text(writer_, select_log_, 1, name);
  if (sqlite3_step(select_log_) != SQLITE_ROW) {
    fail(writer_, "select log");
  }
  const std::int64_t id = sqlite3_column_int64(select_log_, 0);
  if (log_ids_.size() >= options_.max_cached_names) {
    log_ids_.clear();  // bounded: the names in use come back on their next append
  }
  log_ids_.emplace(name, id);
  cached_names_.store(log_ids_.size(), std::memory_order_relaxed);
  return id;
}

std::int64_t Store::ids_never_given(std::int64_t first, std::size_t count) {
  // Binding every id costs a B-tree search per insert (3-14 % fewer messages a second in
  // logd_bench); SQLite's own choice only goes wrong after a delete of the newest messages.
  const auto n = static_cast<std::int64_t>(count);
  if (first < next_id_) {
    // The last first: each moves above every message not moved yet, so none lands on another.
    for (std::int64_t i = n - 1; i >= 0; --i) {
      ResetOnExit reset{move_message_};
      bind_i64(writer_, move_message_, 1, first + i);
      bind_i64(writer_, move_message_, 2, next_id_ + i);
      check(writer_, sqlite3_step(move_message_), "move message");
    }
    first = next_id_;
  }
  next_id_ = first + n;
  return first;
}

void Store::commit_group(std::vector<PendingPtr>& group) {
  // First without a savepoint for each request, which cost about 15 % of the writer's
  // instructions (bench/logd/writer_instructions.sh). A request that fails then undoes the
  // whole group, and the group is written again with them, so that it is undone alone.
  if (!write_group(group, false)) {
    write_group(group, true);
  }
}

bool Store::write_group(std::vector<PendingPtr>& group, bool savepoints) {
  // Ids not committed are handed out again: the ids stay dense when nothing fails.
  const std::int64_t first_unused_id = next_id_;
  auto forget_uncommitted = [&] {
    next_id_ = first_unused_id;
    log_ids_.clear();  // names inserted by the undone transaction have no id
    cached_names_.store(0, std::memory_order_relaxed);
  };
  // Results are written into the PendingAppends here without the queue mutex: their waiters
  // only look at them after `done`, which is set under the mutex afterwards.
  auto fail_all = [&](const std::string& why) {
    forget_uncommitted();
    for (auto& p : group) {
      if (!p->failed) {
        p->failed = true;
        p->error = why;
      }
    }
  };
  try {
    exec("BEGIN IMMEDIATE");
  } catch (const StorageError& e) {
    fail_all(e.what());
    return true;
  }
  struct Touched {
    std::int64_t count = 0;
    std::int64_t last_id = 0;
    std::uint64_t bytes = 0;
  };
  std::map<std::int64_t, Touched> touched;
  std::array<std::int64_t, MessageInserter::kMaxRows> log_ids{};
  bool write_again = false;  // a request failed without savepoints, among others
  try {
    for (auto& p : group) {
      std::map<std::int64_t, Touched> mine;
      const std::int64_t request_first_id = next_id_;
      try {
        if (savepoints) {
          exec("SAVEPOINT append");
        }
        const std::span<const Message> messages(p->messages);
        for (std::size_t done = 0; done < messages.size();) {
          const auto rows =
              messages.subspan(done, MessageInserter::rows_for(messages.size() - done));
          for (std::size_t i = 0; i < rows.size(); ++i) {
            log_ids[i] = log_id_for(rows[i].log);
          }
          const std::int64_t first = ids_never_given(
              insert_messages_->insert(rows, std::span(log_ids).first(rows.size())), rows.size());
          if (done == 0) {
            p->first_id = static_cast<std::uint64_t>(first);
          }
          done += rows.size();
          for (std::size_t i = 0; i < rows.size(); ++i) {
            auto& t = mine[log_ids[i]];
            ++t.count;
            t.last_id = std::max(t.last_id, first + static_cast<std::int64_t>(i));
            t.bytes +=
                schema::message_bytes(rows[i].text.size(), insert_messages_->fields_bytes(i));
          }
        }
        if (savepoints) {
          exec("RELEASE append");
        }
        for (const auto& [log_id, t] : mine) {
          auto& all = touched[log_id];
          all.count += t.count;
          all.last_id = std::max(all.last_id, t.last_id);
          all.bytes += t.bytes;
        }
      } catch (const StorageError& e) {
        if (!savepoints) {
          write_again = group.size() > 1;
          throw;
        }
        // This request alone is undone; the others of the group go on.
        exec("ROLLBACK TO append");
        exec("RELEASE append");
        next_id_ = request_first_id;
        p->failed = true;
        p->error = e.what();
        log_ids_.clear();
      }
    }
    for (const auto& [log_id, t] : touched) {
      ResetOnExit reset{update_log_};
      bind_i64(writer_, update_log_, 1, log_id);
      bind_i64(writer_, update_log_, 2, t.count);
      bind_i64(writer_, update_log_, 3, t.last_id);
      bind_i64(writer_, update_log_, 4, to_sql(t.bytes));
      check(writer_, sqlite3_step(update_log_), "update log");
    }
    exec("COMMIT");
  } catch (const StorageError& e) {
    try {
      exec("ROLLBACK");
    } catch (const StorageError&) {  // the transaction may already be gone
    }
    if (write_again) {
      forget_uncommitted();
      return false;
    }
    fail_all(e.what());
  }
  return true;
}

}  // namespace logd
