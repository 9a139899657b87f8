#pragma once

// Runs a real built program for a CLI test: arguments, environment, where its standard streams
// go; waits (bounded) for its exit status and collects what it printed.

#include "support/loopback.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace serialserver::test {

/// What a program did.
struct ProgramRun {
  int status = -1;  // the exit status, 128 + the signal, or -1 if it had to be killed
  std::string out;
  std::string err;
};

/// How to run it.
struct ProgramSetup {
  std::string stdin_path = "/dev/null";    // the program's standard input
  std::map<std::string, std::string> env;  // added to (or replacing in) the environment
  std::vector<std::string> unset_env;      // removed from the environment
  std::string stdout_path;                 // stdout here instead of a scratch file (not collected)
  /// Sent to the program this long after it starts (0: none).
  std::chrono::milliseconds signal_after{0};
  int signal = SIGINT;
  std::chrono::milliseconds timeout{60000};
};

inline std::string read_whole(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A path in the temporary directory unique to this process and `name`.
inline std::filesystem::path scratch_path(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("serialserver-prog-" + std::to_string(::getpid()) + "-" + name);
}

/// Runs bin_dir()/`program` with `args` under `setup`.
inline ProgramRun run_program(const std::string& program, const std::vector<std::string>& args,
                              const ProgramSetup& setup = {}) {
  using namespace std::chrono_literals;
  const auto out_path = scratch_path(program + "-stdout");
  const auto err_path = scratch_path(program + "-stderr");
  const std::string path = bin_dir() + "/" + program;
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (const auto& name : setup.unset_env) {
      ::unsetenv(name.c_str());
    }
    for (const auto& [name, value] : setup.env) {
      ::setenv(name.c_str(), value.c_str(), 1);
    }
    const int in_fd = ::open(setup.stdin_path.c_str(), O_RDONLY);
    const std::string out = setup.stdout_path.empty() ? out_path.string() : setup.stdout_path;
    const int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(in_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    std::vector<char*> argv{const_cast<char*>(path.c_str())};
    for (const auto& a : args) {
      argv.push_back(const_cast<char*>(a.c_str()));
    }
    argv.push_back(nullptr);
    ::execv(path.c_str(), argv.data());
    ::_exit(127);
  }
  ProgramRun result;
  const auto started = std::chrono::steady_clock::now();
  bool signalled = false;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    const auto now = std::chrono::steady_clock::now();
    if (!signalled && setup.signal_after.count() != 0 && now - started >= setup.signal_after) {
      ::kill(pid, setup.signal);
      signalled = true;
    }
    if (now - started > setup.timeout) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  if (setup.stdout_path.empty()) {
    result.out = read_whole(out_path);
  }
  result.err = read_whole(err_path);
  std::filesystem::remove(out_path);
  std::filesystem::remove(err_path);
  return result;
}

}  // namespace serialserver::test
