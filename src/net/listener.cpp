// The Listener: binding its address, starting its I/O threads, shutting down and waiting; and
// the public Listener front. The accept loop is in listener_accept.cpp, the handshakes in
// listener_handshake.cpp.

#include <serialserver/listener.hpp>
#include <serialserver/server.hpp>
#include "net/cores.hpp"
#include "net/listen_address.hpp"
#include "net/listener_impl.hpp"
#include "net/stream_ops.hpp"
#include "net/tls_context.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>
#include <variant>

#include <asio/detail/socket_option.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>

namespace serialserver {

namespace detail {

namespace {
/// SO_REUSEPORT, which asio does not name.
using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

/// Whether Linux moves the connections queued on a closing SO_REUSEPORT socket to another socket
/// of its group (net.ipv4.tcp_migrate_req, Linux 5.14 and later): true or false, or nullopt
/// where the setting cannot be read (an older kernel, no /proc).
std::optional<bool> kernel_migrates_queued_connections() {
  std::ifstream file("/proc/sys/net/ipv4/tcp_migrate_req");
  int value = 0;
  if (!(file >> value)) {
    return std::nullopt;
  }
  return value != 0;
}
}  // namespace

ListenerImpl::ListenerImpl(Server& server, ListenerOptions options)
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

ListenerImpl::~ListenerImpl() {
  struct stat st {};
  if (!unix_path_.empty() && unix_file_ && ::stat(unix_path_.c_str(), &st) == 0 &&
      st.st_dev == unix_file_->device && st.st_ino == unix_file_->inode) {
    ::unlink(unix_path_.c_str());
  }
}

void ListenerImpl::start() {
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
    tls_ = true;
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
    if (options_.reuse_port) {
      // Before bind: the kernel lets a socket share a port only if every socket bound to it
      // had the option then (and belongs to the same user).
      acceptor.set_option(ReusePort(true));
    }
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
  spawn_accept_loop(ctx);
  for (auto& context : contexts_) {
    threads_.emplace_back([c = context.get()] { c->run(); });
  }
  server_.log()->info("listening on {}{} with {} I/O threads", local_address_, tls_ ? " (TLS)" : "",
                      contexts_.size());
  if (options_.reuse_port && !parsed.is_unix && kernel_migrates_queued_connections() == false) {
    // Said once at start, where the operator who chose reuse_port reads: the hand-over can
    // reset connections, and one setting of the machine prevents it.
    server_.log()->warn(
        "reuse_port on {}: net.ipv4.tcp_migrate_req is 0, so connections still queued on this "
        "socket when it closes are reset instead of moved to the server taking over (set it "
        "to 1; see docs/deployment.md)",
        local_address_);
  }
}

void ListenerImpl::reload_tls() {
  {
    std::lock_guard lock(mutex_);
    if (!started_ || !tls_) {
      throw std::logic_error("Listener::reload_tls: not a started TLS listener");
    }
  }
  // Made in full before it replaces the old one: a file that cannot be loaded throws here and
  // the listener goes on with the context it had.
  auto context = make_server_tls_context(*options_.tls);
  {
    std::lock_guard lock(tls_mutex_);
    tls_context_.swap(context);
  }
  server_.log()->info("TLS certificate reloaded from '{}' for new connections on {}",
                      options_.tls->certificate_chain_file, local_address());
  // `context`, the old one, is released here; connections that use it hold their own copies.
}

void ListenerImpl::shutdown(std::chrono::nanoseconds grace) {
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

void ListenerImpl::wait() {
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
void Listener::reload_tls() { impl_->reload_tls(); }
std::size_t Listener::num_connections() const { return impl_->num_connections(); }
std::size_t Listener::io_thread_count() const { return impl_->io_thread_count(); }

}  // namespace serialserver
