#include "recent_records.hpp"

#include <algorithm>

namespace logd {

std::size_t RecentRecords::bytes_of(const Record& r) noexcept {
  std::size_t bytes = r.text.size();
  for (const Field& f : r.fields) {
    bytes += f.key.size() + f.value.size();
  }
  return bytes;
}

std::optional<std::vector<Record>> RecentRecords::after(std::string_view log,
                                                        std::uint64_t after_id,
                                                        std::uint32_t limit) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  auto it = entries_.find(log);
  if (it == entries_.end()) {
    if (entries_.size() >= limits_.max_logs) {
      drop_unasked_locked(now);
    }
    if (entries_.size() < limits_.max_logs) {
      entries_[std::string(log)].last_asked = now;
    }
    return std::nullopt;
  }
  Entry& entry = it->second;
  entry.last_asked = now;
  if (!entry.started || deletions_ > 0 || after_id < entry.floor) {
    return std::nullopt;
  }
  auto first = std::upper_bound(entry.kept.begin(), entry.kept.end(), after_id,
                                [](std::uint64_t id, const Record& r) { return id < r.id; });
  const auto count =
      std::min<std::size_t>(static_cast<std::size_t>(entry.kept.end() - first), limit);
  return std::vector<Record>(first, first + static_cast<std::ptrdiff_t>(count));
}

std::uint64_t RecentRecords::generation() const {
  std::lock_guard lock(mutex_);
  return generation_;
}

void RecentRecords::publish(std::span<const CommittedAppend> committed, std::uint64_t generation) {
  std::lock_guard lock(mutex_);
  if (entries_.empty() || committed.empty()) {
    return;
  }
  if (generation != generation_ || deletions_ > 0) {
    return;  // the deletion forgot everything kept: nothing here may claim to be complete
  }
  drop_unasked_locked(std::chrono::steady_clock::now());
  // Every record committed before this commit has a lower id than its first: a log followed
  // since is complete from here on.
  const std::uint64_t floor = committed.front().first_id - 1;
  for (auto& [name, entry] : entries_) {
    if (!entry.started) {
      entry.started = true;
      entry.floor = floor;
    }
  }
  // Requests mostly write one log: look a name up once for a run of its messages.
  Entry* entry = nullptr;
  std::string_view entry_log;
  for (const CommittedAppend& append : committed) {
    for (std::size_t i = 0; i < append.messages->size(); ++i) {
      const Message& m = (*append.messages)[i];
      if (entry_log.data() == nullptr || m.log != entry_log) {
        auto it = entries_.find(m.log);
        entry = it == entries_.end() ? nullptr : &it->second;
        entry_log = m.log;
      }
      if (entry != nullptr) {
        keep_locked(*entry, m, append.first_id + i);
      }
    }
  }
}

void RecentRecords::keep_locked(Entry& entry, const Message& m, std::uint64_t id) {
  Record& r = entry.kept.emplace_back();
  r.id = id;
  r.time_ns = m.time_ns;
  r.level = m.level;
  r.text = m.text;
  r.fields = m.fields;
  entry.bytes += bytes_of(r);
  while (entry.kept.size() > limits_.max_records_per_log ||
         (entry.bytes > limits_.max_bytes_per_log && !entry.kept.empty())) {
    entry.floor = entry.kept.front().id;
    entry.bytes -= bytes_of(entry.kept.front());
    entry.kept.pop_front();
  }
}

void RecentRecords::drop_unasked_locked(std::chrono::steady_clock::time_point now) {
  std::erase_if(entries_,
                [&](const auto& item) { return now - item.second.last_asked > limits_.keep_for; });
}

void RecentRecords::forget_locked() {
  ++generation_;
  for (auto& [name, entry] : entries_) {
    entry.started = false;
    entry.floor = 0;
    entry.kept.clear();
    entry.bytes = 0;
  }
}

void RecentRecords::deletion(int change) {
  std::lock_guard lock(mutex_);
  deletions_ += change;
  forget_locked();  // at the start and at the end: see publish()
}

std::size_t RecentRecords::logs() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

std::size_t RecentRecords::records() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& [name, entry] : entries_) {
    n += entry.kept.size();
  }
  return n;
}

}  // namespace logd
