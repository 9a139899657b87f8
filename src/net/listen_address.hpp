#pragma once

// The listen address of a Listener: parsing "host:port", "[v6]:port" or a Unix socket path, and
// the Unix socket file that a listener may take over only when it is stale.

#include <sys/types.h>

#include <string>

namespace serialserver::detail {

/// A parsed listen address.
struct ParsedAddress {
  bool is_unix = false;
  std::string host;  // without brackets
  std::string port;
  std::string path;
};

/// Parses a listen address; throws std::invalid_argument for a malformed one.
ParsedAddress parse_address(const std::string& address);

/// A file as the file system knows it, whatever its path.
struct FileIdentity {
  dev_t device = 0;
  ino_t inode = 0;
};

/// Removes the socket file at `path` if it is stale (nothing accepts on it: a crashed earlier
/// run). A socket that answers a connect is in use: throws address_in_use, as binding a busy TCP
/// port does. Anything that is not a socket is left for bind to refuse.
void remove_stale_unix_socket(const std::string& path, const std::string& address);

}  // namespace serialserver::detail
