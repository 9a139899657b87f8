#include "connection.hpp"

#include <serialserver/wire/block_encoder.hpp>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace serialbench {

void stamp(std::uint8_t* at, std::size_t n, std::uint64_t id, std::uint64_t seq) {
  const std::uint64_t value = (id << kSeqBits) | (seq & ((1ULL << kSeqBits) - 1));
  for (std::size_t i = 0; i < n; ++i) {
    at[i] = static_cast<std::uint8_t>(value >> (8 * (kStampBytes - 1 - i)));
  }
}

int connect_socket(const serialclient::Address& address, bool non_blocking) {
  int fd = -1;
  if (address.is_unix) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (address.path.size() >= sizeof sa.sun_path) {
      errno = ENAMETOOLONG;
      return -1;
    }
    std::memcpy(sa.sun_path, address.path.c_str(), address.path.size() + 1);
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      const int saved = errno;
      if (fd >= 0) {
        ::close(fd);
      }
      errno = saved;
      return -1;
    }
  } else {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* list = nullptr;
    if (::getaddrinfo(address.host.c_str(), address.port.c_str(), &hints, &list) != 0) {
      errno = EHOSTUNREACH;
      return -1;
    }
    int saved = ECONNREFUSED;
    for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
      fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd >= 0 && ::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        break;
      }
      saved = errno;
      if (fd >= 0) {
        ::close(fd);
      }
      fd = -1;
    }
    ::freeaddrinfo(list);
    if (fd < 0) {
      errno = saved;
      return -1;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  if (non_blocking) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return fd;
}

std::unique_ptr<Conn> make_conn(const Config& config, int fd, std::uint64_t id) {
  auto c = std::make_unique<Conn>();
  c->fd = fd;
  c->id = id;
  // Bytes after the stamp vary per connection, so a response routed to the wrong connection
  // is caught as well as a swapped one.
  std::vector<std::uint8_t> content(config.size);
  for (std::size_t i = 0; i < content.size(); ++i) {
    content[i] = static_cast<std::uint8_t>(i * 131 + id * 7 + 1);
  }
  std::vector<std::uint8_t> request(1 + serialserver::wire::encoded_size(content.size()));
  request[0] = config.task;
  serialserver::wire::encode_message(content, std::span(request).subspan(1));
  c->batch.reserve(request.size() * config.pipeline);
  for (std::size_t i = 0; i < config.pipeline; ++i) {
    c->batch.insert(c->batch.end(), request.begin(), request.end());
  }
  c->expected = std::move(content);
  c->sent_at.assign(config.pipeline, 0);
  return c;
}

std::size_t recv_buffer_size(const Conn& c, std::size_t pipeline) {
  const std::size_t want = c.batch.size() + 16 * pipeline;
  const std::size_t rounded = (want + 4095) / 4096 * 4096;
  return std::clamp<std::size_t>(rounded, std::size_t{16} * 1024, kReadBufferSize);
}

}  // namespace serialbench
