// Opening a client connection: resolving, connecting, the TLS handshake and the handshake
// hook; and the keep-alive loop that runs between calls once it is open.

#include "connection_state.hpp"
#include "tls_context.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <utility>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/redirect_error.hpp>
#include <asio/ssl/host_name_verification.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

namespace serialclient::detail {

/// The HandshakeStream a client's hook sees: the raw socket, no buffering, so that nothing the
/// server sends after its handshake is read by the hook.
class ConnectionState::Handshake final : public HandshakeStream {
 public:
  explicit Handshake(ConnectionState& state) : state_(state) {}
  asio::awaitable<std::size_t> async_read_some(std::span<std::uint8_t> out) override {
    if (state_.tls_) {
      co_return co_await state_.tls_->async_read_some(asio::buffer(out.data(), out.size()),
                                                      asio::use_awaitable);
    }
    co_return co_await state_.socket_.async_read_some(asio::buffer(out.data(), out.size()),
                                                      asio::use_awaitable);
  }
  asio::awaitable<void> async_write(std::span<const std::uint8_t> data) override {
    if (state_.tls_) {
      co_await asio::async_write(*state_.tls_, asio::buffer(data.data(), data.size()),
                                 asio::use_awaitable);
    } else {
      co_await asio::async_write(state_.socket_, asio::buffer(data.data(), data.size()),
                                 asio::use_awaitable);
    }
  }
  std::string remote_address() const override { return state_.address_text_; }

 private:
  ConnectionState& state_;
};

ConnectionState::ConnectionState(asio::any_io_executor executor, Options options)
    : executor_(std::move(executor)),
      options_(std::move(options)),
      socket_(executor_),
      op_timer_(executor_),
      keep_alive_timer_(executor_),
      read_buffer_(kReadBufferSize) {
  write_buffer_.reserve(kWriteFlushThreshold + kEncodePiece + kEncodePiece / 255 + 512);
}

ConnectionState::~ConnectionState() = default;

asio::awaitable<void> ConnectionState::async_connect(std::string_view address) {
  Address parsed;
  try {
    parsed = parse_address(address);
  } catch (const std::invalid_argument&) {
    throw system_error(Errc::invalid_address);
  }
  address_text_ = parsed.to_string();
  if (options_.tls) {
    if (parsed.is_unix) {
      throw std::system_error(make_error_code(Errc::invalid_address),
                              "TLS needs a TCP address, not the Unix socket " + address_text_);
    }
    tls_context_ = make_client_tls_context(*options_.tls);
  }
  co_await async_connect_socket(parsed);
  if (options_.tls) {
    co_await async_tls_handshake(parsed);
  }
  open_.store(true, std::memory_order_release);
  if (options_.handshake) {
    arm(options_.handshake_timeout, Errc::handshake_failed);
    try {
      Handshake stream(*this);
      byte_order_ = co_await options_.handshake(stream);
    } catch (const std::system_error& e) {
      disarm();
      const std::error_code reason =
          timed_out_ ? make_error_code(Errc::handshake_failed) : e.code();
      close_now(reason);
      throw std::system_error(reason, "handshake");
    } catch (...) {
      disarm();
      close_now(make_error_code(Errc::handshake_failed));
      throw system_error(Errc::handshake_failed);
    }
    disarm();
  }
  last_activity_ = std::chrono::steady_clock::now();
  if (options_.keep_alive_interval > std::chrono::nanoseconds::zero()) {
    asio::co_spawn(
        executor_,
        [self = shared_from_this()]() -> asio::awaitable<void> {
          co_await self->async_keep_alive_loop();
        },
        asio::detached);
  }
}

asio::awaitable<void> ConnectionState::async_connect_socket(const Address& address) {
  arm(options_.connect_timeout, Errc::connect_timeout);
  std::error_code ec;
  if (address.is_unix) {
    const asio::local::stream_protocol::endpoint local(address.path);
    co_await socket_.async_connect(asio::generic::stream_protocol::endpoint(local),
                                   asio::redirect_error(asio::use_awaitable, ec));
  } else {
    resolver_.emplace(executor_);
    auto results = co_await resolver_->async_resolve(address.host, address.port,
                                                     asio::ip::resolver_base::numeric_service,
                                                     asio::redirect_error(asio::use_awaitable, ec));
    resolver_.reset();
    if (!ec) {
      ec = asio::error::host_not_found;
      for (const auto& entry : results) {
        std::error_code ignored;
        socket_.close(ignored);
        ec = {};
        co_await socket_.async_connect(asio::generic::stream_protocol::endpoint(entry.endpoint()),
                                       asio::redirect_error(asio::use_awaitable, ec));
        if (!ec || timed_out_) {
          break;
        }
      }
    }
    if (!ec) {
      // Requests are written whole and must leave at once: Nagle would hold them back.
      int one = 1;
      ::setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
  }
  disarm();
  if (timed_out_) {
    ec = make_error_code(Errc::connect_timeout);
  }
  if (ec) {
    ec = normalise(ec);
    std::error_code ignored;
    socket_.close(ignored);
    closed_reason_ = ec;
    throw std::system_error(ec, "connect " + address_text_);
  }
}

asio::awaitable<void> ConnectionState::async_tls_handshake(const Address& address) {
  const std::string& name =
      options_.tls->server_name.empty() ? address.host : options_.tls->server_name;
  tls_.emplace(socket_, *tls_context_);
  std::error_code ec;
  asio::ip::make_address(name, ec);
  // SNI carries host names only (RFC 6066); an IP address is matched against the IP SANs.
  if (ec && SSL_set_tlsext_host_name(tls_->native_handle(), name.c_str()) != 1) {
    ec = make_error_code(Errc::tls_failed);
  } else {
    ec = {};
  }
  if (!ec) {
    tls_->set_verify_callback(asio::ssl::host_name_verification(name));
    arm(options_.handshake_timeout, Errc::handshake_failed);
    co_await tls_->async_handshake(asio::ssl::stream_base::client,
                                   asio::redirect_error(asio::use_awaitable, ec));
    disarm();
  }
  if (timed_out_ || ec) {
    const std::error_code reason =
        timed_out_ ? make_error_code(Errc::handshake_failed) : make_error_code(Errc::tls_failed);
    const std::string detail = timed_out_ ? std::string("timed out") : normalise(ec).message();
    if (options_.logger) {  // the blocking API reports the code only: the reason goes here
      options_.logger->warn("TLS handshake with {} failed: {}", address_text_, detail);
    }
    tls_.reset();
    std::error_code ignored;
    socket_.close(ignored);
    closed_reason_ = reason;
    throw std::system_error(reason, "TLS handshake with " + address_text_ + ": " + detail);
  }
}

asio::awaitable<void> ConnectionState::async_keep_alive_loop() {
  const auto interval = options_.keep_alive_interval;
  while (is_open()) {
    keep_alive_timer_.expires_at(last_activity_ + interval);
    std::error_code ec;
    co_await keep_alive_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!is_open()) {
      break;
    }
    if (std::chrono::steady_clock::now() < last_activity_ + interval) {
      continue;  // a call ended meanwhile: the idle time starts again from it
    }
    try {
      // async_call_any takes the call lock, so a keep-alive never cuts into a call; it then
      // finds the idle time restarted by that call and is skipped.
      co_await async_lock();
      LockGuard guard(*this);
      if (std::chrono::steady_clock::now() < last_activity_ + interval) {
        continue;
      }
      // An unprompted Goodbye found here ends the loop as a Goodbye answer would.
      const bool sendable = ready_for_request();
      ResponseHead head{Status::goodbye, 0};
      if (sendable) {
        begin_request(serialserver::kKeepAliveTaskCode);
        head = co_await async_end_request();
        co_await async_finish_response();
      }
      if (head.status == Status::goodbye && options_.logger) {
        options_.logger->info("keep-alive to {}: server said goodbye", address_text_);
      }
    } catch (const std::system_error& e) {
      if (options_.logger) {
        options_.logger->warn("keep-alive to {} failed: {}", address_text_, e.what());
      }
      break;
    }
  }
}

}  // namespace serialclient::detail
