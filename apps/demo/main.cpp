// serialserver-demo: the library's demonstration server (see demo_tasks.hpp for its tasks).

#include <serialserver/duration.hpp>
#include <serialserver/listener.hpp>
#include <serialserver/logger.hpp>
#include <serialserver/metrics_http_server.hpp>
#include <serialserver/prometheus_metrics.hpp>
#include <serialserver/server.hpp>
#include "common/guarded_main.hpp"
#include "common/program.hpp"
#include "common/tls_reload.hpp"
#include "demo_tasks.hpp"

#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <thread>

#include <CLI/CLI.hpp>

namespace {

/// A CLI11 validator-and-converter for Go-style durations.
std::chrono::nanoseconds duration_option(const std::string& text, const char* flag) {
  try {
    return serialserver::parse_duration(text);
  } catch (const std::invalid_argument& e) {
    throw CLI::ValidationError(flag, e.what());
  }
}

int run_main(int argc, char** argv) {
  constexpr const char* kProgram = "serialserver-demo";
  CLI::App app{
      "serialserver-demo: a demonstration server for the serial protocol.\n"
      "Tasks: 1 echo, 2 empty, 3 error(code=first byte), 4 produce N bytes (u64 BE),\n"
      "5 sleep N ms (u32 BE), 6 count request bytes (reply u64 BE)."};
  std::string listen = "127.0.0.1:7070";
  std::string wait_timeout = "30m";
  std::string read_timeout = "5s";
  std::string write_timeout = "5s";
  std::string grace = "5s";
  std::string log_level = "info";
  std::string log_format = "text";
  std::string metrics_address;
  // The library's default: a limit safe for the open network (0 lifts it).
  std::uint64_t max_request_bytes = serialserver::ServerOptions{}.max_request_bytes;
  unsigned threads = 0;
  std::uint32_t max_concurrent_tasks = 0;
  std::string task_timeout = "0";
  bool no_describe = false;
  bool reuse_port = false;
  app.add_option("--listen", listen, "host:port, [v6]:port or a Unix socket path")
      ->capture_default_str();
  app.add_option("--wait-timeout", wait_timeout, "longest wait for the next task code")
      ->capture_default_str();
  app.add_option("--read-timeout", read_timeout, "rolling read timeout within a request")
      ->capture_default_str();
  app.add_option("--write-timeout", write_timeout, "rolling write timeout")->capture_default_str();
  app.add_option("--max-request-bytes", max_request_bytes,
                 "largest request content in bytes (default: the library's 64 MiB); a larger "
                 "request is answered Error 254; 0: no limit")
      ->capture_default_str();
  app.add_option("--threads", threads, "I/O threads; 0: the number of cores")
      ->capture_default_str();
  app.add_flag("--reuse-port", reuse_port,
               "set SO_REUSEPORT on the TCP listening socket, so that a new server can bind the "
               "same port while this one drains (see docs/deployment.md)");
  app.add_option("--max-concurrent-tasks", max_concurrent_tasks,
                 "most tasks running at once; a task over it is answered Error 253 (busy) "
                 "without running; 0: no limit")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--task-timeout", task_timeout,
                 "time budget of a task; past it the task is cancelled and answered Error 252; "
                 "0: none")
      ->capture_default_str();
  app.add_flag("--no-describe", no_describe,
               "answer describe (task 251) with Error 255, as an unknown code");
  app.add_option("--grace", grace, "shutdown grace period")->capture_default_str();
  app.add_option("--log-level", log_level,
                 "trace, debug, info, warn, error or off (debug: a line per task)")
      ->capture_default_str();
  app.add_option("--log-format", log_format, "text (key=value) or json (JSON lines)")
      ->capture_default_str();
  app.add_option("--metrics", metrics_address,
                 "serve Prometheus metrics at http://ADDR/metrics (host:port); off by default");
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  auto* cert_option = app.add_option("--tls-cert", tls_cert,
                                     "serve TLS (1.2 or later) with this certificate chain (PEM)")
                          ->check(serialserver::apps::readable_file());
  auto* key_option = app.add_option("--tls-key", tls_key, "the private key of --tls-cert (PEM)")
                         ->check(serialserver::apps::readable_file());
  auto* client_ca_option =
      app.add_option("--tls-client-ca", tls_client_ca,
                     "require client certificates that chain to these CAs (PEM): mutual TLS")
          ->check(serialserver::apps::readable_file());
  cert_option->needs(key_option);
  key_option->needs(cert_option);
  client_ca_option->needs(cert_option);
  serialserver::apps::add_version_flag(app, kProgram);
  app.footer(
      "SIGHUP reloads the --tls-cert, --tls-key and --tls-client-ca files for new connections. "
      "Exit status: 0 after a signal (SIGINT, SIGTERM) and a clean shutdown, 1 when it "
      "cannot start (such as a port in use), 64 usage (a bad flag value, or a file "
      "argument that cannot be read).");

  serialserver::ServerOptions options;
  std::chrono::nanoseconds grace_period{};
  // Values checked inside the parse, so that a bad one is a usage error like any other.
  app.callback([&] {
    options.timeout.wait = duration_option(wait_timeout, "--wait-timeout");
    options.timeout.read = duration_option(read_timeout, "--read-timeout");
    options.timeout.write = duration_option(write_timeout, "--write-timeout");
    grace_period = duration_option(grace, "--grace");
    options.task_deadline = duration_option(task_timeout, "--task-timeout");
    try {
      options.logger = serialserver::make_stderr_logger(serialserver::parse_log_level(log_level),
                                                        serialserver::parse_log_format(log_format));
    } catch (const std::invalid_argument& e) {
      throw CLI::ValidationError("--log-level/--log-format", e.what());
    }
  });
  if (const auto status = serialserver::apps::parse_command_line(app, kProgram, argc, argv)) {
    return *status;
  }
  options.max_request_bytes = max_request_bytes;
  options.shutdown_grace = grace_period;
  options.max_concurrent_tasks = max_concurrent_tasks;
  options.describe = !no_describe;
  std::shared_ptr<serialserver::PrometheusMetrics> metrics;
  if (!metrics_address.empty()) {
    metrics = std::make_shared<serialserver::PrometheusMetrics>();
    options.metrics = metrics;
  }

  // Signals are taken by this thread alone, with sigwait: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);  // reloads the TLS certificate files
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  serialserver::Server server(options);
  demo::register_demo_tasks(server);
  serialserver::ListenerOptions listener_options;
  listener_options.address = listen;
  listener_options.io_threads = threads;
  listener_options.reuse_port = reuse_port;
  if (!tls_cert.empty()) {
    listener_options.tls = serialserver::TlsOptions{tls_cert, tls_key, tls_client_ca};
  }
  serialserver::Listener listener(server, listener_options);
  try {
    listener.start();
  } catch (const std::exception& e) {
    std::cerr << "serialserver-demo: cannot listen on " << listen << ": " << e.what() << "\n";
    return 1;
  }
  std::unique_ptr<serialserver::MetricsHttpServer> metrics_server;
  if (metrics) {
    try {
      metrics_server = std::make_unique<serialserver::MetricsHttpServer>(
          serialserver::MetricsHttpServerOptions{.address = metrics_address}, metrics);
      metrics_server->start();
    } catch (const std::exception& e) {
      std::cerr << "serialserver-demo: cannot serve metrics on " << metrics_address << ": "
                << e.what() << "\n";
      listener.shutdown(std::chrono::nanoseconds(0));
      listener.wait();
      return 1;
    }
    server.log()->info("metrics on http://{}/metrics", metrics_server->local_address());
  }

  int signal_number = 0;
  for (;;) {
    sigwait(&signals, &signal_number);
    if (signal_number != SIGHUP) {
      break;
    }
    serialserver::apps::reload_tls_on_sighup(listener, !tls_cert.empty(), *server.log());
  }
  server.log()->info("signal {}: shutting down (grace {})", signal_number,
                     serialserver::format_duration(grace_period));
  listener.shutdown(grace_period);
  listener.wait();
  if (metrics_server) {
    metrics_server->stop();  // after the listener: the last connections are counted too
  }
  server.log()->info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Any other exception ends the server like a failure to start: status 1.
  return serialserver::apps::guarded_main("serialserver-demo", 1, run_main, argc, argv);
}
