#pragma once

// A tiny raw TCP server for client tests that need a misbehaving peer: it accepts connections
// on 127.0.0.1 and hands each socket to a test-supplied function on a thread of its own.

#include <serialserver/protocol.hpp>
#include <serialserver/wire/block_decoder.hpp>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace serialclient::test {

/// Accepts on `port` of 127.0.0.1 (0: an ephemeral one); each connection runs `handler(fd)`,
/// then is closed.
/// Lifetime: the destructor stops accepting, shuts every connection down and joins.
class RawServer {
 public:
  explicit RawServer(std::function<void(int)> handler, std::uint16_t port = 0)
      : handler_(std::move(handler)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(port);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    ::listen(listen_fd_, 16);
    socklen_t len = sizeof sa;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~RawServer() {
    stop_ = true;
    acceptor_.join();
    {
      std::lock_guard lock(mutex_);
      for (int fd : fds_) {
        ::shutdown(fd, SHUT_RDWR);  // wakes handlers blocked in reads
      }
    }
    for (auto& t : handlers_) {
      t.join();
    }
    for (int fd : fds_) {
      ::close(fd);
    }
    ::close(listen_fd_);
  }
  std::uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int accepted() const { return accepted_.load(); }

  /// Reads one request (task code and message) from `fd`; nullopt on EOF or error.
  static std::optional<std::pair<std::uint8_t, std::vector<std::uint8_t>>> read_request(int fd) {
    std::uint8_t code = 0;
    if (::recv(fd, &code, 1, MSG_WAITALL) != 1) {
      return std::nullopt;
    }
    std::vector<std::uint8_t> content;
    serialserver::wire::BlockDecoder decoder;
    while (!decoder.finished()) {
      std::uint8_t b = 0;  // byte by byte: never reads past the message
      if (::recv(fd, &b, 1, MSG_WAITALL) != 1) {
        return std::nullopt;
      }
      const auto chunk = decoder.next(std::span<const std::uint8_t>(&b, 1));
      content.insert(content.end(), chunk.content.begin(), chunk.content.end());
    }
    return std::make_pair(code, std::move(content));
  }
  /// Writes all of `data`.
  static void send_all(int fd, const std::vector<std::uint8_t>& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) {
        return;
      }
      off += static_cast<std::size_t>(n);
    }
  }
  /// Blocks until the peer closes (or the server stops).
  static void wait_for_close(int fd) {
    std::uint8_t buf[256];
    while (::recv(fd, buf, sizeof buf, 0) > 0) {
    }
  }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) {
        continue;
      }
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        continue;
      }
      ++accepted_;
      std::lock_guard lock(mutex_);
      fds_.push_back(fd);
      handlers_.emplace_back([this, fd] {
        handler_(fd);
        ::shutdown(fd, SHUT_RDWR);
      });
    }
  }

  std::function<void(int)> handler_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<int> fds_;  // closed by the destructor, after the handlers are joined
  std::vector<std::thread> handlers_;
};

}  // namespace serialclient::test
