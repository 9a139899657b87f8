#include "handshake.hpp"

#include <serialserver/binary_reader.hpp>
#include "logd_protocol.hpp"

#include <algorithm>
#include <array>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

namespace logd {

namespace {

using Clock = std::chrono::steady_clock;

/// Failed token handshakes per address. Thread-safety: every member function may be called from
/// any thread.
class FailureThrottle {
 public:
  explicit FailureThrottle(const HandshakeOptions& o)
      : first_(o.first_delay), max_(o.max_delay), memory_(o.failure_memory) {}

  /// Records a failure from `address`; returns when its answer may go out and how many failures
  /// the address has now. Failures from one address are answered one delay apart, each delay
  /// twice the one before: guesses made in parallel queue up rather than overlap.
  std::pair<Clock::time_point, unsigned> failed(const std::string& address) {
    std::lock_guard lock(mutex_);
    const auto now = Clock::now();
    if (failures_.size() >= kMaxAddresses) {
      std::erase_if(failures_, [&](const auto& e) { return now - e.second.last > memory_; });
      if (failures_.size() >= kMaxAddresses) {
        failures_.clear();  // bounded memory; the throttle restarts for everyone
      }
    }
    auto& entry = failures_[address];
    if (now - entry.last > memory_) {
      entry = Failures{};
    }
    entry.count = std::min(entry.count + 1, 64U);
    entry.last = now;
    entry.answer_at = std::max(now, entry.answer_at) + delay_of(entry.count);
    return {entry.answer_at, entry.count};
  }

  void succeeded(const std::string& address) {
    std::lock_guard lock(mutex_);
    failures_.erase(address);
  }

  std::chrono::milliseconds delay_of(unsigned count) const {
    auto d = first_;
    for (unsigned i = 1; i < count && d < max_; ++i) {
      d *= 2;
    }
    return std::min(d, max_);
  }

 private:
  static constexpr std::size_t kMaxAddresses = 100000;
  struct Failures {
    unsigned count = 0;
    Clock::time_point last{};
    Clock::time_point answer_at{};
  };
  const std::chrono::milliseconds first_;
  const std::chrono::milliseconds max_;
  const std::chrono::seconds memory_;
  std::mutex mutex_;  // guards failures_
  std::unordered_map<std::string, Failures> failures_;
};

struct HandshakeState {
  HandshakeOptions options;
  FailureThrottle throttle;
  explicit HandshakeState(HandshakeOptions o) : options(std::move(o)), throttle(options) {}
};

asio::awaitable<void> sleep_until(Clock::time_point t) {
  asio::steady_timer timer(co_await asio::this_coro::executor, t);
  std::error_code ignored;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
}

/// Constant-time comparison: the time taken does not tell how much of the token matched.
bool same_token(const std::vector<std::uint8_t>& given, const std::string& token) {
  unsigned diff = given.size() == token.size() ? 0U : 1U;
  for (std::size_t i = 0; i < given.size(); ++i) {
    diff |= static_cast<unsigned>(given[i] ^ static_cast<std::uint8_t>(token[i % token.size()]));
  }
  return diff == 0;
}

asio::awaitable<serialserver::HandshakeResult> handshake(serialserver::HandshakeStream& stream,
                                                         std::shared_ptr<HandshakeState> state) {
  const auto& options = state->options;
  while (options.ready && !options.ready->load()) {
    co_await sleep_until(Clock::now() +
                         std::chrono::milliseconds(10));  // the store is being opened
  }
  std::array<std::uint8_t, 1> order_byte{};
  co_await stream.async_read_exact(order_byte);
  serialserver::HandshakeResult result;
  if (order_byte[0] == kHandshakeBig) {
    result.byte_order = serialserver::ByteOrder::big_endian;
  } else if (order_byte[0] == kHandshakeLittle) {
    result.byte_order = serialserver::ByteOrder::little_endian;
  } else {
    throw std::runtime_error("byte-order byte " + std::to_string(order_byte[0]) +
                             " is neither 'B' nor 'L'");
  }
  const auto& token = options.token;
  const std::array<std::uint8_t, 2> ack{order_byte[0],
                                        token ? kHandshakeTokenRequired : kHandshakeNoToken};
  co_await stream.async_write(ack);
  if (!token) {
    co_return result;
  }
  std::array<std::uint8_t, 4> length_bytes{};
  co_await stream.async_read_exact(length_bytes);
  serialserver::BinaryReader reader(length_bytes, result.byte_order);
  const std::uint32_t length = reader.read_u32();
  bool ok = length <= kMaxTokenBytes;
  if (ok) {
    std::vector<std::uint8_t> given(length);
    co_await stream.async_read_exact(given);
    ok = same_token(given, *token);
  }
  const std::string address = address_without_port(stream.remote_address());
  if (ok) {
    state->throttle.succeeded(address);
  } else {
    // Every failed guess costs the guesser a delay that grows with its failures: a short token
    // would still take long to find, and a long one is out of reach.
    const auto [answer_at, failures] = state->throttle.failed(address);
    const auto delay =
        std::chrono::duration_cast<std::chrono::milliseconds>(answer_at - Clock::now());
    if (options.logger) {
      options.logger->warn("{}: wrong token ({} failures from this address; answering in {} ms)",
                           stream.remote_address(), failures, delay.count());
    }
    co_await sleep_until(answer_at);
  }
  const std::array<std::uint8_t, 1> status{ok ? kTokenAccepted : kTokenRejected};
  co_await stream.async_write(status);
  if (!ok) {
    throw std::runtime_error("wrong token");
  }
  co_return result;
}

}  // namespace

std::string address_without_port(const std::string& remote) {
  if (remote.find('/') != std::string::npos) {
    return remote;  // a Unix socket path
  }
  const auto colon = remote.rfind(':');
  if (colon == std::string::npos || (remote.front() == '[' && remote[colon - 1] != ']')) {
    return remote;
  }
  return remote.substr(0, colon);
}

serialserver::HandshakeFunction make_handshake(HandshakeOptions options) {
  auto state = std::make_shared<HandshakeState>(std::move(options));
  return [state](serialserver::HandshakeStream& stream) { return handshake(stream, state); };
}

}  // namespace logd
