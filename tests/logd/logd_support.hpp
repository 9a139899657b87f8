#pragma once

// What the logd tests share: a temporary directory, a running serialserver-logd, messages,
// commands, and the raw handshake.

#include "logd_client.hpp"
#include "logd_protocol.hpp"
#include "support/loopback.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace logd_test {

using serialserver::ByteOrder;
using serialserver::test::bin_dir;
using serialserver::test::Bytes;
using serialserver::test::bytes;
using serialserver::test::ChildProcess;
using serialserver::test::free_port;
using serialserver::test::RawClient;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

/// A fresh directory for one test's database and logs.
inline fs::path make_temp_dir() {
  static std::atomic<int> counter{0};
  fs::path dir = fs::temp_directory_path() /
                 ("logd-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

/// Removes a test's directory when it goes out of scope: declare it before the LogdProcess
/// that uses the directory, so that the server has ended first.
class RemoveOnExit {
 public:
  explicit RemoveOnExit(fs::path dir) : dir_(std::move(dir)) {}
  ~RemoveOnExit() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  RemoveOnExit(const RemoveOnExit&) = delete;
  RemoveOnExit& operator=(const RemoveOnExit&) = delete;
  const fs::path& path() const { return dir_; }

 private:
  fs::path dir_;
};

/// A running serialserver-logd on a free port of 127.0.0.1.
class LogdProcess {
 public:
  explicit LogdProcess(fs::path dir, std::vector<std::string> extra = {}) : dir_(std::move(dir)) {
    start(std::move(extra));
  }
  void start(std::vector<std::string> extra = {}) {
    port_ = free_port();
    std::vector<std::string> args = {"--listen", "127.0.0.1:" + std::to_string(port_), "--db",
                                     (dir_ / "logd.sqlite").string(),
                                     // The port probe below leaves a connection in its
                                     // handshake; a short timeout keeps shutdown quick.
                                     "--handshake-timeout", "3s"};
    if (std::find(extra.begin(), extra.end(), "--grace") == extra.end()) {
      args.insert(args.end(), {"--grace", "2s"});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    process_ = std::make_unique<ChildProcess>(
        bin_dir() + "/serialserver-logd", args,
        (dir_ / ("logd-" + std::to_string(starts_++) + ".log")).string());
    ASSERT_TRUE(serialserver::test::wait_for_port(port_, 20000ms)) << "logd did not start";
  }
  /// kill -9, then wait for the exit.
  void kill9() {
    process_->signal(SIGKILL);
    process_->wait_exit(10000ms);
    process_.reset();
  }
  ChildProcess& process() { return *process_; }
  std::uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const fs::path& dir() const { return dir_; }

  logd::Client client(ByteOrder order = ByteOrder::big_endian,
                      std::optional<std::string> token = std::nullopt) const {
    logd::ClientOptions o;
    o.address = address();
    o.byte_order = order;
    o.token = std::move(token);
    o.timeout = 20000ms;
    return logd::Client(o);
  }

 private:
  fs::path dir_;
  std::uint16_t port_ = 0;
  int starts_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

inline logd::Message message(std::string log, std::string text, std::uint8_t level = 2,
                             std::int64_t time_ns = 0) {
  logd::Message m;
  m.log = std::move(log);
  m.text = std::move(text);
  m.level = level;
  m.time_ns = time_ns;
  return m;
}

inline std::vector<logd::Record> read_all(logd::Client& c, const std::string& log) {
  logd::ReadQuery q;
  q.log = log;
  std::vector<logd::Record> out;
  c.read(q, [&](logd::Record&& r) { out.push_back(std::move(r)); });
  return out;
}

/// Runs a command; returns its exit status and standard output.
inline std::pair<int, std::string> run(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    return {-1, ""};
  }
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) {
    out.append(buf, n);
  }
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

/// Handshake bytes on a raw socket, in the given byte order, without a token.
inline void raw_handshake(RawClient& raw, std::uint8_t order_byte) {
  raw.send({order_byte});
  EXPECT_EQ(raw.recv(2), bytes({order_byte, 0x00}));
}

/// Open descriptors of a process, from /proc.
inline std::size_t open_descriptors(pid_t pid) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e :
       fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    ++n;
  }
  return n;
}

/// Resident memory of a process in KiB, from /proc.
inline std::size_t resident_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::stoul(line.substr(6));
    }
  }
  return 0;
}

/// What the descriptors of a process point to, for a failure message.
inline std::string descriptor_list(pid_t pid) {
  std::string out;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    std::error_code ec;
    out += fs::read_symlink(e.path(), ec).string() + "\n";
  }
  return out;
}

inline std::string file_text(const fs::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace logd_test
