// The writer's group commit: a request that fails in SQLite is undone alone, and the other
// requests of its group are committed. The writer first writes a group without a savepoint
// for each request, and writes it again with them when a request fails: this checks that second
// write. A trigger in the database makes any message with the text "bad" fail.

#include "logd_support.hpp"
#include "store.hpp"

#include <cstdint>
#include <latch>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <sqlite3.h>

namespace {

void add_failing_trigger(const std::string& path) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  const int rc =
      sqlite3_exec(db,
                   "CREATE TRIGGER bad_message BEFORE INSERT ON messages "
                   "WHEN NEW.text = 'bad' BEGIN SELECT RAISE(ABORT, 'a bad message'); END",
                   nullptr, nullptr, &error);
  EXPECT_EQ(rc, SQLITE_OK) << (error != nullptr ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
}

TEST(GroupCommit, ARequestThatFailsIsUndoneAloneAndTheOthersCommit) {
  logd_test::RemoveOnExit dir(logd_test::make_temp_dir());
  logd::StoreOptions options;
  options.path = (dir.path() / "logd.sqlite").string();
  std::optional<logd::Store> store(std::in_place, options);  // creates the schema
  store.reset();
  add_failing_trigger(options.path);
  store.emplace(options);

  constexpr int kRounds = 20;
  constexpr int kThreads = 8;  // thread 0 sends the bad request; the others wait in its group
  std::set<std::uint64_t> committed_ids;
  int failed = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::latch start(kThreads);
    std::vector<std::optional<std::uint64_t>> first_ids(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::vector<logd::Message> batch{
            logd_test::message("app", "first of " + std::to_string(t)),
            logd_test::message("app", t == 0 ? "bad" : "good"),
            logd_test::message("new-log-" + std::to_string(round), "x")};
        start.arrive_and_wait();
        try {
          first_ids[t] = store->append(batch);
        } catch (const logd::StorageError& e) {
          EXPECT_NE(std::string(e.what()).find("a bad message"), std::string::npos) << e.what();
        }
      });
    }
    for (auto& t : threads) {
      t.join();
    }
    EXPECT_FALSE(first_ids[0].has_value()) << "round " << round;
    failed += first_ids[0].has_value() ? 0 : 1;
    for (int t = 1; t < kThreads; ++t) {
      ASSERT_TRUE(first_ids[t].has_value()) << "round " << round << ", request " << t;
      for (std::uint64_t i = 0; i < 3; ++i) {
        EXPECT_TRUE(committed_ids.insert(*first_ids[t] + i).second);
      }
    }
  }
  EXPECT_EQ(failed, kRounds);

  // What is stored is exactly the good requests' messages, under the ids they were given.
  logd::TailQuery all;
  all.log = "app";
  all.limit = 100000;
  const auto app = store->tail(all);
  ASSERT_EQ(app.size(), static_cast<std::size_t>(kRounds * (kThreads - 1) * 2));
  for (const auto& record : app) {
    EXPECT_TRUE(committed_ids.contains(record.id)) << record.id;
    EXPECT_NE(record.text, "bad");
    EXPECT_NE(record.text, "first of 0");
  }
  // Each round's new log exists with the good requests' messages only: its name, inserted by a
  // transaction that was undone, was inserted again.
  all.log = "new-log-0";
  EXPECT_EQ(store->tail(all).size(), static_cast<std::size_t>(kThreads - 1));
}

}  // namespace
