// One serialserver-logd per database file: a second Store, or a second server, on a file in use
// is refused, and the first keeps serving; the lock goes with the process that held it.

#include "database_lock.hpp"

#include "logd/logd_support.hpp"
#include "store.hpp"
#include "support/program_run.hpp"

#include <chrono>
#include <csignal>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace {

using namespace logd_test;
using serialserver::test::run_program;
using namespace std::chrono_literals;

TEST(DatabaseLock, ASecondLockOnTheSameFileIsRefusedUntilTheFirstIsGone) {
  RemoveOnExit dir(make_temp_dir());
  const std::string path = (dir.path() / "file").string();
  std::ofstream(path) << "x";
  std::optional<logd::DatabaseLock> first;
  first.emplace(path);
  EXPECT_TRUE(first->held());
  EXPECT_THROW(logd::DatabaseLock{path}, logd::DatabaseInUse);
  first.reset();
  const logd::DatabaseLock again(path);
  EXPECT_TRUE(again.held());
  EXPECT_FALSE(logd::DatabaseLock("").held()) << "a database in memory has no file to lock";
}

TEST(DatabaseLock, ASecondStoreOnTheSameFileIsRefused) {
  RemoveOnExit dir(make_temp_dir());
  logd::StoreOptions options;
  options.path = (dir.path() / "logd.sqlite").string();
  options.synchronous_full = false;
  logd::Store first(options);
  logd::Message m;
  m.log = "app";
  m.text = "kept";
  first.append({m});
  EXPECT_THROW(logd::Store{options}, logd::DatabaseInUse);
  EXPECT_EQ(first.append({m}), 2U) << "the first store still writes";
}

TEST(DatabaseLock, ASecondServerOnTheSameFileExitsAndTheFirstServesOn) {
  RemoveOnExit dir(make_temp_dir());
  LogdProcess logd(dir.path());
  auto c = logd.client();
  c.append(message("app", "before"));

  serialserver::test::ProgramSetup setup;
  setup.timeout = 20000ms;
  const auto second = run_program("serialserver-logd",
                                  {"--listen", "127.0.0.1:" + std::to_string(free_port()), "--db",
                                   (dir.path() / "logd.sqlite").string(), "--db-wait", "1s"},
                                  setup);
  EXPECT_EQ(second.status, 1) << second.out << second.err;
  EXPECT_NE(second.err.find("waiting up to 1s"), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("serialserver-logd: " + (dir.path() / "logd.sqlite").string() +
                            " is in use by another serialserver-logd"),
            std::string::npos)
      << second.err;

  c.append(message("app", "after"));
  const auto records = read_all(c, "app");
  ASSERT_EQ(records.size(), 2U);
  EXPECT_EQ(records[1].text, "after");

  // The lock goes with the process: after kill -9 a new server opens the file at once.
  logd.kill9();
  logd.start();
  auto again = logd.client();
  EXPECT_EQ(read_all(again, "app").size(), 2U);
}

/// Waits up to 20 s for `text` in the file at `path`; true if it came.
bool wait_for_text(const fs::path& path, const std::string& text) {
  return serialserver::test::eventually(
      [&] { return file_text(path).find(text) != std::string::npos; }, 20s);
}

TEST(DatabaseLock, AHandOverWithReusePortWaitsForTheOldServerToStop) {
  RemoveOnExit dir(make_temp_dir());
  LogdProcess old_server(dir.path(), {"--reuse-port"});
  auto c = old_server.client();
  c.append(message("app", "from the old server"));

  const auto log_path = dir.path() / "new.log";
  ChildProcess new_server(bin_dir() + "/serialserver-logd",
                          {"--listen", old_server.address(), "--reuse-port", "--db",
                           (dir.path() / "logd.sqlite").string(), "--grace", "2s"},
                          log_path.string());
  ASSERT_TRUE(wait_for_text(log_path, "waiting up to 30s")) << file_text(log_path);
  c.append(message("app", "the old server still writes"));

  old_server.process().signal(SIGTERM);
  EXPECT_EQ(old_server.process().wait_exit(15000ms), std::optional<int>(0));
  auto after = old_server.client();  // the port is the new server's alone now
  after.append(message("app", "from the new server"));
  const auto records = read_all(after, "app");
  ASSERT_EQ(records.size(), 3U);
  EXPECT_EQ(records[2].text, "from the new server");

  new_server.signal(SIGTERM);
  EXPECT_EQ(new_server.wait_exit(15000ms), std::optional<int>(0)) << file_text(log_path);
}

TEST(DatabaseLock, ASignalEndsTheWaitForTheDatabase) {
  RemoveOnExit dir(make_temp_dir());
  LogdProcess logd(dir.path());
  const auto log_path = dir.path() / "second.log";
  ChildProcess second(bin_dir() + "/serialserver-logd",
                      {"--listen", "127.0.0.1:" + std::to_string(free_port()), "--db",
                       (dir.path() / "logd.sqlite").string()},
                      log_path.string());
  ASSERT_TRUE(wait_for_text(log_path, "waiting up to 30s")) << file_text(log_path);
  second.signal(SIGTERM);
  EXPECT_EQ(second.wait_exit(15000ms), std::optional<int>(0)) << file_text(log_path);
  EXPECT_NE(file_text(log_path).find("stopped by a signal before the database was open"),
            std::string::npos)
      << file_text(log_path);
}

}  // namespace
