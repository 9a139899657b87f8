#include "options.hpp"

#include <serialserver/duration.hpp>

#include <unistd.h>

#include <cstdio>
#include <stdexcept>

#include <CLI/CLI.hpp>

namespace serialbench {
namespace {

std::chrono::nanoseconds duration_arg(const std::string& text, const char* flag) {
  try {
    return serialserver::parse_duration(text);
  } catch (const std::invalid_argument& e) {
    throw CLI::ValidationError(flag, e.what());
  }
}

}  // namespace

const char* engine_name(Engine engine) {
  return engine == Engine::io_uring ? "io_uring" : engine == Engine::epoll ? "epoll" : "auto";
}

std::variant<Config, int> parse_options(int argc, char** argv) {
  CLI::App app{
      "serialbench: a load generator for serial-protocol servers.\n"
      "Every response is validated; latencies are measured per request."};
  app.footer(R"(ADDR is host:port, [v6]:port or a Unix socket path. Durations: 500ms, 10s, 1m.
Engines: io_uring (one io_uring_submit_and_wait per loop turn carries every connection's sends
and recvs) and epoll (epoll_wait, then recv and send per ready socket). auto picks io_uring when
a ring can be set up, else epoll with a line on stderr saying why. --tls always runs on epoll.
Exit status: 0 no errors, 1 errors (or nothing completed), 3 cannot connect, 64 usage (also
--engine io_uring where this build or the kernel has no io_uring).

Examples:
  serialbench 127.0.0.1:7070 --connections 50 --duration 10s            ping (task 2)
  serialbench 127.0.0.1:7070 -c 50 -P 16 --task 1 --size 4096 -n 1000000 echo, pipelined
  serialbench /tmp/app.sock -c 8 --threads 2 --duration 5s --json
  serialbench localhost:7070 --tls --tls-ca ca.pem -c 50 --duration 10s  over TLS)");
  std::string address;
  std::string duration;
  std::string warmup = "0s";
  std::string expect;
  std::uint64_t requests = 0;
  unsigned task = 2;
  Config config;
  app.add_option("ADDR", address, "server address")->required();
  app.add_option("-c,--connections", config.connections, "connections")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}));
  app.add_option("-P,--pipeline", config.pipeline, "requests in flight per connection")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{65536}));
  app.add_option("-s,--size", config.size, "request content bytes")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{64} << 20));
  app.add_option("-t,--task", task, "task code, 0..249 (1 echo, 2 ping on the demo server)")
      ->capture_default_str()
      ->check(CLI::Range(0U, 249U));
  auto* d = app.add_option("-d,--duration", duration, "measure for this long");
  auto* n = app.add_option("-n,--requests", requests, "send exactly this many requests");
  d->excludes(n);
  app.add_option("-w,--warmup", warmup, "unmeasured warm-up before --duration")
      ->capture_default_str();
  app.add_option("-x,--expect", expect,
                 "expected answer: echo, empty, error or any (default: echo for task 1, empty "
                 "for task 2, any otherwise)")
      ->check(CLI::IsMember({"echo", "empty", "error", "any"}));
  app.add_option("-T,--threads", config.threads, "event-loop threads")
      ->capture_default_str()
      ->check(CLI::Range(1U, 256U));
  std::string spin = "0s";
  app.add_option("--spin", spin,
                 "keep polling for this long after the last response before sleeping in the "
                 "kernel (0s: sleep at once); a busy core, but the server is spared waking "
                 "this generator")
      ->capture_default_str();
  std::string engine = "auto";
  app.add_option("-e,--engine", engine,
                 "I/O engine: auto, epoll or io_uring (auto: io_uring where available; epoll "
                 "with --tls)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "epoll", "io_uring"}));
  bool json = false;
  bool csv = false;
  auto* json_flag = app.add_flag("--json", json, "the summary as one JSON object on stdout");
  auto* csv_flag = app.add_flag("--csv", csv, "the summary as CSV on stdout: field,value rows");
  json_flag->excludes(csv_flag);
  bool quiet = false;
  app.add_flag("-q,--quiet", quiet, "no progress line");
  auto* tls_flag = app.add_flag("--tls", config.tls,
                                "connect with TLS (1.2 or later); the server's certificate is "
                                "verified and must carry the server's name");
  auto* tls_ca = app.add_option("--tls-ca", config.tls_ca,
                                "CA certificates (PEM) for the server's certificate; default: "
                                "the system's CAs");
  auto* tls_cert = app.add_option("--tls-cert", config.tls_cert,
                                  "client certificate (PEM), for servers that require one");
  auto* tls_key =
      app.add_option("--tls-key", config.tls_key, "the private key of --tls-cert (PEM)");
  auto* tls_name = app.add_option("--tls-server-name", config.tls_server_name,
                                  "the name to verify and send as SNI; default: the host of ADDR");
  for (auto* option : {tls_ca, tls_cert, tls_key, tls_name}) {
    option->needs(tls_flag);
  }
  tls_cert->needs(tls_key);
  tls_key->needs(tls_cert);
  try {
    app.parse(argc, argv);
    config.address = serialclient::parse_address(address);
    if (config.tls && config.address.is_unix) {
      throw CLI::ValidationError("--tls", "TLS needs a TCP address, not a Unix socket");
    }
    if (engine == "io_uring") {
#ifndef SERIALBENCH_HAVE_IO_URING
      throw CLI::ValidationError("--engine",
                                 "io_uring: this serialbench was built without liburing (the "
                                 "epoll engine only)");
#endif
      if (config.tls) {
        throw CLI::ValidationError("--engine", "io_uring does not do TLS; --tls runs on epoll");
      }
      config.engine = Engine::io_uring;
    } else if (engine == "epoll") {
      config.engine = Engine::epoll;
    }
    if (!duration.empty()) {
      config.duration = duration_arg(duration, "--duration");
    } else if (n->count() != 0) {
      if (requests == 0) {
        throw CLI::ValidationError("--requests", "must be at least 1");
      }
      config.requests = requests;
    } else {
      config.duration = std::chrono::seconds(10);
    }
    config.warmup = duration_arg(warmup, "--warmup");
    config.spin = duration_arg(spin, "--spin");
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);
    return status == 0 ? 0 : kExitUsage;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "serialbench: %s\n", e.what());
    return kExitUsage;
  }
  config.task = static_cast<serialserver::TaskCode>(task);
  if (expect == "echo") {
    config.expect = Expect::echo;
  } else if (expect == "empty") {
    config.expect = Expect::empty;
  } else if (expect == "error") {
    config.expect = Expect::error;
  } else if (expect == "any") {
    config.expect = Expect::any;
  } else {
    config.expect = task == 1 ? Expect::echo : task == 2 ? Expect::empty : Expect::any;
  }
  config.format = json ? OutputFormat::json : csv ? OutputFormat::csv : OutputFormat::text;
  config.progress = !quiet && config.format == OutputFormat::text && ::isatty(STDERR_FILENO) == 1;
  return config;
}

}  // namespace serialbench
