#pragma once

#include <string>
#include <string_view>

namespace serialclient {

/// A parsed server address: "host:port", "[v6]:port", or a Unix socket path (anything with a
/// '/'). Thread-safety: a plain value.
struct Address {
  /// True for a Unix socket path.
  bool is_unix = false;
  /// The socket path (Unix only).
  std::string path;
  /// The host name or address literal, without brackets (TCP only).
  std::string host;
  /// The port, as decimal text (TCP only).
  std::string port;

  /// The address in the form it was given ("127.0.0.1:7070", "[::1]:7070" or a path).
  std::string to_string() const;
};

/// Parses an address; throws std::invalid_argument when it is malformed (no port, a port that is
/// not a number in 1..65535, an unclosed '[', an empty host). Thread-safety: a pure function.
Address parse_address(std::string_view text);

}  // namespace serialclient
