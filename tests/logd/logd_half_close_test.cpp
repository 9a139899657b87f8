// A client that half-closes (shutdown of its sending side) right after its last request still
// gets every answer, and each acknowledged message is stored once: the server lets the commit in
// progress finish instead of taking the end of stream for a client that has gone.

#include <serialserver/binary_writer.hpp>
#include "logd/logd_support.hpp"
#include "logd_protocol.hpp"
#include "support/loopback.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace {

using serialserver::BinaryWriter;
using serialserver::ByteOrder;
using serialserver::test::Bytes;
using serialserver::test::RawClient;
using serialserver::test::request;
using namespace std::chrono_literals;
using logd_test::LogdProcess;
using logd_test::make_temp_dir;
using logd_test::message;
using logd_test::raw_handshake;
using logd_test::read_all;
using logd_test::RemoveOnExit;

/// Rounds per test, each on a fresh connection: the end of stream reaches the server while the
/// commit is under way, so a server that cancels on it fails in every round, not only some.
constexpr int kRounds = 3;

/// The request of an append of `m`, big-endian.
Bytes append_request(const logd::Message& m) {
  BinaryWriter w(ByteOrder::big_endian);
  logd::encode_message(w, m);
  return request(logd::kTaskAppend, w.take());
}

/// The request of a batch append of `messages`, big-endian.
Bytes batch_request(const std::vector<logd::Message>& messages) {
  BinaryWriter w(ByteOrder::big_endian);
  logd::encode_batch(w, messages);
  return request(logd::kTaskAppendBatch, w.take());
}

/// The big-endian number in `size` bytes of `data` from `offset`.
std::uint64_t big_endian_at(const Bytes& data, std::size_t offset, std::size_t size) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < size; ++i) {
    value = (value << 8) | data.at(offset + i);
  }
  return value;
}

/// Reads an append's OK answer (status, length 8, u64 id, end byte); returns the id, or 0 if the
/// answer is missing or not an OK.
std::uint64_t read_append_answer(RawClient& raw) {
  const Bytes answer = raw.recv(11, 10000ms);
  EXPECT_EQ(answer.size(), 11U) << "the append was not answered";
  if (answer.size() != 11 || answer[0] != 0x00 || answer[1] != 0x08 || answer[10] != 0x00) {
    ADD_FAILURE() << "not the OK answer of an append";
    return 0;
  }
  return big_endian_at(answer, 2, 8);
}

/// Reads a batch's OK answer (status, length 12, u64 first id, u32 n, end byte); returns the first
/// id, or 0 if the answer is missing or not an OK for `n` messages.
std::uint64_t read_batch_answer(RawClient& raw, std::uint32_t n) {
  const Bytes answer = raw.recv(15, 10000ms);
  EXPECT_EQ(answer.size(), 15U) << "the batch was not answered";
  if (answer.size() != 15 || answer[0] != 0x00 || answer[1] != 0x0C || answer[14] != 0x00) {
    ADD_FAILURE() << "not the OK answer of a batch";
    return 0;
  }
  EXPECT_EQ(big_endian_at(answer, 10, 4), n);
  return big_endian_at(answer, 2, 8);
}

/// The ids of the records of `log` whose text is `text`, read on a fresh connection.
std::vector<std::uint64_t> stored_ids(const LogdProcess& logd, const std::string& log,
                                      const std::string& text) {
  auto client = logd.client();
  std::vector<std::uint64_t> ids;
  for (const auto& record : read_all(client, log)) {
    if (record.text == text) {
      ids.push_back(record.id);
    }
  }
  return ids;
}

TEST(LogdHalfClose, AppendIsAnsweredAndStoredOnce) {
  RemoveOnExit dir(make_temp_dir());
  LogdProcess logd(dir.path());
  for (int round = 0; round < kRounds; ++round) {
    const std::string text = "append " + std::to_string(round);
    RawClient raw(logd.port());
    raw_handshake(raw, logd::kHandshakeBig);
    raw.send(append_request(message("app", text)));
    raw.shutdown_write();
    const std::uint64_t id = read_append_answer(raw);
    EXPECT_NE(id, 0U) << "round " << round;
    EXPECT_TRUE(raw.closed_within(5000ms)) << "the server did not close after the answer";
    EXPECT_EQ(stored_ids(logd, "app", text), std::vector<std::uint64_t>{id}) << "round " << round;
  }
}

TEST(LogdHalfClose, BatchIsAnsweredAndStoredOnce) {
  RemoveOnExit dir(make_temp_dir());
  LogdProcess logd(dir.path());
  constexpr std::uint32_t kBatch = 20;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<logd::Message> batch;
    for (std::uint32_t i = 0; i < kBatch; ++i) {
      batch.push_back(message("app", "batch " + std::to_string(round) + "." + std::to_string(i)));
    }
    RawClient raw(logd.port());
    raw_handshake(raw, logd::kHandshakeBig);
    raw.send(batch_request(batch));
    raw.shutdown_write();
    const std::uint64_t first_id = read_batch_answer(raw, kBatch);
    EXPECT_NE(first_id, 0U) << "round " << round;
    EXPECT_TRUE(raw.closed_within(5000ms)) << "the server did not close after the answer";
    for (std::uint32_t i = 0; i < kBatch; ++i) {
      EXPECT_EQ(stored_ids(logd, "app", batch[i].text), std::vector<std::uint64_t>{first_id + i})
          << "round " << round << ", message " << i;
    }
  }
}

// Requests sent back to back before the half-close are all answered, in order, then the server
// closes.
TEST(LogdHalfClose, PipelinedRequestsAreAllAnswered) {
  RemoveOnExit dir(make_temp_dir());
  LogdProcess logd(dir.path());
  RawClient raw(logd.port());
  raw_handshake(raw, logd::kHandshakeBig);
  const std::vector<logd::Message> batch = {message("app", "second"), message("app", "third")};
  Bytes requests = append_request(message("app", "first"));
  for (const Bytes& next : {batch_request(batch), append_request(message("app", "fourth"))}) {
    requests.insert(requests.end(), next.begin(), next.end());
  }
  raw.send(requests);
  raw.shutdown_write();
  const std::uint64_t first = read_append_answer(raw);
  const std::uint64_t batch_first = read_batch_answer(raw, 2);
  const std::uint64_t fourth = read_append_answer(raw);
  EXPECT_TRUE(raw.closed_within(5000ms)) << "the server did not close after the answers";
  EXPECT_EQ(stored_ids(logd, "app", "first"), std::vector<std::uint64_t>{first});
  EXPECT_EQ(stored_ids(logd, "app", "second"), std::vector<std::uint64_t>{batch_first});
  EXPECT_EQ(stored_ids(logd, "app", "third"), std::vector<std::uint64_t>{batch_first + 1});
  EXPECT_EQ(stored_ids(logd, "app", "fourth"), std::vector<std::uint64_t>{fourth});
}

}  // namespace
