#pragma once

// serialserver-log's command line: its flags and subcommands, and the checks made before
// anything is sent (a usage error exits 64 having sent nothing).

#include "logd_client.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace logd::cli {

/// Everything the command line may set. Thread-safety: a plain value.
struct Arguments {
  ClientOptions client;
  std::string token_file;
  std::string byte_order = "native";
  std::string timeout = "30s";
  bool tls = false;
  serialclient::TlsOptions tls_options;

  std::string name;
  std::string text;
  std::string level = "info";
  std::string max_level = "fatal";
  std::string time;
  std::vector<std::string> fields;
  bool from_stdin = false;
  bool stdin_whole = false;
  std::string since;
  std::string until;
  std::string before;
  std::uint32_t limit = 0;
  std::uint32_t last = 10;
  bool follow = false;
  std::string output = "text";
};

/// The subcommands, owned by the CLI::App they were added to.
struct Subcommands {
  CLI::App* send = nullptr;
  CLI::App* read = nullptr;
  CLI::App* tail = nullptr;
  CLI::App* list = nullptr;
  CLI::App* erase = nullptr;
};

/// Adds the flags and subcommands to `app`, storing into `a` (which must outlive the parse).
/// Each value is checked as it is parsed: log names, levels, fields, times, durations, files.
Subcommands define(CLI::App& app, Arguments& a);

/// The checks that involve more than one flag, after parsing (--since after --until, TEXT with
/// --stdin, '-' as TEXT, ...); returns the error, or nothing. `now` is the present in
/// nanoseconds since the epoch. Thread-safety: a pure function.
std::optional<std::string> cross_check(const Arguments& a, const Subcommands& s, std::int64_t now);

}  // namespace logd::cli
