// serialctl and serialbench, the real binaries, against the real demo server (and raw servers
// for the answers the demo never gives): output and exit statuses.

#include <serialserver/wire/block_encoder.hpp>
#include "raw_server.hpp"
#include "support/loopback.hpp"
#include "support/program_run.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace serialclient::test {
namespace {

using namespace std::chrono_literals;
using serialserver::test::bin_dir;
using serialserver::test::ChildProcess;
using serialserver::test::free_port;
using serialserver::test::wait_for_port;

using Run = serialserver::test::ProgramRun;
using serialserver::test::read_whole;

std::filesystem::path scratch(const std::string& name) {
  return serialserver::test::scratch_path("cli-" + name);
}

/// Runs bin_dir()/`program` with `args`, stdin from `in` (or /dev/null), bounded by 60 s.
Run run(const std::string& program, const std::vector<std::string>& args,
        const std::string& in = "/dev/null") {
  serialserver::test::ProgramSetup setup;
  setup.stdin_path = in;
  return serialserver::test::run_program(program, args, setup);
}

/// The real demo server on a free port.
class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = free_port();
    address_ = "127.0.0.1:" + std::to_string(port_);
    demo_ = std::make_unique<ChildProcess>(
        bin_dir() + "/serialserver-demo",
        std::vector<std::string>{"--listen", address_, "--log-level", "warn", "--threads", "2"});
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

TEST_F(Cli, CallOkPrintsRawBytesIntoAPipe) {
  const auto r = run("serialctl", {"call", address_, "1", "--data", "68 65 6c 6c 6f"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hello");
}

TEST_F(Cli, CallErrorExitsOneWithTheCode) {
  auto r = run("serialctl", {"call", address_, "3", "--data", "07"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("serialctl: error 7"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
  r = run("serialctl", {"call", address_, "9"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("serialctl: error 255 (unknown task)"), std::string::npos) << r.err;
}

TEST_F(Cli, FileAndStdinInOutFile) {
  const auto in = scratch("in.bin");
  const auto out = scratch("out.bin");
  {
    std::ofstream f(in, std::ios::binary);
    for (int i = 0; i < 300000; ++i) {
      f.put(static_cast<char>(i * 7 + i / 256));
    }
  }
  auto r = run("serialctl", {"call", address_, "1", "--file", in.string(), "--out", out.string()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_whole(out), read_whole(in));
  r = run("serialctl", {"call", address_, "1", "--stdin"}, in.string());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, read_whole(in));
  std::filesystem::remove(in);
  std::filesystem::remove(out);
}

TEST_F(Cli, KeepAliveAndGoodbye) {
  auto r = run("serialctl", {"keepalive", address_});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "OK\n");
  r = run("serialctl", {"goodbye", address_});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "goodbye\n");
}

TEST_F(Cli, TimeoutIsATransportFailure) {
  const auto r =
      run("serialctl", {"call", address_, "5", "--data", "000007d0", "--timeout", "200ms"});
  EXPECT_EQ(r.status, 3);
  EXPECT_NE(r.err.find("timeout waiting for response"), std::string::npos) << r.err;
}

TEST(CliRaw, GoodbyeExitsTwo) {
  RawServer raw([](int fd) {
    if (RawServer::read_request(fd)) {
      RawServer::send_all(fd, {0x02});
    }
  });
  const auto r = run("serialctl", {"call", raw.address(), "1", "--data", "00"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("goodbye"), std::string::npos) << r.err;
}

TEST(CliRaw, TransportFailuresExitThree) {
  const std::string nobody = "127.0.0.1:" + std::to_string(free_port());
  auto r = run("serialctl", {"call", nobody, "1"});
  EXPECT_EQ(r.status, 3);
  EXPECT_FALSE(r.err.empty());
  r = run("serialctl", {"keepalive", nobody});
  EXPECT_EQ(r.status, 3);
  RawServer closes_mid_response([](int fd) {
    if (RawServer::read_request(fd)) {
      RawServer::send_all(fd, {0x00, 0x09, 'x'});
    }
  });
  r = run("serialctl", {"call", closes_mid_response.address(), "1"});
  EXPECT_EQ(r.status, 3);
  EXPECT_NE(r.err.find("connection closed"), std::string::npos) << r.err;
}

TEST(CliUsage, MistakesExitSixtyFour) {
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"call"},
      {"call", "127.0.0.1:1"},
      {"call", "127.0.0.1:1", "250"},
      {"call", "127.0.0.1:1", "255"},
      {"call", "127.0.0.1:1", "1", "--data", "abc"},
      {"call", "127.0.0.1:1", "1", "--data", "zz"},
      {"call", "127.0.0.1:1", "1", "--data", "00", "--stdin"},
      {"call", "127.0.0.1:1", "1", "--timeout", "soon"},
      {"frobnicate"},
  };
  for (const auto& args : cases) {
    const auto r = run("serialctl", args);
    std::string joined;
    for (const auto& a : args) {
      joined += a + " ";
    }
    EXPECT_EQ(r.status, 64) << joined << "\n" << r.err;
  }
  const auto help = run("serialctl", {"--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("Examples"), std::string::npos);
  const auto call_help = run("serialctl", {"call", "--help"});
  EXPECT_EQ(call_help.status, 0);
  EXPECT_NE(call_help.out.find("--data"), std::string::npos);
}

TEST(CliUsage, FilesThatCannotBeOpenedExitSixtyFourBeforeConnecting) {
  // Port 1 has no server: the status shows that the files were checked first.
  const std::string missing = "/nonexistent-serialctl-dir/in.bin";
  auto r = run("serialctl", {"call", "127.0.0.1:1", "1", "--file", missing});
  EXPECT_EQ(r.status, 64) << r.err;
  EXPECT_NE(r.err.find("--file: " + missing + ": No such file"), std::string::npos) << r.err;
  const std::string unwritable = "/nonexistent-serialctl-dir/out.bin";
  r = run("serialctl", {"call", "127.0.0.1:1", "1", "--data", "00", "--out", unwritable});
  EXPECT_EQ(r.status, 64) << r.err;
  EXPECT_NE(r.err.find("cannot create " + unwritable), std::string::npos) << r.err;
}

TEST_F(Cli, BenchEchoValidatedJson) {
  const auto r = run("serialbench", {address_, "--connections", "4", "--pipeline", "8", "--size",
                                     "300", "--task", "1", "--requests", "4000", "--json"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("\"requests\":4000,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"errors\":0,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"p99_9\":"), std::string::npos) << r.out;
}

TEST_F(Cli, BenchDurationSummary) {
  const auto r = run("serialbench", {address_, "-c", "3", "-d", "300ms", "--threads", "2"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("requests/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("p99.9"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("errors        0"), std::string::npos) << r.out;
}

TEST_F(Cli, BenchCountsWrongAnswers) {
  // Task 3 answers Error; an echo was expected.
  const auto r = run("serialbench",
                     {address_, "-t", "3", "-s", "1", "--expect", "echo", "-n", "50", "--json"});
  EXPECT_EQ(r.status, 1) << r.err << r.out;
  EXPECT_NE(r.out.find("\"errors\":50,"), std::string::npos) << r.out;
}

TEST(CliRaw, BenchCatchesSwappedAnswers) {
  // Echoes two pipelined requests in the wrong order: both answers are well-formed, and only
  // the sequence numbers inside them tell.
  RawServer swapper([](int fd) {
    for (;;) {
      auto first = RawServer::read_request(fd);
      auto second = RawServer::read_request(fd);
      if (!first || !second) {
        return;
      }
      for (const auto* r : {&*second, &*first}) {
        std::vector<std::uint8_t> out{0x00};
        std::vector<std::uint8_t> body(serialserver::wire::encoded_size(r->second.size()));
        serialserver::wire::encode_message(r->second, body);
        out.insert(out.end(), body.begin(), body.end());
        RawServer::send_all(fd, out);
      }
    }
  });
  const auto r = run("serialbench", {swapper.address(), "-c", "1", "-P", "2", "-t", "1", "-s", "16",
                                     "-n", "2", "--json"});
  EXPECT_EQ(r.status, 1) << r.err << r.out;
  EXPECT_NE(r.out.find("\"errors\":2,"), std::string::npos) << r.out;
}

TEST(CliRaw, BenchOverAUnixSocket) {
  const auto path = scratch("bench.sock");
  ChildProcess demo(bin_dir() + "/serialserver-demo",
                    {"--listen", path.string(), "--log-level", "warn", "--threads", "1"});
  ASSERT_TRUE(serialserver::test::eventually([&] { return std::filesystem::exists(path); }, 10s));
  const auto r = run("serialbench", {path.string(), "-c", "2", "-P", "4", "-t", "1", "-s", "20",
                                     "-n", "1000", "--json"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("\"errors\":0,"), std::string::npos) << r.out;
  demo.signal(SIGTERM);
  demo.wait_exit(10s);
}

/// Echoes each request with its last content byte flipped: well-formed answers with wrong bytes.
void corrupting_echo(int fd) {
  while (auto request = RawServer::read_request(fd)) {
    auto content = request->second;
    if (!content.empty()) {
      content.back() ^= 0x5a;
    }
    std::vector<std::uint8_t> out{0x00};
    std::vector<std::uint8_t> body(serialserver::wire::encoded_size(content.size()));
    serialserver::wire::encode_message(content, body);
    out.insert(out.end(), body.begin(), body.end());
    RawServer::send_all(fd, out);
  }
}

/// serialbench on each of its engines against the real demo server (TCP and a Unix socket) and
/// against raw servers that answer wrongly. A build or kernel without io_uring skips the
/// io_uring cases (serialbench then refuses --engine io_uring with status 64).
class BenchEngine : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "io_uring") {
      const std::string nobody = "127.0.0.1:" + std::to_string(free_port());
      const auto probe = run("serialbench", {nobody, "-n", "1", "--engine", "io_uring"});
      if (probe.status == 64) {
        GTEST_SKIP() << "no io_uring engine here: " << probe.err;
      }
      ASSERT_EQ(probe.status, 3) << probe.err;  // it got as far as connecting
    }
  }

  /// serialbench `args` --engine <param> --json; checks the engine it reports.
  ::serialclient::test::Run bench(std::vector<std::string> args) {
    args.insert(args.end(), {"--engine", GetParam(), "--json"});
    auto r = run("serialbench", args);
    EXPECT_NE(r.out.find("\"engine\":\"" + GetParam() + "\""), std::string::npos) << r.out;
    return r;
  }

  static void start_demo(std::unique_ptr<ChildProcess>& demo, const std::string& listen) {
    demo = std::make_unique<ChildProcess>(
        bin_dir() + "/serialserver-demo",
        std::vector<std::string>{"--listen", listen, "--log-level", "warn", "--threads", "2"});
  }
  static void stop_demo(std::unique_ptr<ChildProcess>& demo) {
    demo->signal(SIGTERM);
    demo->wait_exit(10s);
  }
};

TEST_P(BenchEngine, TcpEchoPipelinedExactCount) {
  const auto port = free_port();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  std::unique_ptr<ChildProcess> demo;
  start_demo(demo, address);
  ASSERT_TRUE(wait_for_port(port)) << "the demo server did not start";
  // Echo (content checked against the request), 8 in flight on each of 4 connections, and a
  // count that does not divide evenly among them.
  auto r = bench({address, "-c", "4", "-P", "8", "-s", "300", "-t", "1", "-n", "4001"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("\"requests\":4001,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"errors\":0,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"connections_lost\":0,"), std::string::npos) << r.out;
  // Large echoes: a pipeline of 64 KiB requests, more than a socket buffer holds at once.
  r = bench({address, "-c", "2", "-P", "4", "-s", "65536", "-t", "1", "-n", "200"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("\"requests\":200,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"errors\":0,"), std::string::npos) << r.out;
  // Duration mode with warm-up on two threads.
  r = bench({address, "-c", "3", "-P", "2", "-t", "1", "-s", "16", "-d", "300ms", "-w", "100ms",
             "--threads", "2"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("\"errors\":0,"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\"requests\":0,"), std::string::npos) << r.out;
  stop_demo(demo);
}

TEST_P(BenchEngine, SpinningKeepsExactCountsAndValidation) {
  const auto port = free_port();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  std::unique_ptr<ChildProcess> demo;
  start_demo(demo, address);
  ASSERT_TRUE(wait_for_port(port)) << "the demo server did not start";
  // Polling instead of sleeping changes only when the loop asks the kernel: every response is
  // still counted once and checked.
  auto r = bench(
      {address, "-c", "3", "-P", "4", "-s", "40", "-t", "1", "-n", "3001", "--spin", "500us"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("\"requests\":3001,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"errors\":0,"), std::string::npos) << r.out;
  stop_demo(demo);
  // A server that answers after 30 ms: the loop stops spinning and sleeps in between, and
  // still collects every answer.
  RawServer slow([](int fd) {
    while (auto request = RawServer::read_request(fd)) {
      std::this_thread::sleep_for(30ms);
      RawServer::send_all(fd, {0x00, 0x00});
    }
  });
  r = bench({slow.address(), "-c", "2", "-n", "6", "--spin", "1ms"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("\"requests\":6,"), std::string::npos) << r.out;
}

TEST_P(BenchEngine, UnixSocketEcho) {
  const auto path = scratch("engine-" + GetParam() + ".sock");
  std::unique_ptr<ChildProcess> demo;
  start_demo(demo, path.string());
  ASSERT_TRUE(serialserver::test::eventually([&] { return std::filesystem::exists(path); }, 10s));
  const auto r = bench({path.string(), "-c", "3", "-P", "4", "-t", "1", "-s", "20", "-n", "1000"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("\"requests\":1000,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"errors\":0,"), std::string::npos) << r.out;
  stop_demo(demo);
}

TEST_P(BenchEngine, WrongBytesAreErrors) {
  RawServer corrupter(corrupting_echo);
  auto r = bench({corrupter.address(), "-c", "2", "-P", "3", "-t", "1", "-s", "16", "-n", "30"});
  EXPECT_EQ(r.status, 1) << r.err << r.out;
  EXPECT_NE(r.out.find("\"errors\":30,"), std::string::npos) << r.out;
  // An Error answer where an echo was expected (the demo's task 3).
  const auto port = free_port();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  std::unique_ptr<ChildProcess> demo;
  start_demo(demo, address);
  ASSERT_TRUE(wait_for_port(port)) << "the demo server did not start";
  r = bench({address, "-t", "3", "-s", "1", "--expect", "echo", "-n", "50"});
  EXPECT_EQ(r.status, 1) << r.err << r.out;
  EXPECT_NE(r.out.find("\"errors\":50,"), std::string::npos) << r.out;
  stop_demo(demo);
}

TEST_P(BenchEngine, ServerClosingIsALostConnection) {
  RawServer closer([](int fd) { RawServer::read_request(fd); });
  const auto r = bench({closer.address(), "-c", "2", "-t", "1", "-s", "8", "-n", "10"});
  EXPECT_EQ(r.status, 1) << r.err << r.out;
  EXPECT_NE(r.out.find("\"connections_lost\":2,"), std::string::npos) << r.out;
}

INSTANTIATE_TEST_SUITE_P(Engines, BenchEngine, ::testing::Values("epoll", "io_uring"),
                         [](const auto& engine) { return engine.param; });

TEST(CliUsage, BenchEngineChoice) {
  const std::string nobody = "127.0.0.1:" + std::to_string(free_port());
  EXPECT_EQ(run("serialbench", {nobody, "-n", "1", "--engine", "kqueue"}).status, 64);
  EXPECT_EQ(run("serialbench", {nobody, "-n", "1", "--spin", "soon"}).status, 64);
  const auto tls = run("serialbench", {nobody, "-n", "1", "--engine", "io_uring", "--tls"});
  EXPECT_EQ(tls.status, 64);
  EXPECT_NE(tls.err.find("TLS"), std::string::npos) << tls.err;
  // auto: io_uring, or epoll with one line on stderr that says why.
  RawServer echo([](int fd) {
    while (auto request = RawServer::read_request(fd)) {
      RawServer::send_all(fd, {0x00, 0x00});
    }
  });
  const auto r = run("serialbench", {echo.address(), "-n", "20", "--json"});
  EXPECT_EQ(r.status, 0) << r.err << r.out;
  if (r.out.find("\"engine\":\"epoll\"") != std::string::npos) {
    EXPECT_NE(r.err.find("using the epoll engine"), std::string::npos) << r.err;
  } else {
    EXPECT_NE(r.out.find("\"engine\":\"io_uring\""), std::string::npos) << r.out;
    EXPECT_TRUE(r.err.empty()) << r.err;
  }
  const auto help = run("serialbench", {"--help"});
  EXPECT_NE(help.out.find("--engine"), std::string::npos) << help.out;
}

TEST(CliUsage, BenchExitStatuses) {
  EXPECT_EQ(run("serialbench", {}).status, 64);
  EXPECT_EQ(run("serialbench", {"127.0.0.1:1", "-d", "1s", "-n", "5"}).status, 64);
  EXPECT_EQ(run("serialbench", {"127.0.0.1:1", "-t", "250"}).status, 64);
  EXPECT_EQ(run("serialbench", {"127.0.0.1:1", "-d", "later"}).status, 64);
  EXPECT_EQ(run("serialbench", {"nonsense", "-n", "1"}).status, 64);
  const std::string nobody = "127.0.0.1:" + std::to_string(free_port());
  EXPECT_EQ(run("serialbench", {nobody, "-n", "1"}).status, 3);
  const auto help = run("serialbench", {"--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("Examples"), std::string::npos);
}

}  // namespace
}  // namespace serialclient::test
