#include <charconv>
#include <stdexcept>
#include <string>

#include <serialclient/address.hpp>

namespace serialclient {

std::string Address::to_string() const {
  if (is_unix) {
    return path;
  }
  if (host.find(':') != std::string::npos) {
    return "[" + host + "]:" + port;
  }
  return host + ":" + port;
}

Address parse_address(std::string_view text) {
  const auto invalid = [&](const char* why) {
    return std::invalid_argument("invalid address '" + std::string(text) + "': " + why);
  };
  Address address;
  if (text.find('/') != std::string_view::npos) {
    address.is_unix = true;
    address.path = std::string(text);
    return address;
  }
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    throw invalid("expected host:port, [v6]:port or a socket path");
  }
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 2 || host.back() != ']') {
      throw invalid("unclosed '['");
    }
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    throw invalid("an IPv6 address needs brackets: [v6]:port");
  }
  if (host.empty()) {
    throw invalid("empty host");
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 ||
      value > 65535) {
    throw invalid("the port must be a number in 1..65535");
  }
  address.host = std::string(host);
  address.port = std::string(port);
  return address;
}

}  // namespace serialclient
