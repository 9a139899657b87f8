#include "options.hpp"

#include <serialserver/duration.hpp>
#include "common/program.hpp"

#include <unistd.h>

#include <cstdio>
#include <stdexcept>

#include <CLI/CLI.hpp>

namespace serialbench {
namespace {

constexpr const char* kProgram = "serialbench";

std::chrono::nanoseconds duration_arg(const std::string& text, const char* flag) {
  try {
    return serialserver::parse_duration(text);
  } catch (const std::invalid_argument& e) {
    throw CLI::ValidationError(flag, e.what());
  }
}

/// The words of the command line that need more than CLI11's checks, resolved into `config`.
struct Words {
  std::string address;
  std::string duration;
  std::string warmup = "0s";
  std::string spin = "0s";
  std::string expect;
  std::string engine = "auto";
  std::uint64_t requests = 0;
  unsigned task = 2;
  bool json = false;
  bool csv = false;
  bool quiet = false;
};

Expect expect_of(const std::string& word, unsigned task) {
  if (word == "echo") {
    return Expect::echo;
  }
  if (word == "empty") {
    return Expect::empty;
  }
  if (word == "ok") {
    return Expect::ok;
  }
  if (word == "error") {
    return Expect::error;
  }
  if (word == "any") {
    return Expect::any;
  }
  return task == 1 ? Expect::echo : task == 2 ? Expect::empty : Expect::ok;
}

/// Checks what CLI11 cannot and fills `config`; throws CLI::ValidationError (a usage error).
void resolve(const Words& words, bool requests_given, Config& config) {
  const std::string address =
      words.address.empty() ? serialserver::apps::env_or("SERIAL_ADDR", "") : words.address;
  if (address.empty()) {
    throw CLI::ValidationError("ADDR", "required (or set SERIAL_ADDR)");
  }
  try {
    config.address = serialclient::parse_address(address);
  } catch (const std::invalid_argument& e) {
    throw CLI::ValidationError("ADDR", e.what());
  }
  if (config.tls && config.address.is_unix) {
    throw CLI::ValidationError("--tls", "TLS needs a TCP address, not a Unix socket");
  }
  if (words.engine == "io_uring") {
#ifndef SERIALBENCH_HAVE_IO_URING
    throw CLI::ValidationError("--engine",
                               "io_uring: this serialbench was built without liburing (the "
                               "epoll engine only)");
#endif
    if (config.tls) {
      throw CLI::ValidationError("--engine", "io_uring does not do TLS; --tls runs on epoll");
    }
    config.engine = Engine::io_uring;
  } else if (words.engine == "epoll") {
    config.engine = Engine::epoll;
  }
  config.warmup = duration_arg(words.warmup, "--warmup");
  if (!words.duration.empty()) {
    config.duration = duration_arg(words.duration, "--duration");
  } else if (requests_given) {
    if (words.requests == 0) {
      throw CLI::ValidationError("--requests", "must be at least 1");
    }
    if (config.warmup.count() > 0) {
      // An exact count of measured requests and an unmeasured warm-up before them would make
      // the count mean two things; a warm-up belongs to a timed run.
      throw CLI::ValidationError("--warmup", "only with --duration, not with --requests");
    }
    config.requests = words.requests;
  } else {
    config.duration = std::chrono::seconds(10);
  }
  config.spin = duration_arg(words.spin, "--spin");
  config.task = static_cast<serialserver::TaskCode>(words.task);
  config.expect = expect_of(words.expect, words.task);
  config.format = words.json  ? OutputFormat::json
                  : words.csv ? OutputFormat::csv
                              : OutputFormat::text;
  config.progress =
      !words.quiet && config.format == OutputFormat::text && ::isatty(STDERR_FILENO) == 1;
}

}  // namespace

const char* engine_name(Engine engine) {
  return engine == Engine::io_uring ? "io_uring" : engine == Engine::epoll ? "epoll" : "auto";
}

std::variant<Config, int> parse_options(int argc, char** argv) {
  CLI::App app{
      "serialbench: a load generator for serial-protocol servers.\n"
      "Every response is validated; latencies are measured per request."};
  serialserver::apps::add_version_flag(app, kProgram);
  app.footer(R"(ADDR is host:port, [v6]:port or a Unix socket path; without it, the environment
variable SERIAL_ADDR. Durations: 500ms, 10s, 1m.
Without --duration or --requests a run lasts 10s; --warmup (default 0s: none) runs before a
--duration and is not measured; it is refused with --requests.
Answers: OK, Error (by code) and Goodbye are counted apart. An answer that is not the expected
one is an error: by default task 1 expects the echo of its request, task 2 an empty OK, any
other task an OK; --expect error or any accept Error answers. A Goodbye, and a connection the
server closes, are errors too.
--retry follows the client library's retry policy: a request answered Error 253 (busy) or
Goodbye, or not yet written when its connection was lost, was not run and is sent again; a lost
connection (Goodbye, or closed or reset by the server) is opened again at once, and a refused
connect is tried again after the back-off (10ms doubling to 1s, with jitter), all within a 10s
budget per request. A request written but unanswered when its connection dropped may have run:
it is sent again only with --idempotent, else it is an error (counted in connections lost, one
per request). Only the final answer counts, its latency runs from the first send, and the
summary says how many attempts were sent again and how many connections were reopened. Not
with --rps.
--rps N paces the run (open loop): each connection sends its share of N requests a second on a
fixed schedule, whatever the answers, within its --pipeline; a request's latency runs from when
it was due, so a slow server shows in the latencies rather than in a lower rate.
Ctrl-C (SIGINT) ends the run early and prints the summary of what ran.
Engines: io_uring (one io_uring_submit_and_wait per loop turn carries every connection's sends
and recvs) and epoll (epoll_wait, then recv and send per ready socket). auto picks io_uring when
a ring can be set up, else epoll with a line on stderr saying why. --tls always runs on epoll.
Exit status: 0 no errors, 1 errors (or nothing completed, or a write error on standard output),
3 cannot connect, 64 usage (also --engine io_uring where this build or the kernel has none).

Examples:
  serialbench 127.0.0.1:7070 --connections 50 --duration 10s            ping (task 2)
  serialbench 127.0.0.1:7070 -c 50 -P 16 --task 1 --size 4096 -n 1000000 echo, pipelined
  serialbench 127.0.0.1:7070 -c 10 --rps 5000 -d 30s -w 2s              latency at a set load
  serialbench /tmp/app.sock -c 8 --threads 2 --duration 5s --json | jq .latency_us
  serialbench localhost:7070 --tls --tls-ca ca.pem -c 50 --duration 10s  over TLS)");
  Words words;
  Config config;
  app.add_option("ADDR", words.address, "server address (default: $SERIAL_ADDR)");
  app.add_option("-c,--connections", config.connections, "connections")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}));
  app.add_option("-P,--pipeline", config.pipeline, "requests in flight per connection")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{65536}));
  app.add_option("-s,--size", config.size, "request content bytes")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{64} << 20));
  app.add_option("-t,--task", words.task, "task code, 0..249 (1 echo, 2 ping on the demo server)")
      ->capture_default_str()
      ->check(CLI::Range(0U, 249U));
  auto* d = app.add_option("-d,--duration", words.duration,
                           "measure for this long (default: 10s unless --requests)");
  auto* n = app.add_option("-n,--requests", words.requests, "send exactly this many requests");
  d->excludes(n);
  app.add_option("-w,--warmup", words.warmup,
                 "unmeasured warm-up before --duration (not with --requests)")
      ->capture_default_str();
  auto* rps =
      app.add_option("--rps", config.rps,
                     "requests per second over all connections, paced on a fixed schedule (open "
                     "loop); default 0: as fast as the answers come (closed loop)")
          ->check(CLI::Range(0.0, 1e9));
  auto* retry =
      app.add_flag("--retry", config.retry,
                   "send a request answered busy (Error 253) or Goodbye, or lost unsent with its "
                   "connection, again after a back-off, reopening lost connections; only final "
                   "answers count")
          ->excludes(rps);
  app.add_flag("--idempotent", config.idempotent,
               "with --retry, also resend calls whose connection dropped after they were sent; "
               "the bench tasks (ping/echo) are safe to repeat")
      ->needs(retry);
  app.add_option("-x,--expect", words.expect,
                 "the valid answer: echo, empty, ok (any OK), error or any (default: echo for "
                 "task 1, empty for task 2, ok otherwise)")
      ->check(CLI::IsMember({"echo", "empty", "ok", "error", "any"}));
  app.add_option("-T,--threads", config.threads, "event-loop threads")
      ->capture_default_str()
      ->check(CLI::Range(1U, 256U));
  app.add_option("--spin", words.spin,
                 "keep polling for this long after the last response before sleeping in the "
                 "kernel (0s: sleep at once); a busy core, but the server is spared waking "
                 "this generator")
      ->capture_default_str();
  app.add_option("-e,--engine", words.engine,
                 "I/O engine: auto, epoll or io_uring (auto: io_uring where available; epoll "
                 "with --tls)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "epoll", "io_uring"}));
  auto* json = app.add_flag("--json", words.json, "the summary as one JSON object on stdout");
  auto* csv = app.add_flag("--csv", words.csv, "the summary as CSV on stdout: field,value rows");
  json->excludes(csv);
  app.add_flag("-q,--quiet", words.quiet, "no progress line");
  auto* tls_flag = app.add_flag("--tls", config.tls,
                                "connect with TLS (1.2 or later); the server's certificate is "
                                "verified and must carry the server's name");
  auto* tls_ca = app.add_option("--tls-ca", config.tls_ca,
                                "CA certificates (PEM) for the server's certificate; default: "
                                "the system's CAs")
                     ->check(serialserver::apps::readable_file());
  auto* tls_cert = app.add_option("--tls-cert", config.tls_cert,
                                  "client certificate (PEM), for servers that require one")
                       ->check(serialserver::apps::readable_file());
  auto* tls_key = app.add_option("--tls-key", config.tls_key, "the private key of --tls-cert (PEM)")
                      ->check(serialserver::apps::readable_file());
  auto* tls_name = app.add_option("--tls-server-name", config.tls_server_name,
                                  "the name to verify and send as SNI; default: the host of ADDR");
  for (auto* option : {tls_ca, tls_cert, tls_key, tls_name}) {
    option->needs(tls_flag);
  }
  tls_cert->needs(tls_key);
  tls_key->needs(tls_cert);
  app.callback([&] { resolve(words, n->count() != 0, config); });
  if (const auto status = serialserver::apps::parse_command_line(app, kProgram, argc, argv)) {
    return *status;
  }
  return config;
}

}  // namespace serialbench
