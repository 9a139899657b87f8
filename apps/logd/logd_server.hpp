#pragma once

// The task functions and the handshake of serialserver-logd (docs/logd-protocol.md).

#include <serialserver/listener.hpp>
#include <serialserver/server.hpp>
#include "store.hpp"

#include <memory>
#include <optional>
#include <string>

namespace logd {

/// Registers tasks 1..5 on `server`, all as blocking task functions (they call SQLite).
/// Thread-safety: as Server::register_blocking_task. Lifetime: the tasks share `store`.
void register_logd_tasks(serialserver::Server& server, std::shared_ptr<Store> store);

/// The handshake hook: byte order ('B' or 'L', echoed with a token flag), then the token if
/// `token` is set. Thread-safety: the returned function may run for many connections at once.
serialserver::HandshakeFunction make_handshake(std::optional<std::string> token);

}  // namespace logd
