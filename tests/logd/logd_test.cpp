// End-to-end tests of serialserver-logd and serialserver-log over loopback, with the real
// binaries: the handshake (both byte orders, token), every task, bad payloads, durability across
// kill -9, and concurrent writers.

#include <serialserver/binary_writer.hpp>
#include "logd/logd_support.hpp"
#include "logd_client.hpp"
#include "logd_protocol.hpp"
#include "support/loopback.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace {

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
using logd_test::LogdProcess;
using logd_test::make_temp_dir;
using logd_test::message;
using logd_test::raw_handshake;
using logd_test::read_all;
using logd_test::run;

// ---- handshake ----------------------------------------------------------------------------------

TEST(Logd, HandshakeBigEndianWorkedBytes) {
  LogdProcess logd(make_temp_dir());
  RawClient raw(logd.port());
  raw_handshake(raw, 'B');
  // The worked example of docs/logd-protocol.md: append "hi" at INFO, time 1, to log "app".
  const Bytes content =
      bytes({0x00, 0x00, 0x00, 0x03, 'a',  'p',  'p',  0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
             0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x02, 'h',  'i',  0x00, 0x00, 0x00, 0x00});
  EXPECT_EQ(
      request(logd::kTaskAppend, content),
      (Bytes{0x01, 0x1A, 0x00, 0x00, 0x00, 0x03, 'a',  'p', 'p', 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
             0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x02, 'h', 'i', 0x00, 0x00, 0x00, 0x00, 0x00}));
  raw.send(request(logd::kTaskAppend, content));
  EXPECT_EQ(raw.recv(11), bytes({0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 1, 0x00}));
  // list: u32 1, "app", count 1, last id 1.
  raw.send(request(logd::kTaskList));
  EXPECT_EQ(raw.recv(30), bytes({0x00, 0x1B, 0, 0, 0, 1, 0, 0, 0, 3, 'a', 'p', 'p', 0, 0,
                                 0,    0,    0, 0, 0, 1, 0, 0, 0, 0, 0,   0,   0,   1, 0x00}));
}

TEST(Logd, HandshakeLittleEndianWorkedBytes) {
  LogdProcess logd(make_temp_dir());
  RawClient raw(logd.port());
  raw_handshake(raw, 'L');
  const Bytes content =
      bytes({0x03, 0x00, 0x00, 0x00, 'a',  'p',  'p',  0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
             0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 'h',  'i',  0x00, 0x00, 0x00, 0x00});
  raw.send(request(logd::kTaskAppend, content));
  EXPECT_EQ(raw.recv(11), bytes({0x00, 0x08, 1, 0, 0, 0, 0, 0, 0, 0, 0x00}));
  // The record reads back in little-endian, with the time as given.
  auto c = logd.client(ByteOrder::little_endian);
  auto records = read_all(c, "app");
  ASSERT_EQ(records.size(), 1U);
  EXPECT_EQ(records[0].time_ns, 1);
  EXPECT_EQ(records[0].text, "hi");
  // And a big-endian client sees the same record.
  auto big = logd.client(ByteOrder::big_endian);
  EXPECT_EQ(read_all(big, "app"), records);
}

TEST(Logd, HandshakeRejectsOtherByte) {
  LogdProcess logd(make_temp_dir());
  RawClient raw(logd.port());
  raw.send({'X'});
  // The hook throws at once, but the library's listener notices a failed handshake only at the
  // handshake timeout (1 s here): the close comes then.
  EXPECT_TRUE(raw.closed_within(5000ms));
  EXPECT_TRUE(raw.unexpected_bytes().empty());
}

TEST(Logd, TokenIsChecked) {
  const fs::path dir = make_temp_dir();
  std::ofstream(dir / "token") << "s3cret-s3cret-s3cret\n";  // 20 bytes
  LogdProcess logd(dir, {"--token-file", (dir / "token").string()});
  {
    RawClient raw(logd.port());
    raw.send({'B'});
    EXPECT_EQ(raw.recv(2), bytes({'B', 0x01}));
    raw.send(bytes({0, 0, 0, 5, 'w', 'r', 'o', 'n', 'g'}));
    EXPECT_EQ(raw.recv(1), bytes({0x01}));
    EXPECT_TRUE(raw.closed_within(5000ms));
  }
  {
    RawClient raw(logd.port());
    raw.send({'L'});
    EXPECT_EQ(raw.recv(2), bytes({'L', 0x01}));
    Bytes token = bytes({20, 0, 0, 0});
    for (const char ch : std::string("s3cret-s3cret-s3cret")) {
      token.push_back(static_cast<std::uint8_t>(ch));
    }
    raw.send(token);
    EXPECT_EQ(raw.recv(1), bytes({0x00}));
    raw.send(request(logd::kTaskList));
    EXPECT_EQ(raw.recv(7), bytes({0x00, 0x04, 0, 0, 0, 0, 0x00}));
  }
  EXPECT_THROW(logd.client(), std::runtime_error);
  EXPECT_THROW(logd.client(ByteOrder::big_endian, "s3cret-s3cret-s3cre"), std::runtime_error);
  auto c = logd.client(ByteOrder::big_endian, "s3cret-s3cret-s3cret");
  EXPECT_EQ(c.append(message("app", "with token")), 1U);
  // The CLI with the token file.
  const std::string cli = bin_dir() + "/serialserver-log --addr " + logd.address();
  EXPECT_EQ(run(cli + " list 2>/dev/null").first, 1);
  const auto [rc, out] = run(cli + " --token-file " + (dir / "token").string() + " list");
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out, "app\t1\t1\n");
}

// ---- tasks --------------------------------------------------------------------------------------

TEST(Logd, AppendReadTailList) {
  LogdProcess logd(make_temp_dir());
  auto c = logd.client(ByteOrder::little_endian);
  logd::Message first = message("svc", "started", 2, 1000);
  first.fields = {{"pid", "42"}, {"host", "a"}};
  EXPECT_EQ(c.append(first), 1U);
  std::vector<logd::Message> batch;
  for (int i = 0; i < 100; ++i) {
    batch.push_back(
        message("svc", "m" + std::to_string(i), static_cast<std::uint8_t>(i % 6), 2000 + i));
  }
  EXPECT_EQ(c.append_batch(batch), 2U);
  EXPECT_EQ(c.append(message("other", "x")), 102U);

  auto all = read_all(c, "svc");
  ASSERT_EQ(all.size(), 101U);
  EXPECT_EQ(all[0].fields, first.fields);
  EXPECT_EQ(all[0].time_ns, 1000);
  EXPECT_EQ(all[100].text, "m99");

  logd::ReadQuery q;
  q.log = "svc";
  q.since_ns = 2010;
  q.until_ns = 2059;
  q.min_level = 4;
  q.max_level = 5;
  std::vector<std::string> texts;
  c.read(q, [&](logd::Record&& r) { texts.push_back(r.text); });
  // i in 10..59 with i % 6 in {4, 5}: 10,11,16,17,...
  std::vector<std::string> expected;
  for (int i = 10; i <= 59; ++i) {
    if (i % 6 >= 4) {
      expected.push_back("m" + std::to_string(i));
    }
  }
  EXPECT_EQ(texts, expected);
  q.limit = 3;
  EXPECT_EQ(c.read(q, [](logd::Record&&) {}), 3U);

  // The time 0 means the server's clock.
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  auto other = read_all(c, "other");
  ASSERT_EQ(other.size(), 1U);
  EXPECT_NEAR(static_cast<double>(other[0].time_ns),
              static_cast<double>(std::chrono::nanoseconds(now).count()), 60e9);

  logd::TailQuery t;
  t.log = "svc";
  t.after_id = logd::kTailLast;
  t.limit = 2;
  auto last = c.tail(t);
  ASSERT_EQ(last.size(), 2U);
  EXPECT_EQ(last[0].text, "m98");
  EXPECT_EQ(last[1].id, 101U);
  t.after_id = 99;
  t.limit = 10;
  EXPECT_EQ(c.tail(t).size(), 2U);

  // A tail that waits is woken by an append from another connection.
  t.after_id = 102;
  t.wait_ms = 10000;
  std::thread writer([&] {
    std::this_thread::sleep_for(300ms);
    auto w = logd.client();
    w.append(message("svc", "late"));
  });
  const auto start = std::chrono::steady_clock::now();
  auto late = c.tail(t);
  writer.join();
  ASSERT_EQ(late.size(), 1U);
  EXPECT_EQ(late[0].text, "late");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 8s);

  const auto logs = c.list();
  ASSERT_EQ(logs.size(), 2U);
  EXPECT_EQ(logs[0], (logd::LogInfo{"other", 1, 102}));
  EXPECT_EQ(logs[1], (logd::LogInfo{"svc", 102, 103}));
}

// Eight followers of one log, as `tail --follow` runs: a commit wakes them all, and they answer
// spread over --tail-spread, each with every message committed meanwhile. Their answers come
// from the records the server keeps in memory for followed logs, and must be what a read (always
// a database query) gives.
TEST(Logd, FollowersOfOneLogAnswerSpreadOutWithWhatTheDatabaseHolds) {
  LogdProcess logd(make_temp_dir(), {"--tail-spread", "300ms"});
  auto writer = logd.client();
  for (int i = 0; i < 5; ++i) {
    writer.append(message("app", "before" + std::to_string(i)));
  }
  constexpr int kFollowers = 8;
  // Each follower's next answer after `after_id`, and when it came.
  struct Answer {
    std::vector<logd::Record> records;
    std::chrono::steady_clock::time_point at;
  };
  auto follow_once = [&](std::uint64_t after_id, const std::vector<logd::Message>& batch) {
    std::vector<Answer> answers(kFollowers);
    std::vector<std::thread> threads;
    for (int f = 0; f < kFollowers; ++f) {
      threads.emplace_back([&, f] {
        logd::TailQuery q;
        q.log = "app";
        q.after_id = after_id;
        q.wait_ms = 10000;
        auto follower = logd.client();
        answers[f].records = follower.tail(q);
        answers[f].at = std::chrono::steady_clock::now();
      });
    }
    std::this_thread::sleep_for(500ms);  // they are waiting
    const auto committed = std::chrono::steady_clock::now();
    writer.append_batch(batch);
    for (auto& t : threads) {
      t.join();
    }
    auto first = answers.front().at;
    auto last = answers.front().at;
    for (const Answer& a : answers) {
      first = std::min(first, a.at);
      last = std::max(last, a.at);
      EXPECT_LT(a.at - committed, 5s);
    }
    // Eight pauses drawn from 300 ms all within 20 ms of each other: about 1 in 10^7.
    EXPECT_GT(last - first, 20ms) << "the followers answered all at once";
    return answers;
  };

  const auto round1 = follow_once(5, {message("app", "a"), message("app", "b")});
  for (const Answer& a : round1) {
    ASSERT_EQ(a.records.size(), 2U);
    EXPECT_EQ(a.records[0].id, 6U);
    EXPECT_EQ(a.records[1].text, "b");
  }
  logd::Message with_fields = message("app", "c", 4);
  with_fields.fields = {{"k", "v"}};
  const auto round2 = follow_once(7, {with_fields, message("app", "d", 1)});
  const auto stored = read_all(writer, "app");
  ASSERT_EQ(stored.size(), 9U);
  const std::vector<logd::Record> last_two(stored.end() - 2, stored.end());
  for (const Answer& a : round2) {
    EXPECT_EQ(a.records, last_two);
  }
}

TEST(Logd, LargeReadIsStreamed) {
  LogdProcess logd(make_temp_dir());
  auto c = logd.client();
  const std::string text(1000, 'x');
  std::vector<logd::Message> batch;
  for (int b = 0; b < 20; ++b) {
    batch.clear();
    for (int i = 0; i < 500; ++i) {
      batch.push_back(message("big", text + std::to_string(b * 500 + i), 2, 1 + b * 500 + i));
    }
    c.append_batch(batch);
  }
  std::uint64_t n = 0;
  std::int64_t previous = 0;
  bool ordered = true;
  c.read({"big"}, [&](logd::Record&& r) {
    ordered = ordered && r.time_ns > previous;
    previous = r.time_ns;
    ++n;
  });
  EXPECT_EQ(n, 10000U);
  EXPECT_TRUE(ordered);
  // The connection is still in step after a 10 MB response.
  EXPECT_EQ(c.list().at(0).count, 10000U);
}

// ---- bad payloads -------------------------------------------------------------------------------

TEST(Logd, BadPayloadsGetTheirCodeAndWriteNothing) {
  LogdProcess logd(make_temp_dir());
  RawClient raw(logd.port());
  raw_handshake(raw, 'B');
  auto encoded = [](const logd::Message& m) {
    BinaryWriter w(ByteOrder::big_endian);
    logd::encode_message(w, m);
    return w.take();
  };
  const Bytes good = encoded(message("app", "fine"));
  auto expect_error = [&](serialserver::TaskCode task, const Bytes& content, int code) {
    raw.send(request(task, content));
    EXPECT_EQ(raw.recv(2), bytes({0x01, code})) << "task " << int(task);
  };
  // Truncated, trailing bytes, empty payload.
  expect_error(logd::kTaskAppend, Bytes(good.begin(), good.end() - 1), logd::kErrMalformed);
  Bytes trailing = good;
  trailing.push_back(0);
  expect_error(logd::kTaskAppend, trailing, logd::kErrMalformed);
  expect_error(logd::kTaskAppend, {}, logd::kErrMalformed);
  // A string length that runs past the end.
  expect_error(logd::kTaskAppend, bytes({0xFF, 0xFF, 0xFF, 0xFF, 'a'}), logd::kErrMalformed);
  // Empty name, too long a name, bad level, too many fields, too long a text.
  expect_error(logd::kTaskAppend, encoded(message("", "x")), logd::kErrBadName);
  expect_error(logd::kTaskAppend, encoded(message(std::string(256, 'n'), "x")), logd::kErrBadName);
  expect_error(logd::kTaskAppend, encoded(message("app", "x", 6)), logd::kErrBadLevel);
  logd::Message many = message("app", "x");
  many.fields.assign(logd::kMaxFields + 1, {"k", "v"});
  expect_error(logd::kTaskAppend, encoded(many), logd::kErrTooLarge);
  expect_error(logd::kTaskAppend,
               encoded(message("app", std::string(logd::kMaxTextBytes + 1, 't'))),
               logd::kErrTooLarge);
  // A batch whose last message is bad writes none of the good ones before it.
  std::vector<logd::Message> batch(50, message("app", "good"));
  batch.push_back(message("app", "bad", 9));
  {
    BinaryWriter w(ByteOrder::big_endian);
    logd::encode_batch(w, batch);
    expect_error(logd::kTaskAppendBatch, w.take(), logd::kErrBadLevel);
  }
  {
    BinaryWriter w(ByteOrder::big_endian);
    logd::encode_batch(w, std::span(batch).first(50));
    Bytes cut = w.take();
    cut.resize(cut.size() - 3);
    expect_error(logd::kTaskAppendBatch, cut, logd::kErrMalformed);
  }
  {
    BinaryWriter w(ByteOrder::big_endian);
    w.write_u32(logd::kMaxBatch + 1);
    expect_error(logd::kTaskAppendBatch, w.take(), logd::kErrTooLarge);
  }
  // Read with an inverted range; tail with a zero limit; list with a payload.
  {
    BinaryWriter w(ByteOrder::big_endian);
    logd::ReadQuery q{"app"};
    q.since_ns = 10;
    q.until_ns = 5;
    logd::encode_read_query(w, q);
    expect_error(logd::kTaskRead, w.take(), logd::kErrBadArgument);
  }
  {
    BinaryWriter w(ByteOrder::big_endian);
    logd::encode_tail_query(w, {"app", 0, 0, 0});
    expect_error(logd::kTaskTail, w.take(), logd::kErrBadArgument);
  }
  expect_error(logd::kTaskList, bytes({1}), logd::kErrMalformed);
  expect_error(9, {}, serialserver::kUnknownTaskErrorCode);

  // Nothing was written; the connection still works.
  raw.send(request(logd::kTaskList));
  EXPECT_EQ(raw.recv(7), bytes({0x00, 0x04, 0, 0, 0, 0, 0x00}));
  auto c = logd.client();
  EXPECT_TRUE(c.list().empty());
  EXPECT_EQ(c.append(message("app", "fine")), 1U);
}

// ---- durability and concurrency -----------------------------------------------------------------

TEST(Logd, AcknowledgedMessagesSurviveKill9) {
  LogdProcess logd(make_temp_dir());
  constexpr int kSingles = 300;
  std::set<std::uint64_t> ids;
  {
    auto c = logd.client();
    for (int i = 0; i < kSingles; ++i) {
      ids.insert(c.append(message("durable", "single " + std::to_string(i))));
    }
    std::vector<logd::Message> batch;
    for (int i = 0; i < 200; ++i) {
      batch.push_back(message("durable", "batched " + std::to_string(i)));
    }
    const std::uint64_t first = c.append_batch(batch);
    for (std::uint64_t i = 0; i < 200; ++i) {
      ids.insert(first + i);
    }
    // kill -9 right after the last OK.
    logd.kill9();
  }
  ASSERT_EQ(ids.size(), 500U);
  logd.start();
  auto c = logd.client();
  const auto records = read_all(c, "durable");
  std::set<std::uint64_t> found;
  for (const auto& r : records) {
    found.insert(r.id);
  }
  EXPECT_EQ(found, ids);
  ASSERT_EQ(c.list().size(), 1U);
  EXPECT_EQ(c.list()[0].count, 500U);
  // Appends go on after the restart with fresh ids.
  EXPECT_GT(c.append(message("durable", "after")), *ids.rbegin());
}

TEST(Logd, FiftyConcurrentWritersLoseAndDuplicateNothing) {
  LogdProcess logd(make_temp_dir());
  constexpr int kWriters = 50;
  constexpr int kRounds = 10;
  constexpr int kBatch = 10;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      try {
        auto c = logd.client(w % 2 == 0 ? ByteOrder::big_endian : ByteOrder::little_endian);
        for (int r = 0; r < kRounds; ++r) {
          std::vector<logd::Message> batch;
          for (int i = 0; i < kBatch; ++i) {
            batch.push_back(message(
                "shared", std::to_string(w) + "/" + std::to_string(r) + "/" + std::to_string(i)));
          }
          if (r % 2 == 0) {
            c.append_batch(batch);
          } else {
            for (const auto& m : batch) {
              c.append(m);
            }
          }
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << "writer " << w << ": " << e.what();
        ++failures;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  ASSERT_EQ(failures.load(), 0);
  auto c = logd.client();
  const auto records = read_all(c, "shared");
  std::set<std::string> texts;
  std::set<std::uint64_t> ids;
  for (const auto& r : records) {
    texts.insert(r.text);
    ids.insert(r.id);
  }
  constexpr std::size_t kTotal = kWriters * kRounds * kBatch;
  EXPECT_EQ(records.size(), kTotal);
  EXPECT_EQ(texts.size(), kTotal);
  EXPECT_EQ(ids.size(), kTotal);
  EXPECT_EQ(c.list().at(0).count, kTotal);
}

// ---- the binaries -------------------------------------------------------------------------------

TEST(Logd, CliSendReadTailList) {
  LogdProcess logd(make_temp_dir());
  const std::string cli = bin_dir() + "/serialserver-log --addr " + logd.address();
  EXPECT_EQ(run(cli + " send web 'GET /'").second, "1\n");
  EXPECT_EQ(run(cli + " send web --level error --field code=500 'GET /boom'").second, "2\n");
  EXPECT_EQ(run(cli + " --byte-order big send web --time 2020-01-02T03:04:05.5Z old").second,
            "3\n");
  auto [rc, out] = run(cli + " read web --level warn");
  EXPECT_EQ(rc, 0);
  EXPECT_NE(out.find("2 "), std::string::npos);
  EXPECT_NE(out.find(" ERROR GET /boom code=500\n"), std::string::npos);
  EXPECT_EQ(out.find("GET /\n"), std::string::npos);
  std::tie(rc, out) = run(cli + " read web --limit 1");
  EXPECT_EQ(out, "3 2020-01-02T03:04:05.500000000Z INFO old\n");
  std::tie(rc, out) = run(cli + " read web --since 1h");
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2);
  std::tie(rc, out) = run(cli + " tail web -n 1");
  EXPECT_EQ(out, "3 2020-01-02T03:04:05.500000000Z INFO old\n");
  std::tie(rc, out) = run(cli + " list");
  EXPECT_EQ(out, "web\t3\t3\n");
  std::tie(rc, out) = run(cli + " send web --level loud x 2>&1");
  EXPECT_EQ(rc, 64);  // a usage error, found before sending
  std::tie(rc, out) = run(cli + " send '' x 2>&1");
  EXPECT_EQ(rc, 64);
  EXPECT_NE(out.find("a log name has 1..255 bytes"), std::string::npos);

  // tail --follow prints what arrives later; it runs until killed.
  const std::string follow_out = (logd.dir() / "follow.txt").string();
  ChildProcess follower("/bin/sh",
                        {"-c", "exec " + cli + " tail web -n 0 --follow > " + follow_out});
  std::this_thread::sleep_for(500ms);
  run(cli + " send web followed");
  EXPECT_TRUE(serialserver::test::eventually(
      [&] {
        std::ifstream in(follow_out);
        std::string content((std::istreambuf_iterator<char>(in)), {});
        return content.find("INFO followed\n") != std::string::npos;
      },
      10000ms));
}

TEST(Logd, SigtermStopsGracefully) {
  LogdProcess logd(make_temp_dir());
  auto c = logd.client();
  c.append(message("a", "b"));
  logd.process().signal(SIGTERM);
  EXPECT_EQ(logd.process().wait_exit(15000ms), std::optional<int>(0));
}

}  // namespace
