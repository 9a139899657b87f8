#pragma once

#include <cstddef>
#include <cstdint>

namespace serialserver {

/// A task code: the first byte of every request. 0..249 are for applications; 250..255 are
/// reserved (docs/protocol.md section 4).
using TaskCode = std::uint8_t;

/// An error code: the byte that follows an Error response (docs/protocol.md section 5).
/// Applications use 0..251; 252..255 are the library's.
using ErrorCode = std::uint8_t;

/// The first reserved task code; applications cannot register it or anything above it.
inline constexpr TaskCode kFirstReservedTaskCode = 250;
/// Reserved task code: keep-alive. The server answers OK with the empty message.
inline constexpr TaskCode kKeepAliveTaskCode = 250;
/// Reserved task code: goodbye. The server answers Goodbye and closes the connection.
inline constexpr TaskCode kGoodbyeTaskCode = 255;

/// Error code sent for a task code that has no registered function (and for 251..254).
inline constexpr ErrorCode kUnknownTaskErrorCode = 255;
/// Error code sent when a request's content exceeds the server's configured limit.
inline constexpr ErrorCode kMessageTooLargeErrorCode = 254;
/// Error code sent when a limit on tasks running at once was reached: the task was not started.
inline constexpr ErrorCode kBusyErrorCode = 253;
/// Error code sent when a task ran past its time budget and was cancelled.
inline constexpr ErrorCode kDeadlineExceededErrorCode = 252;
/// Reserved task code: describe. The server answers OK with the listing of its task codes.
inline constexpr TaskCode kDescribeTaskCode = 251;

/// True for the reserved task codes 250..255.
constexpr bool is_reserved_task_code(TaskCode code) noexcept {
  return code >= kFirstReservedTaskCode;
}

/// The response code byte that starts every response (docs/protocol.md section 3).
enum class ResponseCode : std::uint8_t {
  ok = 0x00,       ///< followed by the block-encoded response content
  error = 0x01,    ///< followed by exactly one error-code byte
  goodbye = 0x02,  ///< followed by nothing; the server closes the connection
};

/// The largest content of one block (the block length byte is 1..255).
inline constexpr std::size_t kMaxBlockSize = 255;

}  // namespace serialserver
