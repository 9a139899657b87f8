#pragma once

// The describe task (251): what a server says about its tasks, and how serialctl asks for it.

#include <serialserver/protocol.hpp>

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <serialclient/options.hpp>

namespace serialctl {

/// One registered application task, as a describe listing names it.
struct ListedTask {
  serialserver::TaskCode code = 0;
  std::string name;  // as registered: UTF-8, maybe empty, at most 255 bytes
};

/// A listing that does not follow the format (wrong format byte, cut off, codes not ascending).
struct MalformedListing : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses the OK content of the describe task: format byte 1, then for each registered
/// application code in ascending order the code, the length L of its name and L bytes of name.
/// Throws MalformedListing.
std::vector<ListedTask> parse_listing(std::span<const std::uint8_t> content);

/// A task's name for a terminal: control characters and backslashes as \xNN escapes, so that a
/// name cannot forge lines or move the cursor. Thread-safety: a pure function.
std::string printable_name(const std::string& name);

/// What the server answered to describe.
struct DescribeAnswer {
  serialserver::ResponseCode code = serialserver::ResponseCode::goodbye;
  serialserver::ErrorCode error_code = 0;  // with ResponseCode::error
  std::vector<std::uint8_t> content;       // with ResponseCode::ok
};

/// A handshake hook that sends the describe task with an empty request on the raw connection
/// and reads its answer into `*answer`. (The client library refuses reserved codes in call();
/// the hook runs on the raw stream, after TLS, before any task.) Lifetime: `answer` must outlive
/// the connect that runs the hook.
serialclient::HandshakeFunction describe_hook(DescribeAnswer* answer);

}  // namespace serialctl
