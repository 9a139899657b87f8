#pragma once

// serialbench's run configuration and the command line that fills it.

#include <serialserver/protocol.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include <serialclient/address.hpp>
#include <serialclient/retry.hpp>

namespace serialbench {

inline constexpr int kExitOk = 0;
inline constexpr int kExitErrors = 1;
inline constexpr int kExitConnect = 3;
inline constexpr int kExitUsage = 64;

/// What a valid answer is: the request echoed, an empty OK, any OK, an Error, or anything.
enum class Expect { echo, empty, ok, error, any };
/// How the summary is printed.
enum class OutputFormat { text, json, csv };
/// The I/O engine; automatic is resolved to epoll or io_uring before the run.
enum class Engine { automatic, epoll, io_uring };

const char* engine_name(Engine engine);

/// One run's settings. Thread-safety: read-only once the run starts (the workers share it).
struct Config {
  serialclient::Address address;
  std::size_t connections = 1;
  std::size_t pipeline = 1;
  std::size_t size = 0;
  serialserver::TaskCode task = 2;
  Expect expect = Expect::empty;
  std::optional<std::chrono::nanoseconds> duration;
  std::optional<std::uint64_t> requests;
  std::chrono::nanoseconds warmup{0};
  /// How long a loop turn that found nothing keeps polling before it sleeps in the kernel
  /// (0: sleep at once). See Spinner.
  std::chrono::nanoseconds spin{0};
  unsigned threads = 1;
  /// --rps: requests per second over all connections, each paced at its share; 0: closed loop.
  double rps = 0;
  OutputFormat format = OutputFormat::text;
  bool progress = false;
  bool tls = false;
  Engine engine = Engine::automatic;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  /// --retry: a call known not to have run (answered Error 253 busy, or Goodbye, or not yet
  /// written when its connection was lost) is sent again after the policy's back-off, within
  /// its budget per request, and a lost connection is opened again; off by default.
  bool retry = false;
  /// --idempotent (with --retry): a call whose connection dropped after it was written, without
  /// an answer, is sent again too (it may have run).
  bool idempotent = false;
  serialclient::RetryPolicy retry_policy;
};

/// Parses the command line: the configuration to run, or the status to exit with at once
/// (after --help, or a usage error already reported on stderr).
std::variant<Config, int> parse_options(int argc, char** argv);

}  // namespace serialbench
