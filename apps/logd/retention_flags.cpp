#include "retention_flags.hpp"

#include "logd_protocol.hpp"

#include <charconv>
#include <chrono>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <system_error>

namespace logd {

namespace {

/// A decimal number of at most `max`, digits only; `what` names it in the error.
std::uint64_t decimal(std::string_view digits, std::uint64_t max, const char* what) {
  std::uint64_t value = 0;
  const auto* end = digits.data() + digits.size();
  const auto [ptr, ec] = std::from_chars(digits.data(), end, value);
  if (digits.empty() || ptr != end || ec == std::errc::invalid_argument) {
    throw std::invalid_argument(std::string(what) + " '" + std::string(digits) +
                                "' is not a number");
  }
  if (ec == std::errc::result_out_of_range || value > max) {
    throw std::invalid_argument(std::string(what) + " '" + std::string(digits) + "' is over " +
                                std::to_string(max));
  }
  return value;
}

}  // namespace

std::pair<std::string, LogRetention> parse_log_retention(std::string_view text) {
  const auto equals = text.rfind('=');
  if (equals == std::string_view::npos) {
    throw std::invalid_argument("'" + std::string(text) + "' is not NAME=DAYS:BYTES");
  }
  const std::string_view name = text.substr(0, equals);
  const std::string_view limits = text.substr(equals + 1);
  if (name.empty() || name.size() > kMaxNameBytes) {
    throw std::invalid_argument("'" + std::string(text) + "': a log name has 1 to " +
                                std::to_string(kMaxNameBytes) + " bytes");
  }
  const auto colon = limits.find(':');
  if (colon == std::string_view::npos) {
    throw std::invalid_argument("'" + std::string(text) + "' is not NAME=DAYS:BYTES");
  }
  LogRetention retention;
  try {
    retention.max_age = retain_days(decimal(limits.substr(0, colon), kMaxRetainDays, "DAYS"));
    retention.max_bytes =
        decimal(limits.substr(colon + 1), std::numeric_limits<std::int64_t>::max(), "BYTES");
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("'" + std::string(text) + "': " + e.what());
  }
  return {std::string(name), retention};
}

}  // namespace logd
