#include <string>

#include <serialclient/error.hpp>

namespace serialclient {

namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "serialclient"; }
  std::string message(int value) const override {
    switch (static_cast<Errc>(value)) {
      case Errc::connection_closed:
        return "connection closed";
      case Errc::connection_closing:
        return "connection closing (the server said goodbye; the task was not run)";
      case Errc::timeout_waiting_for_response:
        return "timeout waiting for response";
      case Errc::read_timeout:
        return "timeout reading the response";
      case Errc::write_timeout:
        return "timeout writing the request";
      case Errc::connect_timeout:
        return "timeout connecting";
      case Errc::reserved_task_code:
        return "reserved task code (250..255) in an application call";
      case Errc::protocol_error:
        return "protocol error (unexpected response code)";
      case Errc::handshake_failed:
        return "handshake failed";
      case Errc::invalid_address:
        return "invalid address";
      case Errc::tls_failed:
        return "TLS handshake failed";
    }
    return "unknown serialclient error " + std::to_string(value);
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category kCategory;
  return kCategory;
}

}  // namespace serialclient
