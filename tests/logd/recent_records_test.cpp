// logd's RecentRecords, the records kept in memory for the tails that follow a log: alone, and in
// a Store over a real database, where a tail answered from memory must agree with one answered by
// a query, and a deletion must never leave a deleted record to be answered.

#include "recent_records.hpp"

#include "logd_support.hpp"
#include "store.hpp"

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace {

using logd::CommittedAppend;
using logd::Message;
using logd::RecentRecords;
using logd::RecentRecordsLimits;
using logd::Record;
using namespace std::chrono_literals;

std::vector<Message> messages(const std::string& log, int n, const std::string& prefix = "m") {
  std::vector<Message> out;
  for (int i = 0; i < n; ++i) {
    Message m;
    m.log = log;
    m.time_ns = 1000 + i;
    m.level = 3;
    m.text = prefix + std::to_string(i);
    m.fields = {{"k", std::to_string(i)}};
    out.push_back(m);
  }
  return out;
}

std::vector<std::uint64_t> ids_of(const std::vector<Record>& records) {
  std::vector<std::uint64_t> ids;
  for (const Record& r : records) {
    ids.push_back(r.id);
  }
  return ids;
}

/// Commits `batch` as one request whose first id is `first_id`, as the writer would.
void commit(RecentRecords& recent, const std::vector<Message>& batch, std::uint64_t first_id) {
  const std::vector<CommittedAppend> committed{{.messages = &batch, .first_id = first_id}};
  recent.publish(committed, recent.generation());
}

TEST(RecentRecords, KeepsALogFromTheFirstCommitAfterATailAskedForIt) {
  RecentRecords recent;
  const auto before = messages("app", 2);
  commit(recent, before, 1);  // nobody follows "app" yet
  EXPECT_EQ(recent.records(), 0U);
  EXPECT_FALSE(recent.after("app", 2, 100).has_value()) << "asked first: not kept yet";
  EXPECT_FALSE(recent.after("app", 2, 100).has_value()) << "no commit since";

  const auto batch = messages("app", 3, "new");
  commit(recent, batch, 3);  // ids 3, 4, 5
  const auto all = recent.after("app", 2, 100);
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(ids_of(*all), (std::vector<std::uint64_t>{3, 4, 5}));
  EXPECT_EQ((*all)[1].text, "new1");
  EXPECT_EQ((*all)[1].time_ns, 1001);
  EXPECT_EQ((*all)[1].level, 3);
  EXPECT_EQ((*all)[1].fields, (std::vector<logd::Field>{{"k", "1"}}));

  const auto some = recent.after("app", 3, 1);
  ASSERT_TRUE(some.has_value());
  EXPECT_EQ(ids_of(*some), (std::vector<std::uint64_t>{4})) << "after 3, at most 1";
  const auto none = recent.after("app", 5, 100);
  ASSERT_TRUE(none.has_value()) << "caught up: nothing new, known without a query";
  EXPECT_TRUE(none->empty());
  EXPECT_FALSE(recent.after("app", 1, 100).has_value()) << "id 2 is not kept: ask the database";
}

TEST(RecentRecords, KeepsOnlyTheFollowedLogsOfACommit) {
  RecentRecords recent;
  EXPECT_FALSE(recent.after("app", 0, 10).has_value());
  auto mixed = messages("app", 2);
  mixed[1].log = "audit";
  const auto more = messages("app", 1);
  const std::vector<CommittedAppend> committed{{.messages = &mixed, .first_id = 10},
                                               {.messages = &more, .first_id = 12}};
  recent.publish(committed, recent.generation());
  EXPECT_EQ(recent.records(), 2U);
  EXPECT_EQ(ids_of(recent.after("app", 9, 10).value()), (std::vector<std::uint64_t>{10, 12}));
  EXPECT_FALSE(recent.after("audit", 9, 10).has_value());
}

TEST(RecentRecords, DropsTheOldestPastItsBoundsAndThenDefersToTheDatabase) {
  RecentRecordsLimits limits;
  limits.max_records_per_log = 3;
  RecentRecords recent(limits);
  EXPECT_FALSE(recent.after("app", 0, 10).has_value());
  const auto batch = messages("app", 5);
  commit(recent, batch, 1);  // ids 1..5, of which 3..5 are kept
  EXPECT_EQ(recent.records(), 3U);
  EXPECT_FALSE(recent.after("app", 1, 10).has_value()) << "id 2 is gone from memory";
  EXPECT_EQ(ids_of(recent.after("app", 2, 10).value()), (std::vector<std::uint64_t>{3, 4, 5}));

  limits = RecentRecordsLimits{};
  limits.max_bytes_per_log = 10;  // "m0" and the field "k"="0": 4 bytes a record
  RecentRecords small(limits);
  EXPECT_FALSE(small.after("app", 0, 10).has_value());
  commit(small, batch, 1);
  EXPECT_EQ(small.records(), 2U);

  limits = RecentRecordsLimits{};
  limits.max_logs = 2;
  RecentRecords few(limits);
  for (const char* log : {"a", "b", "c"}) {
    EXPECT_FALSE(few.after(log, 0, 10).has_value());
  }
  EXPECT_EQ(few.logs(), 2U) << "the third log is not kept";
}

TEST(RecentRecords, ALogNoTailAsksForIsDropped) {
  RecentRecordsLimits limits;
  limits.keep_for = 200ms;
  limits.max_logs = 1;
  RecentRecords recent(limits);
  EXPECT_FALSE(recent.after("old", 0, 10).has_value());
  std::this_thread::sleep_for(400ms);
  EXPECT_FALSE(recent.after("new", 0, 10).has_value()) << "takes the unasked log's place";
  EXPECT_EQ(recent.logs(), 1U);
  const auto batch = messages("new", 1);
  commit(recent, batch, 1);
  EXPECT_TRUE(recent.after("new", 0, 10).has_value());
  std::this_thread::sleep_for(400ms);
  commit(recent, batch, 2);  // the commit drops what nobody asked for since
  EXPECT_EQ(recent.logs(), 0U);
}

TEST(RecentRecords, ADeletionForgetsEverythingAndNothingIsKeptWhileItRuns) {
  RecentRecords recent;
  EXPECT_FALSE(recent.after("app", 0, 10).has_value());
  const auto batch = messages("app", 2);
  commit(recent, batch, 1);
  ASSERT_TRUE(recent.after("app", 0, 10).has_value());
  const std::uint64_t before_deletion = recent.generation();
  {
    const auto deletion = recent.begin_deletion();
    EXPECT_EQ(recent.records(), 0U);
    EXPECT_FALSE(recent.after("app", 0, 10).has_value());
    commit(recent, batch, 3);  // a commit during the deletion
    EXPECT_FALSE(recent.after("app", 2, 10).has_value());
  }
  // A commit that began before the deletion ended, published after it: not kept either.
  const std::vector<CommittedAppend> late{{.messages = &batch, .first_id = 5}};
  recent.publish(late, before_deletion);
  EXPECT_EQ(recent.records(), 0U);
  EXPECT_FALSE(recent.after("app", 6, 10).has_value());
  commit(recent, batch, 7);
  EXPECT_EQ(ids_of(recent.after("app", 6, 10).value()), (std::vector<std::uint64_t>{7, 8}));
}

// ---- in a Store ---------------------------------------------------------------------------------

class RecentInStore : public ::testing::Test {
 protected:
  RecentInStore() : dir_(logd_test::make_temp_dir()) {
    logd::StoreOptions options;
    options.path = (dir_.path() / "logd.sqlite").string();
    options.synchronous_full = false;
    store_.emplace(options);
  }
  /// A tail of `log` after `after_id` from the database.
  std::vector<Record> queried(const std::string& log, std::uint64_t after_id) {
    logd::TailQuery q;
    q.log = log;
    q.after_id = after_id;
    return store_->tail(q);
  }
  std::optional<std::vector<Record>> remembered(const std::string& log, std::uint64_t after_id) {
    logd::TailQuery q;
    q.log = log;
    q.after_id = after_id;
    return store_->recent_tail(q);
  }

  logd_test::RemoveOnExit dir_;
  std::optional<logd::Store> store_;
};

TEST_F(RecentInStore, AFollowedLogIsAnsweredFromMemoryAsTheDatabaseWould) {
  const std::uint64_t first = store_->append(messages("app", 3));
  EXPECT_FALSE(remembered("app", first + 2).has_value()) << "followed from now on";
  store_->append(messages("other", 2));
  const std::uint64_t next = store_->append(messages("app", 4, "next"));
  const auto from_memory = remembered("app", first + 2);
  ASSERT_TRUE(from_memory.has_value());
  EXPECT_EQ(*from_memory, queried("app", first + 2));
  EXPECT_EQ(from_memory->size(), 4U);
  EXPECT_EQ(from_memory->front().id, next);
  EXPECT_FALSE(remembered("app", first).has_value()) << "older than what is kept";
  logd::TailQuery last;
  last.log = "app";
  last.after_id = logd::kTailLast;
  EXPECT_FALSE(store_->recent_tail(last).has_value()) << "the last records: always a query";
}

TEST_F(RecentInStore, DeletedRecordsAreNeverAnsweredFromMemory) {
  const std::uint64_t first = store_->append(messages("app", 1));
  EXPECT_FALSE(remembered("app", first).has_value());
  store_->append(messages("app", 3));
  ASSERT_EQ(remembered("app", first).value().size(), 3U);
  EXPECT_EQ(store_->delete_before("app", std::numeric_limits<std::int64_t>::max()), 4U);
  EXPECT_FALSE(remembered("app", first).has_value());
  EXPECT_TRUE(queried("app", first).empty());

  // A delete that finds nothing to delete keeps them; one that deletes forgets them.
  store_->append(messages("app", 1));  // times from 1000
  const std::uint64_t kept_after = store_->append(messages("app", 2)) - 1;
  ASSERT_EQ(remembered("app", kept_after).value().size(), 2U);
  EXPECT_EQ(store_->delete_before("app", 1000), 0U);
  EXPECT_EQ(remembered("app", kept_after).value().size(), 2U);
  EXPECT_EQ(store_->delete_before("app", 1001), 2U);  // time 1000: the first of each append
  EXPECT_FALSE(remembered("app", kept_after).has_value());
  EXPECT_EQ(store_->delete_before("app", std::numeric_limits<std::int64_t>::max()), 1U);

  // Retention by the log's bytes forgets too.
  store_->append(messages("app", 1));
  const std::uint64_t after = store_->append(messages("app", 5)) - 1;
  ASSERT_EQ(remembered("app", after).value().size(), 5U);
  logd::RetentionOptions retention;
  retention.max_log_bytes = 1;
  EXPECT_GT(store_->enforce_retention(retention, 0), 0U);
  EXPECT_FALSE(remembered("app", after).has_value());
  EXPECT_EQ(queried("app", 0).size(), 0U);
}

}  // namespace
