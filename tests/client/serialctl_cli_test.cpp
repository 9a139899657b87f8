// serialctl and serialserver-demo, the real binaries: the command-line conventions every
// program follows (usage errors, file arguments, --version, SERIAL_ADDR, write errors on
// standard output, one line per error), and serialctl list.

#include <serialserver/wire/block_encoder.hpp>
#include "raw_server.hpp"
#include "support/loopback.hpp"
#include "support/program_run.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace serialclient::test {
namespace {

using namespace std::chrono_literals;
using serialserver::test::bin_dir;
using serialserver::test::ChildProcess;
using serialserver::test::free_port;
using serialserver::test::ProgramRun;
using serialserver::test::ProgramSetup;
using serialserver::test::run_program;
using serialserver::test::scratch_path;
using serialserver::test::wait_for_port;

ProgramRun ctl(const std::vector<std::string>& args, const ProgramSetup& setup = {}) {
  return run_program("serialctl", args, setup);
}

std::size_t lines_in(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

/// The real demo server on a free port.
class Conventions : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = free_port();
    address_ = "127.0.0.1:" + std::to_string(port_);
    demo_ = std::make_unique<ChildProcess>(
        bin_dir() + "/serialserver-demo",
        std::vector<std::string>{"--listen", address_, "--log-level", "warn", "--threads", "1"});
    ASSERT_TRUE(wait_for_port(port_)) << "the demo server did not start";
  }
  void TearDown() override {
    demo_->signal(SIGTERM);
    demo_->wait_exit(10s);
  }

  std::uint16_t port_ = 0;
  std::string address_;
  std::unique_ptr<ChildProcess> demo_;
};

TEST(ProgramUsage, UsageErrorsExitSixtyFourInOneLine) {
  // CLI11's own statuses (104..109) must not leak.
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"serialctl", {"--bogus"}},
      {"serialctl", {"call", "127.0.0.1:1", "1", "--bogus"}},
      {"serialctl", {"call", "127.0.0.1:1", "x"}},
      {"serialctl", {}},
      {"serialbench", {"--bogus"}},
      {"serialbench", {"127.0.0.1:1", "-c", "many"}},
      {"serialbench", {"127.0.0.1:1", "-n", "1", "--expect", "sometimes"}},
      {"serialserver-demo", {"--bogus"}},
      {"serialserver-demo", {"--threads", "x"}},
      {"serialserver-demo", {"--grace", "soon"}},
      {"serialserver-demo", {"--log-level", "loud"}},
  };
  for (const auto& [program, args] : cases) {
    const auto r = run_program(program, args);
    std::string joined = program;
    for (const auto& a : args) {
      joined += " " + a;
    }
    EXPECT_EQ(r.status, 64) << joined << "\n" << r.err;
    EXPECT_EQ(r.err.rfind(program + ": ", 0), 0U) << joined << "\n" << r.err;
    EXPECT_EQ(lines_in(r.err), 2U) << joined << "\n" << r.err;  // the error, a hint to --help
  }
}

TEST(ProgramUsage, UnknownSubcommandIsNamed) {
  const auto r = ctl({"cal", "127.0.0.1:1", "1"});
  EXPECT_EQ(r.status, 64);
  EXPECT_NE(r.err.find("serialctl: unknown subcommand 'cal'"), std::string::npos) << r.err;
}

TEST(ProgramUsage, UnknownOptionIsNamed) {
  // Alone, without a subcommand: CLI11 would report the missing subcommand instead.
  const auto r = ctl({"--bogus"});
  EXPECT_EQ(r.status, 64);
  EXPECT_NE(r.err.find("serialctl: unknown option '--bogus'"), std::string::npos) << r.err;
}

TEST(ProgramUsage, FileArgumentsAreCheckedFirstAndNamed) {
  // Port 1 has no server: a usage error naming the file shows it was checked before connecting.
  const std::string missing = "/nonexistent-serialclient-dir/ca.pem";
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"serialctl", {"--tls", "--tls-ca", missing, "call", "127.0.0.1:1", "2"}},
      {"serialctl",
       {"--tls", "--tls-cert", missing, "--tls-key", missing, "keepalive", "127.0.0.1:1"}},
      {"serialctl", {"call", "127.0.0.1:1", "1", "--file", missing}},
      {"serialbench", {"127.0.0.1:1", "-n", "1", "--tls", "--tls-ca", missing}},
      {"serialserver-demo",
       {"--listen", "127.0.0.1:1", "--tls-cert", missing, "--tls-key", missing}},
      {"serialserver-demo",
       {"--tls-cert", missing, "--tls-key", missing, "--tls-client-ca", missing}},
  };
  for (const auto& [program, args] : cases) {
    const auto r = run_program(program, args);
    EXPECT_EQ(r.status, 64) << program << "\n" << r.err;
    EXPECT_NE(r.err.find(missing + ": No such file or directory"), std::string::npos)
        << program << "\n"
        << r.err;
  }
}

TEST(ProgramUsage, VersionEverywhere) {
  for (const std::string program : {"serialctl", "serialbench", "serialserver-demo"}) {
    const auto r = run_program(program, {"--version"});
    EXPECT_EQ(r.status, 0) << program << r.err;
    EXPECT_EQ(r.out.rfind(program + " ", 0), 0U) << r.out;
    EXPECT_EQ(lines_in(r.out), 1U) << r.out;
  }
}

TEST_F(Conventions, AddressFromTheEnvironment) {
  ProgramSetup with_addr;
  with_addr.env["SERIAL_ADDR"] = address_;
  auto r = ctl({"call", "1", "--data", "6869"}, with_addr);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hi");
  r = ctl({"keepalive"}, with_addr);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "OK\n");
  // The command line wins over the environment.
  ProgramSetup wrong_addr;
  wrong_addr.env["SERIAL_ADDR"] = "127.0.0.1:1";
  r = ctl({"call", address_, "1", "--data", "6869"}, wrong_addr);
  EXPECT_EQ(r.status, 0) << r.err;
  r = run_program("serialbench", {"-n", "20", "--json"}, with_addr);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["address"], address_);
  // Neither: a usage error that says where an address may come from.
  ProgramSetup without;
  without.unset_env = {"SERIAL_ADDR"};
  for (const std::string program : {"serialctl", "serialbench"}) {
    r = run_program(program,
                    program == "serialctl" ? std::vector<std::string>{"keepalive"}
                                           : std::vector<std::string>{"-n", "1"},
                    without);
    EXPECT_EQ(r.status, 64) << program << r.err;
    EXPECT_NE(r.err.find("SERIAL_ADDR"), std::string::npos) << r.err;
  }
}

TEST_F(Conventions, WriteErrorOnStandardOutputFails) {
  ProgramSetup full;
  full.stdout_path = "/dev/full";
  auto r = run_program("serialbench", {address_, "-n", "20", "--json"}, full);
  EXPECT_NE(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("serialbench: write error on standard output"), std::string::npos) << r.err;
  r = run_program("serialbench", {address_, "-n", "20"}, full);
  EXPECT_NE(r.status, 0) << r.err;
  r = ctl({"keepalive", address_}, full);
  EXPECT_EQ(r.status, 3) << r.err;
  EXPECT_NE(r.err.find("serialctl: write error on standard output"), std::string::npos) << r.err;
  r = ctl({"call", address_, "1", "--data", "6869"}, full);
  EXPECT_NE(r.status, 0) << r.err;
  r = run_program("serialctl", {"--help"}, full);
  EXPECT_NE(r.status, 0) << r.err;
}

TEST_F(Conventions, ErrorAnswersAndFailuresInOneLine) {
  auto r = ctl({"call", address_, "9"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "serialctl: error 255 (unknown task)\n");
  r = ctl({"call", address_, "3", "--data", "07"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "serialctl: error 7\n");
  // A CA file that holds no certificate: the library's reason, in the program's one line.
  const auto bad_ca = scratch_path("bad-ca.pem");
  { std::ofstream(bad_ca) << "not a certificate\n"; }
  r = ctl({"--tls", "--tls-ca", bad_ca.string(), "call", address_, "2"});
  EXPECT_EQ(r.status, 3);
  EXPECT_EQ(lines_in(r.err), 1U) << r.err;
  EXPECT_EQ(r.err.rfind("serialctl: ", 0), 0U) << r.err;
  std::filesystem::remove(bad_ca);
  // A TLS handshake with a server that does not speak TLS.
  r = ctl({"--tls", "call", address_, "2", "--timeout", "5s"});
  EXPECT_EQ(r.status, 3);
  EXPECT_EQ(lines_in(r.err), 1U) << r.err;
  EXPECT_NE(r.err.find("TLS handshake"), std::string::npos) << r.err;
}

TEST_F(Conventions, DemoLimitsRequestsTo64MiBByDefault) {
  const auto help = run_program("serialserver-demo", {"--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("--max-request-bytes UINT=67108864"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("64 MiB"), std::string::npos) << help.out;
  // The demo runs with its defaults: 64 MiB of content is counted (task 6), one byte more is
  // refused with Error 254. The files are sparse.
  const auto big = scratch_path("64MiB.bin");
  { const std::ofstream create(big); }
  std::filesystem::resize_file(big, std::uintmax_t{64} << 20);
  auto r = ctl({"call", address_, "6", "--file", big.string()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, std::string("\x00\x00\x00\x00\x04\x00\x00\x00", 8));
  std::filesystem::resize_file(big, (std::uintmax_t{64} << 20) + 1);
  r = ctl({"call", address_, "6", "--file", big.string()});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(r.err, "serialctl: error 254 (request too large)\n");
  std::filesystem::remove(big);
}

/// A raw server that answers every request with `answer`, and records the task codes asked.
class FixedAnswer {
 public:
  explicit FixedAnswer(std::vector<std::uint8_t> answer)
      : server_([this, answer = std::move(answer)](int fd) {
          while (auto request = RawServer::read_request(fd)) {
            {
              const std::lock_guard lock(mutex_);
              codes_.push_back(request->first);
              contents_.push_back(request->second);
            }
            RawServer::send_all(fd, answer);
          }
        }) {}
  std::string address() const { return server_.address(); }
  std::vector<std::uint8_t> codes() const {
    const std::lock_guard lock(mutex_);
    return codes_;
  }
  std::vector<std::vector<std::uint8_t>> contents() const {
    const std::lock_guard lock(mutex_);
    return contents_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::uint8_t> codes_;
  std::vector<std::vector<std::uint8_t>> contents_;
  RawServer server_;  // last: stopped before the fields its handler uses
};

/// An OK answer carrying `content`, block-encoded.
std::vector<std::uint8_t> ok_answer(const std::vector<std::uint8_t>& content) {
  std::vector<std::uint8_t> out{0x00};
  std::vector<std::uint8_t> body(serialserver::wire::encoded_size(content.size()));
  serialserver::wire::encode_message(content, body);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

TEST(SerialctlList, PrintsOneTaskALine) {
  // The listing of docs/protocol.md's example: tasks 1 "echo" and 6 "count"; and 9 with no name.
  FixedAnswer server(ok_answer(
      {0x01, 0x01, 0x04, 'e', 'c', 'h', 'o', 0x06, 0x05, 'c', 'o', 'u', 'n', 't', 0x09, 0x00}));
  const auto r = ctl({"list", server.address()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "1 echo\n6 count\n9 \n");
  EXPECT_TRUE(r.err.empty()) << r.err;
  // It asked with the describe task and an empty request.
  ASSERT_EQ(server.codes().size(), 1U);
  EXPECT_EQ(server.codes()[0], serialserver::kDescribeTaskCode);
  EXPECT_TRUE(server.contents()[0].empty());
  // An empty listing: no tasks, no lines. A name with control characters is escaped.
  FixedAnswer empty(ok_answer({0x01}));
  auto e = ctl({"list", empty.address()});
  EXPECT_EQ(e.status, 0) << e.err;
  EXPECT_EQ(e.out, "");
  FixedAnswer forged(ok_answer({0x01, 0x02, 0x03, 'a', '\n', 'b'}));
  e = ctl({"list", forged.address()});
  EXPECT_EQ(e.status, 0) << e.err;
  EXPECT_EQ(e.out, "2 a\\x0ab\n");
  // ADDR from the environment, and a full stdout, as for every subcommand.
  ProgramSetup with_addr;
  with_addr.env["SERIAL_ADDR"] = server.address();
  e = ctl({"list"}, with_addr);
  EXPECT_EQ(e.status, 0) << e.err;
  EXPECT_EQ(e.out, "1 echo\n6 count\n9 \n");
  with_addr.stdout_path = "/dev/full";
  e = ctl({"list"}, with_addr);
  EXPECT_EQ(e.status, 3) << e.err;
}

TEST(SerialctlList, DescribeOffIsSaidPlainly) {
  FixedAnswer off({0x01, 0xff});  // Error 255, as for an unassigned code
  auto r = ctl({"list", off.address()});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "serialctl: the server does not describe its tasks (describe is off)\n");
  EXPECT_TRUE(r.out.empty());
  // Another Error code is reported like any Error answer.
  FixedAnswer busy({0x01, 0xfd});
  r = ctl({"list", busy.address()});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "serialctl: error 253 (busy)\n");
}

TEST_F(Conventions, ListAgainstTheDemo) {
  // The demo serves describe (task 251): its six tasks, a line each, in code order.
  const auto r = ctl({"list", address_});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "1 echo\n2 empty\n3 error\n4 produce\n5 sleep\n6 count\n");
  EXPECT_TRUE(r.err.empty()) << r.err;
}

TEST(SerialctlList, MalformedListingsAreRefused) {
  const std::vector<std::pair<std::vector<std::uint8_t>, std::string>> cases = {
      {{}, "no format byte"},
      {{0x02, 0x01, 0x01, 'x'}, "unknown listing format 2"},
      {{0x01, 0x01}, "cut off"},
      {{0x01, 0x01, 0x04, 'e', 'c'}, "cut off inside the name of task 1"},
      {{0x01, 0x06, 0x00, 0x01, 0x00}, "ascending"},
  };
  for (const auto& [content, reason] : cases) {
    FixedAnswer server(ok_answer(content));
    const auto r = ctl({"list", server.address()});
    EXPECT_EQ(r.status, 3) << reason << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("serialctl: malformed task listing from ", 0), 0U) << r.err;
    EXPECT_NE(r.err.find(reason), std::string::npos) << r.err;
    EXPECT_EQ(lines_in(r.err), 1U) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

}  // namespace
}  // namespace serialclient::test
