#include "uring_engine.hpp"

#include "clock.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace serialbench {

UringWorker::~UringWorker() {
  if (uring_) {
    ::io_uring_queue_exit(&ring_);
  }
}

int UringWorker::setup_ring(std::size_t conns) {
  // Two SQEs per connection at most between two submissions (a recv and a send): no
  // submission inside a turn up to 2048 connections a thread.
  const auto entries = static_cast<unsigned>(std::min<std::size_t>(2 * conns + 8, 4096));
  io_uring_params params{};
  params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
                 IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED;
  params.cq_entries = 2 * entries;
  int r = ::io_uring_queue_init_params(entries, &ring_, &params);
  ring_disabled_ = r == 0;
  if (r == -EINVAL) {
    params = io_uring_params{};
    params.flags = IORING_SETUP_CQSIZE;
    params.cq_entries = 2 * entries;
    r = ::io_uring_queue_init_params(entries, &ring_, &params);
  }
  uring_ = r == 0;
  return r;
}

void UringWorker::run() {
  if (ring_disabled_) {
    // This thread becomes the ring's single issuer. (io_uring_enable_rings() is declared by
    // liburing 2.3 but missing from its exported symbols: the register call it wraps.)
    ::io_uring_register(ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
  }
  Phase seen_phase = phase_.load(std::memory_order_acquire);
  const std::uint64_t start = now_ns();
  for (auto& c : conns_) {
    queue_recv(*c);
  }
  start_connections(start);
  Spinner spinner(config_.spin);
  while (keep_going(seen_phase)) {
    int r = 0;
    const std::uint64_t wait_ns = run_timers(now_ns());
    if (spinner.spinning()) {
      // Submits and collects what has completed, without waiting (task work deferred to
      // io_uring_enter runs here too).
      r = ::io_uring_submit_and_get_events(&ring_);
    } else {
      // Waits for this turn's sends and one completion more: a send to a socket with room
      // completes within the submission, and must not end the wait before a response comes.
      const unsigned wait = queued_sends_ + 1;
      __kernel_timespec timeout{0, static_cast<long long>(wait_ns)};
      io_uring_cqe* cqe = nullptr;
      r = ::io_uring_submit_and_wait_timeout(&ring_, &cqe, wait, &timeout, nullptr);
    }
    queued_sends_ = 0;
    if (r < 0 && r != -ETIME && r != -EINTR) {
      std::fprintf(stderr, "serialbench: io_uring_submit_and_wait: %s\n", std::strerror(-r));
      break;
    }
    spinner.turn(reap() != 0);
    publish();
  }
  finish();
  // Ends every recv and send still in the ring before their buffers go: shutdown() completes
  // them (a recv with 0, a send with EPIPE).
  draining_ = true;
  for (auto& c : conns_) {
    ::shutdown(c->fd, SHUT_RDWR);
  }
  const std::uint64_t deadline = now_ns() + 1'000'000'000ULL;
  while (ops_ != 0 && now_ns() < deadline) {
    __kernel_timespec timeout{0, 100'000'000};
    io_uring_cqe* cqe = nullptr;
    ::io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &timeout, nullptr);
    reap();
  }
  ::io_uring_queue_exit(&ring_);
  uring_ = false;
  close_all();
}

io_uring_sqe* UringWorker::next_sqe() {
  io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    ::io_uring_submit(&ring_);
    queued_sends_ = 0;
    sqe = ::io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void UringWorker::queue_recv(Conn& c) {
  io_uring_sqe* sqe = next_sqe();
  ::io_uring_prep_recv(sqe, c.fd, c.recv_buffer.get(), c.recv_size, 0);
  // The response to what was just sent is not there yet: wait for readiness first rather
  // than try a recv that would fail (a socket already readable completes at once anyway).
  sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
  ::io_uring_sqe_set_data64(sqe, (c.index << 1) | kOpRecv);
  ++ops_;
}

void UringWorker::flush(Conn& c) {
  if (c.send_queued || c.write_pos == c.write_end) {
    return;
  }
  io_uring_sqe* sqe = next_sqe();
  // MSG_WAITALL: the kernel sends the rest itself after a short send.
  ::io_uring_prep_send(sqe, c.fd, c.batch.data() + c.write_pos, c.write_end - c.write_pos,
                       MSG_NOSIGNAL | MSG_WAITALL);
  ::io_uring_sqe_set_data64(sqe, (c.index << 1) | kOpSend);
  c.send_queued = true;
  ++ops_;
  ++queued_sends_;
}

void UringWorker::detach(Conn& c) { ::shutdown(c.fd, SHUT_RDWR); }

unsigned UringWorker::reap() {
  unsigned head = 0;
  unsigned count = 0;
  io_uring_cqe* cqe = nullptr;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++count;
    --ops_;
    if (draining_) {
      continue;
    }
    const std::uint64_t data = ::io_uring_cqe_get_data64(cqe);
    Conn& c = *conns_[data >> 1];
    if ((data & 1) == kOpSend) {
      on_sent(c, cqe->res);
    } else {
      on_received(c, cqe->res);
    }
  }
  ::io_uring_cq_advance(&ring_, count);
  return count;
}

void UringWorker::on_sent(Conn& c, int res) {
  c.send_queued = false;
  if (!c.alive) {
    return;
  }
  if (res < 0) {
    if (res == -EAGAIN || res == -EINTR) {
      flush(c);
    } else {
      c.stale_recv = true;  // the connection's recv is still in the ring
      lose(c);
    }
    return;
  }
  c.write_pos += static_cast<std::size_t>(res);
  if (c.write_pos < c.write_end) {
    flush(c);
    return;
  }
  c.write_pos = c.write_end = 0;
  if (c.owed != 0) {
    emit(c, now_ns());
  }
}

void UringWorker::on_received(Conn& c, int res) {
  if (!c.alive) {
    c.stale_recv = false;  // a lost socket's last recv
    return;
  }
  if (res <= 0) {
    if (res == -EAGAIN || res == -EINTR) {
      queue_recv(c);
    } else {
      lose(c);  // the server closed (or reset) the connection
    }
    return;
  }
  if (consume(c,
              std::span<const std::uint8_t>(c.recv_buffer.get(), static_cast<std::size_t>(res)))) {
    queue_recv(c);
  }
}

}  // namespace serialbench
