#include "logd_client.hpp"

#include <serialserver/binary_reader.hpp>
#include <serialserver/binary_writer.hpp>
#include <serialserver/error.hpp>
#include <serialserver/wire/block_decoder.hpp>
#include <serialserver/wire/block_encoder.hpp>

#include <array>
#include <system_error>

#include <asio/connect.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/ssl/host_name_verification.hpp>
#include <asio/write.hpp>
#include <openssl/ssl.h>

namespace logd {

using serialserver::BinaryReader;
using serialserver::BinaryWriter;

namespace {

constexpr std::size_t kInputBuffer = std::size_t{64} * 1024;

/// Runs one asynchronous operation on `io` for at most `timeout`; cancels it on expiry.
/// `start` is called with a completion handler `void(std::error_code, std::size_t)`.
template <class Start>
std::size_t run_with_timeout(asio::io_context& io, asio::generic::stream_protocol::socket& socket,
                             std::chrono::milliseconds timeout, Start start) {
  std::error_code ec;
  std::size_t n = 0;
  bool done = false;
  start([&](std::error_code e, std::size_t k) {
    ec = e;
    n = k;
    done = true;
  });
  io.restart();
  io.run_for(timeout);
  if (!done) {
    std::error_code ignored;
    socket.close(ignored);
    io.restart();
    io.run();
    throw std::system_error(std::make_error_code(std::errc::timed_out), "logd client");
  }
  if (ec) {
    throw std::system_error(ec, "logd client");
  }
  return n;
}

/// Splits "host:port" or "[v6]:port".
std::pair<std::string, std::string> split_host_port(const std::string& address) {
  std::string host;
  std::string port;
  if (!address.empty() && address.front() == '[') {
    const auto close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      throw std::invalid_argument("bad address " + address);
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos) {
      throw std::invalid_argument("bad address " + address + " (want host:port)");
    }
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  return {host, port};
}

/// Runs `load`; turns its failure into a std::system_error naming the file.
template <class F>
void load_tls_file(const char* what, const std::string& path, F&& load) {
  std::error_code ec;
  load(ec);
  if (ec) {
    throw std::system_error(ec, std::string("TLS ") + what + " '" + path + "'");
  }
}

/// The client's TLS context: TLS 1.2 or later, the peer verified, the client certificate if any.
std::shared_ptr<asio::ssl::context> make_tls_context(const serialclient::TlsOptions& options) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
  context->set_options(asio::ssl::context::default_workarounds);
  if (options.ca_file.empty()) {
    load_tls_file("default CA paths", "",
                  [&](std::error_code& ec) { context->set_default_verify_paths(ec); });
  } else {
    load_tls_file("CA file", options.ca_file,
                  [&](std::error_code& ec) { context->load_verify_file(options.ca_file, ec); });
  }
  context->set_verify_mode(asio::ssl::verify_peer);
  if (!options.certificate_file.empty()) {
    const std::string& key =
        options.private_key_file.empty() ? options.certificate_file : options.private_key_file;
    load_tls_file("certificate", options.certificate_file, [&](std::error_code& ec) {
      context->use_certificate_chain_file(options.certificate_file, ec);
    });
    load_tls_file("private key", key, [&](std::error_code& ec) {
      context->use_private_key_file(key, asio::ssl::context::pem, ec);
    });
  }
  return context;
}

}  // namespace

Client::Client(ClientOptions options)
    : options_(std::move(options)), socket_(io_), in_(kInputBuffer) {
  if (options_.address.find('/') != std::string::npos) {
    if (options_.tls) {
      throw std::invalid_argument("TLS needs a TCP address, not the socket path " +
                                  options_.address);
    }
    const asio::local::stream_protocol::endpoint unix_endpoint(options_.address);
    socket_.open(asio::generic::stream_protocol(unix_endpoint.protocol()));
    run_with_timeout(io_, socket_, options_.timeout, [&](auto handler) {
      socket_.async_connect(asio::generic::stream_protocol::endpoint(unix_endpoint),
                            [handler](std::error_code ec) mutable { handler(ec, 0); });
    });
  } else {
    const auto [host, port] = split_host_port(options_.address);
    asio::ip::tcp::resolver resolver(io_);
    const auto results = resolver.resolve(host, port);
    std::error_code last = std::make_error_code(std::errc::host_unreachable);
    bool connected = false;
    for (const auto& entry : results) {
      const asio::ip::tcp::endpoint tcp_endpoint = entry.endpoint();
      std::error_code ignored;
      socket_.close(ignored);
      socket_.open(asio::generic::stream_protocol(tcp_endpoint.protocol()));
      try {
        run_with_timeout(io_, socket_, options_.timeout, [&](auto handler) {
          socket_.async_connect(asio::generic::stream_protocol::endpoint(tcp_endpoint),
                                [handler](std::error_code ec) mutable { handler(ec, 0); });
        });
        connected = true;
        break;
      } catch (const std::system_error& e) {
        last = e.code();
      }
    }
    if (!connected) {
      throw std::system_error(last, "cannot connect to " + options_.address);
    }
    const int one = 1;
    ::setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (options_.tls) {
      tls_handshake(host);
    }
  }
  handshake();
}

Client::~Client() = default;

void Client::tls_handshake(const std::string& host) {
  tls_context_ = make_tls_context(*options_.tls);
  const std::string name = options_.tls->server_name.empty() ? host : options_.tls->server_name;
  tls_.emplace(socket_, *tls_context_);
  std::error_code not_an_address;
  asio::ip::make_address(name, not_an_address);
  // SNI carries host names only (RFC 6066); an IP address is matched against the IP SANs.
  if (not_an_address && SSL_set_tlsext_host_name(tls_->native_handle(), name.c_str()) != 1) {
    throw std::runtime_error("TLS: cannot send the server name " + name);
  }
  tls_->set_verify_callback(asio::ssl::host_name_verification(name));
  try {
    run_with_timeout(io_, socket_, options_.timeout, [&](auto handler) {
      tls_->async_handshake(asio::ssl::stream_base::client,
                            [handler](std::error_code ec) mutable { handler(ec, 0); });
    });
  } catch (const std::system_error& e) {
    throw std::system_error(e.code(), "TLS handshake with " + options_.address);
  }
}

void Client::write_all(std::span<const std::uint8_t> data) {
  run_with_timeout(io_, socket_, options_.timeout, [&](auto handler) {
    if (tls_) {
      asio::async_write(*tls_, asio::buffer(data.data(), data.size()), handler);
    } else {
      asio::async_write(socket_, asio::buffer(data.data(), data.size()), handler);
    }
  });
}

void Client::fill() {
  if (in_begin_ == in_end_) {
    in_begin_ = 0;
    in_end_ = 0;
  }
  in_end_ += run_with_timeout(io_, socket_, options_.timeout, [&](auto handler) {
    const auto space = asio::buffer(in_.data() + in_end_, in_.size() - in_end_);
    if (tls_) {
      tls_->async_read_some(space, handler);
    } else {
      socket_.async_read_some(space, handler);
    }
  });
}

std::uint8_t Client::read_byte() {
  if (in_begin_ == in_end_) {
    fill();
  }
  return in_[in_begin_++];
}

void Client::read_exact(std::span<std::uint8_t> out) {
  for (auto& b : out) {
    b = read_byte();
  }
}

void Client::handshake() {
  const std::uint8_t order =
      options_.byte_order == serialserver::ByteOrder::big_endian ? kHandshakeBig : kHandshakeLittle;
  const std::array<std::uint8_t, 1> hello{order};
  write_all(hello);
  std::array<std::uint8_t, 2> ack{};
  read_exact(ack);
  if (ack[0] != order) {
    throw std::runtime_error("handshake: the server answered byte " + std::to_string(ack[0]));
  }
  if (ack[1] == kHandshakeNoToken) {
    return;
  }
  if (!options_.token) {
    throw std::runtime_error("handshake: the server requires a token (--token-file)");
  }
  BinaryWriter w(options_.byte_order);
  w.write_string(*options_.token);
  write_all(w.data());
  if (read_byte() != kTokenAccepted) {
    throw std::runtime_error("handshake: the server rejected the token");
  }
}

void Client::call_streamed(serialserver::TaskCode code, std::span<const std::uint8_t> content,
                           const std::function<void(std::span<const std::uint8_t>)>& sink) {
  std::vector<std::uint8_t> request(1 + serialserver::wire::encoded_size(content.size()));
  request[0] = code;
  serialserver::wire::encode_message(content, std::span(request).subspan(1));
  write_all(request);
  const std::uint8_t response = read_byte();
  if (response == static_cast<std::uint8_t>(serialserver::ResponseCode::error)) {
    throw ServerError(read_byte());
  }
  if (response == static_cast<std::uint8_t>(serialserver::ResponseCode::goodbye)) {
    throw GoodbyeReceived();
  }
  if (response != static_cast<std::uint8_t>(serialserver::ResponseCode::ok)) {
    throw std::runtime_error("bad response code " + std::to_string(response));
  }
  // The content of each buffer of input goes to `sink` as one piece.
  serialserver::wire::BlockDecoder decoder;
  std::vector<std::uint8_t> piece;
  for (;;) {
    if (in_begin_ == in_end_) {
      if (!piece.empty()) {
        sink(piece);
        piece.clear();
      }
      fill();
    }
    const auto chunk = decoder.next(std::span(in_).subspan(in_begin_, in_end_ - in_begin_));
    in_begin_ += chunk.consumed;
    piece.insert(piece.end(), chunk.content.begin(), chunk.content.end());
    if (chunk.end) {
      if (!piece.empty()) {
        sink(piece);
      }
      return;
    }
  }
}

std::vector<std::uint8_t> Client::call(serialserver::TaskCode code,
                                       std::span<const std::uint8_t> content) {
  std::vector<std::uint8_t> out;
  call_streamed(code, content, [&](std::span<const std::uint8_t> piece) {
    out.insert(out.end(), piece.begin(), piece.end());
  });
  return out;
}

std::uint64_t Client::append(const Message& message) {
  BinaryWriter w(options_.byte_order);
  encode_message(w, message);
  const auto reply = call(kTaskAppend, w.data());
  BinaryReader r(reply, options_.byte_order);
  return r.read_u64();
}

std::uint64_t Client::append_batch(std::span<const Message> messages) {
  BinaryWriter w(options_.byte_order);
  encode_batch(w, messages);
  const auto reply = call(kTaskAppendBatch, w.data());
  BinaryReader r(reply, options_.byte_order);
  return r.read_u64();
}

std::uint64_t Client::read(const ReadQuery& query, const std::function<void(Record&&)>& sink) {
  BinaryWriter w(options_.byte_order);
  encode_read_query(w, query);
  // Records arrive in pieces: keep the unparsed tail (at most one record) between pieces.
  std::vector<std::uint8_t> buffer;
  std::uint64_t count = 0;
  call_streamed(kTaskRead, w.data(), [&](std::span<const std::uint8_t> piece) {
    buffer.insert(buffer.end(), piece.begin(), piece.end());
    std::size_t used = 0;
    for (;;) {
      BinaryReader r(std::span<const std::uint8_t>(buffer).subspan(used), options_.byte_order);
      try {
        Record rec = decode_record(r);
        used += r.position();
        ++count;
        sink(std::move(rec));
      } catch (const serialserver::EndOfMessage&) {
        break;
      }
    }
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(used));
  });
  if (!buffer.empty()) {
    throw std::runtime_error("read: the response ended inside a record");
  }
  return count;
}

std::vector<Record> Client::tail(const TailQuery& query) {
  BinaryWriter w(options_.byte_order);
  encode_tail_query(w, query);
  const auto saved = options_.timeout;
  options_.timeout += std::chrono::milliseconds(query.wait_ms);
  std::vector<std::uint8_t> reply;
  try {
    reply = call(kTaskTail, w.data());
  } catch (...) {
    options_.timeout = saved;
    throw;
  }
  options_.timeout = saved;
  BinaryReader r(reply, options_.byte_order);
  std::vector<Record> out;
  while (!r.at_end()) {
    out.push_back(decode_record(r));
  }
  return out;
}

std::vector<LogInfo> Client::list() {
  const auto reply = call(kTaskList, {});
  BinaryReader r(reply, options_.byte_order);
  const std::uint32_t n = r.read_u32();
  std::vector<LogInfo> out;
  for (std::uint32_t i = 0; i < n; ++i) {
    out.push_back(decode_log_info(r));
  }
  return out;
}

std::uint64_t Client::delete_messages(const DeleteQuery& query) {
  BinaryWriter w(options_.byte_order);
  encode_delete_query(w, query);
  const auto reply = call(kTaskDelete, w.data());
  BinaryReader r(reply, options_.byte_order);
  return decode_delete_result(r);
}

}  // namespace logd
