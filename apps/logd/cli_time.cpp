#include "cli_time.hpp"

#include <serialserver/duration.hpp>

#include <date/date.h>

#include <cctype>
#include <chrono>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace logd::cli {

namespace {

using std::chrono::nanoseconds;
using Nanos = date::sys_time<nanoseconds>;

constexpr std::int64_t kNanosPerSecond = 1000000000;
// Nanoseconds since the epoch in an i64 cover 1677-09-21 .. 2262-04-11: whole years inside.
constexpr int kFirstYear = 1678;
constexpr int kLastYear = 2261;

[[noreturn]] void bad_time(std::string_view text, std::string_view why) {
  std::string message = "'";
  message += text;
  message += "' is not a time";
  if (!why.empty()) {
    message += " (";
    message += why;
    message += ")";
  }
  message += "; accepted: ";
  message += kTimeForms;
  throw std::invalid_argument(message);
}

bool all_digits(std::string_view text) {
  if (text.empty()) {
    return false;
  }
  for (const char c : text) {
    if (std::isdigit(static_cast<unsigned char>(c)) == 0) {
      return false;
    }
  }
  return true;
}

/// "@SECONDS[.FRACTION]", without the '@': digits only (an optional leading '-'), at most nine
/// fraction digits, within the i64 nanosecond range.
std::int64_t parse_epoch(std::string_view whole, std::string_view text) {
  bool negative = false;
  if (!text.empty() && text.front() == '-') {
    negative = true;
    text.remove_prefix(1);
  }
  const auto dot = text.find('.');
  const std::string_view seconds_part = text.substr(0, dot);
  const std::string_view fraction_part =
      dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  if (!all_digits(seconds_part) || (dot != std::string_view::npos && !all_digits(fraction_part))) {
    bad_time(whole, "");
  }
  if (fraction_part.size() > 9) {
    bad_time(whole, "at most nine fraction digits: nanoseconds");
  }
  constexpr std::int64_t kMaxSeconds = std::numeric_limits<std::int64_t>::max() / kNanosPerSecond;
  std::int64_t seconds = 0;
  for (const char c : seconds_part) {
    seconds = seconds * 10 + (c - '0');
    if (seconds >= kMaxSeconds) {
      bad_time(whole, "out of range");
    }
  }
  std::int64_t fraction = 0;
  std::int64_t scale = kNanosPerSecond;
  for (const char c : fraction_part) {
    scale /= 10;
    fraction += (c - '0') * scale;
  }
  const std::int64_t ns = seconds * kNanosPerSecond + fraction;
  return negative ? -ns : ns;
}

/// A trailing "+hh:mm", "-hhmm" or "Z" after the seconds of a date-time; nullopt if none.
/// Returns the offset east of UTC and leaves `text` without it.
std::optional<std::chrono::minutes> take_offset(std::string_view whole, std::string& text) {
  if (text.size() <= 19) {
    return std::nullopt;
  }
  if (text.back() == 'Z' || text.back() == 'z') {
    text.pop_back();
    return std::chrono::minutes(0);
  }
  const auto sign_pos = text.find_first_of("+-", 19);
  if (sign_pos == std::string::npos) {
    return std::nullopt;
  }
  std::string zone = text.substr(sign_pos + 1);
  if (zone.size() == 5 && zone[2] == ':') {
    zone.erase(2, 1);
  }
  if (zone.size() != 4 || !all_digits(zone)) {
    bad_time(whole, "an offset is +hh:mm or -hh:mm");
  }
  const int hours = std::stoi(zone.substr(0, 2));
  const int minutes = std::stoi(zone.substr(2));
  if (hours > 23 || minutes > 59) {
    bad_time(whole, "an offset is +hh:mm or -hh:mm");
  }
  const std::chrono::minutes offset(hours * 60 + minutes);
  const bool east = text[sign_pos] == '+';
  text.erase(sign_pos);
  return east ? offset : -offset;
}

/// "YYYY-MM-DD" or "YYYY-MM-DD[T ]hh:mm:ss[.frac][Z|+hh:mm]".
std::int64_t parse_calendar(std::string_view whole) {
  std::string text(whole);
  if (text.size() > 10 && (text[10] == ' ' || text[10] == 't')) {
    text[10] = 'T';
  }
  const int year = std::stoi(text.substr(0, 4));
  if (year < kFirstYear || year > kLastYear) {
    bad_time(whole, "out of range: the years " + std::to_string(kFirstYear) + " to " +
                        std::to_string(kLastYear) + " can be stored");
  }
  const auto offset = take_offset(whole, text);
  const char* format = text.size() > 10 ? "%FT%T" : "%F";
  std::istringstream in(text);
  Nanos parsed;
  in >> date::parse(format, parsed);
  // date::parse fails on impossible fields (month 13, February 30, 99:99:99); the whole text
  // must have been used.
  if (in.fail() || in.peek() != std::char_traits<char>::eof()) {
    bad_time(whole, "");
  }
  if (offset) {
    parsed -= *offset;
  }
  return parsed.time_since_epoch().count();
}

bool looks_like_date(std::string_view text) {
  return text.size() >= 10 && all_digits(text.substr(0, 4)) && text[4] == '-';
}

}  // namespace

std::int64_t now_ns() {
  return std::chrono::duration_cast<nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t parse_time(std::string_view text, std::int64_t now) {
  if (text == "now") {
    return now;
  }
  if (text == "today" || text == "yesterday") {
    auto day = date::floor<date::days>(Nanos(nanoseconds(now)));
    if (text == "yesterday") {
      day -= date::days(1);
    }
    return std::chrono::duration_cast<nanoseconds>(day.time_since_epoch()).count();
  }
  if (!text.empty() && text.front() == '@') {
    return parse_epoch(text, text.substr(1));
  }
  if (looks_like_date(text)) {
    return parse_calendar(text);
  }
  std::int64_t ago = 0;
  try {
    ago = serialserver::parse_duration(std::string(text)).count();
  } catch (const std::exception&) {
    bad_time(text, "");
  }
  if (ago < 0 || now < std::numeric_limits<std::int64_t>::min() + ago) {
    bad_time(text, "out of range");
  }
  return now - ago;
}

std::string format_time(std::int64_t ns) { return date::format("%FT%TZ", Nanos(nanoseconds(ns))); }

}  // namespace logd::cli
