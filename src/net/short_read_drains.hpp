#pragma once

// A read buffer that tells asio's epoll reactor when a read drained a TCP socket.
//
// Why: asio 1.22 (Debian 12) registers every socket with epoll edge-triggered and, after any
// read that returned data, tries the next read at once ("speculatively"); it stops only after a
// read returned end of stream. A server that reads a whole request with one recv therefore pays a
// second recv per request that fails with EAGAIN before the read is queued on the registration:
// 0.7 to 1.0 failed recv per request at C=50 P=1 (perf's syscall counters).
//
// A short read alone does not prove the socket drained: a FIN or an RST that arrived with the
// data raised its epoll edge together with the data, and the recv that returns the data does not
// report it, so a read queued after it would wait for an edge that never comes. The kernel's
// TCP_INQ option closes that gap for FIN: with it, recvmsg returns the bytes still queued, and
// counts a received FIN as one more, so "0" means nothing and no FIN is left. `ShortReadDrains`
// reads with recvmsg and, when TCP_INQ says 0, puts the reactor in the state asio uses after end
// of stream ("exhausted"): the next read is queued at once and the next epoll event resets it. An
// RST that arrived with the data is not counted by TCP_INQ; the connection covers that case (see
// Connection::read_more): it reads at once when the bytes it holds are an incomplete request.
//
// The same recvmsg can also read past a small buffer into a buffer of the thread's ("spill",
// see ShortReadDrains::spill), handed at once to the connection. An idle connection reads into a
// 128-byte buffer (so that it holds no larger one while it waits); with the spill, a 4 KiB
// request still arrives in one recv, and TCP_INQ then tells that it drained the socket. Without
// it, the same request took three: 128 bytes, the rest, and asio's next speculative read, which
// failed with EAGAIN because asio did not know the second read had drained the socket.
//
// How: asio's receive operation takes its "perform" step from
// `asio::detail::reactive_socket_recv_op_base<MutableBufferSequence>`; this header specialises
// that template for our own buffer-sequence type (allowed: the type is ours), with the same
// members and the changed rule. Everything else (handler allocation, cancellation slots,
// completion) stays asio's. Without TCP_INQ on the socket (not enabled, or not TCP) the read
// behaves as asio's own. Only the epoll reactor is affected.
//
// Thread-safety and lifetime: a value type holding a buffer and a flag it does not own; both must
// outlive the read, as with asio::buffer. The flag is written before the read completes.
//
// The same specialisation (of the operation's completion step) offers `AfterReadCompletion`: an
// object may ask, while the handler of such a read runs, to be called once that handler has
// returned. The connection uses it to see whether a task it started inside the handler has
// suspended, which it otherwise learns from a posted probe: a post per request at pipeline 1
// (an allocation, the scheduler's lock and a handler dispatch, about 850 instructions).

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include <asio/buffer.hpp>
#include <asio/detail/reactive_socket_recv_op.hpp>
#include <asio/detail/socket_ops.hpp>
#include <asio/error.hpp>
#include <asio/version.hpp>

// The specialisation below copies the members of asio 1.22's private
// reactive_socket_recv_op_base and reactive_socket_recv_op: another version may have changed
// them. Upgrading asio means re-reading those two templates, adapting this file and widening the
// range here and in the top CMakeLists.txt's find_package(Asio ...).
static_assert(ASIO_VERSION >= 102200 && ASIO_VERSION < 102300,
              "src/net/short_read_drains.hpp is written against asio 1.22's private receive "
              "operation; check it against this asio version before widening the range");

namespace serialserver::detail {

/// Turns on TCP_INQ for a TCP socket (see above). Returns false if the kernel refused it; reads
/// then behave as asio's own.
inline bool enable_tcp_inq(int fd) noexcept {
  const int one = 1;
  return ::setsockopt(fd, IPPROTO_TCP, TCP_INQ, &one, sizeof one) == 0;
}

/// An action deferred until the handler of the `ShortReadDrains` read completion that this thread
/// is delivering has returned.
/// Thread-safety: per thread. Lifetime: the object must stay alive until it is called; whoever
/// defers keeps it so (the call comes on the same thread, before the next handler runs).
class AfterReadCompletion {
 public:
  /// Called once the handler has returned (also if it threw).
  virtual void run_after_read_completion() noexcept = 0;

  /// If this thread is delivering such a read completion and no other object has deferred an
  /// action on it, defers this object's; true if it did (false: use another way, such as a post).
  bool defer_until_read_completion_returns() noexcept {
    AfterReadCompletion** slot = current_slot();
    if (slot == nullptr || *slot != nullptr) {
      return false;
    }
    *slot = this;
    return true;
  }

  /// The slot of the read completion this thread is delivering, or null.
  static AfterReadCompletion**& current_slot() noexcept {
    static thread_local AfterReadCompletion** slot = nullptr;
    return slot;
  }

 protected:
  AfterReadCompletion() = default;
  AfterReadCompletion(const AfterReadCompletion&) = default;
  AfterReadCompletion& operator=(const AfterReadCompletion&) = default;
  AfterReadCompletion(AfterReadCompletion&&) = default;
  AfterReadCompletion& operator=(AfterReadCompletion&&) = default;
  ~AfterReadCompletion() = default;
};

/// While alive, the read completion this thread delivers takes deferred actions; its destructor
/// runs the one deferred, after the handler (restores an outer delivery's slot first).
class ReadCompletionScope {
 public:
  ReadCompletionScope() noexcept : outer_(AfterReadCompletion::current_slot()) {
    AfterReadCompletion::current_slot() = &deferred_;
  }
  ~ReadCompletionScope() {
    AfterReadCompletion::current_slot() = outer_;
    if (deferred_ != nullptr) {
      deferred_->run_after_read_completion();
    }
  }
  ReadCompletionScope(const ReadCompletionScope&) = delete;
  ReadCompletionScope& operator=(const ReadCompletionScope&) = delete;

 private:
  AfterReadCompletion** outer_;
  AfterReadCompletion* deferred_ = nullptr;
};

/// Takes the bytes of a read that overflowed its small buffer into this thread's spill buffer
/// (see ShortReadDrains::spill).
/// Thread-safety and lifetime: called on the thread that performs the read, during the read; the
/// spans are valid only during the call.
class ReadSpill {
 public:
  /// `head`: the read's own buffer, full; `rest`: the bytes that followed it.
  virtual void take_spilled_read(std::span<const std::uint8_t> head,
                                 std::span<const std::uint8_t> rest) noexcept = 0;

 protected:
  ReadSpill() = default;
  ReadSpill(const ReadSpill&) = default;
  ReadSpill& operator=(const ReadSpill&) = default;
  ReadSpill(ReadSpill&&) = default;
  ReadSpill& operator=(ReadSpill&&) = default;
  ~ReadSpill() = default;
};

/// One mutable buffer, read by asio's epoll reactor with "a read that TCP_INQ reports as
/// draining the socket leaves the next read queued".
struct ShortReadDrains {
  asio::mutable_buffer buffer;
  /// Set when the read completes: true if it drained the socket (TCP_INQ said 0).
  bool* drained = nullptr;
  /// If set, the same recvmsg also reads up to `spill_size` more bytes into a buffer of the
  /// thread's, handed to `spill` at once (before any other read on the thread can reuse it).
  /// Then a small `buffer` (an idle connection's, which holds no larger one) does not split a
  /// longer request into two reads plus the failed third that asio then tries.
  /// bytes_transferred counts both parts; `buffer` holds the first bytes only if it is no more.
  ReadSpill* spill = nullptr;
  std::size_t spill_size = 0;

  [[nodiscard]] const asio::mutable_buffer* begin() const noexcept { return &buffer; }
  [[nodiscard]] const asio::mutable_buffer* end() const noexcept { return &buffer + 1; }
};

}  // namespace serialserver::detail

#if defined(ASIO_HAS_EPOLL) && !defined(ASIO_HAS_IO_URING_AS_DEFAULT)
namespace asio::detail {

template <>
class reactive_socket_recv_op_base<serialserver::detail::ShortReadDrains> : public reactor_op {
 public:
  reactive_socket_recv_op_base(const asio::error_code& success_ec, socket_type socket,
                               socket_ops::state_type state,
                               const serialserver::detail::ShortReadDrains& buffers,
                               socket_base::message_flags flags, func_type complete_func)
      : reactor_op(success_ec, &reactive_socket_recv_op_base::do_perform, complete_func),
        socket_(socket),
        state_(state),
        buffers_(buffers),
        flags_(flags) {}

  static status do_perform(reactor_op* base) {
    // asio's reactor calls this with the base of this very operation (its own pattern).
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-static-cast-downcast)
    auto* o = static_cast<reactive_socket_recv_op_base*>(base);
    const std::size_t size = o->buffers_.buffer.size();
    iovec iov[2] = {{o->buffers_.buffer.data(), size}, {nullptr, 0}};
    std::size_t capacity = size;
    if (o->buffers_.spill != nullptr && size != 0) {
      const std::span<std::uint8_t> spill = spill_buffer(o->buffers_.spill_size);
      iov[1] = {spill.data(), spill.size()};
      capacity += spill.size();
    }
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    for (;;) {
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = iov[1].iov_len != 0 ? 2 : 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t n = ::recvmsg(o->socket_, &msg, o->flags_);
      if (n > 0) {
        const auto got = static_cast<std::size_t>(n);
        o->ec_ = asio::error_code();
        o->bytes_transferred_ = got;
        const bool drained = got < capacity && queued_bytes(msg) == 0;
        if (o->buffers_.drained != nullptr) {
          *o->buffers_.drained = drained;
        }
        if (got > size) {
          o->buffers_.spill->take_spilled_read(
              {static_cast<const std::uint8_t*>(iov[0].iov_base), size},
              {static_cast<const std::uint8_t*>(iov[1].iov_base), got - size});
        }
        return drained ? done_and_exhausted : done;
      }
      if (n == 0 && (o->state_ & socket_ops::stream_oriented) != 0) {
        o->ec_ = asio::error::eof;  // asio's own rule: end of stream exhausts the socket
        o->bytes_transferred_ = 0;
        return size == 0 ? done : done_and_exhausted;
      }
      if (n == 0) {
        o->ec_ = asio::error_code();
        o->bytes_transferred_ = 0;
        return done;
      }
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return not_done;  // queued until epoll reports data
      }
      o->ec_ = asio::error_code(errno, asio::error::get_system_category());
      o->bytes_transferred_ = 0;
      return done;
    }
  }

 private:
  /// This thread's spill buffer, `size` bytes (at most 64 KiB), allocated on first use.
  static std::span<std::uint8_t> spill_buffer(std::size_t size) {
    constexpr std::size_t kMaxSpill = std::size_t{64} * 1024;
    static thread_local std::unique_ptr<std::uint8_t[]> buffer;
    if (!buffer) {
      buffer = std::make_unique_for_overwrite<std::uint8_t[]>(kMaxSpill);
    }
    return {buffer.get(), size < kMaxSpill ? size : kMaxSpill};
  }

  /// TCP_INQ's count from the control message; -1 when there is none (TCP_INQ is off).
  static int queued_bytes(const msghdr& msg) noexcept {
    // CMSG_NXTHDR takes non-const pointers but only reads through them.
    for (const cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
         c = CMSG_NXTHDR(
             const_cast<msghdr*>(&msg),   // NOLINT(cppcoreguidelines-pro-type-const-cast)
             const_cast<cmsghdr*>(c))) {  // NOLINT(cppcoreguidelines-pro-type-const-cast)
      if (c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_CM_INQ) {
        int inq = 0;
        std::memcpy(&inq, CMSG_DATA(c), sizeof inq);
        return inq;
      }
    }
    return -1;
  }

  socket_type socket_;
  socket_ops::state_type state_;
  serialserver::detail::ShortReadDrains buffers_;
  socket_base::message_flags flags_;
};

/// asio's completion step, unchanged but for the ReadCompletionScope around the upcall (see
/// AfterReadCompletion).
template <typename Handler, typename IoExecutor>
class reactive_socket_recv_op<serialserver::detail::ShortReadDrains, Handler, IoExecutor>
    : public reactive_socket_recv_op_base<serialserver::detail::ShortReadDrains> {
 public:
  ASIO_DEFINE_HANDLER_PTR(reactive_socket_recv_op);

  reactive_socket_recv_op(const asio::error_code& success_ec, socket_type socket,
                          socket_ops::state_type state,
                          const serialserver::detail::ShortReadDrains& buffers,
                          socket_base::message_flags flags, Handler& handler,
                          const IoExecutor& io_ex)
      : reactive_socket_recv_op_base<serialserver::detail::ShortReadDrains>(
            success_ec, socket, state, buffers, flags, &reactive_socket_recv_op::do_complete),
        handler_(static_cast<Handler&&>(handler)),
        work_(handler_, io_ex) {}

  static void do_complete(void* owner, operation* base, const asio::error_code& /*ec*/,
                          std::size_t /*bytes_transferred*/) {
    auto* o = static_cast<reactive_socket_recv_op*>(base);
    ptr p = {asio::detail::addressof(o->handler_), o, o};
    handler_work<Handler, IoExecutor> w(static_cast<handler_work<Handler, IoExecutor>&&>(o->work_));
    // A copy of the handler, so that the operation's memory is freed before the upcall.
    detail::binder2<Handler, asio::error_code, std::size_t> handler(o->handler_, o->ec_,
                                                                    o->bytes_transferred_);
    p.h = asio::detail::addressof(handler.handler_);
    p.reset();
    if (owner != nullptr) {
      const serialserver::detail::ReadCompletionScope scope;
      fenced_block b(fenced_block::half);
      w.complete(handler, handler.handler_);
    }
  }

 private:
  Handler handler_;
  handler_work<Handler, IoExecutor> work_;
};

}  // namespace asio::detail
#endif
