// serialbench --retry across lost connections, with the real binaries: the real demo server is
// restarted on its port under load (SIGTERM, then a new demo once the old one has exited), and
// raw servers that answer Goodbye or drop a connection under a written request check which calls
// are sent again (with and without --idempotent).

#include "raw_server.hpp"
#include "support/loopback.hpp"
#include "support/program_run.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <memory>
#include <string>
#include <thread>
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
using serialserver::test::run_program;
using serialserver::test::wait_for_port;

std::unique_ptr<ChildProcess> start_demo(std::uint16_t port) {
  return std::make_unique<ChildProcess>(
      bin_dir() + "/serialserver-demo",
      std::vector<std::string>{"--listen", "127.0.0.1:" + std::to_string(port), "--log-level",
                               "warn", "--threads", "1", "--grace", "2s"});
}

/// The JSON summary on stdout; a test failure (and an empty object) if it is not one.
nlohmann::json parse_json(const ProgramRun& r) {
  try {
    return nlohmann::json::parse(r.out);
  } catch (const nlohmann::json::exception& e) {
    ADD_FAILURE() << "not JSON: " << e.what() << "\n" << r.out << r.err;
    return nlohmann::json::object();
  }
}

/// Runs serialbench with `bench_args` against a demo on a free port, and one second into the
/// run restarts the demo: SIGTERM, wait for its exit, a new demo on the same port.
ProgramRun run_across_restart(std::vector<std::string> bench_args) {
  const std::uint16_t port = free_port();
  auto demo = start_demo(port);
  EXPECT_TRUE(wait_for_port(port));
  bench_args.insert(bench_args.begin(), "127.0.0.1:" + std::to_string(port));
  ProgramRun run;
  std::thread bench([&] { run = run_program("serialbench", bench_args); });
  std::this_thread::sleep_for(1s);
  demo->signal(SIGTERM);
  EXPECT_EQ(demo->wait_exit(15s), 0);
  demo = start_demo(port);
  EXPECT_TRUE(wait_for_port(port));
  bench.join();
  return run;
}

TEST(SerialbenchReconnect, RetryRidesThroughARestart) {
  for (const char* engine : {"epoll", "auto"}) {
    SCOPED_TRACE(engine);
    const auto run = run_across_restart(
        {"--retry", "--idempotent", "-c", "20", "-d", "4s", "-e", engine, "--json", "-q"});
    EXPECT_EQ(run.status, 0) << run.out << run.err;
    const auto summary = parse_json(run);
    // No call is lost and every connection comes back. Whether any call is sent again depends
    // on timing: a draining server says Goodbye only to idle connections, so a call is retried
    // only if the client wrote it while that Goodbye was on its way. The retry of such calls
    // has tests of its own below, against raw servers that make it certain.
    EXPECT_EQ(summary.value("errors", -1), 0) << run.out;
    EXPECT_GT(summary.value("reconnects", 0), 0) << run.out;
    EXPECT_GT(summary.value("requests", 0), 0) << run.out;
    EXPECT_EQ(summary["answers"].value("goodbye", -1), 0) << run.out;
  }
}

TEST(SerialbenchReconnect, WithoutRetryARestartLosesCalls) {
  const auto run = run_across_restart({"-c", "20", "-d", "3s", "--json", "-q"});
  EXPECT_EQ(run.status, 1) << run.out << run.err;
  const auto summary = parse_json(run);
  EXPECT_GT(summary.value("errors", 0), 0) << run.out;
  EXPECT_EQ(summary.value("reconnects", -1), 0) << run.out;
}

/// A server whose first connection ends under its first request as `first` says; later
/// connections answer every request with an empty OK.
RawServer flaky_server(std::function<void(int)> first) {
  auto seen = std::make_shared<std::atomic<int>>(0);
  return RawServer([seen, first = std::move(first)](int fd) {
    if (seen->fetch_add(1) == 0) {
      first(fd);
      return;
    }
    while (RawServer::read_request(fd)) {
      RawServer::send_all(fd, {0x00, 0x00});
    }
  });
}

TEST(SerialbenchReconnect, GoodbyeAnswersAreSentAgainOnANewConnection) {
  auto server = flaky_server([](int fd) {
    if (RawServer::read_request(fd)) {
      RawServer::send_all(fd, {0x02});  // Goodbye: the task was not run
    }
  });
  const auto run = run_program("serialbench",
                               {server.address(), "-c", "1", "-n", "5", "--retry", "--json", "-q"});
  EXPECT_EQ(run.status, 0) << run.out << run.err;
  const auto summary = parse_json(run);
  EXPECT_EQ(summary.value("errors", -1), 0) << run.out;
  EXPECT_EQ(summary.value("requests", 0), 5) << run.out;
  EXPECT_EQ(summary.value("retries", 0), 1) << run.out;
  EXPECT_EQ(summary.value("reconnects", 0), 1) << run.out;
  EXPECT_EQ(server.accepted(), 2);
}

TEST(SerialbenchReconnect, AWrittenUnansweredCallIsSentAgainOnlyWhenIdempotent) {
  // The first connection reads a request and closes without an answer: the call may have run.
  const auto drop_after_reading = [](int fd) { (void)RawServer::read_request(fd); };
  {
    auto server = flaky_server(drop_after_reading);
    const auto run = run_program(
        "serialbench", {server.address(), "-c", "1", "-n", "5", "--retry", "--json", "-q"});
    EXPECT_EQ(run.status, 1) << run.out << run.err;
    const auto summary = parse_json(run);
    EXPECT_EQ(summary.value("errors", -1), 1) << run.out;
    EXPECT_EQ(summary.value("connections_lost", -1), 1) << run.out;
    EXPECT_EQ(summary.value("requests", 0), 4) << run.out;
    EXPECT_EQ(summary.value("retries", -1), 0) << run.out;
    EXPECT_EQ(summary.value("reconnects", 0), 1) << run.out;
  }
  {
    auto server = flaky_server(drop_after_reading);
    const auto run = run_program("serialbench", {server.address(), "-c", "1", "-n", "5", "--retry",
                                                 "--idempotent", "--json", "-q"});
    EXPECT_EQ(run.status, 0) << run.out << run.err;
    const auto summary = parse_json(run);
    EXPECT_EQ(summary.value("errors", -1), 0) << run.out;
    EXPECT_EQ(summary.value("requests", 0), 5) << run.out;
    EXPECT_EQ(summary.value("retries", 0), 1) << run.out;
    EXPECT_EQ(summary.value("reconnects", 0), 1) << run.out;
  }
}

TEST(SerialbenchReconnect, ARefusedReconnectFailsTheCallsWhenTheBudgetIsSpent) {
  // The server says Goodbye (again to each new connection) and goes away for good: connects
  // are then refused until the call's 10 s budget is spent, and the call fails. (--idempotent:
  // a connection that the closing server resets under the written call does not end it early.)
  std::uint16_t port = 0;
  {
    auto server = std::make_unique<RawServer>([](int fd) {
      if (RawServer::read_request(fd)) {
        RawServer::send_all(fd, {0x02});
      }
    });
    port = server->port();
    std::thread stopper([&server] {
      while (server->accepted() == 0) {
        std::this_thread::sleep_for(5ms);
      }
      std::this_thread::sleep_for(100ms);
      server.reset();  // stops listening: later connects are refused
    });
    const auto started = std::chrono::steady_clock::now();
    const auto run =
        run_program("serialbench", {"127.0.0.1:" + std::to_string(port), "-c", "1", "-n", "1",
                                    "--retry", "--idempotent", "--json", "-q"});
    stopper.join();
    const auto took = std::chrono::steady_clock::now() - started;
    EXPECT_EQ(run.status, 1) << run.out << run.err;
    const auto summary = parse_json(run);
    EXPECT_EQ(summary.value("errors", -1), 1) << run.out;
    EXPECT_EQ(summary.value("requests", -1), 0) << run.out;
    EXPECT_GE(took, 8s);
    EXPECT_LE(took, 20s);
  }
}

}  // namespace
}  // namespace serialclient::test
