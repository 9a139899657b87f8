// serialserver-logd's limits on what one request may cost, with the real binary: a bad batch
// refused as it streams, a list streamed in constant memory, the writer's name cache bounded,
// the operations flags and the request-duration limit.

#include "logd/logd_support.hpp"
#include "logd_client.hpp"
#include "logd_protocol.hpp"
#include "support/loopback.hpp"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace {

using logd_test::LogdProcess;
using logd_test::make_temp_dir;
using logd_test::message;
using logd_test::raw_handshake;
using logd_test::resident_kib;
using serialserver::test::bin_dir;
using serialserver::test::Bytes;
using serialserver::test::bytes;
using serialserver::test::free_port;
using serialserver::test::RawClient;
using serialserver::test::request;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

}  // namespace

namespace {

// A batch is validated as it arrives: one whose first message is bad is answered with that
// message's code without the server holding the rest (it drains it through a small buffer).
TEST(LogdLimits, BadBatchesAreRefusedAsTheyStreamWithoutBeingHeld) {
  LogdProcess logd(make_temp_dir());
  const pid_t pid = logd.process().pid();
  Bytes content = bytes({0, 0, 0x27, 0x10});                                    // n = 10000
  const Bytes bad_first = bytes({0, 0, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 9});  // level 9
  content.insert(content.end(), bad_first.begin(), bad_first.end());
  content.resize(15u << 20, 0x00);  // 15 MiB: under the 16 MiB default request limit
  const Bytes batch = request(logd::kTaskAppendBatch, content);
  {
    auto c = logd.client();  // the store is open, the first allocations made
    c.append(message("warm", "up"));
  }
  const std::size_t before = resident_kib(pid);
  std::vector<std::thread> senders;
  std::atomic<int> refused{0};
  for (int i = 0; i < 6; ++i) {
    senders.emplace_back([&] {
      try {  // a failure here is the test's, not a std::terminate of the whole binary
        RawClient raw(logd.port());
        raw_handshake(raw, 'B');
        raw.send(batch);
        if (raw.recv(2, 20000ms) == bytes({0x01, logd::kErrBadLevel})) {
          ++refused;
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << "sender: " << e.what();
      }
    });
  }
  for (auto& t : senders) {
    t.join();
  }
  EXPECT_EQ(refused.load(), 6);
  // Collected whole, six of them would take 90 MiB and more.
  EXPECT_LT(resident_kib(pid), before + 40 * 1024);
}

}  // namespace

namespace {

// How much a logd process may grow while four lists wait: built whole they would take about
// 140 MB. Under ThreadSanitizer the server's memory is shadowed several times over (its readers'
// page caches among it): 67 MiB was seen there with the lists streamed.
#if defined(__SANITIZE_THREAD__)
constexpr std::size_t kListGrowthKib = 100 * 1024;
#else
constexpr std::size_t kListGrowthKib = 40 * 1024;
#endif

// How much a logd process may grow while it appends to 50,000 new log names with a cache of
// 1000 (its SQLite page cache alone may take 2 MB); ThreadSanitizer shadows what is touched.
#if defined(__SANITIZE_THREAD__)
constexpr std::size_t kNameCacheGrowthKib = 40 * 1024;
#else
constexpr std::size_t kNameCacheGrowthKib = 12 * 1024;
#endif

// list streams from one snapshot in constant memory: four lists of 60,000 logs whose clients do
// not read hold a chunk each, not the whole list.
TEST(LogdLimits, ListIsStreamedInConstantMemory) {
  LogdProcess logd(make_temp_dir());
  constexpr int kLogs = 60000;
  {
    auto c = logd.client();
    std::vector<logd::Message> batch;
    for (int i = 0; i < kLogs; ++i) {
      std::string name = "log-" + std::to_string(i);
      name.resize(250, '.');
      batch.push_back(message(std::move(name), "x"));
      if (batch.size() == logd::kMaxBatch) {
        c.append_batch(batch);
        batch.clear();
      }
    }
  }
  const pid_t pid = logd.process().pid();
  const std::size_t before = resident_kib(pid);
  std::vector<std::unique_ptr<RawClient>> listers;
  for (int i = 0; i < 4; ++i) {
    listers.push_back(std::make_unique<RawClient>(logd.port()));
    raw_handshake(*listers.back(), 'B');
    listers.back()->send(request(logd::kTaskList));
  }
  std::this_thread::sleep_for(2s);  // each list has filled the socket buffers and waits
  // Built whole, each list would take about 35 MB (its rows and their encoding).
  EXPECT_LT(resident_kib(pid), before + kListGrowthKib);
  // The count comes first, and the list is complete when read.
  const Bytes head = listers[0]->recv(6, 5000ms);
  ASSERT_EQ(head.size(), 6U);
  listers.clear();
  auto c = logd.client();
  EXPECT_EQ(c.list().size(), static_cast<std::size_t>(kLogs));
}

}  // namespace

namespace {

/// Resident memory (KiB) that serialserver-logd gains while it appends one message to each of
/// `names` new log names of 255 bytes, with --max-cached-names `bound`. Measured from a first
/// batch of as many messages to other new names, so that what a batch costs to receive and
/// commit is in the baseline already.
std::size_t growth_appending_to_new_names(std::size_t bound, int names) {
  const logd_test::RemoveOnExit dir(make_temp_dir());
  LogdProcess logd(dir.path(),
                   {"--max-cached-names", std::to_string(bound), "--synchronous", "normal"});
  auto c = logd.client();
  const auto append_names = [&](const std::string& prefix, int first, int last) {
    std::vector<logd::Message> batch;
    for (int i = first; i < last; ++i) {
      // Zero-padded, so that the names arrive in order: SQLite then appends to the name index
      // instead of rewriting pages all over it (its cache is small), which would take minutes.
      std::string number = std::to_string(i);
      std::string name = prefix + std::string(8 - number.size(), '0') + number;
      name.resize(logd::kMaxNameBytes, '.');
      batch.push_back(message(std::move(name), "x"));
      if (batch.size() == logd::kMaxBatch || i + 1 == last) {
        c.append_batch(batch);
        batch.clear();
      }
    }
  };
  append_names("warm-up-", 0, static_cast<int>(logd::kMaxBatch));
  const pid_t pid = logd.process().pid();
  const std::size_t before = resident_kib(pid);
  append_names("log-", 0, names);
  const std::size_t after = resident_kib(pid);
  return after > before ? after - before : 0;
}

/// Sets an environment variable for the servers started while it lives.
class ChildEnvironment {
 public:
  ChildEnvironment(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) {
      old_ = old;
    }
    ::setenv(name, value.c_str(), 1);
  }
  ~ChildEnvironment() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ChildEnvironment(const ChildEnvironment&) = delete;
  ChildEnvironment& operator=(const ChildEnvironment&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

/// What lets the resident size of a server show what its cache holds: freed memory reused at
/// once. AddressSanitizer's quarantine otherwise holds freed memory (up to 256 MiB) to catch a
/// use after free; glibc otherwise keeps what each of the 64 worker threads freed in an arena of
/// its own, about 15 MiB more here in a Release build.
class AllocatorReusesForChildren {
 public:
  AllocatorReusesForChildren()
      : asan_("ASAN_OPTIONS", asan_options()), arenas_("MALLOC_ARENA_MAX", "1") {}

 private:
  static std::string asan_options() {
    const char* old = std::getenv("ASAN_OPTIONS");
    return std::string(old != nullptr ? old : "") + ":quarantine_size_mb=0";
  }
  ChildEnvironment asan_;
  ChildEnvironment arenas_;
};

// The writer's cache of log names (--max-cached-names) is bounded: appending to 50,000 new names
// of 255 bytes, a server whose cache holds at most 1000 names grows by little, and one whose
// cache may hold them all grows by what they take (about 17 MB, 25 MB under AddressSanitizer: a
// name, its node and bucket each). The second server shows that the measure sees the cache: without
// the bound the first would grow as much.
TEST(LogdLimits, WriterNameCacheIsBoundedInMemory) {
  const AllocatorReusesForChildren reuse;
  constexpr int kNames = 50000;
  const std::size_t bounded = growth_appending_to_new_names(1000, kNames);
  const std::size_t unbounded = growth_appending_to_new_names(10000000, kNames);
  RecordProperty("bounded_growth_kib", std::to_string(bounded));
  RecordProperty("unbounded_growth_kib", std::to_string(unbounded));
  std::cout << "resident growth: bound 1000: " << bounded << " KiB; bound 10000000: " << unbounded
            << " KiB\n";
  EXPECT_LT(bounded, kNameCacheGrowthKib);
  EXPECT_GT(unbounded, bounded + 12 * 1024);
}

}  // namespace

namespace {

// The demo's operations flags, with the same meanings.
TEST(LogdLimits, OperationsFlags) {
  const fs::path dir = make_temp_dir();
  const std::uint16_t metrics_port = free_port();
  LogdProcess logd(dir, {"--metrics", "127.0.0.1:" + std::to_string(metrics_port), "--log-format",
                         "json", "--max-connections-per-address", "2"});
  logd.client().append(message("app", "counted"));
  {
    RawClient http(metrics_port);
    http.send(bytes({'G', 'E', 'T', ' ', '/', 'm', 'e', 't', 'r',  'i',  'c',  's', ' ',
                     'H', 'T', 'T', 'P', '/', '1', '.', '0', '\r', '\n', '\r', '\n'}));
    const Bytes head = http.recv(12, 5000ms);
    EXPECT_EQ(std::string(head.begin(), head.end()), "HTTP/1.1 200");
  }
  // Two connections from 127.0.0.1 at once; a third is closed at once.
  RawClient a(logd.port());
  raw_handshake(a, 'B');
  RawClient b(logd.port());
  raw_handshake(b, 'B');
  RawClient third(logd.port());
  EXPECT_TRUE(third.closed_within(3000ms));
  // JSON lines on stderr.
  std::ifstream log(dir / "logd-0.log");
  std::string first_line;
  std::getline(log, first_line);
  EXPECT_EQ(first_line.substr(0, 1), "{") << first_line;
  // --version, and a usage error exits 64.
  EXPECT_EQ(logd_test::run(bin_dir() + "/serialserver-logd --version").first, 0);
  EXPECT_EQ(logd_test::run(bin_dir() + "/serialserver-logd --no-such-flag 2>/dev/null").first, 64);
}

}  // namespace

namespace {

// A request that trickles in (slowloris) is cut at --max-request-duration.
TEST(LogdLimits, SlowRequestIsClosedAtTheMaxRequestDuration) {
  LogdProcess logd(make_temp_dir(), {"--max-request-duration", "1s"});
  RawClient raw(logd.port());
  raw_handshake(raw, 'B');
  raw.send(bytes({logd::kTaskAppend, 0x40}));  // a block of 64 bytes announced
  const auto start = std::chrono::steady_clock::now();
  bool closed = false;
  for (int i = 0; i < 40 && !closed; ++i) {  // one byte every 100 ms: the read timeout never hits
    try {
      raw.send(bytes({0x00}));
    } catch (const std::system_error&) {
      closed = true;
      break;
    }
    closed = raw.closed_within(100ms);
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

}  // namespace
