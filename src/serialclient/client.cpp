#include "connection_state.hpp"

#include <future>
#include <optional>
#include <type_traits>
#include <utility>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
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
  // The step runs on the strand and this thread waits for it, so references to the caller's
  // data stay valid. Errors come back as values rather than through std::future's
  // exception_ptr: cheaper, and freeing an exception on another thread is what the
  // uninstrumented libstdc++ reports as a race under ThreadSanitizer.
  using Value = std::conditional_t<std::is_void_v<T>, bool, T>;
  std::optional<Value> value;
  std::error_code ec;
  std::exception_ptr other;
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  asio::co_spawn(
      strand_,
      [&, done]() -> asio::awaitable<void> {
        try {
          if constexpr (std::is_void_v<T>) {
            co_await make_awaitable();
            value.emplace(true);
          } else {
            value.emplace(co_await make_awaitable());
          }
        } catch (const std::system_error& e) {
          ec = e.code();
        } catch (...) {
          other = std::current_exception();
        }
        done->set_value();
      },
      asio::detached);
  finished.wait();
  if (other) {
    std::rethrow_exception(other);
  }
  if (ec) {
    throw std::system_error(ec);
  }
  if constexpr (!std::is_void_v<T>) {
    return std::move(*value);
  }
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
  {
    std::lock_guard state_lock(state_mutex_);
    address_ = address;
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
  bool written = false;
  return call_reporting(code, request, ec, written);
}

Result Client::call_reporting(TaskCode code, std::span<const std::uint8_t> request,
                              std::error_code& ec, bool& written) {
  written = false;
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
    // written is read on the strand, right after the call, before a keep-alive can start.
    return run<Result>([&]() -> asio::awaitable<Result> {
      try {
        Result result = co_await state->async_call(code, request);
        written = state->request_written();
        co_return result;
      } catch (const std::system_error&) {
        written = state->request_written();
        throw;
      }
    });
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
    bool sendable = false;
    run<void>([&]() -> asio::awaitable<void> {
      co_await state->async_lock();
      locked = true;
      sendable = state->ready_for_request();
      if (sendable) {
        state->begin_request(code);
      } else {  // an unprompted Goodbye: answered as if sent, and the connection is closed
        locked = false;
        state->unlock();
      }
    });
    if (!sendable) {
      return Result::make_goodbye();
    }
    streaming_ = state.get();
    if (producer) {
      BlockingRequestWriter writer(*this);
      producer(writer);
    }
    const auto head = run<ResponseHead>(
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
  bool written = false;
  return call_batch_reporting(calls, ec, written);
}

std::vector<Result> Client::call_batch_reporting(std::span<const Call> calls, std::error_code& ec,
                                                 bool& written) {
  written = false;
  ec.clear();
  std::lock_guard lock(call_mutex_);
  auto state = current();
  if (!state) {
    ec = make_error_code(Errc::connection_closed);
    return {};
  }
  try {
    return run<std::vector<Result>>([&]() -> asio::awaitable<std::vector<Result>> {
      try {
        std::vector<Result> results = co_await state->async_call_batch(calls);
        written = state->request_written();
        co_return results;
      } catch (const std::system_error&) {
        written = state->request_written();
        throw;
      }
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
