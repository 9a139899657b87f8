// serialctl: calls a task on a serial-protocol server from the command line.
//
// Exit status: 0 OK, 1 Error (its code on stderr), 2 Goodbye, 3 transport failure, 64 usage.

#include <serialserver/duration.hpp>
#include <serialserver/logger.hpp>
#include "common/guarded_main.hpp"
#include "common/program.hpp"
#include "hex.hpp"
#include "owned_fd.hpp"
#include "task_listing.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <CLI/CLI.hpp>
#include <serialclient/client.hpp>
#include <serialclient/error.hpp>

namespace {

using serialctl::UsageError;
using serialserver::apps::describe_error_answer;

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitGoodbye = 2;
constexpr int kExitTransport = 3;
constexpr int kExitUsage = serialserver::apps::kExitUsage;
constexpr const char* kProgram = "serialctl";

/// The client library's log, kept rather than printed: the blocking API reports a failed TLS
/// handshake by its code only and logs the reason, and the program reports a failure in one
/// line of its own, with that reason. Thread-safety: written from the client's I/O thread, read
/// from the main thread.
class KeptLog final : public serialserver::Logger {
 public:
  bool enabled(serialserver::LogLevel level) const noexcept override {
    return level >= serialserver::LogLevel::warn;
  }
  void write(serialserver::LogLevel /*level*/, std::string_view message) noexcept override {
    const std::lock_guard lock(mutex_);
    try {
      last_.assign(message);
    } catch (...) {  // out of memory: the reason is lost, the failure is still reported
      last_.clear();
    }
  }
  /// The last line logged, or empty.
  std::string last() const {
    const std::lock_guard lock(mutex_);
    return last_;
  }

 private:
  mutable std::mutex mutex_;
  std::string last_;
};

/// The --tls flags, shared by every subcommand.
struct TlsArgs {
  bool enabled = false;
  std::string ca_file;
  std::string certificate_file;
  std::string key_file;
  std::string server_name;
};

struct CommonArgs {
  std::string address;
  std::string timeout = "10m";
  const TlsArgs* tls = nullptr;
};

/// Where the library's log lines go (see KeptLog).
std::shared_ptr<KeptLog>& kept_log() {
  static auto log = std::make_shared<KeptLog>();
  return log;
}

serialclient::Options make_options(const CommonArgs& args) {
  serialclient::Options options;
  if (args.tls != nullptr && args.tls->enabled) {
    options.tls = serialclient::TlsOptions{args.tls->ca_file, args.tls->server_name,
                                           args.tls->certificate_file, args.tls->key_file};
  }
  // The reason a TLS handshake failed (such as "certificate verify failed") is logged: kept for
  // the one line that reports the failure.
  options.logger = kept_log();
  try {
    options.response_timeout = serialserver::parse_duration(args.timeout);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--timeout: ") + e.what());
  }
  if (options.response_timeout > std::chrono::nanoseconds::zero() &&
      options.response_timeout < options.connect_timeout) {
    options.connect_timeout = options.response_timeout;
  }
  return options;
}

int transport_failure(const std::error_code& ec, const std::string& what) {
  const std::string reason = kept_log()->last();
  std::cerr << kProgram << ": " << what << ": " << (reason.empty() ? ec.message() : reason) << "\n";
  return kExitTransport;
}

/// Reports an Error answer: "serialctl: error 255 (unknown task)".
int error_answer(serialserver::ErrorCode code) {
  std::cerr << kProgram << ": " << describe_error_answer(code) << "\n";
  return kExitError;
}

struct CallArgs {
  CommonArgs common;
  std::string task_word;  // TASK, or ADDR TASK with the first word in common.address
  int task = -1;
  std::optional<std::string> data;
  std::optional<std::string> file;
  bool from_stdin = false;
  std::optional<std::string> out;
};

int run_call(const CallArgs& args) {
  if (args.task < 0 || args.task > 255) {
    throw UsageError("TASK must be 0..249");
  }
  const auto task = static_cast<serialclient::TaskCode>(args.task);
  if (serialserver::is_reserved_task_code(task)) {
    throw UsageError(
        "task codes 250..255 are reserved: use `serialctl keepalive` or "
        "`serialctl goodbye`");
  }
  std::vector<std::uint8_t> data;
  if (args.data) {
    data = serialctl::parse_hex(*args.data);
  }
  serialctl::OwnedFd in_file(args.file ? ::open(args.file->c_str(), O_RDONLY | O_CLOEXEC) : -1);
  if (args.file && in_file.get() < 0) {
    std::cerr << kProgram << ": --file: " << *args.file << ": " << std::strerror(errno) << "\n";
    return kExitUsage;
  }
  const int in_fd = args.file ? in_file.get() : args.from_stdin ? STDIN_FILENO : -1;
  serialctl::OwnedFd out_file(
      args.out ? ::open(args.out->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1);
  if (args.out && out_file.get() < 0) {
    std::cerr << "serialctl: cannot create " << *args.out << ": " << std::strerror(errno) << "\n";
    return kExitUsage;
  }
  const int out_fd = args.out ? out_file.get() : STDOUT_FILENO;
  // Raw bytes into a file or pipe; a terminal gets a readable dump instead.
  const bool dump = !args.out && ::isatty(STDOUT_FILENO) == 1;

  serialclient::Client client(make_options(args.common));
  std::error_code ec;
  client.connect(args.common.address, ec);
  if (ec) {
    return transport_failure(ec, "connect " + args.common.address);
  }
  // Stream both ways: a large file or pipe goes out as it is read, and the response reaches
  // its destination as it arrives, in constant memory.
  const serialclient::BlockingProducer producer = [&](serialclient::BlockingRequestWriter& w) {
    if (in_fd < 0) {
      w.write(data);
      return;
    }
    std::vector<std::uint8_t> buffer(std::size_t{64} * 1024);
    for (;;) {
      const ssize_t n = ::read(in_fd, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n < 0) {
        throw std::runtime_error(std::string("read input: ") + std::strerror(errno));
      }
      if (n == 0) {
        return;
      }
      w.write(std::span(buffer).first(static_cast<std::size_t>(n)));
    }
  };
  serialctl::HexDumper dumper(stdout);
  std::uint64_t received = 0;
  const serialclient::BlockingConsumer consumer = [&](serialclient::BlockingResponseReader& r) {
    std::vector<std::uint8_t> buffer(std::size_t{64} * 1024);
    for (;;) {
      const std::size_t n = r.read_some(buffer);
      if (n == 0) {
        return;
      }
      received += n;
      const auto chunk = std::span(buffer).first(n);
      if (dump) {
        dumper.add(chunk);
      } else {
        serialctl::write_all(out_fd, chunk);
      }
    }
  };
  serialclient::Result result;
  try {
    result = client.call(task, producer, consumer, ec);
  } catch (const std::exception& e) {
    std::cerr << "serialctl: " << e.what() << "\n";
    return kExitTransport;
  }
  if (ec) {
    return transport_failure(ec, "call task " + std::to_string(args.task));
  }
  switch (result.status) {
    case serialclient::Status::ok:
      if (dump) {
        dumper.finish();
        std::fflush(stdout);
        std::cerr << "OK, " << received << " bytes\n";
      }
      if (args.out && out_file.close() != 0) {
        std::cerr << "serialctl: write " << *args.out << ": " << std::strerror(errno) << "\n";
        return kExitTransport;
      }
      return kExitOk;
    case serialclient::Status::error:
      return error_answer(result.error_code);
    case serialclient::Status::goodbye:
      std::cerr << kProgram
                << ": goodbye: the server is closing the connection; the task was not run\n";
      return kExitGoodbye;
  }
  return kExitTransport;
}

int run_keep_alive(const CommonArgs& args) {
  serialclient::Client client(make_options(args));
  std::error_code ec;
  client.connect(args.address, ec);
  if (ec) {
    return transport_failure(ec, "connect " + args.address);
  }
  const auto result = client.keep_alive(ec);
  if (ec) {
    return transport_failure(ec, "keep-alive");
  }
  if (result.is_goodbye()) {
    std::cerr << kProgram << ": goodbye: the server is closing the connection\n";
    return kExitGoodbye;
  }
  if (result.is_error()) {
    return error_answer(result.error_code);
  }
  std::cout << "OK\n";
  return kExitOk;
}

int run_goodbye(const CommonArgs& args) {
  serialclient::Client client(make_options(args));
  std::error_code ec;
  client.connect(args.address, ec);
  if (ec) {
    return transport_failure(ec, "connect " + args.address);
  }
  const auto result = client.goodbye(ec);
  if (ec) {
    return transport_failure(ec, "goodbye");
  }
  if (result.is_goodbye()) {
    std::cout << "goodbye\n";  // the answer asked for: success
    return kExitOk;
  }
  if (result.is_error()) {
    return error_answer(result.error_code);
  }
  std::cerr << kProgram << ": the server did not answer Goodbye\n";
  return kExitTransport;
}

/// serialctl list: the describe task (251); one task a line, "CODE NAME".
int run_list(const CommonArgs& args) {
  serialctl::DescribeAnswer answer;
  serialclient::Options options = make_options(args);
  options.handshake = serialctl::describe_hook(&answer);
  if (options.response_timeout > std::chrono::nanoseconds::zero()) {
    options.handshake_timeout = options.response_timeout;
  }
  serialclient::Client client(options);
  std::error_code ec;
  client.connect(args.address, ec);
  if (ec) {
    return transport_failure(ec, "list " + args.address);
  }
  client.close();
  switch (answer.code) {
    case serialserver::ResponseCode::ok:
      break;
    case serialserver::ResponseCode::error:
      if (answer.error_code == serialserver::kUnknownTaskErrorCode) {
        std::cerr << kProgram << ": the server does not describe its tasks (describe is off)\n";
        return kExitError;
      }
      return error_answer(answer.error_code);
    case serialserver::ResponseCode::goodbye:
      std::cerr << kProgram << ": goodbye: the server is closing the connection\n";
      return kExitGoodbye;
    default:
      std::cerr << kProgram << ": not a response code: " << static_cast<unsigned>(answer.code)
                << "\n";
      return kExitTransport;
  }
  std::vector<serialctl::ListedTask> tasks;
  try {
    tasks = serialctl::parse_listing(answer.content);
  } catch (const serialctl::MalformedListing& e) {
    std::cerr << kProgram << ": malformed task listing from " << args.address << ": " << e.what()
              << "\n";
    return kExitTransport;
  }
  for (const auto& task : tasks) {
    std::printf("%u %s\n", static_cast<unsigned>(task.code),
                serialctl::printable_name(task.name).c_str());
  }
  return kExitOk;
}

/// The address of a subcommand: ADDR as given, else $SERIAL_ADDR; a usage error without either.
void resolve_address(std::string& address) {
  if (address.empty()) {
    address = serialserver::apps::env_or("SERIAL_ADDR", "");
  }
  if (address.empty()) {
    throw CLI::ValidationError("ADDR", "required (or set SERIAL_ADDR)");
  }
}

/// call's words: ADDR TASK, or TASK alone with the address from $SERIAL_ADDR.
void resolve_call(CallArgs& args) {
  if (args.task_word.empty()) {
    if (args.common.address.empty()) {
      throw CLI::ValidationError("TASK", "required");
    }
    args.task_word = std::move(args.common.address);
    args.common.address.clear();
  }
  resolve_address(args.common.address);
  const std::string& word = args.task_word;
  if (word.empty() || word.size() > 3 ||
      word.find_first_not_of("0123456789") != std::string::npos) {
    throw CLI::ValidationError("TASK", "'" + word + "' is not a task code (0..249)");
  }
  args.task = std::stoi(word);
}

/// ADDR for a subcommand; optional on the command line when SERIAL_ADDR is set.
CLI::Option* add_address(CLI::App& sub, std::string& address) {
  return sub.add_option("ADDR", address,
                        "server address (default: the environment variable SERIAL_ADDR)");
}

int run_main(int argc, char** argv) {
  CLI::App app{"serialctl: call tasks on a serial-protocol server."};
  app.require_subcommand(1);
  app.fallthrough();  // the --tls flags may come before or after the subcommand
  serialserver::apps::add_version_flag(app, kProgram);
  app.footer(R"(ADDR is host:port, [v6]:port or a Unix socket path; without it, the environment
variable SERIAL_ADDR. Durations: 500ms, 5s, 1m30s.
TLS (1.2 or later) with --tls: the server's certificate is verified against --tls-ca (default:
the system's CAs) and must carry the host of ADDR (or --tls-server-name).

Exit status: 0 OK, 1 Error (reported as "serialctl: error 7"; for list, also a server whose
describe task is off), 2 Goodbye, 3 transport failure (or a malformed task listing, or a write
error on standard output), 64 usage (a bad argument, or a file argument that cannot
be read; nothing is sent).

Examples:
  serialctl call 127.0.0.1:7070 1 --data 68656c6c6f         echo "hello" (hex dump on a terminal)
  serialctl call 127.0.0.1:7070 1 --data 'de ad be ef' | xxd   raw bytes into a pipe
  serialctl call [::1]:7070 6 --file big.bin                 stream a file as the request
  tar c dir | serialctl call /run/app.sock 1 --stdin --out copy.tar
  serialctl call 127.0.0.1:7070 5 --data 000003e8 --timeout 500ms   fails with status 3
  SERIAL_ADDR=127.0.0.1:7070 serialctl call 2                ADDR from the environment
  serialctl list 127.0.0.1:7070                              the server's tasks, "CODE NAME"
  serialctl keepalive 127.0.0.1:7070
  serialctl goodbye 127.0.0.1:7070
  serialctl --tls --tls-ca ca.pem call localhost:7070 1 --data 00   over TLS, checked against ca.pem
  serialctl --tls --tls-ca ca.pem --tls-cert me.pem --tls-key me.key keepalive 10.0.0.5:7070)");

  TlsArgs tls;
  auto* tls_flag = app.add_flag("--tls", tls.enabled,
                                "connect with TLS (1.2 or later); the server's certificate is "
                                "verified and must carry the server's name");
  auto* tls_ca = app.add_option("--tls-ca", tls.ca_file,
                                "CA certificates (PEM) for the server's certificate; default: "
                                "the system's CAs")
                     ->check(serialserver::apps::readable_file());
  auto* tls_cert = app.add_option("--tls-cert", tls.certificate_file,
                                  "client certificate (PEM), for servers that require one")
                       ->check(serialserver::apps::readable_file());
  auto* tls_key = app.add_option("--tls-key", tls.key_file, "the private key of --tls-cert (PEM)")
                      ->check(serialserver::apps::readable_file());
  auto* tls_name = app.add_option("--tls-server-name", tls.server_name,
                                  "the name to verify and send as SNI; default: the host of ADDR");
  for (auto* option : {tls_ca, tls_cert, tls_key, tls_name}) {
    option->needs(tls_flag);
  }
  tls_cert->needs(tls_key);
  tls_key->needs(tls_cert);

  CallArgs call_args;
  auto* call = app.add_subcommand("call", "call TASK with a request; print the response");
  add_address(*call, call_args.common.address);
  call->add_option("TASK", call_args.task_word, "task code, 0..249");
  auto* data = call->add_option("--data", call_args.data, "request content as hex ('0a1b2c')");
  auto* file = call->add_option("--file", call_args.file, "request content from a file")
                   ->check(serialserver::apps::readable_file());
  auto* in = call->add_flag("--stdin", call_args.from_stdin, "request content from stdin");
  data->excludes(file, in);
  file->excludes(in);
  call->add_option("--out", call_args.out, "write the response content into this file");
  call->add_option("--timeout", call_args.common.timeout, "longest wait for the response")
      ->capture_default_str();
  call->callback([&call_args] { resolve_call(call_args); });

  CommonArgs keep_alive_args;
  auto* keep_alive = app.add_subcommand("keepalive", "send the keep-alive task (250)");
  add_address(*keep_alive, keep_alive_args.address);
  keep_alive->add_option("--timeout", keep_alive_args.timeout, "longest wait for the response")
      ->capture_default_str();
  keep_alive->callback([&keep_alive_args] { resolve_address(keep_alive_args.address); });

  CommonArgs list_args;
  auto* list = app.add_subcommand(
      "list", "list the server's tasks (the describe task, 251): one a line, CODE NAME");
  add_address(*list, list_args.address);
  list->add_option("--timeout", list_args.timeout, "longest wait for the listing")
      ->capture_default_str();
  list->callback([&list_args] { resolve_address(list_args.address); });

  CommonArgs goodbye_args;
  auto* goodbye = app.add_subcommand("goodbye", "send the goodbye task (255); exit 0 on Goodbye");
  add_address(*goodbye, goodbye_args.address);
  goodbye->add_option("--timeout", goodbye_args.timeout, "longest wait for the response")
      ->capture_default_str();
  goodbye->callback([&goodbye_args] { resolve_address(goodbye_args.address); });

  if (const auto status = serialserver::apps::parse_command_line(app, kProgram, argc, argv)) {
    return *status;
  }
  // Without this a server that closes while a request is being written would kill us.
  std::signal(SIGPIPE, SIG_IGN);
  call_args.common.tls = &tls;
  keep_alive_args.tls = &tls;
  goodbye_args.tls = &tls;
  list_args.tls = &tls;
  int status = kExitTransport;
  try {
    if (call->parsed()) {
      status = run_call(call_args);
    } else if (list->parsed()) {
      status = run_list(list_args);
    } else if (keep_alive->parsed()) {
      status = run_keep_alive(keep_alive_args);
    } else {
      status = run_goodbye(goodbye_args);
    }
  } catch (const UsageError& e) {
    std::cerr << kProgram << ": " << e.what() << "\nRun '" << kProgram << " --help' for usage.\n";
    return kExitUsage;
  }
  // A response or an "OK" that never reached standard output is a failure: a transport
  // failure's status, since the answer did not get where it was going.
  const int finished = serialserver::apps::finish_stdout(kProgram, status);
  return finished != status ? kExitTransport : status;
}

}  // namespace

int main(int argc, char** argv) {
  // Any other exception (from the client library or the system, such as std::bad_alloc) stops
  // the call: reported like one from the call itself in run_call, as a transport failure.
  return serialserver::apps::guarded_main("serialctl", kExitTransport, run_main, argc, argv);
}
