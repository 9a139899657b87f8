#pragma once

// Helpers of the serialserver-log tests: a serialserver-logd that can be restarted on the same
// port and database, and a way to run the real CLI with given standard input and see its exit
// status, standard output and standard error.

#include "logd_client.hpp"
#include "support/loopback.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace logcli_test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

/// A fresh directory, removed with the object.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("log-cli-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_file(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

/// A serialserver-logd on 127.0.0.1, its database in `dir`; start() again after stop() or
/// kill9() reuses the port and the database.
class Logd {
 public:
  explicit Logd(const TempDir& dir, std::vector<std::string> extra = {})
      : dir_(dir), extra_(std::move(extra)), port_(serialserver::test::free_port()) {
    start();
  }
  void start() {
    std::vector<std::string> args = {"--listen",
                                     address(),
                                     "--db",
                                     dir_.file("logd.sqlite"),
                                     "--grace",
                                     "2s",
                                     "--handshake-timeout",
                                     "1s"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    process_ = std::make_unique<serialserver::test::ChildProcess>(
        serialserver::test::bin_dir() + "/serialserver-logd", args,
        dir_.file("logd-" + std::to_string(starts_++) + ".log"));
    ASSERT_TRUE(serialserver::test::wait_for_port(port_, 20000ms)) << "logd did not start";
  }
  void kill9() {
    process_->signal(SIGKILL);
    process_->wait_exit(10000ms);
    process_.reset();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  logd::Client client() const {
    logd::ClientOptions o;
    o.address = address();
    o.timeout = 20000ms;
    return logd::Client(o);
  }

 private:
  const TempDir& dir_;
  std::vector<std::string> extra_;
  std::uint16_t port_;
  int starts_ = 0;
  std::unique_ptr<serialserver::test::ChildProcess> process_;
};

/// What a command did.
struct Outcome {
  int status = -1;
  std::string out;
  std::string err;
};

/// Runs `command` with /bin/sh, standard input from `input`; bounded by `timeout` seconds.
inline Outcome run(const TempDir& dir, const std::string& command, const std::string& input = "",
                   int timeout = 60) {
  static std::atomic<int> counter{0};
  const std::string base = dir.file("run-" + std::to_string(counter++));
  write_file(base + ".in", input);
  write_file(base + ".sh", command + "\n");
  const std::string line = "timeout " + std::to_string(timeout) + " /bin/sh " + base + ".sh < " +
                           base + ".in > " + base + ".out 2> " + base + ".err";
  const int status = std::system(line.c_str());
  Outcome o;
  o.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  o.out = read_file(base + ".out");
  o.err = read_file(base + ".err");
  return o;
}

/// The CLI's path.
inline std::string cli() { return serialserver::test::bin_dir() + "/serialserver-log"; }

/// The lines of `text`, without their newlines.
inline std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    out.push_back(line);
  }
  return out;
}

}  // namespace logcli_test
