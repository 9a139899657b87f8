#pragma once

// An in-memory stream for tests and fuzz targets, modelled on Boost.Beast's test stream: an Asio
// AsyncReadStream and AsyncWriteStream that can also stand in for a non-blocking socket (the
// synchronous read_some / write_some, async_wait, shutdown and close of asio::ip::tcp::socket).
// Its input is given up front or fed later and delivered in chunks of any size (down to one byte
// per read), its output is captured for assertions, and it can fail its n-th operation with a
// chosen error. Two streams made by pair() are connected: what one writes, the other reads.
//
// - Every asynchronous operation completes through asio::post to the stream's executor (never
//   inline), on the handler's associated executor.
// - A read that finds no input left completes with asio::error::eof once the input is ended
//   (AtEnd::eof, end_input(), or the connected end's shutdown_send or close), else pends until
//   input arrives, the input ends, the stream is closed, or the read is cancelled through the
//   handler's associated cancellation slot (operation_aborted). A synchronous read_some fails
//   with asio::error::would_block instead of pending.
// - Writes are unlimited unless write_capacity(n) bounds the bytes written and not yet taken by
//   the reading side (the connected end's reads, or Peer::take_output()); beyond it
//   async_write_some pends and write_some fails with asio::error::would_block.
// - async_wait(wait_read) completes once input is readable or ended; async_wait(wait_write) once
//   there is room to write (or a write would fail at once).
// - cancel() aborts this end's pending operations with asio::error::operation_aborted.
// - close() aborts this end's pending operations with asio::error::operation_aborted; every
//   later operation fails with asio::error::bad_descriptor, as on a closed socket. The connected
//   end then reads end of stream after the data, and its writes fail with broken_pipe.
//   Destroying a stream closes it.
// - fail_at(n, error): the n-th operation (async_read_some, async_write_some, async_wait,
//   read_some, write_some and shutdown counted together from 1, each call counting once)
//   completes with `error` and no bytes; later ones run as usual. close(), non_blocking() and
//   is_open() are not operations: the code under test closes a stream after a failure, and a
//   socket's close or mode switch does not fail in a way worth injecting.
// - The stream never blocks its thread: in blocking mode (non_blocking(false), the default, as
//   for an asio socket) a synchronous operation that would have to wait fails with would_block
//   just the same.
//
// Use:
//   MemoryStream stream(io.get_executor(), input);
//   stream.read_chunk(1).write_chunk(3).fail_at(5, asio::error::connection_reset);
//   const auto peer = stream.peer();        // observes the stream after it has been moved
//   ... serve std::move(stream), run io ...
//   peer.output(), peer.operations()
//
//   auto [client, server] = MemoryStream::pair(io.get_executor());
//
// - One async_read_some and one async_write_some may pend at a time per end (another fails with
//   asio::error::in_progress); any number of async_wait.
//
// Thread-safety: none. Use the streams and their peer handles only on the streams' executor (or
// on the thread that runs its io_context).
// Lifetime: moving a stream keeps the shared state, so a Peer taken before the stream was moved
// into a connection still observes it, and the state lives as long as a stream or Peer of it.
// Destroy a stream before its io_context, as a socket (closing it posts to the executor).
// The state and the rules behind it are in support/memory_link.hpp.

#include "support/memory_link.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/error.hpp>
#include <asio/socket_base.hpp>

namespace serialserver::test {

class MemoryStream {
 public:
  // NOLINTNEXTLINE(readability-identifier-naming): the name Asio looks for
  using executor_type = asio::any_io_executor;
  using Bytes = std::vector<std::uint8_t>;

  /// What a read does once the input is used up.
  enum class AtEnd : std::uint8_t {
    eof,   ///< complete with asio::error::eof (the peer closed its side)
    pend,  ///< stay pending until more input, end_input(), close() or cancellation
  };

  /// No limit on the bytes moved by one read or write, or buffered for the reader.
  static constexpr std::size_t kUnlimited = memory_link::kUnlimited;

 private:
  using Link = memory_link::Link;
  using End = memory_link::End;
  using Pipe = memory_link::Pipe;
  using OpPtr = memory_link::OpPtr;

 public:
  /// A stream with the given input, delivered without a chunk limit, then EOF.
  explicit MemoryStream(executor_type ex, Bytes input = {}) : link_(std::make_shared<Link>()) {
    link_->ends[0].ex = std::move(ex);
    link_->pipes[0].data = std::move(input);
    link_->pipes[0].ended = true;
  }

  /// Two connected ends on `ex`: the bytes written on one are the input of the other. Each end
  /// keeps its own chunking, capacity and fault injection.
  static std::pair<MemoryStream, MemoryStream> pair(const executor_type& ex) {
    auto link = std::make_shared<Link>();
    link->ends[0].ex = ex;
    link->ends[1].ex = ex;
    return {MemoryStream(link, 0), MemoryStream(link, 1)};
  }

  MemoryStream(MemoryStream&& other) noexcept : link_(std::move(other.link_)), side_(other.side_) {}
  MemoryStream& operator=(MemoryStream&& other) noexcept {
    if (this != &other) {
      close_if_open();
      link_ = std::move(other.link_);
      side_ = other.side_;
    }
    return *this;
  }
  MemoryStream(const MemoryStream&) = delete;
  MemoryStream& operator=(const MemoryStream&) = delete;
  /// Closes the stream, as a socket's destructor does.
  ~MemoryStream() { close_if_open(); }

  executor_type get_executor() const noexcept { return end().ex; }

  // ---- configuration ----------------------------------------------------------------------
  /// The most bytes one read delivers (1: one byte at a time). 0 is taken as 1.
  MemoryStream& read_chunk(std::size_t n) {
    end().read_chunk = std::max<std::size_t>(n, 1);
    return *this;
  }
  /// The most bytes one write accepts (partial writes). 0 is taken as 1.
  MemoryStream& write_chunk(std::size_t n) {
    end().write_chunk = std::max<std::size_t>(n, 1);
    return *this;
  }
  /// The most bytes written and not yet taken by the reading side (the connected end's reads,
  /// or Peer::take_output()) before writes would block; kUnlimited (the default) for no limit.
  MemoryStream& write_capacity(std::size_t n) {
    link_->pipes[1 - side_].capacity = n;
    memory_link::room_changed(*link_, side_);
    return *this;
  }
  /// What a read does once the input is used up.
  MemoryStream& at_end(AtEnd mode) {
    link_->pipes[side_].ended = mode == AtEnd::eof;
    memory_link::input_changed(*link_, side_);
    return *this;
  }
  /// Makes the n-th operation (see above, from 1) fail with `error`; 0 disarms.
  MemoryStream& fail_at(std::uint64_t n, std::error_code error) {
    end().fail_op = n;
    end().fail_error = error;
    return *this;
  }

  /// The test's side of the stream: feeds more input, ends it, takes and observes the output,
  /// and observes the stream. It shares the stream's state and stays valid after the stream was
  /// moved or destroyed.
  class Peer {
   public:
    Peer() = default;
    /// Appends input; a pending read or wait_read receives it.
    void append_input(std::span<const std::uint8_t> bytes) const {
      Bytes& data = in().data;
      data.insert(data.end(), bytes.begin(), bytes.end());
      memory_link::input_changed(*l_, side_);
    }
    /// Ends the input: once it is used up, reads complete with EOF (a pending one at once).
    void end_input() const {
      in().ended = true;
      memory_link::input_changed(*l_, side_);
    }
    /// Everything written to the stream so far (taken or not).
    const Bytes& output() const noexcept { return out().data; }
    /// The output not taken yet, which it then counts as read: frees write capacity and wakes
    /// a pending write or wait_write. For a stream without a connected end.
    Bytes take_output() const {
      Pipe& p = out();
      Bytes taken(p.data.begin() + static_cast<std::ptrdiff_t>(p.read_pos), p.data.end());
      p.read_pos = p.data.size();
      memory_link::room_changed(*l_, side_);
      return taken;
    }
    /// Output bytes not taken yet (by take_output() or the connected end).
    std::size_t output_unread() const noexcept { return out().unread(); }
    /// True once the stream has ended its output (shutdown_send or close).
    bool output_ended() const noexcept { return out().ended; }
    /// Operations initiated so far (see fail_at; failed ones included).
    std::uint64_t operations() const noexcept { return e().operations; }
    /// Reads (read_some, async_read_some), writes, and waits (async_wait) so far.
    std::uint64_t reads() const noexcept { return e().reads; }
    std::uint64_t writes() const noexcept { return e().writes; }
    std::uint64_t waits() const noexcept { return e().waits; }
    /// How many operations failed by fail_at.
    std::uint64_t injected_failures() const noexcept { return e().failures; }
    /// Input bytes not read yet.
    std::size_t input_left() const noexcept { return in().unread(); }
    bool closed() const noexcept { return e().closed; }
    bool non_blocking() const noexcept { return e().non_blocking; }
    bool read_pending() const noexcept { return e().read != nullptr; }
    bool write_pending() const noexcept { return e().write != nullptr; }
    /// Pending async_wait operations (both kinds).
    std::size_t waits_pending() const noexcept {
      return e().read_waits.size() + e().write_waits.size();
    }
    /// Pending async_wait(wait_write) operations.
    std::size_t write_waits_pending() const noexcept { return e().write_waits.size(); }

   private:
    friend class MemoryStream;
    Peer(std::shared_ptr<Link> l, int side) : l_(std::move(l)), side_(side) {}
    End& e() const noexcept { return l_->ends[side_]; }
    Pipe& in() const noexcept { return l_->pipes[side_]; }
    Pipe& out() const noexcept { return l_->pipes[1 - side_]; }
    std::shared_ptr<Link> l_;
    int side_ = 0;
  };

  Peer peer() const { return {link_, side_}; }

  // Shortcuts for the peer's observers.
  const Bytes& output() const noexcept { return link_->pipes[1 - side_].data; }
  std::uint64_t operations() const noexcept { return end().operations; }

  // ---- the socket's synchronous operations --------------------------------------------------
  /// Sets the mode, as asio's socket does. Never fails; not an operation for fail_at.
  void non_blocking(bool mode, std::error_code& ec) {
    ec.clear();
    end().non_blocking = mode;
  }
  bool non_blocking() const noexcept { return end().non_blocking; }
  bool is_open() const noexcept { return !end().closed; }

  /// Reads what input there is (at most read_chunk bytes); fails with would_block if there is
  /// none yet, eof once the input has ended, bad_descriptor once closed.
  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers, std::error_code& ec) {
    End& e = end();
    ++e.reads;
    if (memory_link::start_operation(e, ec)) {
      return 0;
    }
    if (asio::buffer_size(buffers) == 0) {
      return 0;
    }
    return memory_link::take_input(*link_, side_, buffers, ec);
  }

  /// Writes at most write_chunk bytes; fails with would_block if the write capacity is used up,
  /// broken_pipe after shutdown_send or once the connected end is closed.
  template <class ConstBufferSequence>
  std::size_t write_some(const ConstBufferSequence& buffers, std::error_code& ec) {
    End& e = end();
    ++e.writes;
    if (memory_link::start_operation(e, ec)) {
      return 0;
    }
    if (asio::buffer_size(buffers) == 0) {
      return 0;
    }
    return memory_link::put_output(*link_, side_, buffers, ec);
  }

  /// shutdown_send: the reading side gets EOF after the output so far, and later writes fail
  /// with broken_pipe. shutdown_receive: reads complete with EOF. Counts as one operation.
  void shutdown(asio::socket_base::shutdown_type what, std::error_code& ec) {
    End& e = end();
    if (memory_link::start_operation(e, ec)) {
      return;
    }
    Link& l = *link_;
    if (what != asio::socket_base::shutdown_receive && !e.send_shut) {
      e.send_shut = true;
      l.pipes[1 - side_].ended = true;
      if (e.write) {
        std::exchange(e.write, nullptr)->complete(asio::error::broken_pipe, 0);
      }
      memory_link::input_changed(l, 1 - side_);
      memory_link::room_changed(l, side_);
    }
    if (what != asio::socket_base::shutdown_send) {
      e.receive_shut = true;
      memory_link::input_changed(l, side_);
    }
  }

  /// Closes the stream: pending operations complete with operation_aborted, later ones fail
  /// with bad_descriptor; the connected end reads EOF after the data, and its writes fail with
  /// broken_pipe. Closing twice is harmless. Not an operation for fail_at.
  void close(std::error_code& ec) {
    ec.clear();
    Link& l = *link_;
    End& e = l.ends[side_];
    if (e.closed) {
      return;
    }
    e.closed = true;
    l.pipes[1 - side_].ended = true;
    l.pipes[side_].reader_closed = true;
    abort_pending(e);
    memory_link::input_changed(l, 1 - side_);
    memory_link::room_changed(l, 1 - side_);
  }
  void close() {
    std::error_code ignored;
    close(ignored);
  }

  /// Completes this end's pending operations with operation_aborted, as asio's socket cancel()
  /// does; the stream stays open. Not an operation for fail_at.
  void cancel(std::error_code& ec) {
    ec.clear();
    abort_pending(end());
  }

  // ---- asynchronous operations ------------------------------------------------------------
  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    return asio::async_initiate<Token, void(std::error_code, std::size_t)>(
        [](auto handler, const std::shared_ptr<Link>& link, int side,
           const MutableBufferSequence& b) {
          memory_link::initiate_read(std::move(handler), link, side, b);
        },
        token, link_, side_, buffers);
  }

  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    return asio::async_initiate<Token, void(std::error_code, std::size_t)>(
        [](auto handler, const std::shared_ptr<Link>& link, int side,
           const ConstBufferSequence& b) {
          memory_link::initiate_write(std::move(handler), link, side, b);
        },
        token, link_, side_, buffers);
  }

  /// Waits until the stream is readable (input, or its end) or writable (room in the write
  /// capacity, or a write that would fail at once); wait_error is not supported
  /// (operation_not_supported). Cancellable through the handler's cancellation slot.
  template <class Token>
  auto async_wait(asio::socket_base::wait_type type, Token&& token) {
    return asio::async_initiate<Token, void(std::error_code)>(
        [](auto handler, const std::shared_ptr<Link>& link, int side,
           asio::socket_base::wait_type t) {
          memory_link::initiate_wait(std::move(handler), link, side, t);
        },
        token, link_, side_, type);
  }

 private:
  MemoryStream(std::shared_ptr<Link> link, int side) : link_(std::move(link)), side_(side) {}

  End& end() const noexcept { return link_->ends[side_]; }

  static void abort_pending(End& e) {
    std::vector<OpPtr> aborted = std::exchange(e.read_waits, {});
    for (OpPtr& op : std::exchange(e.write_waits, {})) {
      aborted.push_back(std::move(op));
    }
    for (OpPtr* op : {&e.read, &e.write}) {
      if (*op) {
        aborted.push_back(std::move(*op));
      }
    }
    for (OpPtr& op : aborted) {
      op->complete(asio::error::operation_aborted, 0);
    }
  }

  void close_if_open() noexcept {
    if (link_ && !end().closed) {
      std::error_code ignored;
      close(ignored);
    }
  }

  std::shared_ptr<Link> link_;
  int side_ = 0;
};

}  // namespace serialserver::test
