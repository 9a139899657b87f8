// serialserver-logd: a log server on the serial protocol with SQLite storage
// (docs/logd-protocol.md).

#include <serialserver/duration.hpp>
#include <serialserver/listener.hpp>
#include <serialserver/logger.hpp>
#include <serialserver/server.hpp>
#include "common/guarded_main.hpp"
#include "logd_server.hpp"
#include "store.hpp"

#include <csignal>
#include <iostream>

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
  CLI::App app{
      "serialserver-logd: a log server for the serial protocol, stored in SQLite.\n"
      "Tasks: 1 append, 2 append batch, 3 read, 4 tail, 5 list (docs/logd-protocol.md)."};
  std::string listen = "127.0.0.1:7070";
  std::string db = "./logd.sqlite";
  std::string wait_timeout = "30m";
  std::string read_timeout = "5s";
  std::string write_timeout = "5s";
  std::string grace = "5s";
  std::string handshake_timeout = "10s";
  std::string log_level = "info";
  std::string token_file;
  std::string synchronous = "full";
  std::uint64_t max_request_bytes = std::uint64_t{64} << 20;
  unsigned threads = 0;
  unsigned workers = 64;
  app.add_option("--listen", listen, "host:port, [v6]:port or a Unix socket path")
      ->capture_default_str();
  app.add_option("--db", db, "the SQLite database file (created if missing)")
      ->capture_default_str();
  app.add_option("--wait-timeout", wait_timeout, "longest wait for the next task code")
      ->capture_default_str();
  app.add_option("--read-timeout", read_timeout, "rolling read timeout within a request")
      ->capture_default_str();
  app.add_option("--write-timeout", write_timeout, "rolling write timeout")->capture_default_str();
  app.add_option("--grace", grace, "shutdown grace period")->capture_default_str();
  app.add_option("--handshake-timeout", handshake_timeout, "the longest a handshake may take")
      ->capture_default_str();
  app.add_option("--token-file", token_file,
                 "file holding the shared token that clients must present in the handshake");
  app.add_option("--synchronous", synchronous,
                 "full: fsync at every commit (survives power loss); normal: survives kill -9 "
                 "only")
      ->check(CLI::IsMember({"full", "normal"}))
      ->capture_default_str();
  app.add_option("--max-request-bytes", max_request_bytes, "largest request content; 0: no limit")
      ->capture_default_str();
  app.add_option("--threads", threads, "I/O threads; 0: the number of cores")
      ->capture_default_str();
  app.add_option("--workers", workers,
                 "worker threads for the blocking tasks; appends wait there for their group "
                 "commit, so this bounds how many commit together")
      ->check(CLI::Range(1U, 4096U))
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  serialserver::ServerOptions options;
  std::chrono::nanoseconds grace_period{};
  std::chrono::nanoseconds handshake_period{};
  std::optional<std::string> token;
  try {
    options.timeout.wait = duration_option(wait_timeout, "--wait-timeout");
    options.timeout.read = duration_option(read_timeout, "--read-timeout");
    options.timeout.write = duration_option(write_timeout, "--write-timeout");
    grace_period = duration_option(grace, "--grace");
    handshake_period = duration_option(handshake_timeout, "--handshake-timeout");
    options.logger = serialserver::make_stderr_logger(serialserver::parse_log_level(log_level));
    if (!token_file.empty()) {
      token = logd::read_token_file(token_file);
    }
  } catch (const CLI::Error& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "serialserver-logd: " << e.what() << "\n";
    return 64;
  }
  options.max_request_bytes = max_request_bytes;
  options.shutdown_grace = grace_period;
  options.worker_threads = workers;

  // Signals are taken by this thread alone, with sigwait: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  std::shared_ptr<logd::Store> store;
  try {
    logd::StoreOptions store_options;
    store_options.path = db;
    store_options.synchronous_full = synchronous == "full";
    store = std::make_shared<logd::Store>(store_options);
  } catch (const std::exception& e) {
    std::cerr << "serialserver-logd: " << e.what() << "\n";
    return 1;
  }

  // Declared after the store: the server and listener go first, the store closes last.
  serialserver::Server server(options);
  logd::register_logd_tasks(server, store);
  serialserver::ListenerOptions listener_options;
  listener_options.address = listen;
  listener_options.io_threads = threads;
  listener_options.handshake = logd::make_handshake(token);
  listener_options.handshake_timeout = handshake_period;
  serialserver::Listener listener(server, listener_options);
  try {
    listener.start();
  } catch (const std::exception& e) {
    std::cerr << "serialserver-logd: cannot listen on " << listen << ": " << e.what() << "\n";
    return 1;
  }
  server.log()->info("serialserver-logd listening on {} (db {}, synchronous {}, token {})",
                     listener.local_address(), db, synchronous, token ? "required" : "none");

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  server.log()->info("signal {}: shutting down (grace {})", signal_number,
                     serialserver::format_duration(grace_period));
  listener.shutdown(grace_period);
  listener.wait();
  store->close();
  server.log()->info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Any other exception ends the server like a failure to start: status 1.
  return serialserver::apps::guarded_main("serialserver-logd", 1, run_main, argc, argv);
}
