#pragma once

// serialctl's files: the descriptors it opens for --file and --out, and writing to them.

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <span>
#include <system_error>

namespace serialctl {

/// A file descriptor this program opened (--file, --out), closed when the scope ends however it
/// ends. Not for stdin or stdout, which stay open until the process exits.
class OwnedFd {
 public:
  explicit OwnedFd(int fd) noexcept : fd_(fd) {}
  ~OwnedFd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;

  int get() const noexcept { return fd_; }

  /// Closes now and returns close()'s result: for a file written to, its last chance to report
  /// a write error (a full disk on a network file system, say).
  int close() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return ::close(fd);
  }

 private:
  int fd_;
};

/// Writes all of `data` to `fd`; throws std::system_error.
inline void write_all(int fd, std::span<const std::uint8_t> data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw std::system_error(errno, std::generic_category(), "write");
    }
    data = data.subspan(static_cast<std::size_t>(n));
  }
}

}  // namespace serialctl
