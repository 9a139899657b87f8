#pragma once

// A raw server for the client's retry tests: it answers each request it reads by a script (OK,
// busy, deadline exceeded, an application error, Goodbye, or a dropped connection).

#include "raw_server.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace serialclient::test {

inline const std::vector<std::uint8_t> kOkDone{0x00, 0x04, 'd', 'o', 'n', 'e', 0x00};

/// What a scripted server does with the n-th request it reads (counted over all connections).
enum class Reply : std::uint8_t { ok, busy, deadline_exceeded, app_error, goodbye, drop };

/// A raw server that answers the requests it reads by a script: `script(n)` for the n-th
/// request (from 0). After Goodbye or a drop it closes that connection.
struct ScriptedServer {
  /// Listens on `port` of 127.0.0.1 (0: any free port).
  explicit ScriptedServer(std::function<Reply(int)> script_fn, std::uint16_t port = 0)
      : script(std::move(script_fn)), raw([this](int fd) { serve(fd); }, port) {}

  void serve(int fd) {
    while (RawServer::read_request(fd)) {
      switch (script(requests++)) {
        case Reply::ok:
          RawServer::send_all(fd, kOkDone);
          break;
        case Reply::busy:
          RawServer::send_all(fd, {0x01, 253});
          break;
        case Reply::deadline_exceeded:
          RawServer::send_all(fd, {0x01, 252});
          break;
        case Reply::app_error:
          RawServer::send_all(fd, {0x01, 7});
          break;
        case Reply::goodbye:
          RawServer::send_all(fd, {0x02});
          return;
        case Reply::drop:
          return;  // the whole request was read: closing sends a FIN, not a reset
      }
    }
  }

  std::function<Reply(int)> script;
  std::atomic<int> requests{0};
  RawServer raw;  // last: its threads use the fields above
};

}  // namespace serialclient::test
