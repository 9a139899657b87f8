#pragma once

// The servers' answer to SIGHUP: reload the TLS certificate for new connections.

#include <serialserver/listener.hpp>
#include <serialserver/logger.hpp>

#include <exception>

namespace serialserver::apps {

/// Reloads `listener`'s TLS files (Listener::reload_tls), logging the outcome on `log`; a
/// listener without TLS (`serves_tls` false) is left alone. A failed reload keeps the old
/// certificate and the server serving. Thread-safety: as Listener::reload_tls.
inline void reload_tls_on_sighup(Listener& listener, bool serves_tls, Logger& log) {
  if (!serves_tls) {
    log.info("SIGHUP: no TLS certificate to reload");
    return;
  }
  try {
    listener.reload_tls();
  } catch (const std::exception& e) {
    // A renewal gone wrong must not take the server down: it keeps the certificate it had.
    log.error("SIGHUP: TLS certificate not reloaded, still serving the old one: {}", e.what());
  }
}

}  // namespace serialserver::apps
