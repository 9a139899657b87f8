// serialserver-logd's per-log retention, with the real binary: --retain-log-bytes trims each
// log on its own, oldest first; --retain-log NAME=DAYS:BYTES overrides the defaults for that
// log alone; bad values are usage errors.

#include "logd/logd_support.hpp"
#include "logd_client.hpp"
#include "logd_protocol.hpp"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <sqlite3.h>

namespace {

using logd_test::LogdProcess;
using logd_test::make_temp_dir;
using logd_test::message;
using logd_test::read_all;
using serialserver::test::bin_dir;
using namespace std::chrono_literals;

/// A message's text of exactly 1000 bytes that says which one it is.
std::string text_of(int index) {
  std::string text = "m" + std::to_string(index) + " ";
  text.resize(1000, '.');
  return text;
}

/// Stored bytes of a message of text_of() without fields: its text and 64 (docs/logd-protocol.md).
constexpr std::uint64_t kMessageBytes = 1000 + 64;

/// Appends the messages `first`..`last` (text_of) to `log`, in one batch, at `time_ns`.
void append_range(logd::Client& c, const std::string& log, int first, int last,
                  std::int64_t time_ns = 0) {
  std::vector<logd::Message> batch;
  for (int i = first; i <= last; ++i) {
    batch.push_back(message(log, text_of(i), 2, time_ns));
  }
  c.append_batch(batch);
}

/// Waits up to 20 s (passes every second) for `done`.
bool eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 200; ++i) {
    if (done()) {
      return true;
    }
    std::this_thread::sleep_for(100ms);
  }
  return done();
}

/// The index in text_of() of each record, in order.
std::vector<int> indexes(const std::vector<logd::Record>& records) {
  std::vector<int> out;
  for (const auto& r : records) {
    out.push_back(std::stoi(r.text.substr(1)));
  }
  return out;
}

std::vector<int> range(int first, int last) {
  std::vector<int> out;
  for (int i = first; i <= last; ++i) {
    out.push_back(i);
  }
  return out;
}

std::int64_t days_ago(int days) {
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  return now - days * 86400LL * 1'000'000'000LL;
}

// Each log is kept at or under --retain-log-bytes (text, encoded fields and 64 bytes a message)
// by deleting its oldest messages, and no more than that: a log under the limit is not touched.
TEST(LogdRetention, EachLogIsTrimmedToItsByteLimitOldestFirst) {
  const logd_test::RemoveOnExit dir(make_temp_dir());
  LogdProcess logd(dir.path(), {"--retain-log-bytes", std::to_string(100 * kMessageBytes),
                                "--retain-interval", "1s"});
  auto c = logd.client();
  append_range(c, "big", 0, 149);
  append_range(c, "small", 0, 49);
  append_range(c, "big", 150, 299);
  ASSERT_TRUE(eventually([&] { return read_all(c, "big").size() == 100; }))
      << read_all(c, "big").size();
  std::this_thread::sleep_for(2500ms);                      // two more passes change nothing
  EXPECT_EQ(indexes(read_all(c, "big")), range(200, 299));  // exactly at the limit
  EXPECT_EQ(indexes(read_all(c, "small")), range(0, 49));
  const auto logs = c.list();
  ASSERT_EQ(logs.size(), 2U);
  EXPECT_EQ(logs[0].name, "big");
  EXPECT_EQ(logs[0].count, 100U);
  EXPECT_EQ(logs[1].count, 50U);
  // Fields count as encoded: u32 n, then each key and value as a u32 length and the bytes (14
  // bytes for k=v). 98 such messages fit the limit; 100 would if fields were not counted.
  std::vector<logd::Message> fielded;
  for (int i = 0; i < 150; ++i) {
    fielded.push_back(message("fielded", text_of(i)));
    fielded.back().fields.push_back({"k", "v"});
  }
  c.append_batch(fielded);
  static_assert(98 * (kMessageBytes + 14) <= 100 * kMessageBytes);
  static_assert(99 * (kMessageBytes + 14) > 100 * kMessageBytes);
  EXPECT_TRUE(eventually([&] { return indexes(read_all(c, "fielded")) == range(52, 149); }))
      << read_all(c, "fielded").size();
  // New messages push the oldest out, one for one.
  append_range(c, "big", 300, 309);
  ASSERT_TRUE(eventually([&] { return indexes(read_all(c, "big")) == range(210, 309); }));
}

// --retain-log NAME=DAYS:BYTES replaces --retain-days and --retain-log-bytes for NAME only:
// "special" keeps 3 days and 50 messages' worth, "exempt" has no limit, and the other logs keep
// the defaults (1 day, 20 messages' worth).
TEST(LogdRetention, AnOverrideAppliesToItsLogOnly) {
  const logd_test::RemoveOnExit dir(make_temp_dir());
  LogdProcess logd(dir.path(),
                   {"--retain-days", "1", "--retain-log-bytes", std::to_string(20 * kMessageBytes),
                    "--retain-log", "special=3:" + std::to_string(50 * kMessageBytes),
                    "--retain-log", "exempt=0:0", "--retain-interval", "1s"});
  auto c = logd.client();
  append_range(c, "exempt", 0, 0, days_ago(2));
  append_range(c, "exempt", 1, 60);
  append_range(c, "special", 0, 59);
  append_range(c, "special", 60, 60, days_ago(2));  // the newest id: only its age could delete it
  append_range(c, "aged", 0, 0, days_ago(2));
  append_range(c, "aged", 1, 1);
  append_range(c, "plain", 0, 59);
  ASSERT_TRUE(eventually([&] {
    return read_all(c, "plain").size() == 20 && read_all(c, "special").size() == 50 &&
           read_all(c, "aged").size() == 1;
  }));
  std::this_thread::sleep_for(2500ms);  // two more passes, after every append
  EXPECT_EQ(indexes(read_all(c, "plain")), range(40, 59));
  EXPECT_EQ(indexes(read_all(c, "aged")), range(1, 1));
  // Read by time: the two-day-old message first, then the newest 49 of the others.
  std::vector<int> special = range(11, 59);
  special.insert(special.begin(), 60);
  EXPECT_EQ(indexes(read_all(c, "special")), special);
  EXPECT_EQ(indexes(read_all(c, "exempt")), range(0, 60));
}

// A database made before logs had a byte count (the schema of earlier versions) gets the count
// from its messages when the server opens it, so that its logs are held to their limits.
TEST(LogdRetention, ADatabaseWithoutByteCountsIsCountedWhenOpened) {
  const logd_test::RemoveOnExit dir(make_temp_dir());
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir.path() / "logd.sqlite").c_str(), &db), SQLITE_OK);
    std::string sql = R"sql(
      CREATE TABLE logs(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                        count INTEGER NOT NULL DEFAULT 0, last_id INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE messages(id INTEGER PRIMARY KEY, log_id INTEGER NOT NULL,
                            time INTEGER NOT NULL, level INTEGER NOT NULL, text TEXT NOT NULL,
                            fields BLOB);
      CREATE INDEX messages_by_log_time ON messages(log_id, time);
      CREATE INDEX messages_by_log ON messages(log_id);
      INSERT INTO logs VALUES(1, 'old', 10, 10);
    )sql";
    for (int i = 0; i < 10; ++i) {
      sql += "INSERT INTO messages VALUES(" + std::to_string(i + 1) + ", 1, " +
             std::to_string(i + 1) + ", 2, '" + text_of(i) + "', NULL);";
    }
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << (error != nullptr ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }
  LogdProcess logd(dir.path(), {"--retain-log-bytes", std::to_string(5 * kMessageBytes),
                                "--retain-interval", "1s"});
  auto c = logd.client();
  ASSERT_TRUE(eventually([&] { return indexes(read_all(c, "old")) == range(5, 9); }))
      << read_all(c, "old").size();
  EXPECT_EQ(c.list().at(0).count, 5U);
}

/// Runs serialserver-logd with `flags` and a database it cannot open (a usage error is found
/// before the database is opened; good flags end there, with status 1); returns its exit
/// status and what it printed.
std::pair<int, std::string> logd_with(const std::string& flags) {
  return logd_test::run(bin_dir() +
                        "/serialserver-logd --listen 127.0.0.1:0 --db /nonexistent-dir/x.sqlite " +
                        flags + " 2>&1");
}

TEST(LogdRetention, BadRetentionFlagsAreUsageErrors) {
  const std::vector<std::string> bad = {"--retain-log-bytes -1",
                                        "--retain-log-bytes 12k",
                                        "--retain-log-bytes ''",
                                        "--retain-bytes -1",
                                        "--retain-log app",
                                        "--retain-log =1:2",
                                        "--retain-log app=1",
                                        "--retain-log app=x:1",
                                        "--retain-log app=1:-2",
                                        "--retain-log app=1:2:3",
                                        "--retain-log app=100001:0",
                                        "--retain-log app=1:99999999999999999999",
                                        "--retain-log " + std::string(256, 'n') + "=1:1",
                                        "--retain-log app=1:1 --retain-log app=2:2"};
  for (const std::string& flags : bad) {
    const auto [status, output] = logd_with(flags);
    EXPECT_EQ(status, 64) << flags;
    const std::string first_line = output.substr(0, output.find('\n'));
    EXPECT_EQ(first_line.rfind("serialserver-logd: --retain-", 0), 0U) << flags << ": " << output;
  }
  // Good values pass: the server goes on to open its database.
  const auto [status, output] = logd_with(
      "--retain-log-bytes 0 --retain-log 'a=b=0:0' --retain-log app=100000:9223372036854775807");
  EXPECT_EQ(status, 1) << output;
  EXPECT_NE(output.find("cannot open /nonexistent-dir/x.sqlite"), std::string::npos) << output;
}

// Ids only grow, across deletes and restarts: a tail that saw the newest message must see the
// next one even if that newest message was deleted in between (SQLite alone would give its id
// again, as the largest id + 1).
TEST(LogdRetention, IdsOfDeletedMessagesAreNeverGivenAgain) {
  logd_test::RemoveOnExit dir(make_temp_dir());
  LogdProcess logd(dir.path());
  auto c = logd.client();
  c.append(message("other", "older"));
  const std::uint64_t newest = c.append(message("app", "newest"));
  logd::DeleteQuery everything;
  everything.log = "app";
  EXPECT_EQ(c.delete_messages(everything), 1U);

  const std::uint64_t next = c.append(message("app", "next"));
  EXPECT_EQ(next, newest + 1);
  logd::TailQuery after_the_deleted;
  after_the_deleted.log = "app";
  after_the_deleted.after_id = newest;
  const auto seen = c.tail(after_the_deleted);
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0].text, "next");

  // The same after a restart, with the newest message deleted again.
  EXPECT_EQ(c.delete_messages(everything), 1U);
  logd.process().signal(SIGTERM);
  ASSERT_EQ(logd.process().wait_exit(15000ms), std::optional<int>(0));
  logd.start();
  auto again = logd.client();
  EXPECT_EQ(again.append(message("app", "after the restart")), next + 1);

  // A batch is inserted several rows at a time (64, 32, then 4 rows for 100): each of its rows
  // is moved past the ids given before, in order, with its own text and fields.
  std::vector<logd::Message> batch;
  for (int i = 0; i < 100; ++i) {
    batch.push_back(message("b", std::to_string(i)));
    if (i % 3 == 0) {
      batch.back().fields = {{"i", std::to_string(i)}};
    }
  }
  EXPECT_EQ(again.append_batch(batch), next + 2);
  logd::TailQuery all_of_b;
  all_of_b.log = "b";
  all_of_b.limit = 1000;
  const auto b = again.tail(all_of_b);
  ASSERT_EQ(b.size(), 100U);
  for (std::size_t i = 0; i < b.size(); ++i) {
    EXPECT_EQ(b[i].id, next + 2 + i);
    EXPECT_EQ(b[i].text, std::to_string(i));
    EXPECT_EQ(b[i].fields, batch[i].fields) << i;
  }
}

}  // namespace
