// The public fronts of a client connection: Connection, and the RequestWriter and
// ResponseReader a streaming call's producer and consumer see. Each forwards to ConnectionState.

#include "connection_state.hpp"

#include <utility>

#include <asio/this_coro.hpp>

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
