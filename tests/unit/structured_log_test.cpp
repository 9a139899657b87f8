// Structured log lines: the key=value (logfmt) and JSON renderings of LogField values, their
// quoting and escaping (JSON parsed back with nlohmann-json, invalid UTF-8 included), the
// default Logger::write_fields, the built-in stderr logger's whole lines, and SpdlogLogger
// through a capturing spdlog sink: spdlog's pattern owns the text line, json_formatter() the
// JSON one, and the level gating is spdlog's.

#include <serialserver/logger.hpp>

#include <cmath>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <spdlog/formatter.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>

namespace serialserver {
namespace {

using Json = nlohmann::json;

/// The timestamp of the stderr logger and of json_formatter(): UTC, microseconds.
const std::regex kTimestamp("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z");

/// Checks `line` = before + <timestamp> + after.
::testing::AssertionResult has_shape(const std::string& line, std::string_view before,
                                     std::string_view after) {
  if (!line.starts_with(before) || !line.ends_with(after) ||
      line.size() < before.size() + after.size()) {
    return ::testing::AssertionFailure() << "line: " << line;
  }
  const std::string ts = line.substr(before.size(), line.size() - before.size() - after.size());
  if (!std::regex_match(ts, kTimestamp)) {
    return ::testing::AssertionFailure() << "timestamp '" << ts << "' in " << line;
  }
  return ::testing::AssertionSuccess();
}

std::string render(LogFormat format, std::string_view message,
                   std::initializer_list<LogField> fields) {
  std::string out;
  append_log_fields(out, format, message, std::span<const LogField>(fields.begin(), fields.size()));
  return out;
}

TEST(StructuredLog, TextIsKeyValueWithQuotesWhereNeeded) {
  const std::uint8_t code = 7;
  const std::string client = "127.0.0.1:5000->127.0.0.1:7070";
  EXPECT_EQ(render(LogFormat::text, "task",
                   {{"client", client},
                    {"code", code},
                    {"name", "echo"},
                    {"delta", std::int64_t{-3}},
                    {"ok", true},
                    {"ratio", 0.5},
                    {"empty", ""},
                    {"spaced", "peer closed the connection"},
                    {"tricky", "a=b \"c\"\\\n"}}),
            "msg=\"task\" client=127.0.0.1:5000->127.0.0.1:7070 code=7 name=echo delta=-3 ok=true "
            "ratio=0.5 empty=\"\" spaced=\"peer closed the connection\" "
            "tricky=\"a=b \\\"c\\\"\\\\\\n\"");
}

TEST(StructuredLog, JsonMembersWithEscapedStrings) {
  EXPECT_EQ(render(LogFormat::json, "connection \"closed\"",
                   {{"id", std::uint64_t{3}},
                    {"reason", "peer_closed"},
                    {"ok", false},
                    {"control", std::string_view("\x01\t", 2)}}),
            R"("msg":"connection \"closed\"","id":3,"reason":"peer_closed","ok":false,)"
            R"("control":"\u0001\t")");
}

TEST(StructuredLog, JsonIsValidForAnyBytes) {
  // A lone continuation byte, a truncated sequence, an overlong encoding, NUL, DEL, ESC, and
  // valid UTF-8 (e-acute).
  const std::string bytes(
      "a\x80"
      "b\xe2\x82\xc0\xaf\0\x7f\x1b[31m\xc3\xa9",
      16);
  const std::string members =
      render(LogFormat::json, bytes, {{"value", bytes}, {"nan", std::nan("")}});
  EXPECT_EQ(members.find('\n'), std::string::npos);
  EXPECT_NE(members.find("\\u0000\x7f\\u001b[31m\xc3\xa9"), std::string::npos) << members;
  const Json object = Json::parse("{" + members + "}");  // throws if not valid JSON
  const auto msg = object.at("msg").get<std::string>();
  // Invalid UTF-8 bytes become U+FFFD (EF BF BD); everything else survives.
  EXPECT_TRUE(
      msg.starts_with("a\xef\xbf\xbd"
                      "b\xef\xbf\xbd"))
      << msg;
  EXPECT_TRUE(msg.ends_with(std::string("\0\x7f\x1b[31m\xc3\xa9", 9))) << msg;
  EXPECT_EQ(object.at("value"), object.at("msg"));
  EXPECT_TRUE(object.at("nan").is_null());
}

TEST(StructuredLog, ParseLogFormat) {
  EXPECT_EQ(parse_log_format("text"), LogFormat::text);
  EXPECT_EQ(parse_log_format("json"), LogFormat::json);
  EXPECT_THROW(parse_log_format("xml"), std::invalid_argument);
}

/// A Logger that only implements write(): the default write_fields renders text for it.
class LinesLogger final : public Logger {
 public:
  bool enabled(LogLevel level) const noexcept override { return level >= LogLevel::info; }
  void write(LogLevel /*level*/, std::string_view message) noexcept override {
    lines.emplace_back(message);
  }
  std::vector<std::string> lines;
};

TEST(StructuredLog, DefaultWriteFieldsRendersTextAndEventChecksTheLevel) {
  LinesLogger logger;
  logger.event(LogLevel::info, "connection opened", {{"id", 1}, {"remote", "127.0.0.1:5000"}});
  logger.event(LogLevel::debug, "task", {{"id", 1}});  // below the level: not written
  ASSERT_EQ(logger.lines.size(), 1U);
  EXPECT_EQ(logger.lines[0], "msg=\"connection opened\" id=1 remote=127.0.0.1:5000");
}

TEST(StructuredLog, StderrLoggerWritesWholeTextLines) {
  const auto logger = make_stderr_logger(LogLevel::info, LogFormat::text);
  ::testing::internal::CaptureStderr();
  logger->event(LogLevel::info, "connection closed", {{"id", 4}, {"reason", "peer_closed"}});
  logger->warn("listening on {}", "127.0.0.1:7070");
  logger->event(LogLevel::debug, "task", {{"id", 4}});  // below info
  const std::string out = ::testing::internal::GetCapturedStderr();
  std::istringstream in(out);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  ASSERT_EQ(lines.size(), 2U) << out;
  EXPECT_TRUE(
      has_shape(lines[0], "ts=", " level=info msg=\"connection closed\" id=4 reason=peer_closed"));
  EXPECT_TRUE(has_shape(lines[1], "ts=", " level=warning msg=\"listening on 127.0.0.1:7070\""));
}

TEST(StructuredLog, StderrLoggerWritesJsonLines) {
  const auto logger = make_stderr_logger(LogLevel::debug, LogFormat::json);
  ::testing::internal::CaptureStderr();
  logger->event(LogLevel::debug, "task",
                {{"client", "a->b"}, {"code", std::uint8_t{1}}, {"bad", "\xff"}});
  logger->error("quote \" and backslash \\");
  const std::string out = ::testing::internal::GetCapturedStderr();
  std::istringstream in(out);
  std::vector<Json> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(Json::parse(line));
  }
  ASSERT_EQ(lines.size(), 2U) << out;
  EXPECT_TRUE(std::regex_match(lines[0].at("ts").get<std::string>(), kTimestamp)) << out;
  EXPECT_EQ(lines[0].at("level"), "debug");
  EXPECT_EQ(lines[0].at("msg"), "task");
  EXPECT_EQ(lines[0].at("client"), "a->b");
  EXPECT_EQ(lines[0].at("code"), 1);
  EXPECT_EQ(lines[0].at("bad"), "\uFFFD");
  EXPECT_EQ(lines[1].at("level"), "error");
  EXPECT_EQ(lines[1].at("msg"), "quote \" and backslash \\");
  EXPECT_EQ(lines[1].size(), 3U);
}

/// An spdlog logger named "test" writing into a string stream, with `pattern` or, if empty,
/// SpdlogLogger::json_formatter().
struct Captured {
  Captured(LogFormat format, std::string_view pattern,
           spdlog::level::level_enum level = spdlog::level::info) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    spd = std::make_shared<spdlog::logger>("test", sink);
    spd->set_level(level);
    if (pattern.empty()) {
      spd->set_formatter(SpdlogLogger::json_formatter());
    } else {
      spd->set_pattern(std::string(pattern));
    }
    logger = std::make_shared<SpdlogLogger>(spd, format);
  }
  std::vector<std::string> lines() const {
    std::vector<std::string> result;
    std::istringstream in(out.str());
    for (std::string line; std::getline(in, line);) {
      result.push_back(line);
    }
    return result;
  }
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> spd;
  std::shared_ptr<SpdlogLogger> logger;
};

TEST(StructuredLog, SpdlogOwnsTheTextLine) {
  Captured c(LogFormat::text, "[%n] [%l] %v");
  c.logger->event(LogLevel::info, "connection closed",
                  {{"id", 4}, {"reason", "peer_closed"}, {"detail", "peer closed the connection"}});
  c.logger->info("listening on {}", "127.0.0.1:7070");
  c.logger->event(LogLevel::debug, "task", {{"id", 4}});  // below info
  const auto lines = c.lines();
  ASSERT_EQ(lines.size(), 2U) << c.out.str();
  // The message once, as it is: no msg="..." inside spdlog's own line.
  EXPECT_EQ(lines[0],
            "[test] [info] connection closed id=4 reason=peer_closed "
            "detail=\"peer closed the connection\"");
  EXPECT_EQ(lines[1], "[test] [info] listening on 127.0.0.1:7070");
}

TEST(StructuredLog, SpdlogJsonFormatterWritesJsonLines) {
  Captured c(LogFormat::json, "", spdlog::level::debug);
  c.logger->event(LogLevel::debug, "task",
                  {{"client", "a->b"}, {"code", std::uint8_t{1}}, {"outcome", "ok"}});
  c.logger->warn("quote \" and backslash \\");
  c.spd->info("straight through spdlog: {}", "\x01\xfe");  // the application's own line
  const auto lines = c.lines();
  ASSERT_EQ(lines.size(), 3U) << c.out.str();
  std::vector<Json> objects;
  for (const auto& line : lines) {
    objects.push_back(Json::parse(line));
  }
  for (const auto& object : objects) {
    EXPECT_TRUE(std::regex_match(object.at("ts").get<std::string>(), kTimestamp)) << object;
    EXPECT_EQ(object.at("logger"), "test");
  }
  EXPECT_TRUE(has_shape(lines[0], R"({"ts":")",
                        R"(","level":"debug","logger":"test","msg":"task","client":"a->b",)"
                        R"("code":1,"outcome":"ok"})"));
  EXPECT_EQ(objects[1].at("level"), "warning");
  EXPECT_EQ(objects[1].at("msg"), "quote \" and backslash \\");
  EXPECT_EQ(objects[2].at("level"), "info");
  EXPECT_EQ(objects[2].at("msg"), "straight through spdlog: \x01\uFFFD");
  EXPECT_EQ(objects[2].size(), 4U);
}

TEST(StructuredLog, SpdlogLevelGating) {
  Captured c(LogFormat::text, "%v", spdlog::level::info);
  EXPECT_TRUE(c.logger->enabled(LogLevel::info));
  EXPECT_FALSE(c.logger->enabled(LogLevel::debug));
  EXPECT_FALSE(c.logger->enabled(LogLevel::off));
  c.spd->set_level(spdlog::level::debug);
  EXPECT_TRUE(c.logger->enabled(LogLevel::debug));
}

}  // namespace
}  // namespace serialserver
