#pragma once

// Helpers for loopback tests: a server with a listener on an ephemeral port, a raw blocking
// client over real sockets (TCP on 127.0.0.1 or ::1, or a Unix socket), and a child process
// runner for the real binaries. Every wait is bounded.

#include <serialserver/serialserver.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <gtest/gtest.h>

namespace serialserver::test {

using Bytes = std::vector<std::uint8_t>;
using namespace std::chrono_literals;

/// Bytes from a list of ints, for readable expectations: bytes({0x07, 0x00}).
inline Bytes bytes(std::initializer_list<int> list) {
  Bytes out;
  for (int v : list) {
    out.push_back(static_cast<std::uint8_t>(v));
  }
  return out;
}

/// Block-encodes `content` with the project's encoder (255-byte blocks, remainder, end byte).
inline Bytes encode(const Bytes& content) {
  Bytes out(wire::encoded_size(content.size()));
  out.resize(wire::encode_message(content, out));
  return out;
}

/// An OK response carrying `content`, as it appears on the wire.
inline Bytes ok_response(const Bytes& content) {
  Bytes out{0x00};
  const Bytes body = encode(content);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

/// A request: task code + the block-encoded content.
inline Bytes request(TaskCode code, const Bytes& content = {}) {
  Bytes out{code};
  Bytes body = encode(content);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

/// Big-endian bytes of an unsigned number.
template <class T>
Bytes big_endian(T value) {
  Bytes out(sizeof(T));
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    out[sizeof(T) - 1 - i] = static_cast<std::uint8_t>(value >> (8 * i));
  }
  return out;
}

/// A logger that keeps every line, for tests that check what was logged.
class CapturingLogger final : public Logger {
 public:
  bool enabled(LogLevel level) const noexcept override { return level >= LogLevel::debug; }
  void write(LogLevel /*level*/, std::string_view message) noexcept override {
    std::lock_guard lock(mutex_);
    lines_.emplace_back(message);
  }
  std::vector<std::string> lines() const {
    std::lock_guard lock(mutex_);
    return lines_;
  }
  bool contains(std::string_view needle) const {
    for (const auto& line : lines()) {
      if (line.find(needle) != std::string::npos) {
        return true;
      }
    }
    return false;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

/// A Server with a Listener on an ephemeral port of 127.0.0.1 (or the given address).
/// The demo-like tasks are not registered: each test registers what it needs.
class TestServer {
 public:
  explicit TestServer(ServerOptions options = quiet_options(),
                      ListenerOptions listener_options = default_listener_options())
      : server_(std::move(options)), listener_options_(std::move(listener_options)) {}
  ~TestServer() { stop(0ms); }

  static ServerOptions quiet_options() {
    ServerOptions o;
    o.logger = std::make_shared<CapturingLogger>();
    return o;
  }
  static ListenerOptions default_listener_options() {
    ListenerOptions o;
    o.address = "127.0.0.1:0";
    o.io_threads = 2;
    return o;
  }

  Server& server() { return server_; }
  CapturingLogger* logger() { return dynamic_cast<CapturingLogger*>(server_.log().get()); }

  /// Starts listening; call after registering tasks (registering later works too).
  void start() {
    listener_ = std::make_unique<Listener>(server_, listener_options_);
    listener_->start();
  }
  Listener& listener() { return *listener_; }
  std::uint16_t port() const { return listener_->port(); }
  std::string address() const { return listener_->local_address(); }

  /// Graceful shutdown with `grace`, then waits (bounded by the grace plus 5 s, else fails).
  void stop(std::chrono::nanoseconds grace) {
    if (!listener_) {
      return;
    }
    listener_->shutdown(grace);
    std::thread waiter([this] { listener_->wait(); });
    const auto deadline = std::chrono::steady_clock::now() + grace + 5s;
    while (listener_->num_connections() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
    }
    waiter.join();
    listener_.reset();
  }

 private:
  Server server_;
  ListenerOptions listener_options_;
  std::unique_ptr<Listener> listener_;
};

/// A raw blocking client over a real socket: writes bytes, reads exact counts with a deadline.
class RawClient {
 public:
  /// Connects over TCP to host:port ("127.0.0.1" or "::1").
  RawClient(const std::string& host, std::uint16_t port) : tcp_(io_) {
    asio::ip::tcp::endpoint endpoint(asio::ip::make_address(host), port);
    tcp_.connect(endpoint);
    tcp_.set_option(asio::ip::tcp::no_delay(true));
    fd_ = tcp_.native_handle();
  }
  explicit RawClient(std::uint16_t port) : RawClient("127.0.0.1", port) {}
  /// Connects to a Unix socket path.
  explicit RawClient(const std::string& unix_path) : tcp_(io_), unix_(io_) {
    unix_->connect(asio::local::stream_protocol::endpoint(unix_path));
    fd_ = unix_->native_handle();
  }

  /// Writes all of `data`.
  void send(const Bytes& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n < 0) {
        throw std::system_error(errno, std::generic_category(), "send");
      }
      off += static_cast<std::size_t>(n);
    }
  }
  /// Reads exactly n bytes, or fewer if the peer closes or `timeout` passes first.
  Bytes recv(std::size_t n, std::chrono::milliseconds timeout = 5000ms) {
    Bytes out;
    out.reserve(n);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out.size() < n) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        break;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
        break;
      }
      std::uint8_t buf[65536];
      const ssize_t r = ::recv(fd_, buf, std::min(sizeof buf, n - out.size()), 0);
      if (r <= 0) {
        closed_ = true;
        break;
      }
      out.insert(out.end(), buf, buf + r);
    }
    return out;
  }
  /// Sends a request and reads `response_size` bytes.
  Bytes call(const Bytes& req, std::size_t response_size) {
    send(req);
    return recv(response_size);
  }
  /// True if the peer closes (EOF or reset) within `timeout` with no further bytes.
  bool closed_within(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return false;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
        return false;
      }
      std::uint8_t b;
      const ssize_t r = ::recv(fd_, &b, 1, 0);
      if (r <= 0) {
        closed_ = true;
        return true;
      }
      extra_.push_back(b);  // unexpected bytes: kept so that tests can report them
    }
  }
  /// Bytes seen by closed_within before the close.
  const Bytes& unexpected_bytes() const { return extra_; }
  /// Closes the write side (the peer sees EOF) but keeps reading.
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  /// Closes the socket.
  void close() {
    std::error_code ignored;
    tcp_.close(ignored);
    if (unix_) {
      unix_->close(ignored);
    }
  }
  /// Makes close() send a reset instead of FIN.
  void set_linger_reset() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  int fd() const { return fd_; }
  /// True once a read saw the peer close (end of stream or reset).
  bool peer_closed() const { return closed_; }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket tcp_;
  std::optional<asio::local::stream_protocol::socket> unix_;
  int fd_ = -1;
  bool closed_ = false;
  Bytes extra_;
};

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
template <class F>
bool eventually(F condition, std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(2ms);
  }
  return condition();
}

/// A child process (one of the real binaries), killed on destruction.
class ChildProcess {
 public:
  /// Starts `path` with `args`; stderr goes to `log_path` if given. When the test has failed by
  /// the time the child is destroyed, the end of that log is printed, so that a failure seen
  /// only in CI shows what the program said.
  ChildProcess(const std::string& path, const std::vector<std::string>& args,
               const std::string& log_path = "")
      : log_path_(log_path) {
    pid_ = ::fork();
    if (pid_ == 0) {
      if (!log_path.empty()) {
        FILE* f = std::freopen(log_path.c_str(), "w", stderr);
        (void)f;
      }
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(path.c_str()));
      for (const auto& a : args) {
        argv.push_back(const_cast<char*>(a.c_str()));
      }
      argv.push_back(nullptr);
      ::execv(path.c_str(), argv.data());
      ::_exit(127);
    }
  }
  ~ChildProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (!log_path_.empty() && ::testing::Test::HasFailure()) {
      print_log_end();
    }
  }
  void signal(int sig) { ::kill(pid_, sig); }
  /// Waits up to `timeout` for the exit; returns the exit status, or nullopt if still running.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(5ms);
    }
    return std::nullopt;
  }
  pid_t pid() const { return pid_; }

 private:
  void print_log_end() const {
    std::ifstream in(log_path_, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    constexpr std::size_t kShown = 6000;
    std::fprintf(stderr, "---- the end of %s ----\n%s\n---- end ----\n", log_path_.c_str(),
                 text.size() > kShown ? text.substr(text.size() - kShown).c_str() : text.c_str());
  }

  std::string log_path_;
  pid_t pid_ = -1;
  bool exited_ = false;
};

/// The directory of the project's binaries (serialserver-demo and friends).
inline std::string bin_dir() {
#ifdef SERIALSERVER_BIN_DIR
  return SERIALSERVER_BIN_DIR;
#else
  return "bin";
#endif
}

/// Waits until a TCP port on 127.0.0.1 accepts connections (bounded).
inline bool wait_for_port(std::uint16_t port, std::chrono::milliseconds timeout = 10000ms) {
  return eventually(
      [&] {
        try {
          RawClient c(port);
          return true;
        } catch (...) {
          return false;
        }
      },
      timeout);
}

/// Reserves `port` for this test process among all test processes on the machine: ctest runs
/// tests in parallel, and two processes that probed the same port before either child bound it
/// would start two servers on it, one test then talking to the other's server. The lock is an
/// flock on a file named after the port; it is held until this process exits (the descriptor is
/// kept open on purpose and not inherited by children), and the kernel drops it if the process
/// dies. False when another process holds it.
inline bool reserve_port_for_this_process(std::uint16_t port) {
  std::error_code ec;
  const auto dir = std::filesystem::temp_directory_path(ec) / "serialserver-test-ports";
  std::filesystem::create_directories(dir, ec);
  const std::string path = (dir / std::to_string(port)).string();
  const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0666);
  if (fd < 0) {
    return true;  // no lock to take (read-only temp dir): fall back on the bind probe alone
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return false;
  }
  return true;
}

/// A free TCP port on 127.0.0.1 for a child program to listen on (bound then released).
/// Chosen below the kernel's ephemeral range (32768 and up by default), so that the many
/// client connections that tests open cannot take it as their source port before the child
/// binds it; never the same port twice in one test process, and never one that another test
/// process has taken (see reserve_port_for_this_process). Thread-safe.
inline std::uint16_t free_port() {
  static std::mutex mutex;
  static std::set<std::uint16_t> given;
  static std::uint32_t next = 20000 + static_cast<std::uint32_t>(::getpid()) * 7919U % 12000U;
  const std::lock_guard lock(mutex);
  asio::io_context io;
  for (int attempt = 0; attempt < 12000; ++attempt) {
    const auto port = static_cast<std::uint16_t>(next);
    next = next + 1 < 32000 ? next + 1 : 20000;
    if (given.contains(port)) {
      continue;
    }
    asio::ip::tcp::acceptor probe(io);
    asio::error_code ec;
    probe.open(asio::ip::tcp::v4(), ec);
    if (!ec) {
      probe.bind({asio::ip::make_address("127.0.0.1"), port}, ec);
    }
    if (!ec && reserve_port_for_this_process(port)) {
      given.insert(port);
      return port;
    }
  }
  throw std::runtime_error("free_port: no free port in 20000..31999");
}

// ---- timing, metrics and memory helpers ------------------------------------------------------

/// True when built with AddressSanitizer or ThreadSanitizer (slower: tests scale sizes down).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif

/// Slack allowed past a deadline in timing tests (the machine may be shared and sanitized).
inline constexpr std::chrono::milliseconds kTimingSlack = kSanitized ? 1500ms : 750ms;

/// Milliseconds since `start` on the steady clock.
inline std::chrono::milliseconds elapsed_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start);
}

/// Metrics that keep every connection-closed reason and every finished task.
class RecordingMetrics final : public Metrics {
 public:
  struct Task {
    TaskCode code = 0;
    TaskOutcome outcome = TaskOutcome::ok;
    ErrorCode error_code = 0;
    std::chrono::nanoseconds duration{0};
    std::uint64_t bytes_read = 0;
  };
  void connection_opened(const Client& /*client*/) noexcept override {
    std::lock_guard lock(mutex_);
    ++opened_;
  }
  void connection_closed(const Client& /*client*/, std::error_code reason) noexcept override {
    std::lock_guard lock(mutex_);
    closed_.push_back(reason);
  }
  void task_finished(const Client& /*client*/, const TaskRecord& record) noexcept override {
    std::lock_guard lock(mutex_);
    tasks_.push_back(
        Task{record.code, record.outcome, record.error_code, record.duration, record.bytes_read});
  }
  std::size_t opened() const {
    std::lock_guard lock(mutex_);
    return opened_;
  }
  std::vector<std::error_code> closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }
  std::vector<Task> tasks() const {
    std::lock_guard lock(mutex_);
    return tasks_;
  }
  /// The finished tasks with this code.
  std::vector<Task> tasks_with_code(TaskCode code) const {
    std::vector<Task> out;
    for (const auto& t : tasks()) {
      if (t.code == code) {
        out.push_back(t);
      }
    }
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::size_t opened_ = 0;
  std::vector<std::error_code> closed_;
  std::vector<Task> tasks_;
};

/// TestServer::quiet_options() with the given metrics attached.
inline ServerOptions options_with_metrics(const std::shared_ptr<Metrics>& metrics) {
  ServerOptions o = TestServer::quiet_options();
  o.metrics = metrics;
  return o;
}

/// This process's resident set size in bytes (VmRSS of /proc/self/status), 0 if unknown.
inline std::uint64_t vm_rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) {
    return 0;
  }
  char line[256];
  unsigned long kib = 0;  // NOLINT(google-runtime-int): the type %lu reads
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "VmRSS: %lu kB", &kib) == 1) {  // NOLINT(cert-err34-c)
      break;
    }
  }
  std::fclose(f);
  return std::uint64_t{kib} * 1024;
}

}  // namespace serialserver::test
