#pragma once

// A small blocking client of serialserver-logd, on standalone Asio and the project's wire codec:
// used by the serialserver-log CLI, the logd tests and the logd benchmark.

#include <serialserver/byte_order.hpp>
#include <serialserver/protocol.hpp>
#include "logd_protocol.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <serialclient/tls.hpp>

namespace logd {

/// The server answered Error with `code`. Thread-safety: an immutable value.
class ServerError : public std::runtime_error {
 public:
  explicit ServerError(serialserver::ErrorCode code)
      : std::runtime_error("server error code " + std::to_string(code)), code_(code) {}
  serialserver::ErrorCode code() const noexcept { return code_; }

 private:
  serialserver::ErrorCode code_;
};

/// The server answered Goodbye: it is closing the connection (it is shutting down).
/// Thread-safety: an immutable value.
class GoodbyeReceived : public std::runtime_error {
 public:
  GoodbyeReceived() : std::runtime_error("the server said goodbye") {}
};

/// Options of a Client.
struct ClientOptions {
  /// "host:port", "[v6]:port" or a Unix socket path (anything with a '/').
  std::string address = "127.0.0.1:7070";
  /// The byte order asked for in the handshake.
  serialserver::ByteOrder byte_order = serialserver::ByteOrder::big_endian;
  /// The token, sent if the server asks for one.
  std::optional<std::string> token;
  /// The rolling timeout of every read and write (and of the connect).
  std::chrono::milliseconds timeout{30000};
  /// TLS (1.2 or later) for a TCP address, as the serialclient library does it: the server's
  /// certificate verified against ca_file (or the system's CAs) and its name (server_name, or
  /// the host of `address`) checked; certificate_file and private_key_file for mutual TLS.
  /// Empty means plaintext.
  std::optional<serialclient::TlsOptions> tls;
};

/// One connection to logd, handshaken at construction.
/// Thread-safety: none; one thread uses a client at a time. Lifetime: a plain object; the
/// connection closes with it. After an I/O failure or a timeout the client is unusable.
class Client {
 public:
  /// Connects, runs the TLS handshake if options.tls is set, then logd's handshake. Throws
  /// std::system_error (I/O, timeout, a TLS file that cannot be loaded, a failed TLS handshake)
  /// or std::runtime_error (handshake refused or token needed).
  explicit Client(ClientOptions options);
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();

  /// Task 1: appends one message; returns its id.
  std::uint64_t append(const Message& message);
  /// Task 2: appends messages in one transaction; returns the first id (the others follow).
  std::uint64_t append_batch(std::span<const Message> messages);
  /// Task 3: calls `sink` for every record as it arrives; returns how many there were.
  std::uint64_t read(const ReadQuery& query, const std::function<void(Record&&)>& sink);
  /// Task 4: the records after a cursor (waiting up to query.wait_ms for one).
  std::vector<Record> tail(const TailQuery& query);
  /// Task 5: every log with its count.
  std::vector<LogInfo> list();
  /// Task 6: removes the messages of a log older than query.before_ns; returns how many.
  std::uint64_t delete_messages(const DeleteQuery& query);

  /// Sends task `code` with `content` and returns the OK content. Throws ServerError for an
  /// Error response, GoodbyeReceived for Goodbye.
  std::vector<std::uint8_t> call(serialserver::TaskCode code,
                                 std::span<const std::uint8_t> content);
  /// As call, handing the OK content to `sink` in pieces as it arrives.
  void call_streamed(serialserver::TaskCode code, std::span<const std::uint8_t> content,
                     const std::function<void(std::span<const std::uint8_t>)>& sink);

  /// The negotiated byte order.
  serialserver::ByteOrder byte_order() const noexcept { return options_.byte_order; }
  /// Sets the rolling timeout for the next operations.
  void set_timeout(std::chrono::milliseconds timeout) noexcept { options_.timeout = timeout; }

 private:
  void write_all(std::span<const std::uint8_t> data);
  std::uint8_t read_byte();
  void read_exact(std::span<std::uint8_t> out);
  void fill();
  void handshake();
  void tls_handshake(const std::string& host);

  ClientOptions options_;
  asio::io_context io_;
  asio::generic::stream_protocol::socket socket_;
  std::shared_ptr<asio::ssl::context> tls_context_;
  std::optional<asio::ssl::stream<asio::generic::stream_protocol::socket&>> tls_;
  std::vector<std::uint8_t> in_;
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;
};

}  // namespace logd
