#pragma once

#include <serialserver/protocol.hpp>

#include <cstdint>
#include <span>
#include <system_error>
#include <vector>

#include <serialclient/error.hpp>

namespace serialclient {

using serialserver::ErrorCode;
using serialserver::TaskCode;

/// Message content.
using Bytes = std::vector<std::uint8_t>;

/// What the server answered (docs/protocol.md section 3).
enum class Status : std::uint8_t {
  ok,       ///< the task ran; Result::response holds its content
  error,    ///< the task failed with Result::error_code
  goodbye,  ///< the task was not run; the server closes the connection
};

/// The outcome of one call. A remote Error is a value here, never an exception.
/// Thread-safety: a plain value.
struct Result {
  /// What the server answered.
  Status status = Status::ok;
  /// The response content (OK only; empty when a streaming reader consumed it).
  Bytes response;
  /// The error code (Error only).
  ErrorCode error_code = 0;

  /// True for OK.
  bool ok() const noexcept { return status == Status::ok; }
  /// True for Error.
  bool is_error() const noexcept { return status == Status::error; }
  /// True for Goodbye.
  bool is_goodbye() const noexcept { return status == Status::goodbye; }
  /// Errc::connection_closing for Goodbye, otherwise the empty error_code: for callers that
  /// treat Goodbye as a failure the way the Go client did.
  std::error_code goodbye_error() const noexcept {
    return is_goodbye() ? make_error_code(Errc::connection_closing) : std::error_code{};
  }

  /// An OK result with `content`.
  static Result make_ok(Bytes content = {}) { return Result{Status::ok, std::move(content), 0}; }
  /// An Error result with `code`.
  static Result make_error(ErrorCode code) { return Result{Status::error, {}, code}; }
  /// A Goodbye result.
  static Result make_goodbye() { return Result{Status::goodbye, {}, 0}; }
};

/// One call of a pipelined batch. Lifetime: `request` must stay valid until the batch returns.
/// Thread-safety: a plain value.
struct Call {
  TaskCode code = 0;                      ///< the task to call
  std::span<const std::uint8_t> request;  ///< its request content (not copied)
};

}  // namespace serialclient
