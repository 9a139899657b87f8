#pragma once

// The io_uring engine (built only with liburing): the same connections, requests, parsing and
// validation as the epoll engine, but bytes move through one ring per thread. Each connection
// has one recv always queued in the ring and at most one send, and a loop turn is one
// io_uring_submit_and_wait_timeout() that hands the kernel every send and recv queued since the
// last turn and collects what completed, so a turn costs one system call whatever the number of
// connections (the epoll loop makes an epoll_wait, then a recv and a send per ready connection).

#include "worker.hpp"

#include <liburing.h>

namespace serialbench {

/// Thread-safety and lifetime: as Worker; setup_ring() is called by the main thread before
/// run() starts on the worker's thread.
class UringWorker final : public Worker {
 public:
  using Worker::Worker;
  ~UringWorker() override;
  UringWorker(const UringWorker&) = delete;
  UringWorker& operator=(const UringWorker&) = delete;

  /// Sets up this worker's ring for up to `conns` connections, from the main thread: single
  /// issuer with task work deferred to io_uring_enter() where the kernel has them (6.1 and
  /// later), created disabled so that the worker thread that enables it becomes the issuer;
  /// plain flags where setup refuses those with EINVAL. Returns 0 or -errno.
  int setup_ring(std::size_t conns);

  void run() override;

 protected:
  /// Queues a send of the pending part of the batch, unless one is already in the ring.
  void flush(Conn& c) override;
  /// Shuts the socket down, so that its operations still in the ring complete.
  void detach(Conn& c) override;
  void attach(Conn& c) override { queue_recv(c); }
  bool settled(const Conn& c) const override { return !c.send_queued && !c.stale_recv; }

 private:
  static constexpr std::uint64_t kOpRecv = 0;
  static constexpr std::uint64_t kOpSend = 1;

  /// A free SQE; when the queue is full, what it holds is submitted first.
  io_uring_sqe* next_sqe();
  void queue_recv(Conn& c);
  /// Handles every completion in the ring; returns how many there were.
  unsigned reap();
  void on_sent(Conn& c, int res);
  void on_received(Conn& c, int res);

  io_uring ring_{};
  bool uring_ = false;          // ring_ is set up
  bool ring_disabled_ = false;  // created with IORING_SETUP_R_DISABLED
  bool draining_ = false;       // the run is over: completions are only counted
  std::size_t ops_ = 0;         // SQEs queued whose completion has not been reaped
  unsigned queued_sends_ = 0;   // sends queued since the last submission
};

}  // namespace serialbench
