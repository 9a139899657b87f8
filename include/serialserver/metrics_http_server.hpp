#pragma once

// A minimal HTTP/1.1 endpoint for Prometheus scrapes. Asio has no HTTP, and a scrape needs
// only one request per connection, so this answers `GET /metrics` (and HEAD) and nothing else:
// every response closes the connection, requests are bounded in size and time, and there is no
// keep-alive, chunking or request body.
//
// Why not prometheus-cpp's pull Exposer: it would bring civetweb (and zlib) to every user of
// the library, with a thread pool of its own, while this endpoint runs on standalone Asio like
// the rest of the library and is already bounded (request size and time, connections) and
// tested. Applications that prefer the Exposer can register PrometheusMetrics::collectable()
// with it instead.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace serialserver {

class PrometheusMetrics;

/// Options of a MetricsHttpServer.
struct MetricsHttpServerOptions {
  /// "host:port" or "[v6]:port"; port 0 picks a free port (see MetricsHttpServer::port()).
  std::string address = "127.0.0.1:9464";
  /// The path served; other paths get 404.
  std::string path = "/metrics";
  /// The longest a client may take to send its request headers (and to take the response).
  std::chrono::milliseconds timeout = std::chrono::seconds(5);
  /// The largest request head (request line and headers); larger ones get 431.
  std::size_t max_request_bytes = 8192;
  /// Connections served at once; one accepted beyond this is closed at once.
  std::size_t max_connections = 64;
};

/// Serves a text body (usually PrometheusMetrics::render()) over HTTP/1.1 on one I/O thread of
/// its own. `GET <path>` gets 200 with the body, `HEAD <path>` the same headers without it;
/// other paths get 404, other methods 405, malformed requests 400, oversized ones 431, and a
/// request that does not arrive within the timeout has its connection closed. Every response
/// carries `Connection: close`.
///
/// Thread-safety: start(), stop(), port() and local_address() may be called from any thread.
/// `render` is called on the server's thread, one call at a time.
/// Lifetime: whatever `render` uses must outlive the server (or its stop()); the destructor
/// stops it and joins its thread.
class MetricsHttpServer {
 public:
  /// Produces the body and its Content-Type for each scrape.
  struct Body {
    std::string content;       ///< the response body
    std::string content_type;  ///< its Content-Type header value
  };
  /// Called for each scrape, on the server's thread, one call at a time.
  using RenderFunction = std::function<Body()>;

  /// Serves what `render` returns at `options.path`.
  MetricsHttpServer(MetricsHttpServerOptions options, RenderFunction render);
  /// Serves `metrics->render()` at `options.path`.
  MetricsHttpServer(MetricsHttpServerOptions options, std::shared_ptr<PrometheusMetrics> metrics);
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;
  ~MetricsHttpServer();

  /// Binds, listens and starts the thread. Throws std::system_error if the address cannot be
  /// bound, std::invalid_argument if it cannot be parsed, std::logic_error if called twice.
  void start();
  /// Stops accepting, closes open connections and joins the thread. Idempotent.
  void stop();
  /// The bound port (after start()).
  std::uint16_t port() const;
  /// The bound address, as "127.0.0.1:9464" or "[::1]:9464" (after start()).
  std::string local_address() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace serialserver
