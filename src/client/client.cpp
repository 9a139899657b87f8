#include "connection_state.hpp"

#include <utility>

#include <asio/co_spawn.hpp>
#include <asio/use_future.hpp>
#include <serialclient/client.hpp>

namespace serialclient {

using detail::ConnectionState;
using detail::ResponseHead;

Client::Client(Options options)
    : options_(std::move(options)),
      own_io_(std::make_unique<asio::io_context>(1)),
      io_(*own_io_),
      strand_(asio::make_strand(io_)) {
  work_.emplace(io_.get_executor());
  thread_ = std::thread([this] { io_.run(); });
}

Client::Client(asio::io_context& io, Options options)
    : options_(std::move(options)), io_(io), strand_(asio::make_strand(io_)) {}

Client::~Client() {
  close();
  if (thread_.joinable()) {
    work_.reset();
    thread_.join();
  }
}

template <class T, class F>
T Client::run(F make_awaitable) {
  // co_spawn keeps the lambda (and so what it captured by reference) alive until the coroutine
  // ends, and this thread waits for it: references to the caller's data stay valid.
  return asio::co_spawn(strand_, std::move(make_awaitable), asio::use_future).get();
}

std::shared_ptr<ConnectionState> Client::current() const {
  std::lock_guard lock(state_mutex_);
  return state_;
}

void Client::connect(std::string_view address, std::error_code& ec) {
  ec.clear();
  std::lock_guard lock(call_mutex_);
  if (auto old = current()) {
    old->close();
  }
  auto state = std::make_shared<ConnectionState>(strand_, options_);
  try {
    run<void>([&]() -> asio::awaitable<void> { co_await state->async_connect(address); });
  } catch (const std::system_error& e) {
    ec = e.code();
    return;
  }
  std::lock_guard state_lock(state_mutex_);
  state_ = std::move(state);
}

Result Client::call(TaskCode code, std::span<const std::uint8_t> request, std::error_code& ec) {
  ec.clear();
  if (serialserver::is_reserved_task_code(code)) {
    ec = make_error_code(Errc::reserved_task_code);
    return {};
  }
  std::lock_guard lock(call_mutex_);
  auto state = current();
  if (!state) {
    ec = make_error_code(Errc::connection_closed);
    return {};
  }
  try {
    return run<Result>(
        [&]() -> asio::awaitable<Result> { co_return co_await state->async_call(code, request); });
  } catch (const std::system_error& e) {
    ec = e.code();
    return {};
  }
}

Result Client::call(TaskCode code, const BlockingProducer& producer,
                    const BlockingConsumer& consumer, std::error_code& ec) {
  ec.clear();
  if (serialserver::is_reserved_task_code(code)) {
    ec = make_error_code(Errc::reserved_task_code);
    return {};
  }
  std::lock_guard lock(call_mutex_);
  auto state = current();
  if (!state) {
    ec = make_error_code(Errc::connection_closed);
    return {};
  }
  bool locked = false;
  // Every failure path leaves the connection closed (a request or response cut short cannot
  // be resumed) and the call lock free, so that the keep-alive loop ends cleanly.
  const auto abandon = [&] {
    streaming_ = nullptr;
    run<void>([&]() -> asio::awaitable<void> {
      state->fail(make_error_code(Errc::connection_closed));
      if (locked) {
        state->unlock();
      }
      co_return;
    });
  };
  Result result;
  try {
    run<void>([&]() -> asio::awaitable<void> {
      co_await state->async_lock();
      locked = true;
      state->check_open();
      state->begin_request(code);
    });
    streaming_ = state.get();
    if (producer) {
      BlockingRequestWriter writer(*this);
      producer(writer);
    }
    const ResponseHead head = run<ResponseHead>(
        [&]() -> asio::awaitable<ResponseHead> { co_return co_await state->async_end_request(); });
    result.status = head.status;
    result.error_code = head.error_code;
    if (head.status == Status::ok && consumer) {
      BlockingResponseReader reader(*this);
      consumer(reader);
    }
    streaming_ = nullptr;
    run<void>([&]() -> asio::awaitable<void> {
      if (head.status == Status::ok && !consumer) {
        co_await state->async_read_content_all(result.response);
      }
      co_await state->async_finish_response();
      locked = false;
      state->unlock();
    });
  } catch (const std::system_error& e) {
    ec = e.code();
    abandon();
    return {};
  } catch (...) {
    abandon();
    throw;
  }
  return result;
}

std::vector<Result> Client::call_batch(std::span<const Call> calls, std::error_code& ec) {
  ec.clear();
  std::lock_guard lock(call_mutex_);
  auto state = current();
  if (!state) {
    ec = make_error_code(Errc::connection_closed);
    return {};
  }
  try {
    return run<std::vector<Result>>([&]() -> asio::awaitable<std::vector<Result>> {
      co_return co_await state->async_call_batch(calls);
    });
  } catch (const std::system_error& e) {
    ec = e.code();
    return {};
  }
}

Result Client::keep_alive(std::error_code& ec) {
  ec.clear();
  std::lock_guard lock(call_mutex_);
  auto state = current();
  if (!state) {
    ec = make_error_code(Errc::connection_closed);
    return {};
  }
  try {
    return run<Result>([&]() -> asio::awaitable<Result> {
      co_return co_await state->async_call_any(serialserver::kKeepAliveTaskCode, {});
    });
  } catch (const std::system_error& e) {
    ec = e.code();
    return {};
  }
}

Result Client::goodbye(std::error_code& ec) {
  ec.clear();
  std::lock_guard lock(call_mutex_);
  auto state = current();
  if (!state) {
    ec = make_error_code(Errc::connection_closed);
    return {};
  }
  try {
    return run<Result>([&]() -> asio::awaitable<Result> {
      co_return co_await state->async_call_any(serialserver::kGoodbyeTaskCode, {});
    });
  } catch (const std::system_error& e) {
    ec = e.code();
    return {};
  }
}

void Client::close() noexcept {
  if (auto state = current()) {
    state->close();
  }
}

bool Client::is_open() const noexcept {
  auto state = current();
  return state && state->is_open();
}

serialserver::ByteOrder Client::byte_order() const noexcept {
  auto state = current();
  return state ? state->byte_order() : serialserver::ByteOrder::big_endian;
}

void BlockingRequestWriter::write(std::span<const std::uint8_t> content) {
  ConnectionState* state = client_.streaming_;
  client_.run<void>(
      [&]() -> asio::awaitable<void> { co_await state->async_write_content(content); });
}

void BlockingRequestWriter::flush() {
  ConnectionState* state = client_.streaming_;
  client_.run<void>([&]() -> asio::awaitable<void> { co_await state->async_flush_content(); });
}

std::size_t BlockingResponseReader::read_some(std::span<std::uint8_t> out) {
  ConnectionState* state = client_.streaming_;
  return client_.run<std::size_t>(
      [&]() -> asio::awaitable<std::size_t> { co_return co_await state->async_read_content(out); });
}

bool BlockingResponseReader::at_end() const noexcept {
  // Read on the I/O thread only between steps, and this thread is then waiting: no race.
  return client_.streaming_->content_at_end();
}

}  // namespace serialclient
