// The in-memory stream as a stand-in for a non-blocking socket: the synchronous read_some /
// write_some with would_block and EOF, a bounded write capacity, async_wait for reading and
// writing with cancellation, shutdown and close, fault injection counting synchronous and
// asynchronous operations alike, and a connected pair. Every test polls its io_context (never
// waits), so each is bounded in time.

#include "support/memory_stream.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <system_error>
#include <vector>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/io_context.hpp>
#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

using Bytes = std::vector<std::uint8_t>;
using asio::socket_base;

/// Runs what is ready now, without waiting: pending operations keep the io_context busy.
void poll(asio::io_context& io) {
  io.restart();
  io.poll();
}

/// The outcome of an asynchronous operation, once it has completed.
struct Done {
  std::optional<std::error_code> ec;
  std::size_t n = 0;
  auto io_handler() {
    return [this](std::error_code e, std::size_t bytes) {
      ec = e;
      n = bytes;
    };
  }
  auto wait_handler() {
    return [this](std::error_code e) { ec = e; };
  }
};

MemoryStream socket_like(asio::io_context& io) {
  MemoryStream stream(io.get_executor());
  stream.at_end(MemoryStream::AtEnd::pend);
  std::error_code ec;
  stream.non_blocking(true, ec);
  EXPECT_FALSE(ec);
  return stream;
}

TEST(MemoryStreamSocket, ReadSomeWouldBlockThenDeliversInChunksThenEof) {
  asio::io_context io;
  MemoryStream stream = socket_like(io);
  stream.read_chunk(2);
  const auto peer = stream.peer();
  EXPECT_TRUE(stream.non_blocking());
  std::uint8_t buf[8];
  std::error_code ec;
  EXPECT_EQ(stream.read_some(asio::buffer(buf), ec), 0U);
  EXPECT_EQ(ec, asio::error::would_block);

  peer.append_input(Bytes{1, 2, 3, 4, 5});
  std::vector<std::size_t> sizes;
  for (;;) {
    const std::size_t n = stream.read_some(asio::buffer(buf), ec);
    if (ec) {
      break;
    }
    sizes.push_back(n);
  }
  EXPECT_EQ(sizes, (std::vector<std::size_t>{2, 2, 1}));
  EXPECT_EQ(ec, asio::error::would_block);
  EXPECT_EQ(stream.read_some(asio::buffer(buf, 0), ec), 0U);
  EXPECT_FALSE(ec) << "an empty read succeeds at once";

  peer.end_input();
  EXPECT_EQ(stream.read_some(asio::buffer(buf), ec), 0U);
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_EQ(peer.reads(), 7U);

  stream.close(ec);
  EXPECT_FALSE(ec);
  EXPECT_FALSE(stream.is_open());
  stream.read_some(asio::buffer(buf), ec);
  EXPECT_EQ(ec, asio::error::bad_descriptor);
}

TEST(MemoryStreamSocket, WriteSomeTakesChunksUpToTheCapacityThenWouldBlock) {
  asio::io_context io;
  MemoryStream stream = socket_like(io);
  stream.write_chunk(3).write_capacity(5);
  const auto peer = stream.peer();
  const Bytes data{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  std::error_code ec;
  EXPECT_EQ(stream.write_some(asio::buffer(data), ec), 3U);
  EXPECT_FALSE(ec);
  EXPECT_EQ(stream.write_some(asio::buffer(data.data() + 3, 7), ec), 2U);
  EXPECT_FALSE(ec);
  EXPECT_EQ(stream.write_some(asio::buffer(data.data() + 5, 5), ec), 0U);
  EXPECT_EQ(ec, asio::error::would_block);
  EXPECT_EQ(peer.output_unread(), 5U);

  EXPECT_EQ(peer.take_output(), (Bytes{1, 2, 3, 4, 5}));
  EXPECT_EQ(stream.write_some(asio::buffer(data.data() + 5, 5), ec), 3U);
  EXPECT_FALSE(ec);
  EXPECT_EQ(peer.take_output(), (Bytes{6, 7, 8}));
  EXPECT_EQ(peer.output(), (Bytes{1, 2, 3, 4, 5, 6, 7, 8})) << "output() keeps everything";
  EXPECT_EQ(peer.writes(), 4U);
}

TEST(MemoryStreamSocket, WaitReadCompletesOnInputAndOnEndNeverInline) {
  asio::io_context io;
  MemoryStream stream = socket_like(io);
  const auto peer = stream.peer();
  Done first;
  stream.async_wait(socket_base::wait_read, first.wait_handler());
  poll(io);
  EXPECT_FALSE(first.ec) << "completed without input";
  EXPECT_EQ(peer.waits_pending(), 1U);
  peer.append_input(Bytes{7});
  EXPECT_FALSE(first.ec) << "completed inline";
  poll(io);
  ASSERT_TRUE(first.ec);
  EXPECT_FALSE(*first.ec);
  EXPECT_EQ(peer.input_left(), 1U) << "a wait reads nothing";

  Done ready;  // input is there: completes at once (posted)
  stream.async_wait(socket_base::wait_read, ready.wait_handler());
  EXPECT_FALSE(ready.ec);
  poll(io);
  ASSERT_TRUE(ready.ec);
  EXPECT_FALSE(*ready.ec);

  std::uint8_t buf[4];
  std::error_code ec;
  EXPECT_EQ(stream.read_some(asio::buffer(buf), ec), 1U);
  Done at_end;
  stream.async_wait(socket_base::wait_read, at_end.wait_handler());
  poll(io);
  EXPECT_FALSE(at_end.ec);
  peer.end_input();
  poll(io);
  ASSERT_TRUE(at_end.ec);
  EXPECT_FALSE(*at_end.ec) << "end of input is readable";
  EXPECT_EQ(peer.waits(), 3U);
}

TEST(MemoryStreamSocket, WaitWriteAndAsyncWriteCompleteWhenCapacityFrees) {
  asio::io_context io;
  MemoryStream stream = socket_like(io);
  stream.write_capacity(4);
  const auto peer = stream.peer();
  const Bytes data{1, 2, 3, 4, 5, 6};
  Done wait_now;
  stream.async_wait(socket_base::wait_write, wait_now.wait_handler());
  poll(io);
  ASSERT_TRUE(wait_now.ec) << "room to write: writable at once";

  Done first;
  stream.async_write_some(asio::buffer(data), first.io_handler());
  poll(io);
  ASSERT_TRUE(first.ec);
  EXPECT_EQ(first.n, 4U);

  Done wait;
  Done second;
  stream.async_wait(socket_base::wait_write, wait.wait_handler());
  stream.async_write_some(asio::buffer(data.data() + 4, 2), second.io_handler());
  poll(io);
  EXPECT_FALSE(wait.ec);
  EXPECT_FALSE(second.ec);
  EXPECT_TRUE(peer.write_pending());
  EXPECT_EQ(peer.take_output(), (Bytes{1, 2, 3, 4}));
  EXPECT_FALSE(second.ec) << "completed inline";
  poll(io);
  ASSERT_TRUE(wait.ec);
  EXPECT_FALSE(*wait.ec);
  ASSERT_TRUE(second.ec);
  EXPECT_FALSE(*second.ec);
  EXPECT_EQ(second.n, 2U);
  EXPECT_EQ(peer.take_output(), (Bytes{5, 6}));
}

TEST(MemoryStreamSocket, PendingOperationsAreCancelledThroughTheirSlots) {
  asio::io_context io;
  MemoryStream stream = socket_like(io);
  stream.write_capacity(0);  // every write waits
  const auto peer = stream.peer();
  asio::cancellation_signal read_wait_signal;
  asio::cancellation_signal write_wait_signal;
  asio::cancellation_signal write_signal;
  Done read_wait;
  Done write_wait;
  Done write;
  Done other;  // not cancelled
  const Bytes data{1};
  stream.async_wait(socket_base::wait_read, asio::bind_cancellation_slot(read_wait_signal.slot(),
                                                                         read_wait.wait_handler()));
  stream.async_wait(
      socket_base::wait_write,
      asio::bind_cancellation_slot(write_wait_signal.slot(), write_wait.wait_handler()));
  stream.async_write_some(asio::buffer(data),
                          asio::bind_cancellation_slot(write_signal.slot(), write.io_handler()));
  stream.async_wait(socket_base::wait_read, other.wait_handler());
  poll(io);
  EXPECT_EQ(peer.waits_pending(), 3U);
  EXPECT_TRUE(peer.write_pending());

  read_wait_signal.emit(asio::cancellation_type::terminal);
  write_wait_signal.emit(asio::cancellation_type::terminal);
  write_signal.emit(asio::cancellation_type::terminal);
  EXPECT_FALSE(read_wait.ec) << "completed inline";
  poll(io);
  ASSERT_TRUE(read_wait.ec);
  ASSERT_TRUE(write_wait.ec);
  ASSERT_TRUE(write.ec);
  EXPECT_EQ(*read_wait.ec, asio::error::operation_aborted);
  EXPECT_EQ(*write_wait.ec, asio::error::operation_aborted);
  EXPECT_EQ(*write.ec, asio::error::operation_aborted);
  EXPECT_EQ(write.n, 0U);
  EXPECT_FALSE(other.ec);
  EXPECT_EQ(peer.waits_pending(), 1U);
  EXPECT_FALSE(peer.write_pending());
  EXPECT_TRUE(peer.output().empty());

  // A signal emitted again after its operation completed changes nothing.
  read_wait_signal.emit(asio::cancellation_type::terminal);
  poll(io);
  EXPECT_FALSE(other.ec);
  peer.end_input();
  poll(io);
  ASSERT_TRUE(other.ec);
  EXPECT_FALSE(*other.ec);
}

TEST(MemoryStreamSocket, FailAtCountsSynchronousAndAsynchronousOperationsAlike) {
  // Six operations of every kind; failing the n-th must fail that one only, with no bytes.
  const std::error_code injected = asio::error::connection_reset;
  for (std::uint64_t n = 1; n <= 7; ++n) {
    SCOPED_TRACE("failing operation " + std::to_string(n));
    asio::io_context io;
    MemoryStream stream = socket_like(io);
    const auto peer = stream.peer();
    peer.append_input(Bytes{1, 2, 3});
    stream.fail_at(n, injected);
    std::error_code toggled;
    stream.non_blocking(true, toggled);  // not an operation
    std::vector<std::error_code> results;
    std::uint8_t buf[1];
    std::error_code ec;
    const std::size_t read = stream.read_some(asio::buffer(buf), ec);  // 1
    EXPECT_EQ(read, ec ? 0U : 1U);
    results.push_back(ec);
    const Bytes data{9, 9};
    const std::size_t written = stream.write_some(asio::buffer(data), ec);  // 2
    EXPECT_EQ(written, ec ? 0U : 2U);
    results.push_back(ec);
    Done wait;
    stream.async_wait(socket_base::wait_read, wait.wait_handler());  // 3
    Done async_read;
    stream.async_read_some(asio::buffer(buf), async_read.io_handler());  // 4
    Done async_write;
    stream.async_write_some(asio::buffer(data), async_write.io_handler());  // 5
    poll(io);
    ASSERT_TRUE(wait.ec && async_read.ec && async_write.ec);
    results.push_back(*wait.ec);
    results.push_back(*async_read.ec);
    EXPECT_EQ(async_read.n, *async_read.ec ? 0U : 1U);
    results.push_back(*async_write.ec);
    EXPECT_EQ(async_write.n, *async_write.ec ? 0U : 2U);
    stream.shutdown(socket_base::shutdown_send, ec);  // 6
    results.push_back(ec);
    EXPECT_EQ(peer.output_ended(), n != 6);
    stream.close(ec);  // not an operation
    EXPECT_FALSE(ec);

    ASSERT_EQ(results.size(), 6U);
    for (std::size_t i = 0; i < results.size(); ++i) {
      if (i + 1 == n) {
        EXPECT_EQ(results[i], injected) << "operation " << i + 1;
      } else {
        EXPECT_FALSE(results[i]) << "operation " << i + 1 << ": " << results[i].message();
      }
    }
    EXPECT_EQ(peer.operations(), 6U);
    EXPECT_EQ(peer.injected_failures(), n <= 6 ? 1U : 0U);
    EXPECT_EQ(peer.output().size(), n == 2 || n == 5 ? 2U : 4U);
  }
}

TEST(MemoryStreamSocket, ShutdownAndCloseOnASingleStream) {
  asio::io_context io;
  MemoryStream stream = socket_like(io);
  const auto peer = stream.peer();
  Done read;
  std::uint8_t buf[4];
  stream.async_read_some(asio::buffer(buf), read.io_handler());
  poll(io);
  EXPECT_FALSE(read.ec);
  std::error_code ec;
  stream.shutdown(socket_base::shutdown_receive, ec);
  EXPECT_FALSE(ec);
  poll(io);
  ASSERT_TRUE(read.ec) << "shutdown_receive ends a pending read";
  EXPECT_EQ(*read.ec, asio::error::eof);

  const Bytes data{1, 2};
  EXPECT_EQ(stream.write_some(asio::buffer(data), ec), 2U);
  stream.shutdown(socket_base::shutdown_send, ec);
  EXPECT_FALSE(ec);
  EXPECT_TRUE(peer.output_ended());
  EXPECT_EQ(stream.write_some(asio::buffer(data), ec), 0U);
  EXPECT_EQ(ec, asio::error::broken_pipe);
  EXPECT_EQ(peer.output(), data);

  stream.close(ec);
  EXPECT_FALSE(ec);
  stream.close(ec);
  EXPECT_FALSE(ec) << "closing twice is harmless";
  stream.shutdown(socket_base::shutdown_send, ec);
  EXPECT_EQ(ec, asio::error::bad_descriptor);
  Done wait;
  stream.async_wait(socket_base::wait_write, wait.wait_handler());
  poll(io);
  ASSERT_TRUE(wait.ec);
  EXPECT_EQ(*wait.ec, asio::error::bad_descriptor);
}

TEST(MemoryStreamSocket, WhatWouldHangFailsInstead) {
  asio::io_context io;
  MemoryStream stream(io.get_executor());
  stream.at_end(MemoryStream::AtEnd::pend).write_capacity(0);
  EXPECT_FALSE(stream.non_blocking()) << "blocking by default, as an asio socket";
  std::uint8_t buf[4];
  std::error_code ec;
  EXPECT_EQ(stream.read_some(asio::buffer(buf), ec), 0U);
  EXPECT_EQ(ec, asio::error::would_block) << "a blocking read cannot wait on this thread";
  EXPECT_EQ(stream.write_some(asio::buffer(buf), ec), 0U);
  EXPECT_EQ(ec, asio::error::would_block);

  Done first_read;
  Done second_read;
  Done first_write;
  Done second_write;
  Done error_wait;
  stream.async_read_some(asio::buffer(buf), first_read.io_handler());
  stream.async_read_some(asio::buffer(buf), second_read.io_handler());
  stream.async_write_some(asio::buffer(buf), first_write.io_handler());
  stream.async_write_some(asio::buffer(buf), second_write.io_handler());
  stream.async_wait(socket_base::wait_error, error_wait.wait_handler());
  poll(io);
  EXPECT_FALSE(first_read.ec);
  EXPECT_FALSE(first_write.ec);
  ASSERT_TRUE(second_read.ec && second_write.ec && error_wait.ec);
  EXPECT_EQ(*second_read.ec, asio::error::in_progress);
  EXPECT_EQ(*second_write.ec, asio::error::in_progress);
  EXPECT_EQ(*error_wait.ec, asio::error::operation_not_supported);
  stream.close();
  poll(io);
  ASSERT_TRUE(first_read.ec && first_write.ec);
  EXPECT_EQ(*first_read.ec, asio::error::operation_aborted);
  EXPECT_EQ(*first_write.ec, asio::error::operation_aborted);
}

// ---- a connected pair -------------------------------------------------------------------------

TEST(MemoryStreamPair, BytesWrittenOnOneEndAreReadOnTheOther) {
  asio::io_context io;
  auto [a, b] = MemoryStream::pair(io.get_executor());
  b.read_chunk(2);
  const auto peer_b = b.peer();
  Done read;
  Done wait;
  std::uint8_t buf[8];
  b.async_wait(socket_base::wait_read, wait.wait_handler());
  b.async_read_some(asio::buffer(buf), read.io_handler());
  poll(io);
  EXPECT_FALSE(read.ec) << "no input yet: the read pends";
  EXPECT_FALSE(wait.ec);

  const Bytes hello{'h', 'e', 'l', 'l', 'o'};
  std::error_code ec;
  EXPECT_EQ(a.write_some(asio::buffer(hello), ec), 5U);
  EXPECT_FALSE(ec);
  poll(io);
  ASSERT_TRUE(read.ec);
  EXPECT_FALSE(*read.ec);
  EXPECT_EQ(read.n, 2U);
  EXPECT_EQ(Bytes(buf, buf + 2), (Bytes{'h', 'e'}));
  ASSERT_TRUE(wait.ec);
  EXPECT_FALSE(*wait.ec);
  EXPECT_EQ(peer_b.input_left(), 3U);

  // And back the other way, through an asynchronous write and a synchronous read.
  Done write;
  b.async_write_some(asio::buffer(hello.data(), 3), write.io_handler());
  poll(io);
  ASSERT_TRUE(write.ec);
  EXPECT_EQ(write.n, 3U);
  EXPECT_EQ(a.read_some(asio::buffer(buf), ec), 3U);
  EXPECT_FALSE(ec);
  EXPECT_EQ(a.read_some(asio::buffer(buf), ec), 0U);
  EXPECT_EQ(ec, asio::error::would_block) << "the other end is open: no EOF";
  EXPECT_EQ(a.output(), hello);
  EXPECT_EQ(b.output(), (Bytes{'h', 'e', 'l'}));
}

TEST(MemoryStreamPair, ReadsOfTheOtherEndFreeTheWriteCapacity) {
  asio::io_context io;
  auto [a, b] = MemoryStream::pair(io.get_executor());
  a.write_capacity(3);
  const Bytes data{1, 2, 3, 4, 5};
  std::error_code ec;
  EXPECT_EQ(a.write_some(asio::buffer(data), ec), 3U);
  EXPECT_EQ(a.write_some(asio::buffer(data.data() + 3, 2), ec), 0U);
  EXPECT_EQ(ec, asio::error::would_block);
  Done wait;
  a.async_wait(socket_base::wait_write, wait.wait_handler());
  poll(io);
  EXPECT_FALSE(wait.ec);
  std::uint8_t buf[2];
  EXPECT_EQ(b.read_some(asio::buffer(buf), ec), 2U);
  poll(io);
  ASSERT_TRUE(wait.ec);
  EXPECT_FALSE(*wait.ec);
  EXPECT_EQ(a.write_some(asio::buffer(data.data() + 3, 2), ec), 2U);
  EXPECT_FALSE(ec);
}

TEST(MemoryStreamPair, ShutdownSendGivesTheOtherEndEofAfterTheData) {
  asio::io_context io;
  auto [a, b] = MemoryStream::pair(io.get_executor());
  std::uint8_t buf[8];
  Done pending;  // a read on b waiting when a shuts down
  b.async_read_some(asio::buffer(buf), pending.io_handler());
  poll(io);
  std::error_code ec;
  a.shutdown(socket_base::shutdown_send, ec);
  EXPECT_FALSE(ec);
  poll(io);
  ASSERT_TRUE(pending.ec);
  EXPECT_EQ(*pending.ec, asio::error::eof);

  // Data written before the shutdown is read first.
  auto [c, d] = MemoryStream::pair(io.get_executor());
  const Bytes data{1, 2, 3};
  EXPECT_EQ(c.write_some(asio::buffer(data), ec), 3U);
  c.shutdown(socket_base::shutdown_send, ec);
  EXPECT_EQ(c.write_some(asio::buffer(data), ec), 0U);
  EXPECT_EQ(ec, asio::error::broken_pipe);
  EXPECT_EQ(d.read_some(asio::buffer(buf), ec), 3U);
  EXPECT_FALSE(ec);
  EXPECT_EQ(d.read_some(asio::buffer(buf), ec), 0U);
  EXPECT_EQ(ec, asio::error::eof);
  // The other direction stays open.
  EXPECT_EQ(d.write_some(asio::buffer(data), ec), 3U);
  EXPECT_FALSE(ec);
  EXPECT_EQ(c.read_some(asio::buffer(buf), ec), 3U);
  EXPECT_FALSE(ec);
}

TEST(MemoryStreamPair, CloseAbortsThisEndsOperationsAndEndsTheOthersInput) {
  asio::io_context io;
  auto [a, b] = MemoryStream::pair(io.get_executor());
  std::uint8_t buf[8];
  Done read;
  Done wait;
  a.async_read_some(asio::buffer(buf), read.io_handler());
  a.async_wait(socket_base::wait_read, wait.wait_handler());
  Done other_read;
  b.async_read_some(asio::buffer(buf), other_read.io_handler());
  poll(io);
  std::error_code ec;
  const Bytes data{4, 2};
  EXPECT_EQ(a.write_some(asio::buffer(data), ec), 2U);
  poll(io);
  ASSERT_TRUE(other_read.ec);
  EXPECT_EQ(other_read.n, 2U);

  a.close(ec);
  EXPECT_FALSE(ec);
  EXPECT_FALSE(read.ec) << "completed inline";
  poll(io);
  ASSERT_TRUE(read.ec);
  ASSERT_TRUE(wait.ec);
  EXPECT_EQ(*read.ec, asio::error::operation_aborted);
  EXPECT_EQ(*wait.ec, asio::error::operation_aborted);
  EXPECT_EQ(a.write_some(asio::buffer(data), ec), 0U);
  EXPECT_EQ(ec, asio::error::bad_descriptor);

  EXPECT_EQ(b.read_some(asio::buffer(buf), ec), 0U);
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_EQ(b.write_some(asio::buffer(data), ec), 0U);
  EXPECT_EQ(ec, asio::error::broken_pipe);
  EXPECT_TRUE(b.is_open());
}

TEST(MemoryStreamPair, DestroyingAnEndEndsTheOthersInputAndWakesItsWrites) {
  asio::io_context io;
  auto ends = MemoryStream::pair(io.get_executor());
  MemoryStream b = std::move(ends.second);
  b.write_capacity(0);  // b's writes wait for a reader
  std::uint8_t buf[4];
  Done read;
  Done write;
  const Bytes data{1};
  b.async_read_some(asio::buffer(buf), read.io_handler());
  b.async_write_some(asio::buffer(data), write.io_handler());
  poll(io);
  EXPECT_FALSE(read.ec);
  EXPECT_FALSE(write.ec);
  { MemoryStream gone = std::move(ends.first); }
  poll(io);
  ASSERT_TRUE(read.ec);
  EXPECT_EQ(*read.ec, asio::error::eof);
  ASSERT_TRUE(write.ec);
  EXPECT_EQ(*write.ec, asio::error::broken_pipe);
}

TEST(MemoryStreamPair, BothEndsKeepTheirOwnFaultInjection) {
  asio::io_context io;
  auto [a, b] = MemoryStream::pair(io.get_executor());
  a.fail_at(2, asio::error::network_down);
  b.fail_at(1, asio::error::timed_out);
  const auto peer_a = a.peer();
  const auto peer_b = b.peer();
  const Bytes data{1, 2};
  std::uint8_t buf[4];
  std::error_code ec;
  EXPECT_EQ(a.write_some(asio::buffer(data), ec), 2U);  // a: 1
  EXPECT_FALSE(ec);
  EXPECT_EQ(b.read_some(asio::buffer(buf), ec), 0U);  // b: 1, fails
  EXPECT_EQ(ec, asio::error::timed_out);
  EXPECT_EQ(b.read_some(asio::buffer(buf), ec), 2U);  // b: 2
  EXPECT_FALSE(ec);
  EXPECT_EQ(a.write_some(asio::buffer(data), ec), 0U);  // a: 2, fails
  EXPECT_EQ(ec, asio::error::network_down);
  EXPECT_EQ(b.read_some(asio::buffer(buf), ec), 0U);
  EXPECT_EQ(ec, asio::error::would_block) << "the failed write wrote nothing";
  EXPECT_EQ(peer_a.operations(), 2U);
  EXPECT_EQ(peer_b.operations(), 3U);
  EXPECT_EQ(peer_a.injected_failures(), 1U);
  EXPECT_EQ(peer_b.injected_failures(), 1U);
}

}  // namespace
}  // namespace serialserver::test
