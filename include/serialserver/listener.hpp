#pragma once

#include <serialserver/byte_order.hpp>
#include <serialserver/session_data.hpp>
#include <serialserver/tls.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

namespace serialserver {

class Server;

namespace detail {
class ListenerImpl;
}

/// The raw connection, as a handshake hook sees it before the server takes over (on a TLS
/// listener: the decrypted stream, after the TLS handshake).
/// Thread-safety: used by one handshake at a time. Lifetime: valid during the hook only.
class HandshakeStream {
 public:
  virtual ~HandshakeStream() = default;
  /// Reads at least one byte (up to out.size()); throws std::system_error on failure or EOF.
  virtual asio::awaitable<std::size_t> async_read_some(std::span<std::uint8_t> out) = 0;
  /// Writes all of `data`; throws std::system_error on failure.
  virtual asio::awaitable<void> async_write(std::span<const std::uint8_t> data) = 0;
  /// Fills `out` completely; throws std::system_error on failure or EOF.
  asio::awaitable<void> async_read_exact(std::span<std::uint8_t> out);
  /// The peer's address ("127.0.0.1:5000", "[::1]:5000" or a socket path).
  virtual std::string remote_address() const = 0;
};

/// What a handshake hook decides: the connection's byte order and its session data.
struct HandshakeResult {
  ByteOrder byte_order = ByteOrder::big_endian;  ///< for numbers inside messages
  SessionData session;                           ///< handed to every task function
};

/// A handshake hook: a coroutine over the raw stream, run on the connection's I/O thread under
/// ListenerOptions::handshake_timeout. Throwing rejects the connection (it is logged and closed).
using HandshakeFunction = std::function<asio::awaitable<HandshakeResult>(HandshakeStream&)>;

/// Options of a Listener. Every field has a safe default.
struct ListenerOptions {
  /// Where to listen: "host:port", "[v6]:port" or a Unix socket path (anything with a '/').
  /// Port 0 picks a free port (see Listener::port()).
  std::string address = "127.0.0.1:7070";
  /// I/O threads, each running its own io_context; 0 means the number of cores this process may
  /// run on (its CPU affinity).
  unsigned io_threads = 0;
  /// Handshake hook; empty means none (big-endian, no session data).
  HandshakeFunction handshake;
  /// The longest a handshake may take.
  std::chrono::nanoseconds handshake_timeout = std::chrono::seconds(10);
  /// Connections served at once. A connection accepted at the limit makes room: the
  /// connection of this listener idle the longest (no task running; Client::last_active()) is
  /// disconnected gracefully with no grace period (it gets its Goodbye at once; logged at info)
  /// and the newcomer is served. Only when none is idle is the newcomer closed at once (and
  /// logged). An evicted connection counts until it has ended (its linger lasts up to 1 s).
  /// 0 means no limit.
  std::size_t max_connections = 10000;
  /// Connections from one remote IP address at once; beyond it, closed at once. 0: no limit.
  std::size_t max_connections_per_address = 0;
  /// The listen backlog.
  int backlog = 1024;
  /// Sets SO_REUSEPORT on a TCP listening socket before it is bound, so that another socket
  /// with the option (a new server process taking over while this one drains) can bind the same
  /// address and port. Ignored for Unix sockets. Default false: a second bind fails with
  /// "address in use".
  ///
  /// Kernel caveat (Linux): new connections are spread over the sockets sharing the port by a
  /// hash of their addresses, and each socket has its own accept queue. When one of them closes,
  /// connections already in its queue but not yet accepted are reset; they are not moved to the
  /// other sockets. shutdown() closes the listening socket at once, without draining its queue
  /// first, so a hand-over between two processes can reset the few connections that arrived in
  /// that instant (none of them had a task run). Linux 5.14 and later move them instead when
  /// the sysctl net.ipv4.tcp_migrate_req is 1; start() logs a warning when it reads 0. See
  /// docs/deployment.md.
  bool reuse_port = false;
  /// TLS on every connection (see TlsOptions); empty means plaintext.
  std::optional<TlsOptions> tls;
};

/// Accepts connections for a Server (the listener helper): listens, accepts in a loop on its
/// own I/O threads (an accept error is logged and retried after about 100 ms), runs the TLS
/// handshake (if configured) and the handshake hook, enforces the connection limits (evicting
/// the longest idle connection at max_connections), and hands each connection to the server.
///
/// Thread-safety: every member function may be called from any thread.
/// Lifetime: the Server must outlive the Listener. The destructor shuts down with no grace
/// period and joins its threads.
class Listener {
 public:
  /// A listener for `server`; nothing happens until start().
  Listener(Server& server, ListenerOptions options);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();

  /// Binds, listens and starts the I/O threads. Throws std::system_error if the address cannot
  /// be bound or a TLS file cannot be loaded, std::invalid_argument if the address cannot be
  /// parsed (or TLS is asked for on a Unix socket).
  void start();
  /// The bound address, in the form of ListenerOptions::address (with the real port).
  std::string local_address() const;
  /// The bound TCP port (0 for a Unix socket).
  std::uint16_t port() const;
  /// Graceful shutdown (docs/protocol.md section 7): stops accepting (new connections are refused)
  /// and disconnects every connection of this listener with `grace`. Non-blocking.
  void shutdown(std::chrono::nanoseconds grace);
  /// Blocks until shutdown() was called and every connection has ended; then joins the threads.
  void wait();
  /// Reads the files of ListenerOptions::tls again (certificate chain, key, client CAs) and
  /// makes new connections use them; connections already accepted keep the certificate they
  /// were handshaking or handshaken with. For renewing a certificate without a restart (the
  /// programs do it on SIGHUP). Throws std::system_error if a file cannot be loaded (or the key
  /// does not match the certificate): the listener then goes on with the certificate it had.
  /// Throws std::logic_error if the listener has no TLS or was not started.
  void reload_tls();
  /// Connections accepted and not yet ended (including those in their handshake).
  std::size_t num_connections() const;
  /// The number of I/O threads.
  std::size_t io_thread_count() const;

 private:
  std::shared_ptr<detail::ListenerImpl> impl_;
};

}  // namespace serialserver
