#pragma once

// The conventions every program in apps/ follows, in one place:
// - a usage error (unknown flag, bad value, unknown subcommand, unreadable file argument) prints
//   one line "<program>: <what>" and a hint to --help on stderr and exits 64 (EX_USAGE);
// - --help and --version print to stdout and exit 0;
// - a write error on standard output (a full disk, /dev/full, a closed pipe) is a failure;
// - an address may come from an environment variable when it is not given on the command line;
// - an Error answer is reported the same way by every client: "error 255 (unknown task)".
// Thread-safety: these functions are for the program's main thread.

#include <serialserver/protocol.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#ifndef SERIALSERVER_VERSION_STRING
#define SERIALSERVER_VERSION_STRING "unknown"
#endif

namespace serialserver::apps {

/// The exit status of every usage error (sysexits.h's EX_USAGE).
inline constexpr int kExitUsage = 64;

/// The project's version, as the programs print it.
inline constexpr std::string_view kVersion = SERIALSERVER_VERSION_STRING;

/// Adds --version to `app`: prints "<program> <version>" and exits 0 (through parse_command_line).
inline void add_version_flag(CLI::App& app, const std::string& program) {
  app.set_version_flag("--version", program + " " + std::string(kVersion),
                       "print the version and exit");
}

/// CLI11's check for a file argument that must exist and be readable; its message names the
/// file, so that "--tls-ca nofile.pem" is a usage error about nofile.pem.
inline CLI::Validator readable_file() {
  return {[](std::string& path) -> std::string {
            if (::access(path.c_str(), R_OK) != 0) {
              return path + ": " + std::strerror(errno);
            }
            return {};
          },
          "FILE", "readable file"};
}

namespace detail {

/// CLI11 reports an unknown subcommand as a surplus positional or "A subcommand is required";
/// this finds the word the user meant as a subcommand, if any.
inline std::optional<std::string> unknown_subcommand(const CLI::App& app, int argc, char** argv) {
  if (app.get_subcommands({}).empty()) {
    return std::nullopt;
  }
  for (int i = 1; i < argc; ++i) {
    const std::string_view word(argv[i]);
    if (word.empty() || word.front() == '-') {
      // The value of an option that takes one ("--addr A") is not a subcommand either.
      const CLI::Option* option = word.find('=') == std::string_view::npos
                                      ? app.get_option_no_throw(std::string(word))
                                      : nullptr;
      if (option != nullptr && option->get_type_size() > 0) {
        ++i;
      }
      continue;
    }
    for (const auto* sub : app.get_subcommands({})) {
      if (sub->check_name(std::string(word))) {
        return std::nullopt;
      }
    }
    return std::string(word);
  }
  return std::nullopt;
}

/// CLI11 checks for a missing subcommand before it looks at surplus words, so "--bogus" alone
/// reads "A subcommand is required"; this finds a word that looks like an option but is none of
/// the program's (nor of any of its subcommands').
inline std::optional<std::string> unknown_option(const CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string word(argv[i]);
    if (word.size() < 2 || word.front() != '-' || word == "--") {
      continue;
    }
    word = word.substr(0, word.find('='));
    bool known = app.get_option_no_throw(word) != nullptr;
    for (const auto* sub : app.get_subcommands({})) {
      known = known || sub->get_option_no_throw(word) != nullptr;
    }
    if (!known) {
      return word;
    }
  }
  return std::nullopt;
}

}  // namespace detail

/// Parses the command line. Returns nothing when the program should go on; otherwise the status
/// to exit with: 0 after --help or --version (printed to stdout), kExitUsage after a usage error
/// (one line on stderr naming the program, then a hint to --help).
inline std::optional<int> parse_command_line(CLI::App& app, const std::string& program, int argc,
                                             char** argv) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return std::fflush(stdout) == 0 && std::ferror(stdout) == 0 ? 0 : 1;
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
    return std::fflush(stdout) == 0 && std::ferror(stdout) == 0 ? 0 : 1;
  } catch (const CLI::CallForVersion& e) {
    std::fprintf(stdout, "%s\n", e.what());
    return std::fflush(stdout) == 0 && std::ferror(stdout) == 0 ? 0 : 1;
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    if (auto word = detail::unknown_subcommand(app, argc, argv);
        word && (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr ||
                 dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr)) {
      what = "unknown subcommand '" + *word + "'";
    } else if (auto option = detail::unknown_option(app, argc, argv);
               option && dynamic_cast<const CLI::RequiredError*>(&e) != nullptr) {
      what = "unknown option '" + *option + "'";
    }
    std::fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", program.c_str(), what.c_str(),
                 program.c_str());
    return kExitUsage;
  }
}

/// Flushes standard output at the end of a run. Returns `status` if everything written reached
/// it; otherwise prints "<program>: write error on standard output: <reason>" and returns 1
/// (or `status` if that already says failure).
inline int finish_stdout(const std::string& program, int status) {
  errno = 0;
  if (std::fflush(stdout) == 0 && std::ferror(stdout) == 0) {
    return status;
  }
  const int err = errno != 0 ? errno : EIO;
  std::fprintf(stderr, "%s: write error on standard output: %s\n", program.c_str(),
               std::strerror(err));
  return status != 0 ? status : 1;
}

/// The value of environment variable `name`, or `fallback` when it is unset or empty.
inline std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}

/// How every client names an Error answer: "error 255 (unknown task)". `name` is the meaning of
/// an application's own code, when the program knows it; the library's reserved codes are named
/// here.
inline std::string describe_error_answer(ErrorCode code, std::string_view name = {}) {
  std::string text = "error " + std::to_string(code);
  if (name.empty()) {
    switch (code) {
      case kUnknownTaskErrorCode:
        name = "unknown task";
        break;
      case kMessageTooLargeErrorCode:
        name = "request too large";
        break;
      case kBusyErrorCode:
        name = "busy";
        break;
      case kDeadlineExceededErrorCode:
        name = "deadline exceeded";
        break;
      default:
        break;
    }
  }
  if (!name.empty()) {
    text += " (";
    text += name;
    text += ")";
  }
  return text;
}

}  // namespace serialserver::apps
