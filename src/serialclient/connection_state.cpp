// The steps of a call on a client connection (the call lock, writing the request, reading the
// answer), whole calls built from them, the operation timer, and closing.

#include "connection_state.hpp"

#include <sys/socket.h>
#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>

namespace serialclient::detail {

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

bool ConnectionState::ready_for_request() {
  request_written_ = false;
  if (take_idle_input() == IdleInput::goodbye) {
    return false;
  }
  check_open();
  return true;
}

ConnectionState::IdleInput ConnectionState::take_idle_input() noexcept {
  // The server sends nothing between calls except, as it goes away, an unprompted Goodbye
  // followed by the end of its stream (docs/protocol.md section 7). Nothing reads while the
  // connection is idle, so this looks before each request: one non-blocking peek.
  if (!is_open()) {
    return IdleInput::closed;
  }
  if (read_pos_ == read_end_) {  // else: bytes that came with the last response
    std::uint8_t byte = 0;
    const ssize_t n = ::recv(socket_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      return IdleInput::none;
    }
    if (!read_idle_input()) {
      close_now(make_error_code(Errc::connection_closed));  // the end of the stream, a reset
      return IdleInput::closed;
    }
    if (read_pos_ == read_end_) {
      return IdleInput::none;  // TLS records without content (session tickets)
    }
  }
  if (read_buffer_[read_pos_] == static_cast<std::uint8_t>(serialserver::ResponseCode::goodbye)) {
    ++read_pos_;
    close_now(make_error_code(Errc::connection_closed));
    return IdleInput::goodbye;
  }
  // Any other byte came unasked too, but is left where it is: the next call reads it as its
  // answer, as it would have without this look, and reports what it makes of it.
  return IdleInput::none;
}

bool ConnectionState::read_idle_input() noexcept {
  read_pos_ = read_end_ = 0;
  // Non-blocking for this read only: asio's own operations set it again as they need it.
  std::error_code ec;
  socket_.non_blocking(true, ec);
  std::size_t n = 0;
  if (!ec) {
    const auto space = asio::buffer(read_buffer_.data(), read_buffer_.size());
    n = tls_ ? tls_->read_some(space, ec) : socket_.read_some(space, ec);
  }
  std::error_code ignored;
  socket_.non_blocking(false, ignored);
  read_end_ = n;
  return n != 0 || ec == asio::error::would_block;
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
    request_written_ = request_written_ || n != 0;
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
  if (!ready_for_request()) {
    co_return Result::make_goodbye();
  }
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
  if (!ready_for_request()) {
    co_return Result::make_goodbye();
  }
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
  if (!ready_for_request()) {
    co_return std::vector<Result>(calls.size(), Result::make_goodbye());
  }
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
