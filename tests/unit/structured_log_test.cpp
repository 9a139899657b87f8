// Structured log lines: the key=value (logfmt) and JSON renderings of LogField values, their
// quoting and escaping, the default Logger::write_fields, and SpdlogLogger's line patterns and
// level gating through a capturing spdlog sink.

#include <serialserver/logger.hpp>

#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>

namespace serialserver {
namespace {

/// The timestamp spdlog writes with the serialserver patterns: UTC, microseconds.
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

/// An spdlog logger writing into a string stream, with the serialserver pattern of `format`.
struct Captured {
  explicit Captured(LogFormat format, spdlog::level::level_enum level = spdlog::level::info) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    spd = std::make_shared<spdlog::logger>("test", sink);
    spd->set_level(level);
    SpdlogLogger::set_pattern(*spd, format);
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

TEST(StructuredLog, SpdlogTextLines) {
  Captured c(LogFormat::text);
  c.logger->event(LogLevel::info, "connection closed",
                  {{"id", 4}, {"reason", "peer_closed"}, {"detail", "peer closed the connection"}});
  c.logger->info("listening on {}", "127.0.0.1:7070");
  c.logger->event(LogLevel::debug, "task", {{"id", 4}});  // below info
  const auto lines = c.lines();
  ASSERT_EQ(lines.size(), 2U) << c.out.str();
  EXPECT_TRUE(has_shape(lines[0], "ts=",
                        " level=info msg=\"connection closed\" id=4 reason=peer_closed "
                        "detail=\"peer closed the connection\""));
  EXPECT_TRUE(has_shape(lines[1], "ts=", " level=info msg=\"listening on 127.0.0.1:7070\""));
}

TEST(StructuredLog, SpdlogJsonLines) {
  Captured c(LogFormat::json, spdlog::level::debug);
  c.logger->event(LogLevel::debug, "task",
                  {{"client", "a->b"}, {"code", std::uint8_t{1}}, {"outcome", "ok"}});
  c.logger->warn("quote \" and backslash \\");
  const auto lines = c.lines();
  ASSERT_EQ(lines.size(), 2U) << c.out.str();
  EXPECT_TRUE(has_shape(lines[0], R"({"ts":")",
                        R"(","level":"debug","msg":"task","client":"a->b","code":1,)"
                        R"("outcome":"ok"})"));
  EXPECT_TRUE(has_shape(lines[1], R"({"ts":")",
                        R"(","level":"warning","msg":"quote \" and backslash \\"})"));
}

TEST(StructuredLog, SpdlogLevelGating) {
  Captured c(LogFormat::text, spdlog::level::info);
  EXPECT_TRUE(c.logger->enabled(LogLevel::info));
  EXPECT_FALSE(c.logger->enabled(LogLevel::debug));
  EXPECT_FALSE(c.logger->enabled(LogLevel::off));
  c.spd->set_level(spdlog::level::debug);
  EXPECT_TRUE(c.logger->enabled(LogLevel::debug));
}

}  // namespace
}  // namespace serialserver
