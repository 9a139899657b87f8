#include "connection_state.hpp"
#include "tls_context.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/ssl/host_name_verification.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

namespace serialclient::detail {

namespace {

// Large enough that a big response arrives in few reads, small enough to keep per connection.
constexpr std::size_t kReadBufferSize = std::size_t{64} * 1024;
// A streaming request goes out whenever this much is buffered.
constexpr std::size_t kWriteFlushThreshold = std::size_t{64} * 1024;
// Content is encoded in pieces of this size so that the write buffer never grows past about
// twice the threshold, whatever the caller hands in at once.
constexpr std::size_t kEncodePiece = std::size_t{64} * 1024;

std::system_error system_error(Errc e) { return {make_error_code(e)}; }

/// Cancels a timer's waits. asio's cancel() reports a failure by exception, but the timer
/// service's cancel cannot fail (it only takes the waits off its queue), so the functions that
/// close and unlock can stay noexcept.
void cancel_waits(asio::steady_timer& timer) noexcept {
  try {
    timer.cancel();
  } catch (...) {  // not reached: see above
  }
}

/// Asio reports OS errors in its own "asio.system" category, which does not compare equal to
/// std::errc values; the system category does, so callers can test `ec == std::errc::...`.
std::error_code normalise(std::error_code ec) {
  if (ec.category() == asio::error::get_system_category()) {
    return {ec.value(), std::system_category()};
  }
  return ec;
}

}  // namespace

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
      check_open();
      begin_request(serialserver::kKeepAliveTaskCode);
      const ResponseHead head = co_await async_end_request();
      co_await async_finish_response();
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

asio::awaitable<void> ConnectionState::async_lock() {
  if (!locked_) {
    locked_ = true;
    co_return;
  }
  auto waiter =
      std::make_shared<asio::steady_timer>(executor_, asio::steady_timer::time_point::max());
  waiters_.push_back(waiter);
  std::error_code ec;
  co_await waiter->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  // unlock() cancelled the wait to hand the lock over: locked_ stayed true for us.
}

void ConnectionState::unlock() noexcept {
  if (waiters_.empty()) {
    locked_ = false;
    return;
  }
  auto next = std::move(waiters_.front());
  waiters_.pop_front();
  cancel_waits(*next);
}

void ConnectionState::check_open() const {
  if (!is_open()) {
    throw std::system_error(closed_reason_ ? closed_reason_
                                           : make_error_code(Errc::connection_closed));
  }
}

void ConnectionState::begin_request(TaskCode code) {
  write_buffer_.clear();
  encoder_.reset();
  write_buffer_.push_back(code);
}

asio::awaitable<void> ConnectionState::async_write_content(std::span<const std::uint8_t> content) {
  while (!content.empty()) {
    const auto piece = content.first(std::min(content.size(), kEncodePiece));
    content = content.subspan(piece.size());
    const std::size_t old_size = write_buffer_.size();
    write_buffer_.resize(old_size + encoder_.max_write_output(piece.size()));
    const std::size_t written = encoder_.write(piece, std::span(write_buffer_).subspan(old_size));
    write_buffer_.resize(old_size + written);
    if (write_buffer_.size() >= kWriteFlushThreshold) {
      co_await async_write_out();
    }
  }
}

asio::awaitable<void> ConnectionState::async_flush_content() {
  const std::size_t old_size = write_buffer_.size();
  write_buffer_.resize(old_size + encoder_.pending() + 1);
  write_buffer_.resize(old_size + encoder_.flush(std::span(write_buffer_).subspan(old_size)));
  co_await async_write_out();
}

asio::awaitable<ResponseHead> ConnectionState::async_end_request() {
  const std::size_t old_size = write_buffer_.size();
  write_buffer_.resize(old_size + encoder_.pending() + 2);
  write_buffer_.resize(old_size + encoder_.finish(std::span(write_buffer_).subspan(old_size)));
  co_await async_write_out();
  co_return co_await async_read_head();
}

asio::awaitable<void> ConnectionState::async_write_out() {
  std::size_t offset = 0;
  while (offset < write_buffer_.size()) {
    arm(options_.write_timeout, Errc::write_timeout);
    std::error_code ec;
    const auto data = asio::buffer(write_buffer_.data() + offset, write_buffer_.size() - offset);
    std::size_t n = 0;
    if (tls_) {
      n = co_await tls_->async_write_some(data, asio::redirect_error(asio::use_awaitable, ec));
    } else {
      n = co_await socket_.async_write_some(data, asio::redirect_error(asio::use_awaitable, ec));
    }
    disarm();
    if (ec) {
      throw_io_error(ec);
    }
    offset += n;
  }
  write_buffer_.clear();
}

asio::awaitable<void> ConnectionState::async_fill(std::chrono::nanoseconds timeout,
                                                  Errc on_timeout) {
  if (read_pos_ == read_end_) {
    read_pos_ = read_end_ = 0;
  } else if (read_end_ == read_buffer_.size()) {
    std::memmove(read_buffer_.data(), read_buffer_.data() + read_pos_, read_end_ - read_pos_);
    read_end_ -= read_pos_;
    read_pos_ = 0;
  }
  arm(timeout, on_timeout);
  std::error_code ec;
  const auto space = asio::buffer(read_buffer_.data() + read_end_, read_buffer_.size() - read_end_);
  std::size_t n = 0;
  if (tls_) {
    n = co_await tls_->async_read_some(space, asio::redirect_error(asio::use_awaitable, ec));
  } else {
    n = co_await socket_.async_read_some(space, asio::redirect_error(asio::use_awaitable, ec));
  }
  disarm();
  if (ec) {
    throw_io_error(ec);
  }
  read_end_ += n;
}

asio::awaitable<ResponseHead> ConnectionState::async_read_head() {
  if (read_pos_ == read_end_) {
    co_await async_fill(options_.response_timeout, Errc::timeout_waiting_for_response);
  }
  const std::uint8_t code = read_buffer_[read_pos_++];
  // Only OK carries content; for the others the decoder is put at the end of an empty message,
  // so that draining (async_finish_response) finds nothing to read.
  static constexpr std::uint8_t kEnd[1] = {0};
  decoder_.reset();
  if (code != static_cast<std::uint8_t>(serialserver::ResponseCode::ok)) {
    decoder_.next(kEnd);
  }
  switch (static_cast<serialserver::ResponseCode>(code)) {
    case serialserver::ResponseCode::ok:
      co_return ResponseHead{Status::ok, 0};
    case serialserver::ResponseCode::error:
      if (read_pos_ == read_end_) {
        co_await async_fill(options_.read_timeout, Errc::read_timeout);
      }
      co_return ResponseHead{Status::error, read_buffer_[read_pos_++]};
    case serialserver::ResponseCode::goodbye:
      // The server closes after Goodbye; later calls on this connection cannot be answered.
      close_now(make_error_code(Errc::connection_closed));
      co_return ResponseHead{Status::goodbye, 0};
  }
  close_now(make_error_code(Errc::protocol_error));
  throw system_error(Errc::protocol_error);
}

asio::awaitable<std::size_t> ConnectionState::async_read_content(std::span<std::uint8_t> out) {
  while (!decoder_.finished() && !out.empty()) {
    if (read_pos_ == read_end_) {
      co_await async_fill(options_.read_timeout, Errc::read_timeout);
    }
    const auto r = decoder_.decode(
        std::span<const std::uint8_t>(read_buffer_.data() + read_pos_, read_end_ - read_pos_), out);
    read_pos_ += r.consumed;
    if (r.produced != 0 || r.end) {
      co_return r.produced;
    }
  }
  co_return 0;
}

asio::awaitable<void> ConnectionState::async_read_content_all(Bytes& out) {
  while (!decoder_.finished()) {
    if (read_pos_ == read_end_) {
      co_await async_fill(options_.read_timeout, Errc::read_timeout);
    }
    const auto chunk = decoder_.next(
        std::span<const std::uint8_t>(read_buffer_.data() + read_pos_, read_end_ - read_pos_));
    out.insert(out.end(), chunk.content.begin(), chunk.content.end());
    read_pos_ += chunk.consumed;
  }
}

asio::awaitable<void> ConnectionState::async_finish_response() {
  while (!decoder_.finished()) {
    if (read_pos_ == read_end_) {
      co_await async_fill(options_.read_timeout, Errc::read_timeout);
    }
    read_pos_ += decoder_
                     .next(std::span<const std::uint8_t>(read_buffer_.data() + read_pos_,
                                                         read_end_ - read_pos_))
                     .consumed;
  }
  last_activity_ = std::chrono::steady_clock::now();
}

asio::awaitable<Result> ConnectionState::async_call(TaskCode code,
                                                    std::span<const std::uint8_t> request) {
  if (serialserver::is_reserved_task_code(code)) {
    throw system_error(Errc::reserved_task_code);
  }
  co_return co_await async_call_any(code, request);
}

asio::awaitable<Result> ConnectionState::async_call_any(TaskCode code,
                                                        std::span<const std::uint8_t> request) {
  co_await async_lock();
  LockGuard guard(*this);
  check_open();
  begin_request(code);
  co_await async_write_content(request);
  const ResponseHead head = co_await async_end_request();
  Result result{head.status, {}, head.error_code};
  if (head.status == Status::ok) {
    co_await async_read_content_all(result.response);
  }
  co_await async_finish_response();
  co_return result;
}

asio::awaitable<Result> ConnectionState::async_call(TaskCode code, RequestProducer producer,
                                                    ResponseConsumer consumer) {
  if (serialserver::is_reserved_task_code(code)) {
    throw system_error(Errc::reserved_task_code);
  }
  co_await async_lock();
  LockGuard guard(*this);
  check_open();
  begin_request(code);
  Result result;
  try {
    if (producer) {
      RequestWriter writer(*this);
      co_await producer(writer);
    }
    const ResponseHead head = co_await async_end_request();
    result.status = head.status;
    result.error_code = head.error_code;
    if (head.status == Status::ok) {
      if (consumer) {
        ResponseReader reader(*this);
        co_await consumer(reader);
      } else {
        co_await async_read_content_all(result.response);
      }
    }
    co_await async_finish_response();
  } catch (...) {
    // A request cut short cannot be ended without running the task on part of it, and a
    // consumer that failed leaves the response half read: the connection cannot go on.
    close_now(make_error_code(Errc::connection_closed));
    throw;
  }
  co_return result;
}

asio::awaitable<std::vector<Result>> ConnectionState::async_call_batch(
    std::span<const Call> calls) {
  for (const Call& call : calls) {
    if (serialserver::is_reserved_task_code(call.code)) {
      throw system_error(Errc::reserved_task_code);
    }
  }
  co_await async_lock();
  LockGuard guard(*this);
  check_open();
  std::vector<Result> results;
  results.reserve(calls.size());
  write_buffer_.clear();
  for (const Call& call : calls) {
    // One buffer for the whole batch (one write where the socket takes it), since the point of
    // pipelining is to not wait between requests.
    const std::size_t old_size = write_buffer_.size();
    write_buffer_.resize(old_size + 1 + serialserver::wire::encoded_size(call.request.size()));
    write_buffer_[old_size] = call.code;
    serialserver::wire::encode_message(call.request,
                                       std::span(write_buffer_).subspan(old_size + 1));
  }
  co_await async_write_out();
  for (std::size_t i = 0; i < calls.size(); ++i) {
    const ResponseHead head = co_await async_read_head();
    if (head.status == Status::goodbye) {
      // The server closes after Goodbye without reading on: none of the rest ran either.
      results.resize(calls.size(), Result::make_goodbye());
      break;
    }
    Result result{head.status, {}, head.error_code};
    if (head.status == Status::ok) {
      co_await async_read_content_all(result.response);
    }
    co_await async_finish_response();
    results.push_back(std::move(result));
  }
  co_return results;
}

void ConnectionState::arm(std::chrono::nanoseconds timeout, Errc on_timeout) {
  timed_out_.reset();
  const std::uint64_t generation = ++timer_generation_;
  if (timeout <= std::chrono::nanoseconds::zero()) {
    return;  // zero: no timeout
  }
  op_timer_.expires_after(timeout);
  // The generation check ignores an expiry that raced with the operation's completion and
  // would otherwise cancel the next operation.
  op_timer_.async_wait([weak = weak_from_this(), generation, on_timeout](std::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->timer_generation_ != generation) {
      return;
    }
    self->timed_out_ = on_timeout;
    std::error_code ignored;
    self->socket_.cancel(ignored);
    if (self->resolver_) {
      self->resolver_->cancel();
    }
  });
}

void ConnectionState::disarm() noexcept {
  ++timer_generation_;
  cancel_waits(op_timer_);
}

void ConnectionState::throw_io_error(std::error_code ec) {
  std::error_code reason = normalise(ec);
  if (timed_out_) {
    reason = make_error_code(*timed_out_);
  } else if (!is_open() && closed_reason_) {
    reason = closed_reason_;
  } else if (ec == asio::error::eof || ec == asio::error::connection_reset ||
             ec == asio::error::broken_pipe || ec == asio::error::operation_aborted ||
             ec == asio::ssl::error::stream_truncated) {
    reason = make_error_code(Errc::connection_closed);
  }
  close_now(reason);
  throw std::system_error(reason);
}

void ConnectionState::fail(std::error_code reason) noexcept { close_now(reason); }

void ConnectionState::close_now(std::error_code reason) noexcept {
  open_.store(false, std::memory_order_release);
  if (!closed_reason_) {
    closed_reason_ = reason;
  }
  std::error_code ignored;
  socket_.close(ignored);
  cancel_waits(op_timer_);
  cancel_waits(keep_alive_timer_);
}

void ConnectionState::close() noexcept {
  open_.store(false, std::memory_order_release);
  try {
    asio::post(executor_, [self = shared_from_this()] {
      self->close_now(make_error_code(Errc::connection_closed));
    });
  } catch (...) {  // posting allocates; if that fails the socket closes with this object
  }
}

}  // namespace serialclient::detail

namespace serialclient {

using detail::ConnectionState;

asio::awaitable<void> RequestWriter::async_write(std::span<const std::uint8_t> content) {
  co_await state_.async_write_content(content);
}

asio::awaitable<void> RequestWriter::async_flush() { co_await state_.async_flush_content(); }

asio::awaitable<std::size_t> ResponseReader::async_read_some(std::span<std::uint8_t> out) {
  co_return co_await state_.async_read_content(out);
}

asio::awaitable<Bytes> ResponseReader::async_read_all() {
  Bytes out;
  co_await state_.async_read_content_all(out);
  co_return out;
}

bool ResponseReader::at_end() const noexcept { return state_.content_at_end(); }

Connection::Connection(std::shared_ptr<ConnectionState> state) : state_(std::move(state)) {}
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    if (state_) {
      state_->close();
    }
    state_ = std::move(other.state_);
  }
  return *this;
}
Connection::~Connection() {
  if (state_) {
    state_->close();
  }
}

asio::awaitable<Connection> Connection::async_connect(std::string_view address, Options options) {
  auto state =
      std::make_shared<ConnectionState>(co_await asio::this_coro::executor, std::move(options));
  co_await state->async_connect(address);
  co_return Connection(std::move(state));
}

asio::awaitable<Result> Connection::async_call(TaskCode code,
                                               std::span<const std::uint8_t> request) {
  auto state = state_;  // keeps the state alive if the handle is moved from meanwhile
  co_return co_await state->async_call(code, request);
}

asio::awaitable<Result> Connection::async_call(TaskCode code, RequestProducer producer,
                                               ResponseConsumer consumer) {
  auto state = state_;
  co_return co_await state->async_call(code, std::move(producer), std::move(consumer));
}

asio::awaitable<std::vector<Result>> Connection::async_call_batch(std::span<const Call> calls) {
  auto state = state_;
  co_return co_await state->async_call_batch(calls);
}

asio::awaitable<Result> Connection::async_keep_alive() {
  auto state = state_;
  co_return co_await state->async_call_any(serialserver::kKeepAliveTaskCode, {});
}

asio::awaitable<Result> Connection::async_goodbye() {
  auto state = state_;
  co_return co_await state->async_call_any(serialserver::kGoodbyeTaskCode, {});
}

void Connection::close() noexcept {
  if (state_) {
    state_->close();
  }
}

bool Connection::is_open() const noexcept { return state_ && state_->is_open(); }

serialserver::ByteOrder Connection::byte_order() const noexcept { return state_->byte_order(); }

std::string Connection::remote_address() const { return state_->remote_address(); }

asio::any_io_executor Connection::get_executor() const noexcept { return state_->executor(); }

}  // namespace serialclient
