#pragma once

#include <serialserver/byte_order.hpp>
#include <serialserver/logger.hpp>
#include <serialserver/metrics.hpp>
#include <serialserver/protocol.hpp>
#include <serialserver/task_metadata.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace serialserver {

class Server;

/// One connection that a Server is handling (Go: serialserver.Client).
///
/// Thread-safety: every public member function may be called from any thread at any time.
/// Lifetime: held by std::shared_ptr (Server::clients(), TaskContext::client()). The handle stays
/// valid after the connection ends (then cancel/close/disconnect do nothing), but must not
/// outlive the Server, nor the io_context that ran the connection.
class Client : public std::enable_shared_from_this<Client> {
 public:
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  virtual ~Client();

  /// The byte order negotiated for this connection.
  ByteOrder byte_order() const noexcept { return byte_order_; }
  /// Cancels the running task, if any (its stop_token fires). Does nothing when idle or when the
  /// task was already cancelled.
  void cancel();
  /// Closes the connection now, without a response; a running task is cancelled.
  void close();
  /// Begins a graceful disconnection (docs/protocol.md section 7): an idle connection closes at
  /// once; a running task may finish and send its response, then the connection closes; a task code
  /// that arrives meanwhile is answered with Goodbye. After `grace` has passed, a task still
  /// running is cancelled and the connection closed without a response. A second call keeps the
  /// earlier of the two deadlines. Non-blocking.
  void disconnect(std::chrono::nanoseconds grace);

  /// The local address, as "127.0.0.1:7070", "[::1]:7070" or a Unix socket path.
  const std::string& local_address() const noexcept { return local_address_; }
  /// The remote address, in the same form.
  const std::string& remote_address() const noexcept { return remote_address_; }
  /// "remote->local", as Go's Client.String.
  std::string to_string() const { return remote_address_ + "->" + local_address_; }

  /// The logger (inherited from the server unless set_logger was called).
  std::shared_ptr<Logger> log() const;
  /// Replaces this client's logger (null: inherit the server's again).
  void set_logger(std::shared_ptr<Logger> logger);
  /// The metrics (inherited from the server unless set_metrics was called); may be null.
  std::shared_ptr<Metrics> metrics() const;
  /// Replaces this client's metrics (null: inherit the server's again).
  void set_metrics(std::shared_ptr<Metrics> metrics);

  /// The task being served now, or nothing when idle.
  std::optional<TaskMetadata> metadata() const;
  /// Every task code this connection has been sent so far, in increasing order (Go: TaskCodes,
  /// "all assigned task codes"): the reserved keep-alive and codes with no registered function
  /// count too, since each was served (answered OK or Error); a Goodbye does not.
  std::vector<TaskCode> task_codes() const;
  /// When the server took the connection.
  std::chrono::system_clock::time_point timestamp() const noexcept { return timestamp_; }
  /// When the connection was last active: when the request of its last task arrived, or when
  /// the server took it if no task has run yet. The listener evicts, at max_connections, the
  /// idle connection (no task running) that was active the longest ago. Read from the value
  /// each task records anyway, so that it costs the serving path no clock read of its own.
  std::chrono::system_clock::time_point last_active() const noexcept {
    return std::chrono::system_clock::time_point(
        std::chrono::system_clock::duration(task_start_.load(std::memory_order_relaxed)));
  }
  /// A number unique within the process, increasing with connection order.
  std::uint64_t id() const noexcept { return id_; }
  /// The server handling this connection.
  Server& server() const noexcept { return server_; }
  /// True once the connection has ended.
  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }

 protected:
  /// @cond INTERNAL
  // The interface between Client and the connection that implements it: not for applications.
  Client(Server& server, ByteOrder byte_order, std::string local_address,
         std::string remote_address);

  // Implemented by the connection; each is called on any thread and must hop to the
  // connection's executor itself.
  virtual void do_cancel() = 0;
  virtual void do_close() = 0;
  virtual void do_disconnect(std::chrono::nanoseconds grace) = 0;

  // Used by the connection (on its own executor).
  struct Snapshot {
    std::shared_ptr<Logger> logger;
    std::shared_ptr<Metrics> metrics;
    std::uint32_t client_version = ~0U;
    std::uint32_t server_version = ~0U;
  };
  /// Records the start of a task; returns the current logger and metrics.
  void begin_task(TaskCode code, const std::string* name,
                  std::chrono::system_clock::time_point start);
  void end_task() noexcept;
  /// Held while the connection drops what a task name recorded by begin_task points into
  /// (metadata() copies the name under it).
  std::unique_lock<std::mutex> lock_task_metadata() const { return std::unique_lock(mutex_); }
  /// Current logger and metrics, refreshed if set_logger/set_metrics changed them.
  void refresh(Snapshot& snapshot) const;
  void mark_closed() noexcept { closed_.store(true, std::memory_order_release); }
  /// @endcond

 private:
  // Fields that requests do not touch come first. The ones that every request reads or writes
  // (from server_ on) come last, next to the connection's own, so that a request touches few
  // cache lines: with many connections, each line is a cache miss.
  const std::string local_address_;
  const std::string remote_address_;
  const std::chrono::system_clock::time_point timestamp_;
  const std::uint64_t id_;
  std::atomic<bool> closed_{false};

  mutable std::mutex mutex_;  // guards logger_ and metrics_; see lock_task_metadata()
  std::shared_ptr<Logger> logger_;
  std::shared_ptr<Metrics> metrics_;

  Server& server_;
  const ByteOrder byte_order_;
  std::atomic<std::uint32_t> settings_version_{0};

  // The running task, written only by the connection's thread, without a lock: a sequence lock
  // (odd while begin_task writes) lets metadata() read a consistent copy. Every field is an
  // atomic, so a reader that races a writer reads stale values, never torn ones, and retries.
  std::atomic<std::uint32_t> task_sequence_{0};
  std::atomic<bool> task_active_{false};
  std::atomic<TaskCode> task_code_{0};
  std::atomic<const std::string*> task_name_{nullptr};
  std::atomic<std::chrono::system_clock::rep> task_start_;      // also last_active()
  std::array<std::atomic<std::uint64_t>, 4> assigned_codes_{};  // a bit per task code

 protected:
  /// @cond INTERNAL
  std::atomic<std::uint64_t> task_bytes_read_{0};
  std::atomic<std::uint64_t> task_bytes_written_{0};
  /// @endcond
};

}  // namespace serialserver
