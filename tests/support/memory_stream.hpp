#pragma once

// An in-memory stream for tests and fuzz targets, modelled on Boost.Beast's test stream: an Asio
// AsyncReadStream and AsyncWriteStream whose input is given up front and delivered in chunks of
// any size (down to one byte per read), whose output is captured for assertions, and which can
// fail its n-th operation with a chosen error.
//
// - Every operation completes through asio::post to the stream's executor (never inline), on the
//   handler's associated executor.
// - A read that finds no input left completes with asio::error::eof, or (AtEnd::pend) stays
//   pending until more input is added, the input is ended, the stream is closed, or the read is
//   cancelled through the handler's associated cancellation slot (operation_aborted).
// - close() aborts a pending read with asio::error::operation_aborted; every later operation
//   fails with asio::error::bad_descriptor, as on a closed socket.
// - fail_at(n, error): the n-th operation (reads and writes counted together from 1, each
//   initiation counting once) completes with `error` and no bytes; later ones run as usual.
//
// Use:
//   MemoryStream stream(io.get_executor(), input);
//   stream.read_chunk(1).write_chunk(3).fail_at(5, asio::error::connection_reset);
//   const auto peer = stream.peer();        // observes the stream after it has been moved
//   ... serve std::move(stream), run io ...
//   peer.output(), peer.operations()
//
// Thread-safety: none. Use the stream and its peer handle only on the stream's executor (or on
// the thread that runs its io_context). Moving the stream keeps the shared state, so a Peer taken
// before the stream was moved into a connection still observes it.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/bind_executor.hpp>
#include <asio/buffer.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/error.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>

namespace serialserver::test {

class MemoryStream {
 public:
  using executor_type = asio::any_io_executor;
  using Bytes = std::vector<std::uint8_t>;

  /// What a read does once the input is used up.
  enum class AtEnd : std::uint8_t {
    eof,   ///< complete with asio::error::eof (the peer closed its side)
    pend,  ///< stay pending until more input, end_input(), close() or cancellation
  };

  /// No limit on the bytes moved by one read or write.
  static constexpr std::size_t kUnlimited = std::numeric_limits<std::size_t>::max();

 private:
  struct State;

  /// A read waiting for input, with its handler type-erased.
  struct PendingRead {
    virtual ~PendingRead() = default;
    /// Copies up to `limit` bytes of `data` into the read's buffers; returns how many.
    virtual std::size_t fill(std::span<const std::uint8_t> data, std::size_t limit) = 0;
    /// Posts the completion; the object may be destroyed right after.
    virtual void complete(const executor_type& ex, std::error_code ec, std::size_t n) = 0;
  };

  template <class Handler, class Buffers>
  struct PendingReadOp final : PendingRead {
    PendingReadOp(Handler h, const Buffers& b, const executor_type& ex)
        : handler(std::move(h)),
          buffers(b),
          work(asio::prefer(ex, asio::execution::outstanding_work.tracked)) {}
    std::size_t fill(std::span<const std::uint8_t> data, std::size_t limit) override {
      const std::size_t n = std::min({data.size(), limit, asio::buffer_size(buffers)});
      return asio::buffer_copy(buffers, asio::buffer(data.data(), n));
    }
    void complete(const executor_type& ex, std::error_code ec, std::size_t n) override {
      post_completion(ex, std::move(handler), ec, n, /*clear_slot=*/true);
    }
    Handler handler;
    Buffers buffers;
    executor_type work;  // keeps the io_context busy while the read pends, as a socket does
  };

  struct State {
    explicit State(executor_type e) : ex(std::move(e)) {}

    executor_type ex;
    Bytes input;
    std::size_t read_pos = 0;
    std::size_t read_chunk = kUnlimited;
    std::size_t write_chunk = kUnlimited;
    AtEnd at_end = AtEnd::eof;
    std::uint64_t fail_op = 0;  // 0: never
    std::error_code fail_error;
    std::uint64_t operations = 0;
    std::uint64_t reads = 0;
    std::uint64_t writes = 0;
    std::uint64_t failures = 0;
    Bytes output;
    bool closed = false;
    std::unique_ptr<PendingRead> pending;
    std::uint64_t pending_id = 0;  // identifies the pending read for its cancellation handler

    std::size_t available() const noexcept { return input.size() - read_pos; }

    /// Completes the pending read with what input there is, or with `ec`.
    void complete_pending(std::error_code ec) {
      auto op = std::move(pending);
      std::size_t n = 0;
      if (!ec) {
        n = op->fill(std::span(input).subspan(read_pos), read_chunk);
        read_pos += n;
      }
      op->complete(ex, ec, n);
    }
  };

 public:
  /// A stream with the given input, delivered without a chunk limit, then EOF.
  explicit MemoryStream(executor_type ex, Bytes input = {})
      : state_(std::make_shared<State>(std::move(ex))) {
    state_->input = std::move(input);
  }

  MemoryStream(MemoryStream&&) noexcept = default;
  MemoryStream& operator=(MemoryStream&&) noexcept = default;
  MemoryStream(const MemoryStream&) = delete;
  MemoryStream& operator=(const MemoryStream&) = delete;
  ~MemoryStream() = default;

  executor_type get_executor() const noexcept { return state_->ex; }

  // ---- configuration ----------------------------------------------------------------------
  /// The most bytes one read delivers (1: one byte at a time). 0 is taken as 1.
  MemoryStream& read_chunk(std::size_t n) {
    state_->read_chunk = std::max<std::size_t>(n, 1);
    return *this;
  }
  /// The most bytes one write accepts (partial writes). 0 is taken as 1.
  MemoryStream& write_chunk(std::size_t n) {
    state_->write_chunk = std::max<std::size_t>(n, 1);
    return *this;
  }
  /// What a read does once the input is used up.
  MemoryStream& at_end(AtEnd mode) {
    state_->at_end = mode;
    return *this;
  }
  /// Makes the n-th operation (reads and writes together, from 1) fail with `error`; 0 disarms.
  MemoryStream& fail_at(std::uint64_t n, std::error_code error) {
    state_->fail_op = n;
    state_->fail_error = error;
    return *this;
  }

  /// The test's side of the stream: feeds more input, ends it, and observes the stream. It shares
  /// the stream's state and stays valid after the stream was moved or destroyed.
  class Peer {
   public:
    Peer() = default;
    /// Appends input; a pending read receives it.
    void append_input(std::span<const std::uint8_t> bytes) const {
      s_->input.insert(s_->input.end(), bytes.begin(), bytes.end());
      if (s_->pending && s_->available() > 0) {
        s_->complete_pending({});
      }
    }
    /// Ends the input: once it is used up, reads complete with EOF (a pending one at once).
    void end_input() const {
      s_->at_end = AtEnd::eof;
      if (s_->pending && s_->available() == 0) {
        s_->complete_pending(asio::error::eof);
      }
    }
    /// Everything written to the stream so far.
    const Bytes& output() const noexcept { return s_->output; }
    /// Operations initiated so far (reads and writes, failed ones included).
    std::uint64_t operations() const noexcept { return s_->operations; }
    std::uint64_t reads() const noexcept { return s_->reads; }
    std::uint64_t writes() const noexcept { return s_->writes; }
    /// How many operations failed by fail_at.
    std::uint64_t injected_failures() const noexcept { return s_->failures; }
    /// Input bytes not read yet.
    std::size_t input_left() const noexcept { return s_->available(); }
    bool closed() const noexcept { return s_->closed; }
    bool read_pending() const noexcept { return s_->pending != nullptr; }

   private:
    friend class MemoryStream;
    explicit Peer(std::shared_ptr<State> s) : s_(std::move(s)) {}
    std::shared_ptr<State> s_;
  };

  Peer peer() const { return Peer(state_); }

  // Shortcuts for the peer's observers.
  const Bytes& output() const noexcept { return state_->output; }
  std::uint64_t operations() const noexcept { return state_->operations; }
  bool is_open() const noexcept { return !state_->closed; }

  // ---- closing ----------------------------------------------------------------------------
  /// Closes the stream: a pending read completes with operation_aborted, later operations fail
  /// with bad_descriptor. Closing twice is harmless.
  void close(std::error_code& ec) {
    ec.clear();
    State& s = *state_;
    s.closed = true;
    if (s.pending) {
      s.complete_pending(asio::error::operation_aborted);
    }
  }
  void close() {
    std::error_code ignored;
    close(ignored);
  }

  // ---- asynchronous operations ------------------------------------------------------------
  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    return asio::async_initiate<Token, void(std::error_code, std::size_t)>(
        [](auto handler, std::shared_ptr<State> state, const MutableBufferSequence& b) {
          initiate_read(std::move(handler), *state, state, b);
        },
        token, state_, buffers);
  }

  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    return asio::async_initiate<Token, void(std::error_code, std::size_t)>(
        [](auto handler, std::shared_ptr<State> state, const ConstBufferSequence& b) {
          initiate_write(std::move(handler), *state, b);
        },
        token, state_, buffers);
  }

 private:
  /// Posts `handler(ec, n)` to the stream's executor, to run on the handler's own executor.
  template <class Handler>
  static void post_completion(const executor_type& ex, Handler handler, std::error_code ec,
                              std::size_t n, bool clear_slot) {
    auto handler_ex = asio::get_associated_executor(handler, ex);
    asio::post(
        ex, asio::bind_executor(handler_ex, [h = std::move(handler), ec, n, clear_slot]() mutable {
          if (clear_slot) {
            auto slot = asio::get_associated_cancellation_slot(h);
            if (slot.is_connected()) {
              slot.clear();
            }
          }
          std::move(h)(ec, n);
        }));
  }

  /// Counts an operation; returns the injected error if this is the one to fail.
  static std::error_code count_operation(State& s) {
    ++s.operations;
    if (s.fail_op != 0 && s.operations == s.fail_op) {
      ++s.failures;
      return s.fail_error;
    }
    return {};
  }

  template <class Handler, class Buffers>
  static void initiate_read(Handler handler, State& s, const std::shared_ptr<State>& state,
                            const Buffers& buffers) {
    ++s.reads;
    if (auto ec = count_operation(s)) {
      post_completion(s.ex, std::move(handler), ec, 0, false);
      return;
    }
    if (s.closed) {
      post_completion(s.ex, std::move(handler), asio::error::bad_descriptor, 0, false);
      return;
    }
    if (s.pending) {  // one read at a time, as on any stream
      post_completion(s.ex, std::move(handler), asio::error::in_progress, 0, false);
      return;
    }
    const std::size_t room = asio::buffer_size(buffers);
    if (room == 0) {
      post_completion(s.ex, std::move(handler), std::error_code{}, 0, false);
      return;
    }
    if (s.available() > 0) {
      const std::size_t n = std::min({room, s.available(), s.read_chunk});
      asio::buffer_copy(buffers, asio::buffer(s.input.data() + s.read_pos, n));
      s.read_pos += n;
      post_completion(s.ex, std::move(handler), std::error_code{}, n, false);
      return;
    }
    if (s.at_end == AtEnd::eof) {
      post_completion(s.ex, std::move(handler), asio::error::eof, 0, false);
      return;
    }
    // Pend until input, end of input, close or cancellation.
    auto slot = asio::get_associated_cancellation_slot(handler);
    const std::uint64_t id = ++s.pending_id;
    s.pending =
        std::make_unique<PendingReadOp<Handler, Buffers>>(std::move(handler), buffers, s.ex);
    if (slot.is_connected()) {
      slot.assign([weak = std::weak_ptr<State>(state), id](asio::cancellation_type type) {
        auto st = weak.lock();
        if (type != asio::cancellation_type::none && st && st->pending && st->pending_id == id) {
          st->complete_pending(asio::error::operation_aborted);
        }
      });
    }
  }

  template <class Handler, class Buffers>
  static void initiate_write(Handler handler, State& s, const Buffers& buffers) {
    ++s.writes;
    if (auto ec = count_operation(s)) {
      post_completion(s.ex, std::move(handler), ec, 0, false);
      return;
    }
    if (s.closed) {
      post_completion(s.ex, std::move(handler), asio::error::bad_descriptor, 0, false);
      return;
    }
    const std::size_t n = std::min(asio::buffer_size(buffers), s.write_chunk);
    const std::size_t old = s.output.size();
    s.output.resize(old + n);
    asio::buffer_copy(asio::buffer(s.output.data() + old, n), buffers, n);
    post_completion(s.ex, std::move(handler), std::error_code{}, n, false);
  }

  std::shared_ptr<State> state_;
};

}  // namespace serialserver::test
