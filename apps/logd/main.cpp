// serialserver-logd: a log server on the serial protocol with SQLite storage
// (docs/logd-protocol.md).

#include <serialserver/duration.hpp>
#include <serialserver/listener.hpp>
#include <serialserver/logger.hpp>
#include <serialserver/metrics_http_server.hpp>
#include <serialserver/prometheus_metrics.hpp>
#include <serialserver/server.hpp>
#include "common/guarded_main.hpp"
#include "common/program.hpp"
#include "common/tls_reload.hpp"
#include "handshake.hpp"
#include "logd_server.hpp"
#include "open_store.hpp"
#include "retention_flags.hpp"
#include "store.hpp"

#include <csignal>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>

namespace {

constexpr const char* kProgram = "serialserver-logd";

/// How long past --grace the server waits for a commit in progress, so that an append whose
/// commit finished is still answered.
constexpr auto kCommitGrace = std::chrono::seconds(10);

/// A CLI11 validator-and-converter for Go-style durations.
std::chrono::nanoseconds duration_option(const std::string& text, const char* flag) {
  try {
    return serialserver::parse_duration(text);
  } catch (const std::invalid_argument& e) {
    throw CLI::ValidationError(flag, e.what());
  }
}

/// True if `address` (as --listen takes it) is reachable only from this machine.
bool loopback_only(const std::string& address) {
  if (address.find('/') != std::string::npos) {
    return true;  // a Unix socket
  }
  const auto colon = address.rfind(':');
  std::string host = address.substr(0, colon == std::string::npos ? address.size() : colon);
  if (host.size() >= 2 && host.front() == '[') {
    host = host.substr(1, host.size() - 2);
  }
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

struct Flags {
  std::string listen = "127.0.0.1:7070";
  std::string db = "./logd.sqlite";
  std::string db_uri;
  std::string db_wait = "30s";
  std::string wait_timeout = "30m";
  std::string read_timeout = "5s";
  std::string write_timeout = "5s";
  std::string grace = "5s";
  std::string handshake_timeout = "10s";
  std::string max_request_duration = "1m";
  std::string log_level = "info";
  std::string log_format = "text";
  std::string metrics_address;
  std::string token_file;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string synchronous = "full";
  std::uint64_t max_request_bytes = std::uint64_t{16} << 20;
  std::size_t max_connections = 10000;
  std::size_t max_connections_per_address = 0;
  bool reuse_port = false;
  unsigned threads = 0;
  unsigned workers = 64;
  logd::TaskLimits limits;
  std::string reader_idle = "30s";
  std::string tail_spread = "100ms";
  std::size_t max_cached_names = 4096;
  std::size_t max_followed_logs = logd::RecentRecordsLimits{}.max_logs;
  unsigned retain_days = 0;
  std::string retain_interval = "10s";
  std::uint64_t retain_bytes = 0;
  std::uint64_t retain_log_bytes = 0;
  std::vector<std::string> retain_log;
  std::uint32_t max_concurrent_tasks = 0;
  std::string task_timeout = "0";
  bool no_describe = false;
};

/// CLI11's check of a byte count: decimal digits only (CLI11 would take "-1" for 2^64 - 1).
CLI::Validator byte_count_check() {
  return {[](std::string& text) -> std::string {
            if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
              return "'" + text + "' is not a number of bytes";
            }
            return {};
          },
          "", "byte count"};
}

/// CLI11's check of a --retain-log value.
CLI::Validator log_retention_check() {
  return {[](std::string& text) -> std::string {
            try {
              logd::parse_log_retention(text);
              return {};
            } catch (const std::invalid_argument& e) {
              return e.what();
            }
          },
          "", "log retention"};
}

/// The retention that the flags ask for. Throws std::invalid_argument (a name given twice).
logd::RetentionOptions retention_options(const Flags& f) {
  logd::RetentionOptions retention;
  retention.max_age = logd::retain_days(f.retain_days);
  retention.max_bytes = f.retain_bytes;
  retention.max_log_bytes = f.retain_log_bytes;
  for (const auto& text : f.retain_log) {
    auto [name, limits] = logd::parse_log_retention(text);
    if (!retention.logs.emplace(name, limits).second) {
      throw std::invalid_argument("--retain-log: the log '" + name + "' is given twice");
    }
  }
  return retention;
}

void add_options(CLI::App& app, Flags& f) {
  app.add_option("--listen", f.listen, "host:port, [v6]:port or a Unix socket path")
      ->capture_default_str();
  auto* db = app.add_option("--db", f.db,
                            "the SQLite database file, a plain path (created 0600 if missing)")
                 ->capture_default_str();
  app.add_option("--db-uri", f.db_uri,
                 "the database as an SQLite URI (file:PATH?...), instead of --db")
      ->excludes(db);
  app.add_option("--db-wait", f.db_wait,
                 "while another serialserver-logd holds the database file (the old server of a "
                 "--reuse-port hand-over, draining), how long to wait for it before giving up")
      ->capture_default_str();
  app.add_option("--wait-timeout", f.wait_timeout, "longest wait for the next task code")
      ->capture_default_str();
  app.add_option("--read-timeout", f.read_timeout, "rolling read timeout within a request")
      ->capture_default_str();
  app.add_option("--write-timeout", f.write_timeout,
                 "rolling write timeout; also ends a streamed read the client does not consume")
      ->capture_default_str();
  app.add_option("--grace", f.grace,
                 "shutdown grace period (a commit in progress gets up to 10s more)")
      ->capture_default_str();
  app.add_option("--handshake-timeout", f.handshake_timeout, "the longest a handshake may take")
      ->capture_default_str();
  app.add_option("--max-request-duration", f.max_request_duration,
                 "the longest one request may take to arrive in full; 0: no limit")
      ->capture_default_str();
  app.add_option("--max-concurrent-tasks", f.max_concurrent_tasks,
                 "most requests served at once across connections (waiting tails included); "
                 "one over it is answered Error 253 (busy) without running; 0: no limit")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--task-timeout", f.task_timeout,
                 "time budget of a request (a waiting tail's included); past it the request is "
                 "cancelled and answered Error 252, or a streamed read is cut; 0: none")
      ->capture_default_str();
  app.add_flag("--no-describe", f.no_describe,
               "answer describe (task 251) with Error 255, as an unknown code");
  app.add_option("--token-file", f.token_file,
                 "file holding the token (at least 16 bytes) that clients must present")
      ->check(serialserver::apps::readable_file());
  auto* cert =
      app.add_option("--tls-cert", f.tls_cert,
                     "serve TLS (1.2 or later) with this certificate chain (PEM); SIGHUP reloads "
                     "the TLS files for new connections")
          ->check(serialserver::apps::readable_file());
  auto* key = app.add_option("--tls-key", f.tls_key, "the private key of --tls-cert (PEM)")
                  ->check(serialserver::apps::readable_file());
  auto* client_ca =
      app.add_option("--tls-client-ca", f.tls_client_ca,
                     "require client certificates that chain to these CAs (PEM): mutual TLS")
          ->check(serialserver::apps::readable_file());
  cert->needs(key);
  key->needs(cert);
  client_ca->needs(cert);
  app.add_option("--synchronous", f.synchronous,
                 "full: fsync at every commit (survives power loss); normal: survives kill -9 "
                 "only")
      ->check(CLI::IsMember({"full", "normal"}))
      ->capture_default_str();
  app.add_option("--max-request-bytes", f.max_request_bytes,
                 "largest request content (Error 254 beyond); 0: no limit")
      ->capture_default_str();
  app.add_option(
         "--max-connections", f.max_connections,
         "connections served at once (beyond: the longest idle one is sent Goodbye; if none is "
         "idle, the newcomer is closed at once); 0: no limit")
      ->capture_default_str();
  app.add_option("--max-connections-per-address", f.max_connections_per_address,
                 "connections from one IP address at once; 0: no limit")
      ->capture_default_str();
  app.add_flag("--reuse-port", f.reuse_port,
               "set SO_REUSEPORT on the TCP listening socket, so that a new server can bind the "
               "same port while this one drains (see docs/deployment.md)");
  app.add_option("--threads", f.threads, "I/O threads; 0: the number of cores")
      ->capture_default_str();
  app.add_option("--workers", f.workers,
                 "worker threads for appends; they wait there for their group commit, so this "
                 "bounds how many appends are in progress and commit together")
      ->check(CLI::Range(1U, 4096U))
      ->capture_default_str();
  app.add_option("--query-threads", f.limits.query_threads,
                 "threads for the queries of reads, tails and lists (never used by appends)")
      ->check(CLI::Range(1U, 256U))
      ->capture_default_str();
  app.add_option("--max-reads", f.limits.max_reads,
                 "reads streaming at once, each with a reader connection; beyond: Error 8")
      ->check(CLI::Range(std::size_t{1}, std::size_t{4096}))
      ->capture_default_str();
  app.add_option("--max-lists", f.limits.max_lists, "lists streaming at once; beyond: Error 8")
      ->check(CLI::Range(std::size_t{1}, std::size_t{4096}))
      ->capture_default_str();
  app.add_option("--max-waiting-tails", f.limits.max_waiting_tails,
                 "tails waiting for new messages at once (no thread each); beyond: Error 8")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}))
      ->capture_default_str();
  app.add_option("--tail-spread", f.tail_spread,
                 "a tail woken by a commit waits a random time up to 1 ms for each tail woken "
                 "with it, at most this, before it answers, so that many followers of one log "
                 "do not answer at once (a lone follower answers at once); 0: never wait")
      ->capture_default_str();
  app.add_option("--reader-idle-timeout", f.reader_idle,
                 "a reader connection idle this long is closed (the pool holds at most "
                 "max-reads + max-lists + query-threads)")
      ->capture_default_str();
  app.add_option("--max-cached-names", f.max_cached_names,
                 "log names whose ids the writer keeps in memory")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10000000}))
      ->capture_default_str();
  app.add_option("--max-followed-logs", f.max_followed_logs,
                 "logs whose latest records (at most 1024 and 256 KiB a log) are kept in memory "
                 "for the tails that follow them, which are then answered without a query; a "
                 "tail of a further log, or further behind, queries; 0: none")
      ->check(CLI::Range(std::size_t{0}, std::size_t{4096}))
      ->capture_default_str();
  app.add_option("--retain-days", f.retain_days,
                 "delete messages older than this many days (by their time), in the background; "
                 "0: keep them")
      ->check(CLI::Range(0U, logd::kMaxRetainDays))
      ->capture_default_str();
  app.add_option("--retain-bytes", f.retain_bytes,
                 "keep the database's used pages under this many bytes by deleting the oldest "
                 "messages of all logs, in the background; 0: no limit")
      ->check(byte_count_check())
      ->capture_default_str();
  app.add_option("--retain-log-bytes", f.retain_log_bytes,
                 "keep each log's stored bytes (text + encoded fields + 64 a message) at or under "
                 "this by deleting its oldest messages, in the background; 0: no limit")
      ->check(byte_count_check())
      ->capture_default_str();
  app.add_option("--retain-log", f.retain_log,
                 "NAME=DAYS:BYTES: limits of the log NAME instead of --retain-days and "
                 "--retain-log-bytes (0: no limit of that kind for it); repeatable")
      ->check(log_retention_check())
      ->type_name("NAME=DAYS:BYTES");
  app.add_option("--retain-interval", f.retain_interval,
                 "how often the retention limits are enforced (at least 1s)")
      ->capture_default_str();
  app.add_option("--log-level", f.log_level,
                 "trace, debug, info, warn, error or off (debug: a line per task)")
      ->capture_default_str();
  app.add_option("--log-format", f.log_format, "text (key=value) or json (JSON lines)")
      ->capture_default_str();
  app.add_option("--metrics", f.metrics_address,
                 "serve Prometheus metrics at http://ADDR/metrics (host:port); off by default");
}

int run_main(int argc, char** argv) {
  CLI::App app{
      "serialserver-logd: a log server for the serial protocol, stored in SQLite.\n"
      "Tasks: 1 append, 2 append batch, 3 read, 4 tail, 5 list (docs/logd-protocol.md)."};
  Flags f;
  add_options(app, f);
  serialserver::apps::add_version_flag(app, kProgram);
  if (auto status = serialserver::apps::parse_command_line(app, kProgram, argc, argv)) {
    return *status;
  }

  serialserver::ServerOptions options;
  std::chrono::nanoseconds grace_period{};
  std::chrono::nanoseconds handshake_period{};
  std::chrono::nanoseconds db_wait{};
  std::chrono::nanoseconds reader_idle{};
  std::chrono::nanoseconds retain_interval{};
  logd::RetentionOptions retention;
  std::optional<std::string> token;
  try {
    options.timeout.wait = duration_option(f.wait_timeout, "--wait-timeout");
    options.timeout.read = duration_option(f.read_timeout, "--read-timeout");
    options.timeout.write = duration_option(f.write_timeout, "--write-timeout");
    options.max_request_duration =
        duration_option(f.max_request_duration, "--max-request-duration");
    grace_period = duration_option(f.grace, "--grace");
    options.task_deadline = duration_option(f.task_timeout, "--task-timeout");
    handshake_period = duration_option(f.handshake_timeout, "--handshake-timeout");
    db_wait = duration_option(f.db_wait, "--db-wait");
    reader_idle = duration_option(f.reader_idle, "--reader-idle-timeout");
    f.limits.tail_spread = duration_option(f.tail_spread, "--tail-spread");
    retain_interval = duration_option(f.retain_interval, "--retain-interval");
    retention = retention_options(f);
    options.logger = serialserver::make_stderr_logger(serialserver::parse_log_level(f.log_level),
                                                      serialserver::parse_log_format(f.log_format));
    if (!f.token_file.empty()) {
      token = logd::read_token_file(f.token_file);
      if (token->size() < logd::kMinTokenBytes) {
        throw std::invalid_argument("the token in " + f.token_file + " has " +
                                    std::to_string(token->size()) + " bytes; at least " +
                                    std::to_string(logd::kMinTokenBytes) + " are needed");
      }
    }
  } catch (const std::exception& e) {
    std::cerr << kProgram << ": " << e.what() << "\n";
    return serialserver::apps::kExitUsage;
  }
  options.max_request_bytes = f.max_request_bytes;
  // Past --grace the server itself ends what is left (see below); the library's own deadline is
  // further out so that an append whose commit is in progress still gets its answer.
  options.shutdown_grace = grace_period + kCommitGrace;
  options.worker_threads = f.workers;
  // An acknowledged write must be answered even to a client that half-closed after sending it.
  options.cancel_task_on_end_of_stream = false;
  options.max_concurrent_tasks = f.max_concurrent_tasks;
  options.describe = !f.no_describe;
  std::shared_ptr<serialserver::PrometheusMetrics> metrics;
  if (!f.metrics_address.empty()) {
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

  // The listener binds first: a server that cannot listen creates no database. Handshakes wait
  // for `ready`, so that no task arrives before the store is open.
  serialserver::Server server(options);
  auto ready = std::make_shared<std::atomic<bool>>(false);
  serialserver::ListenerOptions listener_options;
  listener_options.address = f.listen;
  listener_options.io_threads = f.threads;
  listener_options.max_connections = f.max_connections;
  listener_options.max_connections_per_address = f.max_connections_per_address;
  listener_options.reuse_port = f.reuse_port;
  logd::HandshakeOptions handshake_options;
  handshake_options.token = token;
  handshake_options.ready = ready;
  handshake_options.logger = server.log();
  listener_options.handshake = logd::make_handshake(std::move(handshake_options));
  listener_options.handshake_timeout = handshake_period;
  if (!f.tls_cert.empty()) {
    listener_options.tls = serialserver::TlsOptions{f.tls_cert, f.tls_key, f.tls_client_ca};
  }
  serialserver::Listener listener(server, listener_options);
  try {
    listener.start();
  } catch (const std::exception& e) {
    std::cerr << kProgram << ": cannot listen on " << f.listen << ": " << e.what() << "\n";
    return 1;
  }

  std::shared_ptr<logd::Store> store;
  try {
    logd::StoreOptions store_options;
    store_options.uri = !f.db_uri.empty();
    store_options.path = store_options.uri ? f.db_uri : f.db;
    store_options.synchronous_full = f.synchronous == "full";
    store_options.max_readers = logd::readers_needed(f.limits);
    store_options.reader_idle_timeout = reader_idle;
    store_options.max_cached_names = f.max_cached_names;
    store_options.recent.max_logs = f.max_followed_logs;
    store = logd::open_store(store_options, db_wait, signals, *server.log());
  } catch (const std::exception& e) {
    std::cerr << kProgram << ": " << e.what() << "\n";
    listener.shutdown(std::chrono::nanoseconds(0));
    listener.wait();
    return 1;
  }
  if (!store) {
    server.log()->info("stopped by a signal before the database was open");
    listener.shutdown(std::chrono::nanoseconds(0));
    listener.wait();
    return serialserver::apps::finish_stdout(kProgram, 0);
  }
  // Declared after the store: destroyed first (the server's connections end before, in wait()).
  logd::LogdService service(store, f.limits, retention, retain_interval, server.log());
  service.register_tasks(server);
  ready->store(true);

  std::unique_ptr<serialserver::MetricsHttpServer> metrics_server;
  if (metrics) {
    try {
      metrics_server = std::make_unique<serialserver::MetricsHttpServer>(
          serialserver::MetricsHttpServerOptions{.address = f.metrics_address}, metrics);
      metrics_server->start();
    } catch (const std::exception& e) {
      std::cerr << kProgram << ": cannot serve metrics on " << f.metrics_address << ": " << e.what()
                << "\n";
      listener.shutdown(std::chrono::nanoseconds(0));
      listener.wait();
      return 1;
    }
    server.log()->info("metrics on http://{}/metrics", metrics_server->local_address());
  }
  server.log()->info("serialserver-logd listening on {} (db {}, synchronous {}, token {}, {})",
                     listener.local_address(), store->options().path, f.synchronous,
                     token ? "required" : "none", f.tls_cert.empty() ? "plaintext" : "TLS");
  if (!loopback_only(f.listen) && !token && f.tls_cert.empty()) {
    server.log()->warn(
        "listening on {} beyond this machine with neither a token nor TLS: anyone who can "
        "connect reads and writes every log (see --token-file, --tls-cert)",
        listener.local_address());
  }

  int signal_number = 0;
  for (;;) {
    sigwait(&signals, &signal_number);
    if (signal_number != SIGHUP) {
      break;
    }
    serialserver::apps::reload_tls_on_sighup(listener, !f.tls_cert.empty(), *server.log());
  }
  server.log()->info(
      "signal {}: the server is shutting down (grace {}; a commit in progress gets up to {} more)",
      signal_number, serialserver::format_duration(grace_period),
      serialserver::format_duration(kCommitGrace));
  service.begin_shutdown();  // waiting tails answer at once
  listener.shutdown(options.shutdown_grace);
  // Within --grace, tasks finish as they will. Then appends not yet queued are refused
  // (Error 7), streamed reads still going are dropped, and the commit in progress (if any)
  // completes, so that every committed append is answered.
  const auto deadline = std::chrono::steady_clock::now() + grace_period;
  while (listener.num_connections() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  store->refuse_appends();
  service.abandon_streams();
  listener.wait();
  if (metrics_server) {
    metrics_server->stop();  // after the listener: the last connections are counted too
  }
  store->close();
  server.log()->info("stopped");
  return serialserver::apps::finish_stdout(kProgram, 0);
}

}  // namespace

int main(int argc, char** argv) {
  // Any other exception ends the server like a failure to start: status 1.
  return serialserver::apps::guarded_main(kProgram, 1, run_main, argc, argv);
}
