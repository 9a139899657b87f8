// parse_duration and format_duration: the Go-style durations of the command-line flags.

#include <serialserver/duration.hpp>

#include <chrono>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

namespace serialserver {
namespace {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

TEST(ParseDuration, Milliseconds) { EXPECT_EQ(parse_duration("500ms"), nanoseconds(500ms)); }

TEST(ParseDuration, Seconds) { EXPECT_EQ(parse_duration("5s"), nanoseconds(5s)); }

TEST(ParseDuration, Minutes) { EXPECT_EQ(parse_duration("30m"), nanoseconds(30min)); }

TEST(ParseDuration, HoursAndMinutes) {
  EXPECT_EQ(parse_duration("1h30m"), nanoseconds(90min));
  EXPECT_EQ(parse_duration("2h45m30s"), nanoseconds(2h + 45min + 30s));
  EXPECT_EQ(parse_duration("1s500ms"), nanoseconds(1500ms));
}

TEST(ParseDuration, Fractions) {
  EXPECT_EQ(parse_duration("1.5s"), nanoseconds(1500ms));
  EXPECT_EQ(parse_duration("0.1s"), nanoseconds(100ms));
  EXPECT_EQ(parse_duration(".5s"), nanoseconds(500ms));
  EXPECT_EQ(parse_duration("1.5h"), nanoseconds(90min));
  EXPECT_EQ(parse_duration("2.25ms"), nanoseconds(2250us));
}

TEST(ParseDuration, ZeroAlone) {
  EXPECT_EQ(parse_duration("0"), nanoseconds(0));
  EXPECT_EQ(parse_duration("0s"), nanoseconds(0));
  EXPECT_EQ(parse_duration("0ms"), nanoseconds(0));
}

TEST(ParseDuration, SmallUnits) {
  EXPECT_EQ(parse_duration("250us"), nanoseconds(250us));
  EXPECT_EQ(parse_duration("250\xC2\xB5s"), nanoseconds(250us));  // U+00B5 micro sign
  EXPECT_EQ(parse_duration("250\xCE\xBCs"), nanoseconds(250us));  // U+03BC Greek mu
  EXPECT_EQ(parse_duration("7ns"), nanoseconds(7));
  EXPECT_EQ(parse_duration("1ms1us1ns"), nanoseconds(1001001));
}

TEST(ParseDuration, BadInputsThrowInvalidArgument) {
  for (const char* bad :
       {"",       "5",    "ms",   "s",  "abc", "5x",   "5 s",  " 5s",  "5s ",   ".s",
        "1.2.3s", "5sec", "1h30", "h1", "5S",  "--5s", "5ms5", "1e3s", "0x10s", "999999999999h"}) {
    EXPECT_THROW(parse_duration(bad), std::invalid_argument) << "input '" << bad << "'";
  }
}

TEST(FormatDuration, DocumentedExamples) {
  EXPECT_EQ(format_duration(1500ms), "1.5s");
  EXPECT_EQ(format_duration(30min), "30m0s");
  EXPECT_EQ(format_duration(250ms), "250ms");
}

TEST(FormatDuration, AsGoDurationString) {
  EXPECT_EQ(format_duration(nanoseconds(0)), "0s");
  EXPECT_EQ(format_duration(nanoseconds(1)), "1ns");
  EXPECT_EQ(format_duration(nanoseconds(999)), "999ns");
  EXPECT_EQ(format_duration(5s), "5s");
  EXPECT_EQ(format_duration(90min), "1h30m0s");
  EXPECT_EQ(format_duration(2h + 45min + 30s), "2h45m30s");
  EXPECT_EQ(format_duration(61s), "1m1s");
  EXPECT_EQ(format_duration(nanoseconds(1500ms) * -1), "-1.5s");
  EXPECT_EQ(format_duration(nanoseconds(1234567)), "1.234567ms");
}

// Go prints every significant digit of the seconds (up to nanoseconds); the seconds never round
// up into a 60.
TEST(FormatDuration, KeepsNanosecondPrecisionInSeconds) {
  EXPECT_EQ(format_duration(nanoseconds(1234567891)), "1.234567891s");
  EXPECT_EQ(format_duration(1h + nanoseconds(1)), "1h0m0.000000001s");
  EXPECT_EQ(format_duration(1min + nanoseconds(59999999999)), "1m59.999999999s");
  EXPECT_EQ(format_duration(nanoseconds(59999999999)), "59.999999999s");
  EXPECT_EQ(format_duration(nanoseconds::min()), "-2562047h47m16.854775808s");  // as Go
  EXPECT_EQ(format_duration(nanoseconds::max()), "2562047h47m16.854775807s");
}

TEST(FormatDuration, RoundTripsThroughParse) {
  for (const nanoseconds d :
       {nanoseconds(0), nanoseconds(1), nanoseconds(1500), nanoseconds(999999), nanoseconds(250us),
        nanoseconds(1234567), nanoseconds(1500ms), nanoseconds(30min), nanoseconds(90min),
        nanoseconds(1234567891), nanoseconds(59999999999), nanoseconds(26h + 3min + 7s + 5ms)}) {
    EXPECT_EQ(parse_duration(format_duration(d)), d) << format_duration(d);
  }
}

}  // namespace
}  // namespace serialserver
