#pragma once

#include <serialserver/protocol.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <asio/awaitable.hpp>

namespace serialserver {

/// Produces a streamed response on the I/O thread (Go: the io.Reader 'out'). The server calls
/// async_produce until it returns 0, and encodes what it gets into blocks as it goes, so a
/// response of any size passes in constant memory. It must not block.
/// A failure (exception) after OK went out drops the connection, as the seed says.
/// Lifetime: destroyed once copying stops, for whatever reason (Go: io.Closer's Close).
class ResponseProducer {
 public:
  virtual ~ResponseProducer() = default;
  /// Writes the next bytes of the response to the front of `out` (never empty); returns how many,
  /// 0 at the end.
  virtual asio::awaitable<std::size_t> async_produce(std::span<std::uint8_t> out) = 0;
};

/// Produces a streamed response from the worker pool: produce() may block. Otherwise as
/// ResponseProducer.
class BlockingResponseProducer {
 public:
  virtual ~BlockingResponseProducer() = default;
  /// Writes the next bytes to the front of `out`; returns how many, 0 at the end.
  virtual std::size_t produce(std::span<std::uint8_t> out) = 0;
};

/// What a task function returns: for OK nothing (the empty message), bytes, or a producer; or an
/// Error answer (Response::error), the same as throwing TaskError but without an exception.
/// Thread-safety: a plain movable value. Lifetime: owned by the server once returned.
class Response {
 public:
  /// The empty response.
  Response() = default;
  /// A response made of these bytes.
  Response(std::vector<std::uint8_t> bytes) noexcept  // NOLINT(google-explicit-constructor)
      : bytes_(std::move(bytes)) {}
  /// A response made of a copy of `bytes`.
  static Response copy_of(std::span<const std::uint8_t> bytes) {
    return {std::vector<std::uint8_t>(bytes.begin(), bytes.end())};
  }
  /// A response made of a copy of `text`.
  static Response copy_of(std::string_view text) {
    return {std::vector<std::uint8_t>(text.begin(), text.end())};
  }
  /// A streamed response from a producer object.
  static Response stream(std::unique_ptr<ResponseProducer> producer) noexcept {
    Response r;
    r.producer_ = std::move(producer);
    return r;
  }
  /// A streamed response from a blocking producer object.
  static Response stream(std::unique_ptr<BlockingResponseProducer> producer) noexcept {
    Response r;
    r.blocking_producer_ = std::move(producer);
    return r;
  }
  /// A streamed response from a callable: either
  /// `asio::awaitable<std::size_t>(std::span<std::uint8_t>)` (runs on the I/O thread) or
  /// `std::size_t(std::span<std::uint8_t>)` (runs on the worker pool). The callable is moved in (it
  /// may be move-only) and destroyed when copying stops.
  template <class F>
  static Response stream(F producer);

  /// An Error answer with `code`, as if the task function had thrown TaskError(code), without
  /// the cost of an exception. Applications use codes 0..251; 252..255 are the library's
  /// (docs/protocol.md section 5), and a client may take them for the library's meaning.
  static Response error(ErrorCode code) noexcept {
    Response r;
    r.error_code_ = code;
    return r;
  }
  /// True for a Response::error answer.
  bool is_error() const noexcept { return error_code_.has_value(); }
  /// The error code of a Response::error answer (0 for an OK response).
  ErrorCode error_code() const noexcept { return error_code_.value_or(0); }

  /// The response bytes (empty for a streamed response).
  const std::vector<std::uint8_t>& bytes() const noexcept { return bytes_; }
  /// The response bytes, to change in place.
  std::vector<std::uint8_t>& bytes() noexcept { return bytes_; }
  /// The producer of a streamed response, or nullptr.
  ResponseProducer* producer() const noexcept { return producer_.get(); }
  /// The blocking producer of a streamed response, or nullptr.
  BlockingResponseProducer* blocking_producer() const noexcept { return blocking_producer_.get(); }

 private:
  std::vector<std::uint8_t> bytes_;
  std::unique_ptr<ResponseProducer> producer_;
  std::unique_ptr<BlockingResponseProducer> blocking_producer_;
  std::optional<ErrorCode> error_code_;
};

namespace detail {
template <class F>
class CallableProducer final : public ResponseProducer {
 public:
  explicit CallableProducer(F f) : f_(std::move(f)) {}
  asio::awaitable<std::size_t> async_produce(std::span<std::uint8_t> out) override {
    return f_(out);
  }

 private:
  F f_;
};
template <class F>
class CallableBlockingProducer final : public BlockingResponseProducer {
 public:
  explicit CallableBlockingProducer(F f) : f_(std::move(f)) {}
  std::size_t produce(std::span<std::uint8_t> out) override { return f_(out); }

 private:
  F f_;
};
}  // namespace detail

template <class F>
Response Response::stream(F producer) {
  using Result = std::invoke_result_t<F&, std::span<std::uint8_t>>;
  if constexpr (std::is_same_v<Result, asio::awaitable<std::size_t>>) {
    return stream(std::unique_ptr<ResponseProducer>(
        std::make_unique<detail::CallableProducer<F>>(std::move(producer))));
  } else {
    static_assert(std::is_convertible_v<Result, std::size_t>,
                  "a producer returns asio::awaitable<std::size_t> or std::size_t");
    return stream(std::unique_ptr<BlockingResponseProducer>(
        std::make_unique<detail::CallableBlockingProducer<F>>(std::move(producer))));
  }
}

}  // namespace serialserver
