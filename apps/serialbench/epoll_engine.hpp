#pragma once

// The epoll engine: each thread runs an epoll loop over non-blocking sockets, one recv() of up
// to 256 KiB per readable socket, and one send() per socket per loop turn carrying every request
// that the responses freed room for. It also carries --tls (SSL_read / SSL_write over the same
// sockets, WANT_READ / WANT_WRITE counted as EAGAIN).

#include "worker.hpp"

#include <sys/epoll.h>

#include <vector>

namespace serialbench {

/// Thread-safety and lifetime: as Worker.
class EpollWorker final : public Worker {
 public:
  EpollWorker(const Config& config, const std::atomic<Phase>& phase)
      : Worker(config, phase), read_buffer_(kReadBufferSize) {}

  void run() override;

 protected:
  void flush(Conn& c) override;
  void retire(Conn& c) override;
  void detach(Conn& c) override;
  void attach(Conn& c) override;

 private:
  void on_readable(Conn& c);
  void on_readable_tls(Conn& c);
  /// epoll_wait for up to `timeout_ns`.
  int wait(std::vector<epoll_event>& events, std::uint64_t timeout_ns);

  std::vector<std::uint8_t> read_buffer_;
  int epoll_ = -1;
  bool have_pwait2_ = true;
};

}  // namespace serialbench
