#include "net/listen_address.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <asio/error.hpp>

namespace serialserver::detail {

ParsedAddress parse_address(const std::string& address) {
  ParsedAddress parsed;
  if (address.find('/') != std::string::npos) {
    parsed.is_unix = true;
    parsed.path = address;
    return parsed;
  }
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) {
    throw std::invalid_argument("invalid listen address '" + address +
                                "' (expected host:port, [v6]:port or a Unix socket path)");
  }
  parsed.port = address.substr(colon + 1);
  parsed.host = address.substr(0, colon);
  if (!parsed.host.empty() && parsed.host.front() == '[') {
    if (parsed.host.back() != ']') {
      throw std::invalid_argument("invalid listen address '" + address + "'");
    }
    parsed.host = parsed.host.substr(1, parsed.host.size() - 2);
  }
  if (parsed.host.empty()) {
    parsed.host = "0.0.0.0";
  }
  for (char ch : parsed.port) {
    if (ch < '0' || ch > '9') {
      throw std::invalid_argument("invalid port in listen address '" + address + "'");
    }
  }
  return parsed;
}

void remove_stale_unix_socket(const std::string& path, const std::string& address) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return;  // bind reports the long path
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  // Non-blocking, so that a live server with a full backlog (EAGAIN) does not block us.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return;
  }
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int error = rc == 0 ? 0 : errno;
  ::close(fd);
  if (rc == 0 || error == EAGAIN || error == EINPROGRESS) {
    throw std::system_error(make_error_code(asio::error::address_in_use),
                            "bind " + address + " (a server is listening there)");
  }
  if (error == ECONNREFUSED) {
    ::unlink(path.c_str());  // nobody listens: a stale socket file
  }
  // Any other failure (permissions, ...): bind reports it.
}

}  // namespace serialserver::detail
