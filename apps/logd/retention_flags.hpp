#pragma once

// The per-log retention flag of serialserver-logd: --retain-log NAME=DAYS:BYTES.

#include "store.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace logd {

/// The most days a retention flag takes: about 270 years, whose nanoseconds still fit the
/// signed 64 bits of a time.
inline constexpr unsigned kMaxRetainDays = 100000;

/// `days` as a duration (at most kMaxRetainDays).
inline std::chrono::nanoseconds retain_days(std::uint64_t days) {
  return std::chrono::hours(24) * static_cast<std::int64_t>(days);
}

/// Parses "NAME=DAYS:BYTES" (the name is everything before the last '='; DAYS and BYTES are
/// decimal, 0 for no limit of that kind). Throws std::invalid_argument saying what is wrong.
std::pair<std::string, LogRetention> parse_log_retention(std::string_view text);

}  // namespace logd
