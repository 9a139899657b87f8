#include "stream_ops.hpp"

namespace serialserver::detail {

std::string endpoint_to_string(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  if (address.is_v6()) {
    return "[" + address.to_string() + "]:" + std::to_string(endpoint.port());
  }
  return address.to_string() + ":" + std::to_string(endpoint.port());
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
