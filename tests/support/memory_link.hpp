#pragma once

// The state behind MemoryStream (support/memory_stream.hpp) and the rules that move bytes and
// complete operations: two ends, the two directions between them, and the operations pending on
// each end. Not for direct use: MemoryStream and its Peer are the interface.
//
// Thread-safety: none; see MemoryStream.

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
#include <asio/bind_executor.hpp>
#include <asio/buffer.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/error.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/socket_base.hpp>

namespace serialserver::test::memory_link {

using Executor = asio::any_io_executor;
using Bytes = std::vector<std::uint8_t>;

/// No limit on the bytes moved by one read or write, or buffered for the reader.
inline constexpr std::size_t kUnlimited = std::numeric_limits<std::size_t>::max();

/// What a completion does with the handler's cancellation slot: a pending operation assigned
/// a cancellation handler to it, which must go before the handler runs.
enum class Slot : std::uint8_t { keep, clear };

/// Posts `handler(args...)` to `ex`, to run on the handler's own executor.
template <class Handler, class... Args>
void post_completion(const Executor& ex, Handler handler, Slot slot_action, Args... args) {
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
std::size_t append_buffers(Bytes& out, const ConstBufferSequence& buffers, std::size_t limit) {
  const std::size_t n = std::min(asio::buffer_size(buffers), limit);
  const std::size_t old = out.size();
  out.resize(old + n);
  return asio::buffer_copy(asio::buffer(out.data() + old, n), buffers, n);
}

/// An operation waiting on the stream, with its handler type-erased.
struct PendingOp {
  PendingOp(const Executor& ex, std::uint64_t op_id)
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

  Executor work;     // keeps the io_context busy while the operation pends, as a socket does
  std::uint64_t id;  // identifies the operation for its cancellation handler
};

template <class Handler, class Buffers>
struct BufferOp final : PendingOp {
  BufferOp(Handler h, const Buffers& b, const Executor& ex, std::uint64_t op_id)
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
  WaitOp(Handler h, const Executor& ex, std::uint64_t op_id)
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
  Executor ex;
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

/// Which of an end's pending operations a cancellation handler refers to.
enum class Kind : std::uint8_t { read, write, wait_read, wait_write };

// Each wakes the other: a read frees room for a write, a write brings input for a read.
inline void input_changed(Link& l, int side);
inline void room_changed(Link& l, int side);

/// Counts an operation; sets `ec` to the injected error, or bad_descriptor on a closed end,
/// or clears it. Returns true if the operation fails so.
inline bool start_operation(End& e, std::error_code& ec) {
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
std::size_t take_input(Link& l, int side, const Buffers& buffers, std::error_code& ec) {
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
std::size_t put_output(Link& l, int side, const Buffers& buffers, std::error_code& ec) {
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

inline bool readable(const Link& l, int side) {
  const Pipe& p = l.pipes[side];
  return l.ends[side].receive_shut || p.unread() > 0 || p.ended;
}
inline bool writable(const Link& l, int side) {
  const Pipe& p = l.pipes[1 - side];
  return l.ends[side].send_shut || p.reader_closed || p.room() > 0;
}

inline void complete_all(std::vector<OpPtr>& ops) {
  for (OpPtr& op : std::exchange(ops, {})) {
    op->complete({}, 0);
  }
}

/// End `side`'s input grew or ended, or it stopped receiving: completes what waited for that.
inline void input_changed(Link& l, int side) {
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
inline void room_changed(Link& l, int side) {
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
inline void cancel(Link& l, int side, Kind kind, std::uint64_t id) {
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
void pend(Handler handler, const std::shared_ptr<Link>& link, int side, Kind kind, MakeOp make_op) {
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
void initiate_read(Handler handler, const std::shared_ptr<Link>& link, int side,
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
           [&buffers](Handler h, const Executor& ex, std::uint64_t id) {
             return std::make_unique<BufferOp<Handler, Buffers>>(std::move(h), buffers, ex, id);
           });
      return;
    }
  }
  post_completion(e.ex, std::move(handler), Slot::keep, ec, n);
}

template <class Handler, class Buffers>
void initiate_write(Handler handler, const std::shared_ptr<Link>& link, int side,
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
           [&buffers](Handler h, const Executor& ex, std::uint64_t id) {
             return std::make_unique<BufferOp<Handler, Buffers>>(std::move(h), buffers, ex, id);
           });
      return;
    }
  }
  post_completion(e.ex, std::move(handler), Slot::keep, ec, n);
}

template <class Handler>
void initiate_wait(Handler handler, const std::shared_ptr<Link>& link, int side,
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
           [](Handler h, const Executor& ex, std::uint64_t id) {
             return std::make_unique<WaitOp<Handler>>(std::move(h), ex, id);
           });
      return;
    }
  }
  post_completion(e.ex, std::move(handler), Slot::keep, ec);
}

}  // namespace serialserver::test::memory_link
