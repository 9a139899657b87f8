#pragma once

// Helpers for the hostile-peer and soak tests: raw peers on plain descriptors (thousands of them
// cost no io_context each), a well-behaved probe client that measures its latency while an
// attack runs, the open descriptor count, and a raised RLIMIT_NOFILE. Every wait is bounded.

#include "support/loopback.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace serialserver::test {

/// The latency budget of a well-behaved client's request (an echo of up to 300 bytes) while an
/// attack runs: the server must answer it within this, from the first byte sent to the last
/// byte received. Generous under the sanitizers, which slow every byte down, and on a shared
/// two-core machine.
inline constexpr std::chrono::milliseconds kProbeLatencyBudget = kSanitized ? 2000ms : 500ms;

/// The number of descriptors this process has open (entries of /proc/self/fd, less the one
/// the listing itself uses); -1 if unknown.
inline int open_fd_count() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) {
    return -1;
  }
  int n = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') {
      ++n;
    }
  }
  ::closedir(dir);
  return n - 1;
}

/// Raises the soft limit of open files to the hard limit; restores it on destruction.
class RaisedFileLimit {
 public:
  RaisedFileLimit() {
    if (::getrlimit(RLIMIT_NOFILE, &saved_) == 0) {
      rlimit raised = saved_;
      raised.rlim_cur = raised.rlim_max;
      current_ = ::setrlimit(RLIMIT_NOFILE, &raised) == 0 ? raised.rlim_cur : saved_.rlim_cur;
    }
  }
  RaisedFileLimit(const RaisedFileLimit&) = delete;
  RaisedFileLimit& operator=(const RaisedFileLimit&) = delete;
  ~RaisedFileLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  rlim_t current() const { return current_; }

 private:
  rlimit saved_{};
  rlim_t current_ = 0;
};

/// A raw TCP peer on 127.0.0.1 on a plain descriptor, for attacks: connects, writes without
/// ever blocking if asked, half-closes, resets, and watches for the server's close.
/// Not thread-safe; closes its descriptor on destruction.
class RawPeer {
 public:
  /// Connects (blocking) to 127.0.0.1:port; throws std::system_error on failure.
  explicit RawPeer(std::uint16_t port, const char* source = nullptr) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      throw std::system_error(errno, std::generic_category(), "socket");
    }
    if (source != nullptr) {
      sockaddr_in from{};
      from.sin_family = AF_INET;
      ::inet_pton(AF_INET, source, &from.sin_addr);
      if (::bind(fd_, reinterpret_cast<const sockaddr*>(&from), sizeof from) != 0) {
        const int e = errno;
        ::close(fd_);
        throw std::system_error(e, std::generic_category(), "bind");
      }
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      const int e = errno;
      ::close(fd_);
      throw std::system_error(e, std::generic_category(), "connect");
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  RawPeer(const RawPeer&) = delete;
  RawPeer& operator=(const RawPeer&) = delete;
  ~RawPeer() { close(); }

  int fd() const { return fd_; }

  /// Writes all of `data` (blocking); false if the connection failed.
  bool send(const Bytes& data) const {
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  /// Writes as much of `data` from `offset` on as the socket takes now; returns how much (0 on
  /// error).
  std::size_t send_some(const Bytes& data, std::size_t offset = 0) const {
    const ssize_t n =
        ::send(fd_, data.data() + offset, data.size() - offset, MSG_NOSIGNAL | MSG_DONTWAIT);
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }
  /// Reads exactly n bytes, or fewer if the peer closes or the deadline passes first.
  Bytes recv(std::size_t n, std::chrono::steady_clock::time_point deadline) {
    Bytes out(n);
    std::size_t got = 0;
    while (got < n) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      pollfd p{fd_, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
        break;
      }
      const ssize_t r = ::recv(fd_, out.data() + got, n - got, 0);
      if (r <= 0) {
        closed_ = true;
        break;
      }
      got += static_cast<std::size_t>(r);
    }
    out.resize(got);
    return out;
  }
  /// Reads whatever arrives until the server closes (EOF or reset) or the deadline passes;
  /// returns whether it closed. The bytes read are appended to received().
  bool read_until_closed(std::chrono::steady_clock::time_point deadline) {
    while (!closed_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      pollfd p{fd_, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
        return false;
      }
      poll_once();
    }
    return true;
  }
  /// One non-blocking read: appends what is there to received(), notes a close.
  void poll_once() {
    std::uint8_t buf[4096];
    const ssize_t r = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (r > 0) {
      received_.insert(received_.end(), buf, buf + r);
    } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      closed_ = true;
    }
  }
  bool closed() const { return closed_; }
  const Bytes& received() const { return received_; }

  /// Ends the write side (the server reads EOF) and keeps reading.
  void shutdown_write() const { ::shutdown(fd_, SHUT_WR); }
  /// Makes close() send a reset (SO_LINGER with a zero timeout) instead of a FIN.
  void set_linger_reset() const {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  /// Shrinks the receive buffer, so that a peer that does not read stalls the server sooner.
  void set_small_receive_buffer() const {
    const int size = 4096;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  void close() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_ = -1;
  bool closed_ = false;
  Bytes received_;
};

/// A well-behaved client on its own connection and thread: echoes (task 1 of the demo tasks)
/// of 1 to 300 bytes one after another, with a short pause between them, checking every
/// answer and measuring each one's latency. Thread-safety: the accessors may be called from
/// any thread; stop() from one.
class Probe {
 public:
  /// Connects to 127.0.0.1:port and starts calling. `pause` is the idle time between calls.
  explicit Probe(std::uint16_t port, std::chrono::milliseconds pause = 10ms)
      : client_(port), pause_(pause) {
    thread_ = std::thread([this] { run(); });
  }
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;
  ~Probe() { stop(); }

  /// Stops calling and joins the thread (idempotent).
  void stop() {
    stop_ = true;
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  /// Blocks until at least `n` more calls have been answered since this call (bounded).
  bool wait_for_calls(std::size_t n, std::chrono::milliseconds timeout = 30000ms) {
    const std::size_t target = answered() + n;
    return eventually([&] { return answered() >= target || failed_.load(); }, timeout) &&
           answered() >= target;
  }
  std::size_t answered() const { return answered_.load(); }
  bool failed() const { return failed_.load(); }
  std::string failure() const {
    std::lock_guard lock(mutex_);
    return failure_;
  }
  std::chrono::milliseconds max_latency() const {
    return std::chrono::milliseconds(max_latency_ms_.load());
  }

  /// The checks every hostile test makes: the probe never saw a wrong or missing answer, it
  /// was answered at least `min_calls` times, and no call took longer than the budget.
  void expect_well_served(std::size_t min_calls,
                          std::chrono::milliseconds budget = kProbeLatencyBudget) {
    stop();
    EXPECT_FALSE(failed()) << "the well-behaved client: " << failure();
    EXPECT_GE(answered(), min_calls) << "the well-behaved client was answered too rarely";
    EXPECT_LE(max_latency(), budget) << "the well-behaved client waited " << max_latency().count()
                                     << " ms for an answer (" << answered() << " answers)";
  }

 private:
  void run() {
    std::uint64_t k = 0;
    while (!stop_) {
      Bytes content(1 + k % 300);
      for (std::size_t i = 0; i < content.size(); ++i) {
        content[i] = static_cast<std::uint8_t>(k * 31 + i);
      }
      const Bytes want = ok_response(content);
      const auto start = std::chrono::steady_clock::now();
      Bytes got;
      try {
        client_.send(request(1, content));
        got = client_.recv(want.size(), 20000ms);
      } catch (const std::exception& e) {
        fail(std::string("call ") + std::to_string(k) + ": " + e.what());
        return;
      }
      const auto took = elapsed_since(start);
      if (got != want) {
        fail("call " + std::to_string(k) + ": wrong or missing answer (" +
             std::to_string(got.size()) + " of " + std::to_string(want.size()) + " bytes)");
        return;
      }
      std::int64_t seen = max_latency_ms_.load();
      while (took.count() > seen && !max_latency_ms_.compare_exchange_weak(seen, took.count())) {
      }
      ++answered_;
      ++k;
      std::this_thread::sleep_for(pause_);  // a well-behaved client's pace, not synchronisation
    }
  }
  void fail(std::string why) {
    std::lock_guard lock(mutex_);
    failure_ = std::move(why);
    failed_ = true;
  }

  RawClient client_;
  std::chrono::milliseconds pause_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  std::atomic<std::size_t> answered_{0};
  std::atomic<std::int64_t> max_latency_ms_{0};
  mutable std::mutex mutex_;
  std::string failure_;
  std::thread thread_;
};

}  // namespace serialserver::test
