#include <serialserver/error.hpp>
#include <serialserver/listener.hpp>
#include <serialserver/server.hpp>
#include "net/cores.hpp"
#include "net/listen_address.hpp"
#include "net/stream_connection.hpp"
#include "net/stream_ops.hpp"
#include "net/tls_context.hpp"
#include "util/scope_exit.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>
#include <variant>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/dispatch.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/v6_only.hpp>
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

}  // namespace

class ListenerImpl : public std::enable_shared_from_this<ListenerImpl> {
 public:
  ListenerImpl(const ListenerImpl&) = delete;
  ListenerImpl& operator=(const ListenerImpl&) = delete;
  ListenerImpl(Server& server, ListenerOptions options)
      : server_(server), options_(std::move(options)) {
    unsigned threads = options_.io_threads;
    if (threads == 0) {
      threads = available_cores();
    }
    for (unsigned i = 0; i < threads; ++i) {
      // One thread runs each context, and each socket is used only by its context's thread
      // (see hand_over), so the reactor's per-socket locks are dropped (callgrind, ping at C=50:
      // 2,462 to 2,358 user-space instructions per request). Posting to a context from any
      // thread (the scheduler's lock) and registering sockets (the registration lock) stay safe.
      contexts_.push_back(std::make_unique<asio::io_context>(ASIO_CONCURRENCY_HINT_UNSAFE_IO));
      guards_.emplace_back(contexts_.back()->get_executor());
    }
  }

  ~ListenerImpl() {
    struct stat st {};
    if (!unix_path_.empty() && unix_file_ && ::stat(unix_path_.c_str(), &st) == 0 &&
        st.st_dev == unix_file_->device && st.st_ino == unix_file_->inode) {
      ::unlink(unix_path_.c_str());
    }
  }

  void start() {
    std::lock_guard lock(mutex_);
    if (started_) {
      throw std::logic_error("Listener::start called twice");
    }
    const ParsedAddress parsed = parse_address(options_.address);
    if (options_.tls) {
      if (parsed.is_unix) {
        throw std::invalid_argument("TLS is for TCP listeners, not the Unix socket '" +
                                    options_.address + "'");
      }
      tls_context_ = make_server_tls_context(*options_.tls);
    }
    auto& ctx = acceptor_context();
    if (parsed.is_unix) {
      asio::local::stream_protocol::endpoint endpoint(parsed.path);
      remove_stale_unix_socket(parsed.path, options_.address);
      asio::local::stream_protocol::acceptor acceptor(ctx);
      acceptor.open(endpoint.protocol());
      try {
        acceptor.bind(endpoint);
      } catch (const std::system_error& e) {
        throw std::system_error(e.code(), "bind " + options_.address);
      }
      acceptor.listen(options_.backlog);
      struct stat st {};
      if (::stat(parsed.path.c_str(), &st) == 0) {
        // Remembered so that stopping removes this socket file only, not one that replaced it.
        unix_file_ = FileIdentity{st.st_dev, st.st_ino};
      }
      unix_path_ = parsed.path;
      local_address_ = parsed.path;
      acceptor_ = std::move(acceptor);
    } else {
      asio::ip::tcp::resolver resolver(ctx);
      auto results = resolver.resolve(
          parsed.host, parsed.port,
          asio::ip::tcp::resolver::passive | asio::ip::tcp::resolver::numeric_service);
      if (results.empty()) {
        throw std::system_error(make_error_code(asio::error::host_not_found),
                                "resolve " + options_.address);
      }
      const auto endpoint = results.begin()->endpoint();
      asio::ip::tcp::acceptor acceptor(ctx);
      acceptor.open(endpoint.protocol());
      acceptor.set_option(asio::socket_base::reuse_address(true));
      if (endpoint.address().is_v6()) {
        acceptor.set_option(asio::ip::v6_only(true));
      }
      try {
        acceptor.bind(endpoint);
      } catch (const std::system_error& e) {
        throw std::system_error(e.code(), "bind " + options_.address);
      }
      acceptor.listen(options_.backlog);
      const auto bound = acceptor.local_endpoint();
      port_ = bound.port();
      local_address_ = endpoint_to_string(bound);
      acceptor_ = std::move(acceptor);
    }
    started_ = true;
    auto self = shared_from_this();
    std::visit(
        [&](auto& acceptor) {
          if constexpr (!std::is_same_v<std::decay_t<decltype(acceptor)>, std::monostate>) {
            asio::co_spawn(ctx, accept_loop(self, acceptor), asio::detached);
          }
        },
        acceptor_);
    for (auto& context : contexts_) {
      threads_.emplace_back([c = context.get()] { c->run(); });
    }
    server_.log()->info("listening on {}{} with {} I/O threads", local_address_,
                        tls_context_ ? " (TLS)" : "", contexts_.size());
  }

  void shutdown(std::chrono::nanoseconds grace) {
    grace_ns_.store(grace.count());
    std::lock_guard lock(mutex_);
    if (shutting_down_) {
      stop_.request_stop();  // a second call with a shorter grace still applies
      return;
    }
    shutting_down_ = true;
    if (started_) {
      asio::post(acceptor_context(), [self = shared_from_this()] {
        std::visit(
            [](auto& acceptor) {
              if constexpr (!std::is_same_v<std::decay_t<decltype(acceptor)>, std::monostate>) {
                std::error_code ignored;
                acceptor.close(ignored);
              }
            },
            self->acceptor_);
      });
    }
    stop_.request_stop();
    for (auto& g : guards_) {
      g.reset();  // the threads end once their connections have
    }
  }

  void wait() {
    std::vector<std::thread> threads;
    {
      std::unique_lock lock(mutex_);
      stopped_cv_.wait(lock, [this] { return shutting_down_; });
      threads.swap(threads_);
    }
    for (auto& t : threads) {
      if (t.joinable()) {
        t.join();
      }
    }
  }

  std::string local_address() const {
    std::lock_guard lock(mutex_);
    return local_address_;
  }
  std::uint16_t port() const {
    std::lock_guard lock(mutex_);
    return port_;
  }
  std::size_t num_connections() const { return live_.load(); }
  std::size_t io_thread_count() const { return contexts_.size(); }

  void notify_shutdown() { stopped_cv_.notify_all(); }

 private:
  template <class Acceptor>
  static asio::awaitable<void> accept_loop(std::shared_ptr<ListenerImpl> self, Acceptor& acceptor) {
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
        self->server_.log()->warn("accept on {} failed: {}; retrying in 100ms",
                                  self->local_address_, ec.message());
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

  /// Starts serving an admitted `socket`, accepted on the acceptor's context, on `ctx`'s I/O
  /// thread. The I/O contexts lock neither their sockets' reactor state nor their operation
  /// queues (ASIO_CONCURRENCY_HINT_UNSAFE_IO), so a socket must be used by the one thread that
  /// runs its context: one bound for another context is released here (its registration with
  /// this context's reactor is dropped) and its descriptor is assigned anew on that thread.
  template <class Socket>
  static void hand_over(const std::shared_ptr<ListenerImpl>& self, asio::io_context& ctx,
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

  /// Serves `socket` on the thread that runs its context (the caller's).
  template <class Socket>
  static void start_serving(const std::shared_ptr<ListenerImpl>& self, Socket socket,
                            std::string address_key) {
    if (plain_tcp_or_unix(*self)) {
      serve_plain(self, std::move(socket), std::move(address_key));
    } else {
      auto executor = socket.get_executor();
      asio::co_spawn(executor, serve(self, std::move(socket), std::move(address_key)),
                     asio::detached);
    }
  }

  /// The context the acceptor is made on and runs on (the first I/O thread's): accepts, their
  /// refusals and the acceptor's close happen there, and hand_over() moves sockets from it.
  asio::io_context& acceptor_context() const noexcept { return *contexts_.front(); }

  /// True when connections go to the server as accepted: no TLS and no handshake hook.
  static bool plain_tcp_or_unix(const ListenerImpl& self) noexcept {
    return !self.tls_context_ && !self.options_.handshake;
  }

  /// serve() for a connection with neither TLS nor a handshake hook, on the connection's I/O
  /// thread: the connection is handed over without a coroutine of the listener's waiting for
  /// it, so an idle connection holds only its own coroutine frames.
  template <class Socket>
  static void serve_plain(std::shared_ptr<ListenerImpl> self, Socket socket,
                          std::string address_key) {
    if (self->stop_.stop_requested()) {
      self->report_drop(socket_addresses(socket).second, DropReason::shutting_down);
      self->release(address_key);
      return;
    }
    ListenerImpl& impl = *self;
    spawn_connection(impl.server_, std::move(socket), ByteOrder::big_endian, SessionData{},
                     impl.stop_.get_token(), &impl.grace_ns_,
                     [self = std::move(self), address_key = std::move(address_key)](
                         std::error_code) { self->release(address_key); });
  }

  template <class Socket>
  bool admit(Socket& socket, std::string& address_key) {
    const auto [local, remote] = socket_addresses(socket);
    if (options_.max_connections != 0 && live_.load() >= options_.max_connections) {
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

  /// Tells the metrics, if any, that a connection was dropped before being served.
  void report_drop(std::string_view remote, DropReason reason) {
    if (const auto metrics = server_.metrics()) {
      metrics->connection_dropped(remote, reason);
    }
  }

  void release(const std::string& address_key) {
    if (!address_key.empty()) {
      std::lock_guard lock(mutex_);
      auto it = per_address_.find(address_key);
      if (it != per_address_.end() && --it->second == 0) {
        per_address_.erase(it);
      }
    }
    --live_;
  }

  /// What the handshake hook produced: its result, or the exception it threw.
  struct HandshakeOutcome {
    HandshakeResult result;
    std::exception_ptr error;
  };
  /// Runs the handshake hook; its exception becomes the outcome rather than propagating.
  static asio::awaitable<HandshakeOutcome> guarded_handshake(const HandshakeFunction& hook,
                                                             HandshakeStream& stream) {
    HandshakeOutcome outcome;
    try {
      outcome.result = co_await hook(stream);
    } catch (...) {
      outcome.error = std::current_exception();
    }
    co_return outcome;
  }

  template <class Socket>
  static asio::awaitable<void> serve(std::shared_ptr<ListenerImpl> self, Socket socket,
                                     std::string address_key) {
    const ScopeExit release_count([&] { self->release(address_key); });
    // One deadline for the TLS handshake and the hook together; no timer when there is neither.
    std::optional<asio::steady_timer> deadline;
    if constexpr (std::is_same_v<Socket, asio::ip::tcp::socket>) {
      if (self->tls_context_) {
        deadline.emplace(socket.get_executor());
        deadline->expires_after(self->options_.handshake_timeout);
        TlsSocket stream(std::move(socket), *self->tls_context_);
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

  /// The server side of the TLS handshake, under `deadline`. False (logged, stream closed) if it
  /// failed.
  static asio::awaitable<bool> tls_handshake(ListenerImpl& self, TlsSocket& stream,
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

  /// Runs the handshake hook (under `deadline`) over `stream`, then hands it to the server.
  template <class Stream>
  static asio::awaitable<void> serve_stream(std::shared_ptr<ListenerImpl> self, Stream stream,
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
                                               std::move(handshake.session),
                                               self->stop_.get_token(), &self->grace_ns_);
  }

  Server& server_;
  ListenerOptions options_;
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  std::variant<std::monostate, asio::ip::tcp::acceptor, asio::local::stream_protocol::acceptor>
      acceptor_;
  std::shared_ptr<asio::ssl::context> tls_context_;  // set by start(), then only read
  std::stop_source stop_;
  std::atomic<std::int64_t> grace_ns_{0};
  std::atomic<std::size_t> live_{0};

  mutable std::mutex mutex_;
  std::condition_variable stopped_cv_;
  std::map<std::string, std::size_t> per_address_;
  std::string local_address_;
  std::string unix_path_;
  std::optional<FileIdentity> unix_file_;  // the socket file this listener created
  std::uint16_t port_ = 0;
  bool started_ = false;
  bool shutting_down_ = false;
};

}  // namespace detail

Listener::Listener(Server& server, ListenerOptions options)
    : impl_(std::make_shared<detail::ListenerImpl>(server, std::move(options))) {}

Listener::~Listener() {
  shutdown(std::chrono::nanoseconds(0));
  wait();
}

void Listener::start() { impl_->start(); }
std::string Listener::local_address() const { return impl_->local_address(); }
std::uint16_t Listener::port() const { return impl_->port(); }
void Listener::shutdown(std::chrono::nanoseconds grace) {
  impl_->shutdown(grace);
  impl_->notify_shutdown();
}
void Listener::wait() { impl_->wait(); }
std::size_t Listener::num_connections() const { return impl_->num_connections(); }
std::size_t Listener::io_thread_count() const { return impl_->io_thread_count(); }

}  // namespace serialserver
