#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace serialserver {

/// Parses a duration the way Go's time.ParseDuration does: a sequence of decimal numbers, each
/// with a unit, such as "500ms", "5s", "30m", "1h30m", "1.5s". Units: ns, us (or µs), ms, s, m,
/// h. "0" alone is allowed. Throws std::invalid_argument on anything else.
/// Thread-safety: a pure function.
std::chrono::nanoseconds parse_duration(std::string_view text);

/// Formats a duration compactly ("1.5s", "30m0s", "250ms"), as Go's Duration.String does.
std::string format_duration(std::chrono::nanoseconds d);

}  // namespace serialserver
