// serialserver-logd under the conditions of a production server, with the real binary: waiting
// tails beside appends, shutdown with tails waiting, bounded readers, the token and file-mode
// rules, the database path, and the start-up order.

#include <serialserver/binary_writer.hpp>
#include "logd/logd_support.hpp"
#include "logd_client.hpp"
#include "logd_protocol.hpp"
#include "support/loopback.hpp"

#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace {

using logd_test::descriptor_list;
using logd_test::file_text;
using logd_test::LogdProcess;
using logd_test::make_temp_dir;
using logd_test::message;
using logd_test::open_descriptors;
using logd_test::raw_handshake;
using logd_test::resident_kib;
using serialserver::BinaryWriter;
using serialserver::ByteOrder;
using serialserver::test::bin_dir;
using serialserver::test::Bytes;
using serialserver::test::bytes;
using serialserver::test::ChildProcess;
using serialserver::test::free_port;
using serialserver::test::RawClient;
using serialserver::test::request;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

const Bytes kOkEmpty = bytes({0x00, 0x00});

/// The request of a tail of `log` after `after_id` that waits up to `wait_ms`.
Bytes tail_request(const std::string& log, std::uint64_t after_id, std::uint32_t wait_ms) {
  BinaryWriter w(ByteOrder::big_endian);
  logd::TailQuery q;
  q.log = log;
  q.after_id = after_id;
  q.limit = 100;
  q.wait_ms = wait_ms;
  logd::encode_tail_query(w, q);
  const auto content = w.take();
  return request(logd::kTaskTail, Bytes(content.begin(), content.end()));
}

// Waiting tails hold no worker thread: with 64 of them waiting (as many as there are workers),
// an append is answered at once; and a SIGTERM answers every waiting tail at once, empty.
TEST(LogdBounds, WaitingTailsDoNotDelayAppendsAndShutdownAnswersThem) {
  LogdProcess logd(make_temp_dir(), {"--workers", "64", "--grace", "20s"});
  std::vector<std::unique_ptr<RawClient>> tails;
  for (int i = 0; i < 64; ++i) {
    tails.push_back(std::make_unique<RawClient>(logd.port()));
    raw_handshake(*tails.back(), 'B');
    tails.back()->send(tail_request("quiet", 0, 30000));
  }
  std::this_thread::sleep_for(300ms);  // every tail is waiting now
  auto c = logd.client();
  for (int i = 0; i < 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_GT(c.append(message("busy", "while tails wait")), 0U);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s) << "append " << i;
  }
  // An append to the followed log wakes its tails.
  EXPECT_GT(c.append(message("other", "x")), 0U);
  const auto stop_at = std::chrono::steady_clock::now();
  logd.process().signal(SIGTERM);
  for (auto& t : tails) {
    EXPECT_EQ(t->recv(2, 3000ms), kOkEmpty);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - stop_at, 3s);
  EXPECT_EQ(logd.process().wait_exit(10000ms), 0);
}

// A tail woken by a commit pauses (up to --tail-spread, here a minute) before it answers; a
// SIGTERM meanwhile makes it answer at once, with the message it was woken for.
TEST(LogdBounds, ShutdownAnswersATailInItsPauseAtOnce) {
  LogdProcess logd(make_temp_dir(), {"--tail-spread", "60s", "--grace", "20s"});
  RawClient tail(logd.port());
  raw_handshake(tail, 'B');
  tail.send(tail_request("app", 0, 50000));
  std::this_thread::sleep_for(300ms);  // the tail is waiting
  auto c = logd.client();
  c.append(message("app", "hello"));
  std::this_thread::sleep_for(300ms);  // woken, and most likely in its pause
  const auto stop_at = std::chrono::steady_clock::now();
  logd.process().signal(SIGTERM);
  EXPECT_EQ(tail.recv(1, 5000ms), bytes({0x00})) << "OK";
  EXPECT_LT(std::chrono::steady_clock::now() - stop_at, 5s);
  EXPECT_EQ(logd.process().wait_exit(10000ms), 0);
}

TEST(LogdBounds, CommitWakesAWaitingTail) {
  LogdProcess logd(make_temp_dir());
  RawClient tail(logd.port());
  raw_handshake(tail, 'B');
  tail.send(tail_request("app", 0, 30000));
  std::this_thread::sleep_for(200ms);
  auto c = logd.client();
  const auto start = std::chrono::steady_clock::now();
  c.append(message("app", "hello"));
  const Bytes head = tail.recv(1, 2000ms);
  ASSERT_EQ(head, bytes({0x00}));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

TEST(LogdBounds, ReadWithLevelAboveFiveIsErrorThree) {
  LogdProcess logd(make_temp_dir());
  RawClient raw(logd.port());
  raw_handshake(raw, 'B');
  for (const auto& [min, max] : {std::pair<int, int>{2, 6}, {6, 6}, {0, 255}}) {
    BinaryWriter w(ByteOrder::big_endian);
    w.write_string("app");
    w.write_i64(0);
    w.write_i64(1);
    w.write_u8(static_cast<std::uint8_t>(min));
    w.write_u8(static_cast<std::uint8_t>(max));
    w.write_u32(0);
    const auto content = w.take();
    raw.send(request(logd::kTaskRead, Bytes(content.begin(), content.end())));
    EXPECT_EQ(raw.recv(2), bytes({0x01, logd::kErrBadLevel})) << min << ".." << max;
  }
}

// Streamed reads that the client does not consume: at most --max-reads hold a reader connection
// (the others get Error 8 at once), the write timeout ends them and gives their readers back,
// and the descriptors stay bounded throughout.
TEST(LogdBounds, UnconsumedReadsAreBoundedAndEndedByTheWriteTimeout) {
  LogdProcess logd(make_temp_dir(),
                   {"--max-reads", "4", "--write-timeout", "1s", "--reader-idle-timeout", "1s"});
  {
    auto c = logd.client();
    std::vector<logd::Message> batch(2000, message("big", std::string(2000, 'x')));
    for (int i = 0; i < 5; ++i) {
      c.append_batch(batch);  // 20 MB: more than the socket buffers hold
    }
  }
  const pid_t pid = logd.process().pid();
  const std::size_t before = open_descriptors(pid);
  const std::size_t resident_before = resident_kib(pid);
  BinaryWriter w(ByteOrder::big_endian);
  logd::ReadQuery q;
  q.log = "big";
  logd::encode_read_query(w, q);
  const auto content = w.take();
  const Bytes read = request(logd::kTaskRead, Bytes(content.begin(), content.end()));
  std::vector<std::unique_ptr<RawClient>> readers;
  int busy = 0;
  for (int i = 0; i < 40; ++i) {
    readers.push_back(std::make_unique<RawClient>(logd.port()));
    raw_handshake(*readers.back(), 'B');
    readers.back()->send(read);
    const Bytes first = readers.back()->recv(2, 5000ms);
    if (first == bytes({0x01, logd::kErrBusy})) {
      ++busy;
    } else {
      EXPECT_EQ(first.at(0), 0x00);
    }
  }
  EXPECT_EQ(busy, 36);
  // 40 connections, 4 readers (a database and WAL descriptor each) and some slack.
  EXPECT_LT(open_descriptors(pid), before + 40 + 4 * 3 + 10);
  // The write timeout ends the stalled reads; their readers go back and are closed when idle.
  std::this_thread::sleep_for(4s);
  auto c = logd.client();
  EXPECT_EQ(logd_test::read_all(c, "big").size(), 10000U);
  // Generous: the debug build's AddressSanitizer keeps freed memory in quarantine.
  EXPECT_LT(resident_kib(pid), resident_before + 160 * 1024);
  readers.clear();
  std::this_thread::sleep_for(2500ms);
  // Idle readers are closed; SQLite keeps a closed connection's database descriptor until the
  // writer's lock allows (and reuses it), so at most one per reader remains.
  EXPECT_LE(open_descriptors(pid), before + 4 + 1) << descriptor_list(pid);
}

TEST(LogdBounds, ShortTokenIsAUsageError) {
  const fs::path dir = make_temp_dir();
  std::ofstream(dir / "token") << "short-token\n";
  ChildProcess p(bin_dir() + "/serialserver-logd",
                 {"--listen", "127.0.0.1:" + std::to_string(free_port()), "--db",
                  (dir / "db.sqlite").string(), "--token-file", (dir / "token").string()},
                 (dir / "stderr").string());
  EXPECT_EQ(p.wait_exit(10000ms), 64);
  EXPECT_NE(file_text(dir / "stderr").find("at least 16"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "db.sqlite"));
}

TEST(LogdBounds, WrongTokensAreAnsweredEverMoreSlowly) {
  const fs::path dir = make_temp_dir();
  std::ofstream(dir / "token") << "0123456789abcdef0123\n";
  LogdProcess logd(dir, {"--token-file", (dir / "token").string()});
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) {
    RawClient raw(logd.port());
    raw.send({'B'});
    EXPECT_EQ(raw.recv(2), bytes({'B', 0x01}));
    raw.send(bytes({0, 0, 0, 2, 'n', 'o'}));
    EXPECT_EQ(raw.recv(1, 5000ms), bytes({0x01}));
  }
  // 100 + 200 + 400 + 800 ms.
  EXPECT_GE(std::chrono::steady_clock::now() - start, 1400ms);
  // The right token is not delayed.
  const auto right = std::chrono::steady_clock::now();
  auto c = logd.client(ByteOrder::big_endian, "0123456789abcdef0123");
  EXPECT_LT(std::chrono::steady_clock::now() - right, 500ms);
  EXPECT_NE(file_text(dir / "logd-0.log").find("wrong token"), std::string::npos);
}

TEST(LogdBounds, DatabaseFilesAreReadableByTheOwnerOnly) {
  const fs::path dir = make_temp_dir();
  LogdProcess logd(dir);
  logd.client().append(message("app", "secret"));
  for (const char* name : {"logd.sqlite", "logd.sqlite-wal", "logd.sqlite-shm"}) {
    struct stat st {};
    ASSERT_EQ(::stat((dir / name).c_str(), &st), 0) << name;
    EXPECT_EQ(st.st_mode & 0777, 0600U) << name;
  }
}

TEST(LogdBounds, DbIsAPlainPathNotAnSqliteUri) {
  const fs::path dir = make_temp_dir();
  const std::uint16_t port = free_port();
  const std::string name = "file:x.sqlite?mode=memory";
  ChildProcess p(bin_dir() + "/serialserver-logd",
                 {"--listen", "127.0.0.1:" + std::to_string(port), "--db", name},
                 (dir / "stderr").string());
  // The child runs in the test's working directory.
  ASSERT_TRUE(serialserver::test::wait_for_port(port, 20000ms));
  logd::ClientOptions o;
  o.address = "127.0.0.1:" + std::to_string(port);
  o.timeout = 20000ms;
  EXPECT_TRUE(logd::Client(o).list().empty());  // answered once the store is open
  EXPECT_TRUE(fs::exists(fs::current_path() / name));
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait_exit(10000ms), 0);
  for (const char* suffix : {"", "-wal", "-shm"}) {
    fs::remove(fs::current_path() / (name + suffix));
  }
}

TEST(LogdBounds, APortInUseCreatesNoDatabase) {
  const fs::path dir = make_temp_dir();
  LogdProcess first(dir);
  ChildProcess second(bin_dir() + "/serialserver-logd",
                      {"--listen", first.address(), "--db", (dir / "second.sqlite").string()},
                      (dir / "second.log").string());
  EXPECT_EQ(second.wait_exit(10000ms), 1);
  EXPECT_FALSE(fs::exists(dir / "second.sqlite"));
}

TEST(LogdBounds, ASecondServerOnALiveUnixSocketIsRefused) {
  const fs::path dir = make_temp_dir();
  const std::string path = (dir / "logd.sock").string();
  ChildProcess first(bin_dir() + "/serialserver-logd",
                     {"--listen", path, "--db", (dir / "a.sqlite").string()},
                     (dir / "a.log").string());
  for (int i = 0; i < 400 && !fs::exists(path); ++i) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(fs::is_socket(path));
  ChildProcess second(bin_dir() + "/serialserver-logd",
                      {"--listen", path, "--db", (dir / "b.sqlite").string()},
                      (dir / "b.log").string());
  EXPECT_EQ(second.wait_exit(10000ms), 1);
  ASSERT_TRUE(fs::is_socket(path));
  RawClient raw(path);
  raw_handshake(raw, 'B');
  first.signal(SIGTERM);
  EXPECT_EQ(first.wait_exit(10000ms), 0);
}

TEST(LogdBounds, ListeningBeyondLoopbackWithoutTokenOrTlsWarns) {
  const fs::path dir = make_temp_dir();
  const std::uint16_t port = free_port();
  ChildProcess p(
      bin_dir() + "/serialserver-logd",
      {"--listen", "0.0.0.0:" + std::to_string(port), "--db", (dir / "db.sqlite").string()},
      (dir / "stderr").string());
  ASSERT_TRUE(serialserver::test::wait_for_port(port, 20000ms));
  std::this_thread::sleep_for(300ms);
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait_exit(10000ms), 0);
  EXPECT_NE(file_text(dir / "stderr").find("neither a token nor TLS"), std::string::npos);
}

}  // namespace

namespace {

/// Task 6: deletes the messages of `log` before `before_ns`; returns the answer's bytes.
Bytes delete_request(const std::string& log, std::int64_t before_ns) {
  BinaryWriter w(ByteOrder::big_endian);
  w.write_string(log);
  w.write_i64(before_ns);
  const auto content = w.take();
  return request(logd::kTaskDelete, Bytes(content.begin(), content.end()));
}

TEST(LogdBounds, DeleteRemovesOldMessagesOfOneLog) {
  LogdProcess logd(make_temp_dir());
  auto c = logd.client();
  for (std::int64_t t = 1; t <= 5000; ++t) {
    if (t % 1000 == 0) {
      std::vector<logd::Message> batch;
      for (std::int64_t u = t - 999; u <= t; ++u) {
        batch.push_back(message("app", "m", 2, u));
      }
      c.append_batch(batch);
    }
  }
  c.append(message("other", "stays", 2, 1));
  RawClient raw(logd.port());
  raw_handshake(raw, 'B');
  raw.send(delete_request("app", 3001));  // times 1..3000
  EXPECT_EQ(raw.recv(11), bytes({0x00, 0x08, 0, 0, 0, 0, 0, 0, 0x0B, 0xB8, 0x00}));
  EXPECT_EQ(logd_test::read_all(c, "app").size(), 2000U);
  EXPECT_EQ(logd_test::read_all(c, "other").size(), 1U);
  raw.send(delete_request("app", std::numeric_limits<std::int64_t>::max()));  // all
  EXPECT_EQ(raw.recv(11), bytes({0x00, 0x08, 0, 0, 0, 0, 0, 0, 0x07, 0xD0, 0x00}));
  const auto logs = c.list();
  ASSERT_EQ(logs.size(), 2U);
  EXPECT_EQ(logs[0].name, "app");
  EXPECT_EQ(logs[0].count, 0U);
  raw.send(delete_request("", 1));
  EXPECT_EQ(raw.recv(2), bytes({0x01, logd::kErrBadName}));
  raw.send(request(logd::kTaskDelete, bytes({0, 0, 0, 1, 'a'})));
  EXPECT_EQ(raw.recv(2), bytes({0x01, logd::kErrMalformed}));
}

TEST(LogdBounds, RetentionByAgeDeletesOldMessagesInTheBackground) {
  LogdProcess logd(make_temp_dir(), {"--retain-days", "1"});
  auto c = logd.client();
  const std::int64_t day_ns = 86400LL * 1000000000LL;
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  c.append(message("app", "two days old", 2, now - 2 * day_ns));
  c.append(message("app", "new", 2, 0));
  bool gone = false;
  for (int i = 0; i < 150 && !gone; ++i) {  // within 15 s (it runs every 10 s)
    std::this_thread::sleep_for(100ms);
    gone = logd_test::read_all(c, "app").size() == 1;
  }
  EXPECT_TRUE(gone);
  EXPECT_EQ(logd_test::read_all(c, "app").at(0).text, "new");
}

// A writer with no end: --retain-bytes keeps the database (and its WAL) from growing past the
// limit.
TEST(LogdBounds, RetentionBySizeStopsTheDatabaseGrowing) {
  const fs::path dir = make_temp_dir();
  LogdProcess logd(dir, {"--retain-bytes", "4000000", "--retain-interval", "1s"});
  auto c = logd.client();
  std::vector<logd::Message> batch(500, message("app", std::string(1000, 'x')));
  std::uintmax_t largest = 0;
  constexpr int kBatches = 48;  // 24 MB of text, six times the limit
  const auto give_up = std::chrono::steady_clock::now() + 120s;
  int batches = 0;
  for (; batches < kBatches && std::chrono::steady_clock::now() < give_up; ++batches) {
    c.append_batch(batch);               // 0.5 MB
    std::this_thread::sleep_for(250ms);  // at most 2 MB/s
    const auto size_of = [&](const char* name) -> std::uintmax_t {
      std::error_code ec;
      const auto size = fs::file_size(dir / name, ec);
      return ec ? 0 : size;
    };
    largest = std::max(largest, size_of("logd.sqlite") + size_of("logd.sqlite-wal"));
  }
  ASSERT_EQ(batches, kBatches);
  // The limit, plus what arrives between two passes (1 s), plus the WAL (checkpointed after
  // every pass); without retention the files would hold all that was written (over 20 MB).
  EXPECT_LT(largest, 14'000'000U);
  EXPECT_LT(logd_test::read_all(c, "app").size(), static_cast<std::size_t>(batches) * 500);
}

}  // namespace
