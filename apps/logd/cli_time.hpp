#pragma once

// Times on serialserver-log's command line (--time, --since, --until, --before) and in its
// output. Every form is UTC unless it carries an offset.

#include <cstdint>
#include <string>
#include <string_view>

namespace logd::cli {

/// The accepted forms, as the error message and --help list them.
inline constexpr std::string_view kTimeForms =
    "RFC 3339 (2024-05-01T12:00:00Z, 2024-05-01T12:00:00.5+02:00; a space may replace the T; "
    "no offset means UTC), a date (2024-05-01, midnight UTC), @SECONDS[.FRACTION] since the "
    "Unix epoch, now, today, yesterday (midnight UTC), or a duration ago (10m, 1h30m)";

/// Parses one of kTimeForms into nanoseconds since the Unix epoch; `now_ns` is the present, for
/// the relative forms. Throws std::invalid_argument, whose message names `text` and lists the
/// accepted forms, for anything else: an impossible date (2024-02-30, 2024-13-45T99:99:99Z),
/// a time outside what nanoseconds since the epoch in 64 bits can hold (1678..2261), a bad
/// number. Thread-safety: a pure function.
std::int64_t parse_time(std::string_view text, std::int64_t now_ns);

/// RFC 3339 in UTC with nanoseconds: 2024-05-01T12:00:00.123456789Z.
/// Thread-safety: a pure function.
std::string format_time(std::int64_t ns);

/// The system clock now, in nanoseconds since the Unix epoch.
std::int64_t now_ns();

}  // namespace logd::cli
