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
// Thread-safety: none. Use the streams and their peer handles only on the streams' executor (or
// on the thread that runs its io_context). Moving a stream keeps the shared state, so a Peer
// taken before the stream was moved into a connection still observes it.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/bind_executor.hpp>
#include <asio/buffer.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/error.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
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
  static constexpr std::size_t kUnlimited = std::numeric_limits<std::size_t>::max();

 private:
  /// What a completion does with the handler's cancellation slot: a pending operation assigned
  /// a cancellation handler to it, which must go before the handler runs.
  enum class Slot : std::uint8_t { keep, clear };

  /// An operation waiting on the stream, with its handler type-erased.
  struct PendingOp {
    PendingOp(const executor_type& ex, std::uint64_t op_id)
        : work(asio::prefer(ex, asio::execution::outstanding_work.tracked)), id(op_id) {}
    PendingOp(const PendingOp&) = delete;
    PendingOp& operator=(const PendingOp&) = delete;
    virtual ~PendingOp() = default;
    /// A read: copies up to `limit` bytes of `data` into its buffers; returns how many.
    virtual std::size_t fill(std::span<const std::uint8_t> data, std::size_t limit) = 0;
    /// A write: appends up to `limit` bytes of its buffers to `out`; returns how many.
    virtual std::size_t drain(Bytes& out, std::size_t limit) = 0;
    /// Posts the completion; the object may be destroyed right after.
    virtual void complete(std::error_code ec, std::size_t n) = 0;

    executor_type work;  // keeps the io_context busy while the operation pends, as a socket does
    std::uint64_t id;    // identifies the operation for its cancellation handler
  };

  template <class Handler, class Buffers>
  struct BufferOp final : PendingOp {
    BufferOp(Handler h, const Buffers& b, const executor_type& ex, std::uint64_t op_id)
        : PendingOp(ex, op_id), handler(std::move(h)), buffers(b) {}
    std::size_t fill(std::span<const std::uint8_t> data, std::size_t limit) override {
      if constexpr (asio::is_mutable_buffer_sequence<Buffers>::value) {
        const std::size_t n = std::min({data.size(), limit, asio::buffer_size(buffers)});
        return asio::buffer_copy(buffers, asio::buffer(data.data(), n));
      } else {
        return 0;
      }
    }
    std::size_t drain(Bytes& out, std::size_t limit) override {
      return append_buffers(out, buffers, limit);
    }
    void complete(std::error_code ec, std::size_t n) override {
      post_completion(work, std::move(handler), Slot::clear, ec, n);
    }
    Handler handler;
    Buffers buffers;
  };

  template <class Handler>
  struct WaitOp final : PendingOp {
    WaitOp(Handler h, const executor_type& ex, std::uint64_t op_id)
        : PendingOp(ex, op_id), handler(std::move(h)) {}
    std::size_t fill(std::span<const std::uint8_t> /*data*/, std::size_t /*limit*/) override {
      return 0;
    }
    std::size_t drain(Bytes& /*out*/, std::size_t /*limit*/) override { return 0; }
    void complete(std::error_code ec, std::size_t /*n*/) override {
      post_completion(work, std::move(handler), Slot::clear, ec);
    }
    Handler handler;
  };

  using OpPtr = std::unique_ptr<PendingOp>;

  /// The bytes going one way, from a writing end (or the test) to a reading end (or the test).
  struct Pipe {
    Bytes data;                         // every byte written, in order
    std::size_t read_pos = 0;           // how many the reading side has taken
    std::size_t capacity = kUnlimited;  // most bytes written and not yet taken
    bool ended = false;                 // the writing side writes no more: EOF after the data
    bool reader_closed = false;         // the reading end is closed: writes fail
    std::size_t unread() const noexcept { return data.size() - read_pos; }
    std::size_t room() const noexcept { return capacity > unread() ? capacity - unread() : 0; }
  };

  /// One end's own settings, counters and pending operations.
  struct End {
    executor_type ex;
    std::size_t read_chunk = kUnlimited;
    std::size_t write_chunk = kUnlimited;
    std::uint64_t fail_op = 0;  // 0: never
    std::error_code fail_error;
    std::uint64_t operations = 0;
    std::uint64_t reads = 0;
    std::uint64_t writes = 0;
    std::uint64_t waits = 0;
    std::uint64_t failures = 0;
    bool closed = false;
    bool non_blocking = false;
    bool send_shut = false;
    bool receive_shut = false;
    OpPtr read;
    OpPtr write;
    std::vector<OpPtr> read_waits;
    std::vector<OpPtr> write_waits;
    std::uint64_t next_id = 0;
  };

  /// Both ends and both directions. End i reads pipes[i] and writes pipes[1 - i]; a stream made
  /// alone is end 0, and the test plays end 1 through its Peer.
  struct Link {
    std::array<End, 2> ends;
    std::array<Pipe, 2> pipes;
  };

  enum class Kind : std::uint8_t { read, write, wait_read, wait_write };

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
    room_changed(*link_, side_);
    return *this;
  }
  /// What a read does once the input is used up.
  MemoryStream& at_end(AtEnd mode) {
    link_->pipes[side_].ended = mode == AtEnd::eof;
    input_changed(*link_, side_);
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
      input_changed(*l_, side_);
    }
    /// Ends the input: once it is used up, reads complete with EOF (a pending one at once).
    void end_input() const {
      in().ended = true;
      input_changed(*l_, side_);
    }
    /// Everything written to the stream so far (taken or not).
    const Bytes& output() const noexcept { return out().data; }
    /// The output not taken yet, which it then counts as read: frees write capacity and wakes
    /// a pending write or wait_write. For a stream without a connected end.
    Bytes take_output() const {
      Pipe& p = out();
      Bytes taken(p.data.begin() + static_cast<std::ptrdiff_t>(p.read_pos), p.data.end());
      p.read_pos = p.data.size();
      room_changed(*l_, side_);
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
    if (start_operation(e, ec)) {
      return 0;
    }
    if (asio::buffer_size(buffers) == 0) {
      return 0;
    }
    return take_input(*link_, side_, buffers, ec);
  }

  /// Writes at most write_chunk bytes; fails with would_block if the write capacity is used up,
  /// broken_pipe after shutdown_send or once the connected end is closed.
  template <class ConstBufferSequence>
  std::size_t write_some(const ConstBufferSequence& buffers, std::error_code& ec) {
    End& e = end();
    ++e.writes;
    if (start_operation(e, ec)) {
      return 0;
    }
    if (asio::buffer_size(buffers) == 0) {
      return 0;
    }
    return put_output(*link_, side_, buffers, ec);
  }

  /// shutdown_send: the reading side gets EOF after the output so far, and later writes fail
  /// with broken_pipe. shutdown_receive: reads complete with EOF. Counts as one operation.
  void shutdown(asio::socket_base::shutdown_type what, std::error_code& ec) {
    End& e = end();
    if (start_operation(e, ec)) {
      return;
    }
    Link& l = *link_;
    if (what != asio::socket_base::shutdown_receive && !e.send_shut) {
      e.send_shut = true;
      l.pipes[1 - side_].ended = true;
      if (e.write) {
        std::exchange(e.write, nullptr)->complete(asio::error::broken_pipe, 0);
      }
      input_changed(l, 1 - side_);
      room_changed(l, side_);
    }
    if (what != asio::socket_base::shutdown_send) {
      e.receive_shut = true;
      input_changed(l, side_);
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
    input_changed(l, 1 - side_);
    room_changed(l, 1 - side_);
  }
  void close() {
    std::error_code ignored;
    close(ignored);
  }

  // ---- asynchronous operations ------------------------------------------------------------
  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    return asio::async_initiate<Token, void(std::error_code, std::size_t)>(
        [](auto handler, const std::shared_ptr<Link>& link, int side,
           const MutableBufferSequence& b) { initiate_read(std::move(handler), link, side, b); },
        token, link_, side_, buffers);
  }

  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    return asio::async_initiate<Token, void(std::error_code, std::size_t)>(
        [](auto handler, const std::shared_ptr<Link>& link, int side,
           const ConstBufferSequence& b) { initiate_write(std::move(handler), link, side, b); },
        token, link_, side_, buffers);
  }

  /// Waits until the stream is readable (input, or its end) or writable (room in the write
  /// capacity, or a write that would fail at once); wait_error is not supported
  /// (operation_not_supported). Cancellable through the handler's cancellation slot.
  template <class Token>
  auto async_wait(asio::socket_base::wait_type type, Token&& token) {
    return asio::async_initiate<Token, void(std::error_code)>(
        [](auto handler, const std::shared_ptr<Link>& link, int side,
           asio::socket_base::wait_type t) { initiate_wait(std::move(handler), link, side, t); },
        token, link_, side_, type);
  }

 private:
  MemoryStream(std::shared_ptr<Link> link, int side) : link_(std::move(link)), side_(side) {}

  End& end() const noexcept { return link_->ends[side_]; }

  void close_if_open() noexcept {
    if (link_ && !end().closed) {
      std::error_code ignored;
      close(ignored);
    }
  }

  /// Posts `handler(args...)` to `ex`, to run on the handler's own executor.
  template <class Handler, class... Args>
  static void post_completion(const executor_type& ex, Handler handler, Slot slot_action,
                              Args... args) {
    auto handler_ex = asio::get_associated_executor(handler, ex);
    auto run = [h = std::move(handler), slot_action, args...]() mutable {
      if (slot_action == Slot::clear) {
        auto slot = asio::get_associated_cancellation_slot(h);
        if (slot.is_connected()) {
          slot.clear();
        }
      }
      std::move(h)(args...);
    };
    asio::post(ex, asio::bind_executor(handler_ex, std::move(run)));
  }

  template <class ConstBufferSequence>
  static std::size_t append_buffers(Bytes& out, const ConstBufferSequence& buffers,
                                    std::size_t limit) {
    const std::size_t n = std::min(asio::buffer_size(buffers), limit);
    const std::size_t old = out.size();
    out.resize(old + n);
    return asio::buffer_copy(asio::buffer(out.data() + old, n), buffers, n);
  }

  /// Counts an operation; sets `ec` to the injected error, or bad_descriptor on a closed end,
  /// or clears it. Returns true if the operation fails so.
  static bool start_operation(End& e, std::error_code& ec) {
    ++e.operations;
    ec.clear();
    if (e.fail_op != 0 && e.operations == e.fail_op) {
      ++e.failures;
      ec = e.fail_error;
    } else if (e.closed) {
      ec = asio::error::bad_descriptor;
    }
    return static_cast<bool>(ec);
  }

  /// Reads into `buffers` (not empty) what end `side` can read now, or fails.
  template <class Buffers>
  static std::size_t take_input(Link& l, int side, const Buffers& buffers, std::error_code& ec) {
    End& e = l.ends[side];
    Pipe& p = l.pipes[side];
    if (e.receive_shut) {
      ec = asio::error::eof;
      return 0;
    }
    if (p.unread() == 0) {
      ec = p.ended ? make_error_code(asio::error::eof) : make_error_code(asio::error::would_block);
      return 0;
    }
    const std::size_t n = std::min({asio::buffer_size(buffers), p.unread(), e.read_chunk});
    asio::buffer_copy(buffers, asio::buffer(p.data.data() + p.read_pos, n));
    p.read_pos += n;
    room_changed(l, 1 - side);
    return n;
  }

  /// Writes from `buffers` (not empty) what end `side` can write now, or fails.
  template <class Buffers>
  static std::size_t put_output(Link& l, int side, const Buffers& buffers, std::error_code& ec) {
    End& e = l.ends[side];
    Pipe& p = l.pipes[1 - side];
    if (e.send_shut || p.reader_closed) {
      ec = asio::error::broken_pipe;
      return 0;
    }
    if (p.room() == 0) {
      ec = asio::error::would_block;
      return 0;
    }
    const std::size_t n = append_buffers(p.data, buffers, std::min(e.write_chunk, p.room()));
    input_changed(l, 1 - side);
    return n;
  }

  static bool readable(const Link& l, int side) {
    const Pipe& p = l.pipes[side];
    return l.ends[side].receive_shut || p.unread() > 0 || p.ended;
  }
  static bool writable(const Link& l, int side) {
    const Pipe& p = l.pipes[1 - side];
    return l.ends[side].send_shut || p.reader_closed || p.room() > 0;
  }

  static void complete_all(std::vector<OpPtr>& ops) {
    for (OpPtr& op : std::exchange(ops, {})) {
      op->complete({}, 0);
    }
  }

  /// End `side`'s input grew or ended, or it stopped receiving: completes what waited for that.
  static void input_changed(Link& l, int side) {
    End& e = l.ends[side];
    if (e.closed || !readable(l, side)) {
      return;
    }
    if (e.read) {
      OpPtr op = std::move(e.read);
      Pipe& p = l.pipes[side];
      if (e.receive_shut || p.unread() == 0) {
        op->complete(asio::error::eof, 0);
      } else {
        const std::size_t n =
            op->fill(std::span<const std::uint8_t>(p.data).subspan(p.read_pos), e.read_chunk);
        p.read_pos += n;
        op->complete({}, n);
        room_changed(l, 1 - side);
      }
    }
    if (readable(l, side)) {
      complete_all(e.read_waits);
    }
  }

  /// Room freed in what end `side` writes to, or its reader closed: completes what waited.
  static void room_changed(Link& l, int side) {
    End& e = l.ends[side];
    if (e.closed || !writable(l, side)) {
      return;
    }
    if (e.write) {
      OpPtr op = std::move(e.write);
      Pipe& p = l.pipes[1 - side];
      if (e.send_shut || p.reader_closed) {
        op->complete(asio::error::broken_pipe, 0);
      } else {
        const std::size_t n = op->drain(p.data, std::min(e.write_chunk, p.room()));
        op->complete({}, n);
        input_changed(l, 1 - side);
      }
    }
    if (writable(l, side)) {
      complete_all(e.write_waits);
    }
  }

  /// Completes the pending operation `id` of end `side` with operation_aborted, if it pends.
  static void cancel(Link& l, int side, Kind kind, std::uint64_t id) {
    End& e = l.ends[side];
    OpPtr op;
    auto take_single = [&](OpPtr& slot) {
      if (slot && slot->id == id) {
        op = std::move(slot);
      }
    };
    auto take_from = [&](std::vector<OpPtr>& ops) {
      const auto it =
          std::find_if(ops.begin(), ops.end(), [id](const OpPtr& o) { return o->id == id; });
      if (it != ops.end()) {
        op = std::move(*it);
        ops.erase(it);
      }
    };
    switch (kind) {
      case Kind::read:
        take_single(e.read);
        break;
      case Kind::write:
        take_single(e.write);
        break;
      case Kind::wait_read:
        take_from(e.read_waits);
        break;
      case Kind::wait_write:
        take_from(e.write_waits);
        break;
    }
    if (op) {
      op->complete(asio::error::operation_aborted, 0);
    }
  }

  /// Makes `op` (built from `handler`) pend on end `side`, cancellable through the handler's
  /// cancellation slot.
  template <class Handler, class MakeOp>
  static void pend(Handler handler, const std::shared_ptr<Link>& link, int side, Kind kind,
                   MakeOp make_op) {
    End& e = link->ends[side];
    auto slot = asio::get_associated_cancellation_slot(handler);
    const std::uint64_t id = ++e.next_id;
    OpPtr op = make_op(std::move(handler), e.ex, id);
    switch (kind) {
      case Kind::read:
        e.read = std::move(op);
        break;
      case Kind::write:
        e.write = std::move(op);
        break;
      case Kind::wait_read:
        e.read_waits.push_back(std::move(op));
        break;
      case Kind::wait_write:
        e.write_waits.push_back(std::move(op));
        break;
    }
    if (slot.is_connected()) {
      slot.assign([weak = std::weak_ptr<Link>(link), side, kind, id](asio::cancellation_type type) {
        if (type == asio::cancellation_type::none) {
          return;
        }
        if (auto l = weak.lock()) {
          cancel(*l, side, kind, id);
        }
      });
    }
  }

  template <class Handler, class Buffers>
  static void initiate_read(Handler handler, const std::shared_ptr<Link>& link, int side,
                            const Buffers& buffers) {
    End& e = link->ends[side];
    ++e.reads;
    std::error_code ec;
    std::size_t n = 0;
    if (!start_operation(e, ec) && e.read) {
      ec = asio::error::in_progress;  // one read at a time, as on any stream
    } else if (!ec && asio::buffer_size(buffers) != 0) {
      n = take_input(*link, side, buffers, ec);
      if (ec == asio::error::would_block) {
        pend(std::move(handler), link, side, Kind::read,
             [&buffers](Handler h, const executor_type& ex, std::uint64_t id) {
               return std::make_unique<BufferOp<Handler, Buffers>>(std::move(h), buffers, ex, id);
             });
        return;
      }
    }
    post_completion(e.ex, std::move(handler), Slot::keep, ec, n);
  }

  template <class Handler, class Buffers>
  static void initiate_write(Handler handler, const std::shared_ptr<Link>& link, int side,
                             const Buffers& buffers) {
    End& e = link->ends[side];
    ++e.writes;
    std::error_code ec;
    std::size_t n = 0;
    if (!start_operation(e, ec) && e.write) {
      ec = asio::error::in_progress;  // one write at a time
    } else if (!ec && asio::buffer_size(buffers) != 0) {
      n = put_output(*link, side, buffers, ec);
      if (ec == asio::error::would_block) {
        pend(std::move(handler), link, side, Kind::write,
             [&buffers](Handler h, const executor_type& ex, std::uint64_t id) {
               return std::make_unique<BufferOp<Handler, Buffers>>(std::move(h), buffers, ex, id);
             });
        return;
      }
    }
    post_completion(e.ex, std::move(handler), Slot::keep, ec, n);
  }

  template <class Handler>
  static void initiate_wait(Handler handler, const std::shared_ptr<Link>& link, int side,
                            asio::socket_base::wait_type type) {
    End& e = link->ends[side];
    ++e.waits;
    std::error_code ec;
    if (!start_operation(e, ec)) {
      const bool for_read = type == asio::socket_base::wait_read;
      if (!for_read && type != asio::socket_base::wait_write) {
        ec = asio::error::operation_not_supported;
      } else if (!(for_read ? readable(*link, side) : writable(*link, side))) {
        pend(std::move(handler), link, side, for_read ? Kind::wait_read : Kind::wait_write,
             [](Handler h, const executor_type& ex, std::uint64_t id) {
               return std::make_unique<WaitOp<Handler>>(std::move(h), ex, id);
             });
        return;
      }
    }
    post_completion(e.ex, std::move(handler), Slot::keep, ec);
  }

  std::shared_ptr<Link> link_;
  int side_ = 0;
};

}  // namespace serialserver::test
