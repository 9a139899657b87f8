// The Listener's side of a new connection after admission: the TLS handshake and the
// handshake hook, under one deadline, then the hand-over of the connection to the server.

#include <serialserver/error.hpp>
#include <serialserver/listener.hpp>
#include <serialserver/server.hpp>
#include "net/listener_impl.hpp"
#include "net/stream_connection.hpp"
#include "net/stream_ops.hpp"
#include "util/scope_exit.hpp"

#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

namespace serialserver {

namespace detail {
// Instantiated in server.cpp.
extern template class StreamConnection<asio::ip::tcp::socket>;
extern template class StreamConnection<asio::local::stream_protocol::socket>;
}  // namespace detail

asio::awaitable<void> HandshakeStream::async_read_exact(std::span<std::uint8_t> out) {
  while (!out.empty()) {
    const std::size_t n = co_await async_read_some(out);
    out = out.subspan(n);
  }
}

namespace detail {

namespace {

template <class Socket>
class SocketHandshakeStream final : public HandshakeStream {
 public:
  explicit SocketHandshakeStream(Socket& socket) : socket_(socket) {}
  asio::awaitable<std::size_t> async_read_some(std::span<std::uint8_t> out) override {
    co_return co_await socket_.async_read_some(asio::buffer(out.data(), out.size()),
                                               asio::use_awaitable);
  }
  asio::awaitable<void> async_write(std::span<const std::uint8_t> data) override {
    co_await asio::async_write(socket_, asio::buffer(data.data(), data.size()),
                               asio::use_awaitable);
  }
  std::string remote_address() const override {
    std::error_code ec;
    auto endpoint = lowest_socket(socket_).remote_endpoint(ec);
    return ec ? std::string("?") : endpoint_to_string(endpoint);
  }

 private:
  Socket& socket_;
};

/// What the handshake hook produced: its result, or the exception it threw.
struct HandshakeOutcome {
  HandshakeResult result;
  std::exception_ptr error;
};

/// Runs the handshake hook; its exception becomes the outcome rather than propagating.
asio::awaitable<HandshakeOutcome> guarded_handshake(const HandshakeFunction& hook,
                                                    HandshakeStream& stream) {
  HandshakeOutcome outcome;
  try {
    outcome.result = co_await hook(stream);
  } catch (...) {
    outcome.error = std::current_exception();
  }
  co_return outcome;
}

}  // namespace

template <class Socket>
void ListenerImpl::start_serving(const std::shared_ptr<ListenerImpl>& self, Socket socket,
                                 std::string address_key) {
  if (plain_tcp_or_unix(*self)) {
    serve_plain(self, std::move(socket), std::move(address_key));
  } else {
    auto executor = socket.get_executor();
    asio::co_spawn(executor, serve(self, std::move(socket), std::move(address_key)),
                   asio::detached);
  }
}

template <class Socket>
void ListenerImpl::serve_plain(std::shared_ptr<ListenerImpl> self, Socket socket,
                               std::string address_key) {
  if (self->stop_.stop_requested()) {
    self->report_drop(socket_addresses(socket).second, DropReason::shutting_down);
    self->release(address_key);
    return;
  }
  ListenerImpl& impl = *self;
  spawn_connection(impl.server_, std::move(socket), ByteOrder::big_endian, SessionData{},
                   impl.stop_.get_token(), &impl.grace_ns_,
                   [self = std::move(self), address_key = std::move(address_key)](std::error_code) {
                     self->release(address_key);
                   });
}

template <class Socket>
asio::awaitable<void> ListenerImpl::serve(std::shared_ptr<ListenerImpl> self, Socket socket,
                                          std::string address_key) {
  const ScopeExit release_count([&] { self->release(address_key); });
  // One deadline for the TLS handshake and the hook together; no timer when there is neither.
  std::optional<asio::steady_timer> deadline;
  if constexpr (std::is_same_v<Socket, asio::ip::tcp::socket>) {
    if (self->tls_) {
      // Held for the connection's lifetime: a reload_tls() meanwhile does not touch it.
      const auto tls_context = self->current_tls_context();
      deadline.emplace(socket.get_executor());
      deadline->expires_after(self->options_.handshake_timeout);
      TlsSocket stream(std::move(socket), *tls_context);
      if (co_await tls_handshake(*self, stream, *deadline)) {
        co_await serve_stream(self, std::move(stream), deadline);
      }
      co_return;
    }
  }
  if (self->options_.handshake) {
    deadline.emplace(socket.get_executor());
    deadline->expires_after(self->options_.handshake_timeout);
  }
  co_await serve_stream(self, std::move(socket), deadline);
}

asio::awaitable<bool> ListenerImpl::tls_handshake(ListenerImpl& self, TlsSocket& stream,
                                                  asio::steady_timer& deadline) {
  using namespace asio::experimental::awaitable_operators;
  const auto [local, remote] = socket_addresses(stream.lowest_layer());
  std::error_code ec;
  auto result = co_await (stream.async_handshake(asio::ssl::stream_base::server,
                                                 asio::redirect_error(asio::use_awaitable, ec)) ||
                          deadline.async_wait(asio::use_awaitable));
  if (result.index() == 1) {
    self.server_.log()->warn("TLS handshake with {} timed out", remote);
    self.report_drop(remote, DropReason::handshake_timeout);
  } else if (ec && is_peer_gone_error(ec)) {
    // Port scanners and health checks that connect and leave: not worth a warning.
    self.server_.log()->info("TLS handshake with {}: the peer closed the connection ({})", remote,
                             ec.message());
    self.report_drop(remote, DropReason::handshake_failed);
  } else if (ec) {
    self.server_.log()->warn("TLS handshake with {} failed: {}", remote, ec.message());
    self.report_drop(remote, DropReason::handshake_failed);
  } else {
    co_return true;
  }
  close_stream(stream);
  co_return false;
}

template <class Stream>
asio::awaitable<void> ListenerImpl::serve_stream(std::shared_ptr<ListenerImpl> self, Stream stream,
                                                 std::optional<asio::steady_timer>& deadline) {
  HandshakeResult handshake;
  if (self->options_.handshake) {
    using namespace asio::experimental::awaitable_operators;
    SocketHandshakeStream<Stream> hook_stream(stream);
    try {
      // The hook's failure is caught inside the race: operator|| waits for the first
      // *successful* branch, so a throwing hook would otherwise hold the connection until the
      // timer fires.
      auto result = co_await (guarded_handshake(self->options_.handshake, hook_stream) ||
                              deadline->async_wait(asio::use_awaitable));
      if (result.index() == 1) {
        self->server_.log()->warn("handshake with {} timed out", hook_stream.remote_address());
        self->report_drop(hook_stream.remote_address(), DropReason::handshake_timeout);
        co_return;
      }
      auto& outcome = std::get<0>(result);
      if (outcome.error) {
        std::rethrow_exception(outcome.error);  // logged below
      }
      handshake = std::move(outcome.result);
    } catch (const std::exception& e) {
      self->server_.log()->warn("handshake with {} failed: {}", hook_stream.remote_address(),
                                e.what());
      self->report_drop(hook_stream.remote_address(), DropReason::handshake_failed);
      co_return;
    }
  }
  deadline.reset();
  if (self->stop_.stop_requested()) {
    self->report_drop(socket_addresses(lowest_socket(stream)).second, DropReason::shutting_down);
    co_return;
  }
  co_await self->server_.async_handle_socket(std::move(stream), handshake.byte_order,
                                             std::move(handshake.session), self->stop_.get_token(),
                                             &self->grace_ns_);
}

// The listener's two socket types (listener_accept.cpp hands them over).
template void ListenerImpl::start_serving(const std::shared_ptr<ListenerImpl>&,
                                          asio::ip::tcp::socket, std::string);
template void ListenerImpl::start_serving(const std::shared_ptr<ListenerImpl>&,
                                          asio::local::stream_protocol::socket, std::string);

}  // namespace detail

}  // namespace serialserver
