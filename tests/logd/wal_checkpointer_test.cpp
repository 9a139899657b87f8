// The store's WAL checkpoint runs on a thread of its own (wal_checkpointer.hpp): writes that
// never pause must still leave the WAL bounded, because the writer checkpoints itself once the
// WAL passes kWriterCheckpointPages. With no checkpoint at all, this test's WAL would grow to
// about all that it writes (over 50 MB).

#include "wal_checkpointer.hpp"

#include "logd_support.hpp"
#include "store.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace {

namespace fs = std::filesystem;

TEST(WalCheckpointer, TheWalStaysBoundedUnderWritesThatNeverPause) {
  logd_test::RemoveOnExit dir(logd_test::make_temp_dir());
  logd::StoreOptions options;
  options.path = (dir.path() / "logd.sqlite").string();
  options.synchronous_full = false;
  options.max_group_messages = 1000;  // at most about 1 MB a commit
  logd::Store store(options);

  std::atomic<bool> writing{true};
  std::uintmax_t largest_wal = 0;
  std::thread watcher([&] {
    while (writing.load()) {
      std::error_code ec;
      const auto size = fs::file_size(dir.path() / "logd.sqlite-wal", ec);
      largest_wal = std::max<std::uintmax_t>(largest_wal, ec ? 0 : size);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  constexpr int kWriters = 4;
  constexpr int kBatches = 150;  // 4 x 150 x 100 messages of 1000 bytes: 60 MB of text
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&store] {
      std::vector<logd::Message> batch;
      for (int i = 0; i < 100; ++i) {
        batch.push_back(logd_test::message("app", std::string(1000, 'x')));
      }
      for (int b = 0; b < kBatches; ++b) {
        store.append(batch);
      }
    });
  }
  for (auto& t : writers) {
    t.join();
  }
  writing = false;
  watcher.join();

  // The writer's own checkpoint comes within kBackgroundCheckpointPages past
  // kWriterCheckpointPages (4 KiB pages), after the thread's checkpoint in progress: plus one
  // commit of at most 1000 messages and their index pages, and slack.
  constexpr std::uintmax_t kPages = logd::WalCheckpointer::kWriterCheckpointPages +
                                    logd::WalCheckpointer::kBackgroundCheckpointPages;
  const std::uintmax_t bound = kPages * 4096 + 8'000'000;
  EXPECT_GT(largest_wal, 0U);
  EXPECT_LT(largest_wal, bound);
}

}  // namespace
