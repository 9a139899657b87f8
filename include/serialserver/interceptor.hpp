#pragma once

#include <serialserver/metrics.hpp>
#include <serialserver/protocol.hpp>
#include <serialserver/session_data.hpp>

#include <cstdint>
#include <string_view>

namespace serialserver {

class Client;

/// What an Interceptor decides about a task before its function runs.
/// Thread-safety: an immutable value.
class Admission {
 public:
  /// What happens to the task.
  enum class Verdict : std::uint8_t {
    run,    ///< the task runs (unless a later interceptor decides otherwise)
    error,  ///< the task does not run: its request is read and discarded, then Error + code
    drop,   ///< the task does not run: the connection is closed without an answer
  };

  /// Let the task run.
  static constexpr Admission run() noexcept { return {Verdict::run, 0}; }
  /// Answer Error `code` without running the task (applications use 0..251: docs/protocol.md
  /// section 5; 253, busy, tells a client it may retry later).
  static constexpr Admission error(ErrorCode code) noexcept { return {Verdict::error, code}; }
  /// Close the connection without an answer (Errc::closed_by_server).
  static constexpr Admission drop() noexcept { return {Verdict::drop, 0}; }

  /// What happens to the task.
  Verdict verdict() const noexcept { return verdict_; }
  /// The code of an `error` verdict.
  ErrorCode error_code() const noexcept { return code_; }

 private:
  constexpr Admission(Verdict verdict, ErrorCode code) noexcept : verdict_(verdict), code_(code) {}
  Verdict verdict_;
  ErrorCode code_;
};

/// A registered task about to run, as an Interceptor sees it.
struct TaskCall {
  const Client& client;        ///< the connection (addresses, id, metadata)
  TaskCode code;               ///< the task code
  std::string_view name;       ///< the name it was registered with (may be empty)
  const SessionData& session;  ///< what the handshake returned, as TaskContext::session()
};

/// Hooks around every task of a server (ServerOptions::interceptors): before a registered
/// task's function runs, to authorise it per task, limit its rate or tag its logs; and after
/// any task has been answered (keep-alive, describe and unknown codes too), with its record.
///
/// Thread-safety: called concurrently from every I/O thread of the server, so an implementation
/// synchronises its own state. Both hooks run on the connection's I/O thread between requests:
/// they must not block, and they should be quick (they delay that thread's other connections).
/// Lifetime: shared by the server's options; lives as long as the Server.
class Interceptor {
 public:
  virtual ~Interceptor() = default;
  /// Before the function of a registered task runs, and before it takes one of
  /// ServerOptions::max_concurrent_tasks. The first interceptor, in the order of
  /// ServerOptions::interceptors, that does not answer Admission::run() decides. An exception
  /// counts as Admission::drop() (and is logged).
  virtual Admission before_task(const TaskCall& /*call*/) { return Admission::run(); }
  /// After a task has been answered (or dropped), with its outcome, duration and byte counts;
  /// as Metrics::task_finished sees it.
  virtual void after_task(const Client& /*client*/, const TaskRecord& /*record*/) noexcept {}
};

}  // namespace serialserver
