#include <serialserver/duration.hpp>

#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace serialserver {

std::chrono::nanoseconds parse_duration(std::string_view text) {
  const std::string original(text);
  auto fail = [&]() -> std::invalid_argument {
    return std::invalid_argument("invalid duration '" + original +
                                 "' (expected e.g. 500ms, 5s, 30m, 1h30m)");
  };
  if (text.empty()) {
    throw fail();
  }
  if (text == "0") {
    return std::chrono::nanoseconds(0);
  }
  long double total = 0;
  while (!text.empty()) {
    std::size_t i = 0;
    while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) {
      ++i;
    }
    if (i == 0) {
      throw fail();
    }
    const std::string number(text.substr(0, i));
    if (number == "." || number.find('.') != number.rfind('.')) {
      throw fail();
    }
    const long double value = std::stold(number);
    text.remove_prefix(i);
    std::size_t j = 0;
    while (j < text.size() && !((text[j] >= '0' && text[j] <= '9') || text[j] == '.')) {
      ++j;
    }
    const std::string_view unit = text.substr(0, j);
    text.remove_prefix(j);
    long double scale = 0;
    if (unit == "ns") {
      scale = 1;
    } else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") {
      scale = 1e3L;
    } else if (unit == "ms") {
      scale = 1e6L;
    } else if (unit == "s") {
      scale = 1e9L;
    } else if (unit == "m") {
      scale = 60e9L;
    } else if (unit == "h") {
      scale = 3600e9L;
    } else {
      throw fail();
    }
    total += value * scale;
  }
  if (total > 9.2e18L) {
    throw fail();
  }
  return std::chrono::nanoseconds(static_cast<std::int64_t>(std::llround(total)));
}

std::string format_duration(std::chrono::nanoseconds d) {
  const std::int64_t ns = d.count();
  if (ns == 0) {
    return "0s";
  }
  // Integer arithmetic throughout, so that every digit down to the nanosecond is exact (as Go's
  // Duration.String) and the seconds never round up into a "60".
  const std::uint64_t abs_ns =
      ns < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(ns) : static_cast<std::uint64_t>(ns);
  // `value` / 10^digits, with the fraction's trailing zeros (and a bare '.') removed.
  auto fixed = [](std::uint64_t value, int digits) {
    std::uint64_t scale = 1;
    for (int i = 0; i < digits; ++i) {
      scale *= 10;
    }
    std::string out = std::to_string(value / scale);
    std::string fraction = std::to_string(value % scale);
    fraction.insert(0, static_cast<std::size_t>(digits) - fraction.size(), '0');
    while (!fraction.empty() && fraction.back() == '0') {
      fraction.pop_back();
    }
    if (!fraction.empty()) {
      out += '.' + fraction;
    }
    return out;
  };
  std::string out = ns < 0 ? "-" : "";
  if (abs_ns < 1000) {
    return out + std::to_string(abs_ns) + "ns";
  }
  if (abs_ns < 1000000) {
    return out + fixed(abs_ns, 3) + "us";
  }
  if (abs_ns < 1000000000) {
    return out + fixed(abs_ns, 6) + "ms";
  }
  const std::uint64_t hours = abs_ns / 3600000000000ULL;
  const std::uint64_t minutes = (abs_ns / 60000000000ULL) % 60;
  if (hours > 0) {
    out += std::to_string(hours) + "h";
  }
  if (hours > 0 || minutes > 0) {
    out += std::to_string(minutes) + "m";
  }
  out += fixed(abs_ns % 60000000000ULL, 9) + "s";
  return out;
}

}  // namespace serialserver
