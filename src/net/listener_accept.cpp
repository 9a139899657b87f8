// The Listener's accept loop: accepting, admission against the connection limits (the count of
// live connections and the per-address registry), and the hand-over of each admitted socket to
// the I/O thread that will serve it.

#include <serialserver/client.hpp>
#include <serialserver/server.hpp>
#include "net/listener_impl.hpp"
#include "net/stream_ops.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

namespace serialserver::detail {

namespace {

/// Owns a native socket descriptor between two asio sockets (see ListenerImpl::hand_over):
/// closes it unless disowned. Thread-safety: none; moved between threads, used by one at a time.
class OwnedDescriptor {
 public:
  explicit OwnedDescriptor(int fd) noexcept : fd_(fd) {}
  OwnedDescriptor(OwnedDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  OwnedDescriptor& operator=(OwnedDescriptor&&) = delete;
  OwnedDescriptor(const OwnedDescriptor&) = delete;
  OwnedDescriptor& operator=(const OwnedDescriptor&) = delete;
  ~OwnedDescriptor() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  int get() const noexcept { return fd_; }
  void disown() noexcept { fd_ = -1; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_;
};

}  // namespace

void ListenerImpl::spawn_accept_loop(asio::io_context& ctx) {
  auto self = shared_from_this();
  std::visit(
      [&](auto& acceptor) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(acceptor)>, std::monostate>) {
          asio::co_spawn(ctx, accept_loop(self, acceptor), asio::detached);
        }
      },
      acceptor_);
}

template <class Acceptor>
asio::awaitable<void> ListenerImpl::accept_loop(std::shared_ptr<ListenerImpl> self,
                                                Acceptor& acceptor) {
  using Socket = typename Acceptor::protocol_type::socket;
  std::size_t next = 0;
  asio::steady_timer backoff(acceptor.get_executor());
  for (;;) {
    auto& ctx = *self->contexts_[next];
    next = (next + 1) % self->contexts_.size();
    std::error_code ec;
    // Accepted on this thread's own context, so that everything done to the socket here
    // (admission, a refusal's close, the close of one accepted as the listener stops) stays
    // on the thread that runs its reactor; hand_over() then moves it to its I/O thread.
    // The acceptor's context is named rather than implied: asio's per-thread recycling hands
    // the accept's freed memory to later allocations it fits, here the new connection's
    // long-lived frames, and the implied form's is larger (94-145 bytes more resident per
    // idle connection, bench/compare.sh's idle measurement).
    Socket socket = co_await acceptor.async_accept(self->acceptor_context(),
                                                   asio::redirect_error(asio::use_awaitable, ec));
    if (self->stop_.stop_requested() || !acceptor.is_open()) {
      co_return;
    }
    if (ec) {
      // Running out of file descriptors (or any accept error) must not end the server.
      self->server_.log()->warn("accept on {} failed: {}; retrying in 100ms", self->local_address_,
                                ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    std::string address_key;
    if (!self->admit(socket, address_key)) {
      continue;
    }
    hand_over(self, ctx, std::move(socket), std::move(address_key));
  }
}

template <class Socket>
void ListenerImpl::hand_over(const std::shared_ptr<ListenerImpl>& self, asio::io_context& ctx,
                             Socket socket, std::string address_key) {
  if (&ctx == &self->acceptor_context()) {  // this thread's own context: no move
    start_serving(self, std::move(socket), std::move(address_key));
    return;
  }
  std::error_code ec;
  const auto protocol = socket.local_endpoint(ec).protocol();
  OwnedDescriptor descriptor(ec ? -1 : socket.release(ec));
  if (ec || !descriptor) {
    self->server_.log()->warn("handing a connection to its I/O thread failed: {}", ec.message());
    self->release(address_key);
    return;  // `socket` or `descriptor` closes the connection
  }
  asio::post(ctx, [self, &ctx, protocol, descriptor = std::move(descriptor),
                   address_key = std::move(address_key)]() mutable {
    Socket moved(ctx);
    std::error_code assign_error;
    moved.assign(protocol, descriptor.get(), assign_error);
    if (assign_error) {
      self->server_.log()->warn("handing a connection to its I/O thread failed: {}",
                                assign_error.message());
      self->release(address_key);
      return;  // `descriptor` closes the connection
    }
    descriptor.disown();
    start_serving(self, std::move(moved), std::move(address_key));
  });
}

template <class Socket>
bool ListenerImpl::admit(Socket& socket, std::string& address_key) {
  const auto [local, remote] = socket_addresses(socket);
  if (options_.max_connections != 0 && live_.load() >= options_.max_connections &&
      !evict_longest_idle()) {
    server_.log()->warn("refusing {}: {} connections already (max_connections)", remote,
                        live_.load());
    report_drop(remote, DropReason::max_connections);
    std::error_code ignored;
    socket.close(ignored);
    return false;
  }
  if constexpr (std::is_same_v<Socket, asio::ip::tcp::socket>) {
    if (options_.max_connections_per_address != 0) {
      std::error_code ec;
      address_key = socket.remote_endpoint(ec).address().to_string();
      std::lock_guard lock(mutex_);
      auto& count = per_address_[address_key];
      if (count >= options_.max_connections_per_address) {
        server_.log()->warn("refusing {}: {} connections from {} already", remote, count,
                            address_key);
        report_drop(remote, DropReason::max_connections_per_address);
        if (count == 0) {
          per_address_.erase(address_key);
        }
        std::error_code ignored;
        socket.close(ignored);
        address_key.clear();
        return false;
      }
      ++count;
    }
  }
  ++live_;
  return true;
}

bool ListenerImpl::evict_longest_idle() {
  const auto clients = server_.clients();
  // Forget the evicted connections that have ended.
  std::erase_if(evicted_, [&](std::uint64_t id) {
    return std::none_of(clients.begin(), clients.end(),
                        [id](const auto& client) { return client->id() == id; });
  });
  std::shared_ptr<Client> longest;
  for (const auto& client : clients) {
    if (client->closed() || evicted_.contains(client->id()) || !accepted_here(*client) ||
        client->metadata().has_value()) {
      continue;
    }
    if (!longest || client->last_active() < longest->last_active()) {
      longest = client;
    }
  }
  if (!longest) {
    return false;
  }
  evicted_.insert(longest->id());
  // It still counts toward live_ until it has ended (its linger may take up to a second); the
  // newcomer is admitted meanwhile, and the next one at the limit evicts another.
  server_.log()->info("evicted the longest idle connection {} ({} connections, max_connections)",
                      longest->remote_address(), live_.load());
  if (const auto metrics = server_.metrics()) {
    metrics->connection_evicted(*longest);
  }
  longest->disconnect(std::chrono::nanoseconds(0));
  return true;
}

bool ListenerImpl::accepted_here(const Client& client) const {
  const std::string& local = client.local_address();
  if (!unix_path_.empty()) {
    return local == unix_path_;
  }
  const std::string suffix = ":" + std::to_string(port_);
  return local.ends_with(suffix);
}

void ListenerImpl::report_drop(std::string_view remote, DropReason reason) {
  if (const auto metrics = server_.metrics()) {
    metrics->connection_dropped(remote, reason);
  }
}

void ListenerImpl::release(const std::string& address_key) {
  if (!address_key.empty()) {
    std::lock_guard lock(mutex_);
    auto it = per_address_.find(address_key);
    if (it != per_address_.end() && --it->second == 0) {
      per_address_.erase(it);
    }
  }
  --live_;
}

}  // namespace serialserver::detail
