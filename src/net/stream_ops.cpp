#include "net/stream_ops.hpp"

namespace serialserver::detail {

std::string endpoint_to_string(const asio::ip::tcp::endpoint& endpoint) {
  // Appends rather than operator+ on literals, which g++ 12 flags with -Wrestrict at -O2.
  const auto address = endpoint.address();
  std::string text;
  if (address.is_v6()) {
    text.append("[").append(address.to_string()).append("]");
  } else {
    text.append(address.to_string());
  }
  text.append(":").append(std::to_string(endpoint.port()));
  return text;
}

std::string endpoint_to_string(const asio::local::stream_protocol::endpoint& endpoint) {
  std::string path = endpoint.path();
  if (path.empty()) {
    return "unix";
  }
  if (path[0] == '\0') {
    path[0] = '@';
  }
  return path;
}

}  // namespace serialserver::detail
