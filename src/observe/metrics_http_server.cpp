#include <serialserver/metrics_http_server.hpp>
#include <serialserver/prometheus_metrics.hpp>
#include "net/stream_ops.hpp"
#include "util/scope_exit.hpp"

#include <mutex>
#include <set>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <variant>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

namespace serialserver {

namespace {

using asio::ip::tcp;

/// Splits "host:port" or "[v6]:port"; an empty host means all IPv4 addresses.
std::pair<std::string, std::string> split_host_port(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) {
    throw std::invalid_argument("invalid metrics address '" + address +
                                "' (expected host:port or [v6]:port)");
  }
  std::string host = address.substr(0, colon);
  std::string port = address.substr(colon + 1);
  if (!host.empty() && host.front() == '[') {
    if (host.back() != ']') {
      throw std::invalid_argument("invalid metrics address '" + address + "'");
    }
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) {
    host = "0.0.0.0";
  }
  for (const char ch : port) {
    if (ch < '0' || ch > '9') {
      throw std::invalid_argument("invalid port in metrics address '" + address + "'");
    }
  }
  return {host, port};
}

/// How reading the request head ended.
enum class HeadStatus { complete, too_large, closed };

/// A response with a short text body (or the given body), always `Connection: close`.
std::string make_response(int status, std::string_view reason, std::string_view content_type,
                          std::string_view body, bool head_only, std::string_view extra = {}) {
  std::string out = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
      status, reason, content_type, body.size(), extra);
  if (!head_only) {
    out.append(body);
  }
  return out;
}

}  // namespace

class MetricsHttpServer::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(MetricsHttpServerOptions options, RenderFunction render)
      : options_(std::move(options)), render_(std::move(render)) {
    if (!render_) {
      throw std::invalid_argument("MetricsHttpServer: empty render function");
    }
  }

  void start() {
    std::lock_guard lock(mutex_);
    if (started_) {
      throw std::logic_error("MetricsHttpServer::start called twice");
    }
    const auto [host, port] = split_host_port(options_.address);
    tcp::resolver resolver(io_);
    auto results =
        resolver.resolve(host, port, tcp::resolver::passive | tcp::resolver::numeric_service);
    if (results.empty()) {
      throw std::system_error(make_error_code(asio::error::host_not_found),
                              "resolve " + options_.address);
    }
    const auto endpoint = results.begin()->endpoint();
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    try {
      acceptor_.bind(endpoint);
    } catch (const std::system_error& e) {
      throw std::system_error(e.code(), "bind " + options_.address);
    }
    acceptor_.listen();
    const auto bound = acceptor_.local_endpoint();
    port_ = bound.port();
    local_address_ = detail::endpoint_to_string(bound);
    started_ = true;
    asio::co_spawn(io_, accept_loop(shared_from_this()), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }

  void stop() {
    std::thread thread;
    {
      std::lock_guard lock(mutex_);
      if (!started_ || stopped_) {
        return;
      }
      stopped_ = true;
      thread.swap(thread_);
    }
    // Closing the acceptor and the sockets ends every coroutine, and with them run().
    asio::post(io_, [this] {
      std::error_code ignored;
      acceptor_.close(ignored);
      for (tcp::socket* socket : sockets_) {
        socket->close(ignored);
      }
    });
    thread.join();
  }

  std::uint16_t port() const {
    std::lock_guard lock(mutex_);
    return port_;
  }
  std::string local_address() const {
    std::lock_guard lock(mutex_);
    return local_address_;
  }

 private:
  static asio::awaitable<void> accept_loop(std::shared_ptr<Impl> self) {
    for (;;) {
      std::error_code ec;
      tcp::socket socket =
          co_await self->acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (!self->acceptor_.is_open()) {
        co_return;
      }
      if (ec) {
        // Out of descriptors, most likely: wait a little rather than spin.
        asio::steady_timer backoff(self->io_, std::chrono::milliseconds(100));
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      if (self->sockets_.size() >= self->options_.max_connections) {
        std::error_code ignored;
        socket.close(ignored);
        continue;
      }
      asio::co_spawn(self->io_, session(self, std::move(socket)), asio::detached);
    }
  }

  /// Reads until the end of the request head (an empty line) or past the size limit.
  static asio::awaitable<HeadStatus> read_head(tcp::socket& socket, std::string& head,
                                               std::size_t limit) {
    char chunk[1024];
    for (;;) {
      std::error_code ec;
      const std::size_t n = co_await socket.async_read_some(
          asio::buffer(chunk), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_return HeadStatus::closed;
      }
      head.append(chunk, n);
      if (head.find("\r\n\r\n") != std::string::npos) {
        co_return HeadStatus::complete;
      }
      if (head.size() > limit) {
        co_return HeadStatus::too_large;
      }
    }
  }

  /// Writes the response, then ends our side and reads until the peer closes, so that unread
  /// request bytes do not turn the close into a reset that could lose the response.
  static asio::awaitable<void> respond(tcp::socket& socket, const std::string& response,
                                       std::size_t drain_limit) {
    std::error_code ec;
    co_await asio::async_write(socket, asio::buffer(response),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      co_return;
    }
    socket.shutdown(tcp::socket::shutdown_send, ec);
    char chunk[1024];
    std::size_t drained = 0;
    while (drained <= drain_limit) {
      const std::size_t n = co_await socket.async_read_some(
          asio::buffer(chunk), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_return;
      }
      drained += n;
    }
  }

  std::string answer(const std::string& head, HeadStatus status) const {
    if (status == HeadStatus::too_large) {
      return make_response(431, "Request Header Fields Too Large", "text/plain",
                           "request head too large\n", false);
    }
    // The request line: METHOD SP TARGET SP HTTP/1.x
    const std::string_view line = std::string_view(head).substr(0, head.find("\r\n"));
    const auto sp1 = line.find(' ');
    const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || sp1 == 0 ||
        sp2 == sp1 + 1 || !line.substr(sp2 + 1).starts_with("HTTP/1.")) {
      return make_response(400, "Bad Request", "text/plain", "bad request\n", false);
    }
    const std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    target = target.substr(0, target.find('?'));
    const bool head_only = method == "HEAD";
    if (target != options_.path) {
      return make_response(404, "Not Found", "text/plain", "not found\n", head_only);
    }
    if (method != "GET" && !head_only) {
      return make_response(405, "Method Not Allowed", "text/plain", "method not allowed\n", false,
                           "Allow: GET, HEAD\r\n");
    }
    try {
      const Body body = render_();
      return make_response(200, "OK", body.content_type, body.content, head_only);
    } catch (const std::exception& e) {
      return make_response(500, "Internal Server Error", "text/plain", std::string(e.what()) + "\n",
                           head_only);
    }
  }

  static asio::awaitable<void> session(std::shared_ptr<Impl> self, tcp::socket socket) {
    using namespace asio::experimental::awaitable_operators;
    self->sockets_.insert(&socket);
    const detail::ScopeExit untrack([&] { self->sockets_.erase(&socket); });

    // One deadline for the whole exchange: a slow client cannot hold a connection longer.
    asio::steady_timer deadline(socket.get_executor());
    deadline.expires_after(self->options_.timeout);
    std::string head;
    auto read = co_await (read_head(socket, head, self->options_.max_request_bytes) ||
                          deadline.async_wait(asio::use_awaitable));
    if (read.index() == 1 || std::get<0>(read) == HeadStatus::closed) {
      std::error_code ignored;
      socket.close(ignored);  // timed out or gone: nothing to answer
      co_return;
    }
    const std::string response = self->answer(head, std::get<0>(read));
    co_await (respond(socket, response, self->options_.max_request_bytes) ||
              deadline.async_wait(asio::use_awaitable));
    std::error_code ignored;
    socket.close(ignored);
  }

  // Declared before io_, so that they outlive the coroutine frames io_ destroys.
  const MetricsHttpServerOptions options_;
  const RenderFunction render_;
  std::set<tcp::socket*> sockets_;  // the open connections; used on the I/O thread only

  asio::io_context io_{1};
  tcp::acceptor acceptor_{io_};
  std::thread thread_;

  mutable std::mutex mutex_;  // guards what follows and the start/stop transitions
  std::uint16_t port_ = 0;
  std::string local_address_;
  bool started_ = false;
  bool stopped_ = false;
};

MetricsHttpServer::MetricsHttpServer(MetricsHttpServerOptions options, RenderFunction render)
    : impl_(std::make_shared<Impl>(std::move(options), std::move(render))) {}

namespace {
MetricsHttpServer::RenderFunction render_metrics(std::shared_ptr<PrometheusMetrics> metrics) {
  if (!metrics) {
    throw std::invalid_argument("MetricsHttpServer: null metrics");
  }
  return [metrics = std::move(metrics)] {
    return MetricsHttpServer::Body{metrics->render(), std::string(PrometheusMetrics::kContentType)};
  };
}
}  // namespace

MetricsHttpServer::MetricsHttpServer(MetricsHttpServerOptions options,
                                     std::shared_ptr<PrometheusMetrics> metrics)
    : MetricsHttpServer(std::move(options), render_metrics(std::move(metrics))) {}

MetricsHttpServer::~MetricsHttpServer() { stop(); }

void MetricsHttpServer::start() { impl_->start(); }
void MetricsHttpServer::stop() { impl_->stop(); }
std::uint16_t MetricsHttpServer::port() const { return impl_->port(); }
std::string MetricsHttpServer::local_address() const { return impl_->local_address(); }

}  // namespace serialserver
