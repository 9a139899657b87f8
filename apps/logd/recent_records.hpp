#pragma once

// The records lately committed to the logs that tails follow, kept in memory. A tail that has
// caught up with its log (`serialserver-log tail LOG --follow`) is answered from here, on its
// connection's thread, without a query: a commit that wakes many followers of one log then costs
// no SQLite query and no hop to the query threads for each of them.

#include "logd_protocol.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace logd {

/// The bounds of a RecentRecords.
struct RecentRecordsLimits {
  /// Logs whose records are kept at once; the tails of further logs query the database.
  std::size_t max_logs = 64;
  /// Records kept of one log; a tail further behind queries the database.
  std::size_t max_records_per_log = 1024;
  /// Bytes of text and fields kept of one log.
  std::size_t max_bytes_per_log = std::size_t{256} * 1024;
  /// A log no tail has asked for in this long is no longer kept.
  std::chrono::steady_clock::duration keep_for = std::chrono::seconds(60);
};

/// The messages of one request as committed: its messages took the ids first_id, first_id + 1...
struct CommittedAppend {
  const std::vector<Message>* messages = nullptr;
  std::uint64_t first_id = 0;
};

/// The latest records of the logs that tails follow.
///
/// A log is kept once a tail has asked for it (after()), from the next commit on: from then,
/// every record of the log with an id above the entry's floor is here, up to the bounds (the
/// oldest go first, raising the floor). A deletion drops everything kept, and nothing is kept
/// or answered while one runs, so that no deleted record is answered from here.
/// Memory: at most max_logs x max_bytes_per_log of text and fields, and the records' headers.
/// Thread-safety: every member function may be called from any thread.
class RecentRecords {
 public:
  explicit RecentRecords(RecentRecordsLimits limits = {}) : limits_(limits) {}
  RecentRecords(const RecentRecords&) = delete;
  RecentRecords& operator=(const RecentRecords&) = delete;
  ~RecentRecords() = default;

  /// The records of `log` with ids above `after_id`, at most `limit` of them, if this holds every
  /// record of the log above `after_id`; otherwise nullopt: ask the database. Marks `log` as
  /// followed (within max_logs): its records are kept from the next commit on.
  std::optional<std::vector<Record>> after(std::string_view log, std::uint64_t after_id,
                                           std::uint32_t limit);

  /// The writer, before it commits: the generation to give publish() after the commit.
  std::uint64_t generation() const;

  /// The writer, after a commit that began at `generation`: keeps the records of the followed
  /// logs among `committed` (the requests that committed, in the order of their ids). Does
  /// nothing if a deletion began since.
  void publish(std::span<const CommittedAppend> committed, std::uint64_t generation);

  /// A deletion in progress, from begin_deletion() until destroyed.
  class [[nodiscard]] Deletion {
   public:
    explicit Deletion(RecentRecords& records) : records_(records) { records_.deletion(+1); }
    ~Deletion() { records_.deletion(-1); }
    Deletion(const Deletion&) = delete;
    Deletion& operator=(const Deletion&) = delete;

   private:
    RecentRecords& records_;
  };
  /// To be held while messages are deleted.
  Deletion begin_deletion() { return Deletion(*this); }

  /// Logs kept now (followed in the last keep_for).
  std::size_t logs() const;
  /// Records kept now, of every log.
  std::size_t records() const;

 private:
  struct Entry {
    bool started = false;     // false until the first commit after the log was followed
    std::uint64_t floor = 0;  // every record of the log above this id is in `kept`
    std::deque<Record> kept;  // by increasing id
    std::size_t bytes = 0;
    std::chrono::steady_clock::time_point last_asked;
  };
  static std::size_t bytes_of(const Record& r) noexcept;
  void deletion(int change);
  void forget_locked();
  void drop_unasked_locked(std::chrono::steady_clock::time_point now);
  void keep_locked(Entry& entry, const Message& m, std::uint64_t id);

  const RecentRecordsLimits limits_;
  mutable std::mutex mutex_;  // guards the members below
  std::map<std::string, Entry, std::less<>> entries_;
  std::uint64_t generation_ = 0;  // moves at every deletion's start and end
  int deletions_ = 0;
};

}  // namespace logd
