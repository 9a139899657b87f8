#pragma once

// The Listener's implementation, shared by the files that make it up:
//   listener.cpp            binding the address, starting, shutting down and waiting; the
//                           public Listener front
//   listener_accept.cpp     the accept loop, admission against the connection limits (the
//                           per-address registry) and the hand-over to an I/O thread
//   listener_handshake.cpp  the TLS handshake and the handshake hook, then the hand-over of
//                           the connection to the server
// Not a header for anything else.

#include <serialserver/listener.hpp>
#include <serialserver/metrics.hpp>
#include <serialserver/server.hpp>
#include "net/listen_address.hpp"
#include "net/stream_ops.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/ssl/context.hpp>
#include <asio/steady_timer.hpp>

namespace serialserver::detail {

/// Thread-safety: the public members may be called from any thread (the mutex guards the
/// registry and the addresses); the coroutines run on the I/O threads. Lifetime: shared by the
/// Listener and every coroutine and handler of its connections.
class ListenerImpl : public std::enable_shared_from_this<ListenerImpl> {
 public:
  ListenerImpl(const ListenerImpl&) = delete;
  ListenerImpl& operator=(const ListenerImpl&) = delete;
  ListenerImpl(ListenerImpl&&) = delete;
  ListenerImpl& operator=(ListenerImpl&&) = delete;
  ListenerImpl(Server& server, ListenerOptions options);
  ~ListenerImpl();

  void start();
  void shutdown(std::chrono::nanoseconds grace);
  void wait();
  void reload_tls();

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
  // listener_accept.cpp

  /// Spawns the accept loop on `ctx` for whichever acceptor start() made.
  void spawn_accept_loop(asio::io_context& ctx);

  template <class Acceptor>
  static asio::awaitable<void> accept_loop(std::shared_ptr<ListenerImpl> self, Acceptor& acceptor);

  /// Starts serving an admitted `socket`, accepted on the acceptor's context, on `ctx`'s I/O
  /// thread. The I/O contexts lock neither their sockets' reactor state nor their operation
  /// queues (ASIO_CONCURRENCY_HINT_UNSAFE_IO), so a socket must be used by the one thread that
  /// runs its context: one bound for another context is released here (its registration with
  /// this context's reactor is dropped) and its descriptor is assigned anew on that thread.
  template <class Socket>
  static void hand_over(const std::shared_ptr<ListenerImpl>& self, asio::io_context& ctx,
                        Socket socket, std::string address_key);

  template <class Socket>
  bool admit(Socket& socket, std::string& address_key);

  /// At max_connections: gracefully disconnects (grace 0: Goodbye at once) the connection of
  /// this listener idle the longest, not evicted before; false if every one is busy.
  bool evict_longest_idle();

  /// True if `client` came through this listener (its local address is this listener's port
  /// or socket path): the server may have other listeners.
  bool accepted_here(const Client& client) const;

  /// Tells the metrics, if any, that a connection was dropped before being served.
  void report_drop(std::string_view remote, DropReason reason);

  void release(const std::string& address_key);

  // listener_handshake.cpp (instantiated there for TCP and Unix sockets)

  /// Serves `socket` on the thread that runs its context (the caller's).
  template <class Socket>
  static void start_serving(const std::shared_ptr<ListenerImpl>& self, Socket socket,
                            std::string address_key);

  /// serve() for a connection with neither TLS nor a handshake hook, on the connection's I/O
  /// thread: the connection is handed over without a coroutine of the listener's waiting for
  /// it, so an idle connection holds only its own coroutine frames.
  template <class Socket>
  static void serve_plain(std::shared_ptr<ListenerImpl> self, Socket socket,
                          std::string address_key);

  template <class Socket>
  static asio::awaitable<void> serve(std::shared_ptr<ListenerImpl> self, Socket socket,
                                     std::string address_key);

  /// The server side of the TLS handshake, under `deadline`. False (logged, stream closed) if it
  /// failed.
  static asio::awaitable<bool> tls_handshake(ListenerImpl& self, TlsSocket& stream,
                                             asio::steady_timer& deadline);

  /// Runs the handshake hook (under `deadline`) over `stream`, then hands it to the server.
  template <class Stream>
  static asio::awaitable<void> serve_stream(std::shared_ptr<ListenerImpl> self, Stream stream,
                                            std::optional<asio::steady_timer>& deadline);

  /// The context the acceptor is made on and runs on (the first I/O thread's): accepts, their
  /// refusals and the acceptor's close happen there, and hand_over() moves sockets from it.
  asio::io_context& acceptor_context() const noexcept { return *contexts_.front(); }

  /// The TLS context for a new connection (null without TLS). The connection keeps the copy it
  /// got for its lifetime, so that reload_tls() changes only the connections that come after.
  std::shared_ptr<asio::ssl::context> current_tls_context() const {
    std::lock_guard lock(tls_mutex_);
    return tls_context_;
  }

  /// True when connections go to the server as accepted: no TLS and no handshake hook.
  static bool plain_tcp_or_unix(const ListenerImpl& self) noexcept {
    return !self.tls_ && !self.options_.handshake;
  }

  Server& server_;
  ListenerOptions options_;
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  std::variant<std::monostate, asio::ip::tcp::acceptor, asio::local::stream_protocol::acceptor>
      acceptor_;
  bool tls_ = false;  // set by start() before the I/O threads start, then only read
  mutable std::mutex tls_mutex_;
  std::shared_ptr<asio::ssl::context> tls_context_;  // set by start() and reload_tls()
  std::stop_source stop_;
  std::atomic<std::int64_t> grace_ns_{0};
  std::atomic<std::size_t> live_{0};

  mutable std::mutex mutex_;
  std::condition_variable stopped_cv_;
  std::map<std::string, std::size_t> per_address_;
  // Ids of evicted connections that may still be lingering (they stay in Server::clients()
  // until they end): not picked twice. Used by the accept loop alone, on the acceptor's thread.
  std::set<std::uint64_t> evicted_;
  std::string local_address_;
  std::string unix_path_;
  std::optional<FileIdentity> unix_file_;  // the socket file this listener created
  std::uint16_t port_ = 0;
  bool started_ = false;
  bool shutting_down_ = false;
};

}  // namespace serialserver::detail
