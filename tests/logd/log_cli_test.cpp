// serialserver-log, the real binary against a real serialserver-logd on 127.0.0.1: text output
// one message a line, JSON output, send --stdin, time input, tail --follow across a server
// restart, and the usage errors found before anything is sent.

#include "log_cli_support.hpp"
#include "logd_protocol.hpp"

#include <ctime>

#include <nlohmann/json.hpp>

namespace {

using logcli_test::cli;
using logcli_test::lines;
using logcli_test::Logd;
using logcli_test::run;
using logcli_test::TempDir;
using namespace std::chrono_literals;

logd::Message message(std::string log, std::string text, std::int64_t time_ns = 0) {
  logd::Message m;
  m.log = std::move(log);
  m.text = std::move(text);
  m.time_ns = time_ns;
  return m;
}

/// Decodes standard base64 (as the JSON "raw" member holds it).
std::string unbase64(const std::string& text) {
  static const std::string kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::uint32_t bits = 0;
  int count = 0;
  for (const char c : text) {
    if (c == '=') {
      break;
    }
    bits = (bits << 6) | static_cast<std::uint32_t>(kAlphabet.find(c));
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xFF);
    }
  }
  return out;
}

std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> out;
  for (const auto& line : lines(text)) {
    out.push_back(nlohmann::json::parse(line));  // throws (and fails the test) if not JSON
  }
  return out;
}

// ---- 1. text output: one message a line ---------------------------------------------------------

TEST(LogCli, TextOutputEscapesControlsAndQuotesFields) {
  TempDir dir;
  Logd logd(dir);
  auto client = logd.client();
  logd::Message m = message("weird", "a\nb\x1b[31m \xff \xc2\x9b back\\slash \"q\" tab\t", 1000);
  m.fields = {{"user", "john doe"}, {"eq", "a=b"}, {"empty", ""}, {"nl", "x\ny"}, {"k v", "1"}};
  client.append(m);
  const std::string expected =
      "1 1970-01-01T00:00:00.000001000Z INFO a\\nb\\x1b[31m \\xff \\xc2\\x9b back\\\\slash \"q\" "
      "tab\\t user=\"john doe\" eq=\"a=b\" empty=\"\" nl=x\\ny \"k v\"=1\n";
  const auto read = run(dir, cli() + " --addr " + logd.address() + " read weird");
  EXPECT_EQ(read.status, 0) << read.err;
  EXPECT_EQ(read.out, expected);
  const auto tail = run(dir, cli() + " --addr " + logd.address() + " tail weird -n 1");
  EXPECT_EQ(tail.out, expected);

  // The issue's own case, sent by the CLI: one line, no raw escape.
  const auto sent =
      run(dir,
          cli() + " --addr " + logd.address() + " send weird --stdin-whole --field 'user=john doe'",
          "a\nb\x1b[31m");
  EXPECT_EQ(sent.status, 0) << sent.err;
  EXPECT_EQ(sent.out, "2\n");
  const auto second = run(dir, cli() + " --addr " + logd.address() + " tail weird -n 1");
  EXPECT_NE(second.out.find(" INFO a\\nb\\x1b[31m user=\"john doe\"\n"), std::string::npos)
      << second.out;
  EXPECT_EQ(second.out.find('\x1b'), std::string::npos);
  EXPECT_EQ(lines(second.out).size(), 1U);
  // A repeated --field takes one value each time: the text after it stays the text.
  const auto fields = run(dir, cli() + " --addr " + logd.address() +
                                   " send weird --field a=1 --field 'b=x y' 'the text'");
  EXPECT_EQ(fields.out, "3\n") << fields.err;
  const auto third = run(dir, cli() + " --addr " + logd.address() + " tail weird -n 1");
  EXPECT_NE(third.out.find(" INFO the text a=1 b=\"x y\"\n"), std::string::npos) << third.out;
}

// ---- 2. JSON output -----------------------------------------------------------------------------

TEST(LogCli, JsonOutputParsesForAnyBytes) {
  TempDir dir;
  Logd logd(dir);
  auto client = logd.client();
  logd::Message plain = message("app", "tab\there \"quoted\" \x1b[0m", 1714564800123456789);
  plain.fields = {{"user", "john doe"}};
  plain.level = 4;
  client.append(plain);
  const std::string bad_text = "bad \xff\xfe end \xc3";
  logd::Message bad = message("app", bad_text, 1714564801000000000);
  bad.fields = {{"k\xff", "v\x80"}, {"dup", "1"}, {"dup", "2"}};
  client.append(bad);

  for (const char* sub : {" read app --output json", " tail app -n 5 -o json"}) {
    const auto outcome = run(dir, cli() + " --addr " + logd.address() + sub);
    ASSERT_EQ(outcome.status, 0) << outcome.err;
    const auto records = json_lines(outcome.out);
    ASSERT_EQ(records.size(), 2U) << outcome.out;
    const auto& first = records[0];
    EXPECT_EQ(first["id"], 1);
    EXPECT_EQ(first["time"], "2024-05-01T12:00:00.123456789Z");
    EXPECT_EQ(first["level"], "ERROR");
    EXPECT_EQ(first["log"], "app");
    EXPECT_EQ(first["text"], "tab\there \"quoted\" \x1b[0m");
    EXPECT_EQ(first["fields"], nlohmann::json({{"user", "john doe"}}));
    EXPECT_FALSE(first.contains("raw"));
    // Invalid UTF-8: U+FFFD in the plain members, the exact bytes in "raw".
    const auto& second = records[1];
    EXPECT_EQ(second["text"], "bad \xef\xbf\xbd\xef\xbf\xbd end \xef\xbf\xbd");
    ASSERT_TRUE(second.contains("raw"));
    EXPECT_EQ(unbase64(second["raw"]["text"]), bad_text);
    EXPECT_EQ(unbase64(second["raw"]["log"]), "app");
    ASSERT_EQ(second["raw"]["fields"].size(), 3U);
    EXPECT_EQ(unbase64(second["raw"]["fields"][0][0]), "k\xff");
    EXPECT_EQ(unbase64(second["raw"]["fields"][0][1]), "v\x80");
    EXPECT_EQ(unbase64(second["raw"]["fields"][2][1]), "2");
    EXPECT_EQ(second["fields"]["dup"], "2");
  }
  const auto bad_output = run(dir, cli() + " --addr " + logd.address() + " read app -o yaml");
  EXPECT_EQ(bad_output.status, 64);
}

// ---- 3. send --stdin ----------------------------------------------------------------------------

TEST(LogCli, SendStdinStoresEveryLineInBatches) {
  TempDir dir;
  Logd logd(dir);
  const std::string base = cli() + " --addr " + logd.address();
  std::string input;
  constexpr int kLines = 25000;  // three batches of at most 10000
  for (int i = 0; i < kLines; ++i) {
    input += "line " + std::to_string(i) + (i % 2 == 0 ? "\r\n" : "\n");
    if (i == 100) {
      input += "\n";  // empty lines are skipped
    }
  }
  input += "last without newline";
  const auto sent = run(dir, base + " send bulk --level warn --field src=stdin --stdin", input);
  ASSERT_EQ(sent.status, 0) << sent.err;
  EXPECT_EQ(sent.out, std::to_string(kLines + 1) + "\n");
  EXPECT_EQ(run(dir, base + " list").out, "bulk\t25001\t25001\n");
  const auto last = run(dir, base + " tail bulk -n 2");
  EXPECT_NE(last.out.find("WARN line 24999 src=stdin\n"), std::string::npos) << last.out;
  EXPECT_NE(last.out.find("WARN last without newline src=stdin\n"), std::string::npos);
  const auto first = run(dir, base + " read bulk --limit 1");
  EXPECT_NE(first.out.find("WARN line 0 src=stdin\n"), std::string::npos) << first.out;

  // A line over the text limit: the lines before it are stored, and the failure says how many.
  const std::string too_long = "ok 1\nok 2\n" + std::string(logd::kMaxTextBytes + 1, 'x') + "\n";
  const auto failed = run(dir, base + " send long --stdin", too_long);
  EXPECT_EQ(failed.status, 1);
  EXPECT_NE(failed.err.find("line 3 of standard input"), std::string::npos) << failed.err;
  EXPECT_NE(failed.err.find("after 2 messages stored"), std::string::npos) << failed.err;
  EXPECT_EQ(run(dir, base + " list").out, "bulk\t25001\t25001\nlong\t2\t25003\n");

  // '-' is not a message: a usage error, nothing stored.
  const auto dash = run(dir, base + " send bulk -", "from stdin\n");
  EXPECT_EQ(dash.status, 64);
  EXPECT_NE(dash.err.find("--stdin"), std::string::npos) << dash.err;
  const auto both = run(dir, base + " send bulk text --stdin");
  EXPECT_EQ(both.status, 64);
  EXPECT_EQ(run(dir, base + " send bulk --stdin --stdin-whole").status, 64);
  EXPECT_EQ(run(dir, base + " send bulk").status, 64);
  EXPECT_EQ(run(dir, base + " list").out, "bulk\t25001\t25001\nlong\t2\t25003\n");
}

// ---- 4. time input ------------------------------------------------------------------------------

std::string midnight_utc(int days_ago) {
  const std::time_t t = std::time(nullptr) - static_cast<std::time_t>(days_ago) * 86400;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT00:00:00.000000000Z", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday);
  return buf;
}

TEST(LogCli, TimeFormsAcceptedAndRejected) {
  TempDir dir;
  Logd logd(dir);
  const std::string base = cli() + " --addr " + logd.address();
  const std::vector<std::pair<std::string, std::string>> exact = {
      {"2024-05-01", "2024-05-01T00:00:00.000000000Z"},
      {"'2024-05-01 12:00:00Z'", "2024-05-01T12:00:00.000000000Z"},
      {"2024-05-01T12:00:00z", "2024-05-01T12:00:00.000000000Z"},
      {"2024-05-01T12:00:00", "2024-05-01T12:00:00.000000000Z"},
      {"2024-05-01T12:00:00.123456789+02:00", "2024-05-01T10:00:00.123456789Z"},
      {"2024-05-01T12:00:00.5-01:30", "2024-05-01T13:30:00.500000000Z"},
      {"2024-02-29T23:59:59Z", "2024-02-29T23:59:59.000000000Z"},
      {"@1714564800.5", "2024-05-01T12:00:00.500000000Z"},
      {"@1", "1970-01-01T00:00:01.000000000Z"},
      {"@-1", "1969-12-31T23:59:59.000000000Z"},
  };
  for (const auto& [form, expected] : exact) {
    const auto sent = run(dir, base + " send t --time " + form + " x");
    ASSERT_EQ(sent.status, 0) << form << ": " << sent.err;
    const auto tail = run(dir, base + " tail t -n 1 -o json");
    EXPECT_EQ(json_lines(tail.out).at(0)["time"], expected) << form;
  }
  // The relative forms, bracketed by the test's clock.
  for (const auto& [form, days_ago] : {std::pair{"today", 0}, std::pair{"yesterday", 1}}) {
    const std::string before = midnight_utc(days_ago);
    ASSERT_EQ(run(dir, base + " send t --time " + form + " x").status, 0);
    const std::string after = midnight_utc(days_ago);
    const std::string got = json_lines(run(dir, base + " tail t -n 1 -o json").out).at(0)["time"];
    EXPECT_TRUE(got == before || got == after) << form << ": " << got;
  }
  // now and 1h: read back with --since/--until windows around them.
  ASSERT_EQ(run(dir, base + " send rel --time now now").status, 0);
  ASSERT_EQ(run(dir, base + " send rel --time 1h hour-ago").status, 0);
  const auto recent = run(dir, base + " read rel --since 5m");
  EXPECT_EQ(lines(recent.out).size(), 1U) << recent.out;
  EXPECT_NE(recent.out.find(" now\n"), std::string::npos);
  const auto older = run(dir, base + " read rel --since 2h --until 59m");
  EXPECT_EQ(lines(older.out).size(), 1U) << older.out;
  EXPECT_NE(older.out.find(" hour-ago\n"), std::string::npos);
  const auto dated = run(dir, base + " read t --since 2024-05-01 --until '2024-05-01 12:00:00Z'");
  EXPECT_EQ(lines(dated.out).size(), 5U) << dated.out;  // 00:00, 10:00 and three at 12:00

  for (const std::string bad : {"2024-13-45T99:99:99Z", "2024-02-30", "@1e30", "@abc",
                                "@99999999999", "2024-05-01T12:00:00+2", "2262-05-01", "1e30",
                                "2024-05-01T25:00:00Z", "@1.1234567891", "tomorrow"}) {
    const auto refused = run(dir, base + " send t --time '" + bad + "' x");
    EXPECT_EQ(refused.status, 64) << bad;
    EXPECT_NE(refused.err.find("--time: '" + bad + "' is not a time"), std::string::npos)
        << refused.err;
    EXPECT_NE(refused.err.find("accepted: RFC 3339"), std::string::npos) << refused.err;
    EXPECT_EQ(run(dir, base + " read t --since '" + bad + "'").status, 64) << bad;
  }
  // Nothing refused was stored.
  EXPECT_EQ(run(dir, base + " list").out, "rel\t2\t14\nt\t12\t12\n");
}

// ---- 5. tail --follow across a server restart -----------------------------------------------

TEST(LogCli, FollowSurvivesServerRestart) {
  TempDir dir;
  Logd logd(dir);
  const std::string base = cli() + " --addr " + logd.address();
  ASSERT_EQ(run(dir, base + " send web old").status, 0);
  const std::string out = dir.file("follow.out");
  const std::string err = dir.file("follow.err");
  serialserver::test::ChildProcess follower(
      "/bin/sh", {"-c", "exec " + base + " tail web -n 1 --follow > " + out + " 2> " + err});
  const auto has = [&](const std::string& path, const std::string& what) {
    return serialserver::test::eventually(
        [&] { return logcli_test::read_file(path).find(what) != std::string::npos; }, 20000ms);
  };
  ASSERT_TRUE(has(out, " INFO old\n"));
  ASSERT_EQ(run(dir, base + " send web before-restart").status, 0);
  ASSERT_TRUE(has(out, " INFO before-restart\n"));

  logd.kill9();
  std::this_thread::sleep_for(300ms);  // the follower notices and starts retrying
  logd.start();
  ASSERT_EQ(run(dir, base + " send web after-restart").status, 0);
  ASSERT_TRUE(has(out, " INFO after-restart\n")) << logcli_test::read_file(err);
  EXPECT_TRUE(has(err, "reconnecting"));
  const auto printed = lines(logcli_test::read_file(out));
  ASSERT_EQ(printed.size(), 3U) << logcli_test::read_file(out);
  EXPECT_EQ(printed[0].substr(0, 2), "1 ");
  EXPECT_EQ(printed[1].substr(0, 2), "2 ");
  EXPECT_EQ(printed[2].substr(0, 2), "3 ");
  const auto notes = lines(logcli_test::read_file(err));
  ASSERT_EQ(notes.size(), 1U) << logcli_test::read_file(err);
  EXPECT_NE(notes[0].find("lost the connection to " + logd.address()), std::string::npos);
  EXPECT_NE(notes[0].find("following after id 2"), std::string::npos);
}

// ---- 6. and 7. errors found before sending, and the conventions
// ----------------------------------

TEST(LogCli, UsageErrorsExit64BeforeSending) {
  TempDir dir;
  // Nothing listens there: had anything been sent, the status would be 1 ("cannot connect").
  const std::string base = cli() + " --addr 127.0.0.1:1";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" read app --since now --until 1h", "--since now is after --until 1h"},
      {" send app --field =v x", "the key of '=v' must have 1..255 bytes"},
      {" send app --field novalue x", "'novalue' is not KEY=VALUE"},
      {" send app --level loud x", "unknown level 'loud'"},
      {" read app --level error --max-level info", "--level error is above --max-level info"},
      {" tail app -n 20000", "10000"},
      {" send '' x", "a log name has 1..255 bytes"},
      {" send app", "TEXT is required"},
      {" --timeout 0s list", "not a positive duration"},
      {" cal", "unknown subcommand 'cal'"},
      {" list --bogus", "bogus"},
      {" delete app --before soon", "--before: 'soon' is not a time"},
      {" send app --time @0 x", "the epoch itself cannot be sent"},
  };
  for (const auto& [args, what] : cases) {
    const auto o = run(dir, base + args);
    EXPECT_EQ(o.status, 64) << args << ": " << o.err;
    EXPECT_NE(o.err.find("serialserver-log: "), std::string::npos) << args;
    EXPECT_NE(o.err.find(what), std::string::npos) << args << ": " << o.err;
    EXPECT_EQ(o.err.find("cannot connect"), std::string::npos) << args;
  }
  const auto version = run(dir, cli() + " --version");
  EXPECT_EQ(version.status, 0);
  EXPECT_EQ(version.out.rfind("serialserver-log ", 0), 0U) << version.out;
  const auto help = run(dir, cli() + " --help");
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("user=\"john doe\""), std::string::npos);
  EXPECT_NE(help.out.find("LOGD_ADDR"), std::string::npos);
}

TEST(LogCli, EnvironmentTokenFileAndStdoutFailures) {
  TempDir dir;
  logcli_test::write_file(dir.file("token"), "0123456789abcdef-token\n");
  Logd logd(dir, {"--token-file", dir.file("token")});
  const std::string env = "LOGD_ADDR=" + logd.address() + " ";
  // The address from LOGD_ADDR, the token from --token-file or LOGD_TOKEN_FILE.
  const auto no_token = run(dir, env + cli() + " list");
  EXPECT_EQ(no_token.status, 1);
  EXPECT_NE(no_token.err.find("requires a token"), std::string::npos) << no_token.err;
  const auto sent = run(dir, env + cli() + " --token-file " + dir.file("token") + " send a b");
  EXPECT_EQ(sent.status, 0) << sent.err;
  const std::string with_token = env + "LOGD_TOKEN_FILE=" + dir.file("token") + " ";
  EXPECT_EQ(run(dir, with_token + cli() + " list").out, "a\t1\t1\n");
  // A token file that cannot be read is a usage error naming it.
  const auto missing = run(dir, env + cli() + " --token-file " + dir.file("nofile") + " list");
  EXPECT_EQ(missing.status, 64);
  EXPECT_NE(missing.err.find(dir.file("nofile") + ": No such file"), std::string::npos)
      << missing.err;
  const auto missing_env =
      run(dir, env + "LOGD_TOKEN_FILE=" + dir.file("nofile") + " " + cli() + " list");
  EXPECT_EQ(missing_env.status, 64);
  EXPECT_NE(missing_env.err.find("LOGD_TOKEN_FILE: " + dir.file("nofile")), std::string::npos)
      << missing_env.err;
  // A write error on standard output fails the command.
  for (const char* sub : {" read a", " read a -o json", " list", " tail a -n 1", " send a c"}) {
    const auto full = run(dir, with_token + cli() + sub + " > /dev/full");
    EXPECT_EQ(full.status, 1) << sub;
    EXPECT_NE(full.err.find("write error on standard output"), std::string::npos)
        << sub << ": " << full.err;
  }
}

}  // namespace
