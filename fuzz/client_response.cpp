// Fuzz target: the client's parsing of what a server sends (OK + blocks, Error + code, Goodbye,
// anything else), through the real client library.
//
// The client reads responses inside its connection (serialclient::detail::ConnectionState), on a
// socket, so the target runs the public client (serialclient::Connection) against an in-process
// "server" on a Unix socket (abstract namespace: nothing on disk) that sends the fuzz input as its
// byte stream, in chunks chosen by the input, then ends its side. The client performs a script of
// calls chosen by the input: plain calls (reserved codes too), streaming calls whose consumer
// reads in small pieces, pipelined batches, keep-alive and goodbye. Every call's outcome (its
// Result, or the std::system_error it threw) must equal what an independent model of
// docs/protocol.md section 3 predicts from the same bytes; nothing else may be thrown, and
// AddressSanitizer/UBSan watch the buffer handling.

#include <serialserver/protocol.hpp>
#include "fuzz_check.hpp"

#include <fuzzer/FuzzedDataProvider.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <serialclient/serialclient.hpp>

namespace {

using Bytes = std::vector<std::uint8_t>;
using serialclient::Errc;
using serialclient::Result;
using serialclient::Status;
using serialserver::fuzz::Sequence;
using local = asio::local::stream_protocol;

enum class Kind : std::uint8_t { call, streaming, batch, keep_alive, goodbye };

struct Op {
  Kind kind = Kind::call;
  std::uint8_t code = 0;
  std::size_t request_size = 0;
  std::size_t batch = 1;       // batch: calls in it
  std::size_t read_piece = 1;  // streaming: bytes per read
  std::size_t read_limit = 0;  // streaming: the consumer stops after this many bytes
};

/// One call's outcome: its results (one, or a batch's), the bytes a streaming consumer got, or
/// the error it threw.
struct Outcome {
  std::vector<Result> results;
  Bytes consumed;
  std::error_code error;
};

bool same(const Result& a, const Result& b) {
  return a.status == b.status && a.response == b.response && a.error_code == b.error_code;
}

// ---- the model -------------------------------------------------------------------------------

/// Reads responses from the server's byte stream as section 3 describes them.
class Model {
 public:
  explicit Model(std::span<const std::uint8_t> wire) : wire_(wire) {}

  /// The next response, or the error a client sees (and keeps seeing: the connection closes).
  std::variant<Result, std::error_code> next() {
    if (closed_) {
      return closed_;
    }
    if (pos_ == wire_.size()) {
      return close(Errc::connection_closed);  // the server ended the stream
    }
    const std::uint8_t code = wire_[pos_++];
    switch (code) {
      case 0x00: {
        Bytes content;
        for (;;) {
          if (pos_ == wire_.size()) {
            return close(Errc::connection_closed);  // cut off inside the response
          }
          const std::size_t n = wire_[pos_++];
          if (n == 0) {
            return Result::make_ok(std::move(content));
          }
          if (n > wire_.size() - pos_) {
            return close(Errc::connection_closed);
          }
          content.insert(content.end(), wire_.begin() + static_cast<std::ptrdiff_t>(pos_),
                         wire_.begin() + static_cast<std::ptrdiff_t>(pos_ + n));
          pos_ += n;
        }
      }
      case 0x01:
        if (pos_ == wire_.size()) {
          return close(Errc::connection_closed);
        }
        return Result::make_error(wire_[pos_++]);
      case 0x02:
        closed_ = make_error_code(Errc::connection_closed);  // the server closes after Goodbye
        return Result::make_goodbye();
      default:
        return close(Errc::protocol_error);
    }
  }

  /// What a call on a closed connection throws (the error that closed it), if it is closed.
  std::error_code closed() const { return closed_; }

 private:
  std::error_code close(Errc e) {
    closed_ = make_error_code(e);
    return closed_;
  }

  std::span<const std::uint8_t> wire_;
  std::size_t pos_ = 0;
  std::error_code closed_;
};

Outcome predict(Model& model, const Op& op) {
  Outcome o;
  const bool reserved = serialserver::is_reserved_task_code(op.code);
  if ((op.kind == Kind::call || op.kind == Kind::streaming || op.kind == Kind::batch) && reserved) {
    o.error = make_error_code(Errc::reserved_task_code);  // refused before anything is sent
    return o;
  }
  if (model.closed()) {
    o.error = model.closed();
    return o;
  }
  const std::size_t calls = op.kind == Kind::batch ? op.batch : 1;
  for (std::size_t i = 0; i < calls; ++i) {
    auto r = model.next();
    if (auto* e = std::get_if<std::error_code>(&r)) {
      o.results.clear();
      o.error = *e;
      return o;
    }
    Result result = std::get<Result>(std::move(r));
    if (result.is_goodbye() && op.kind == Kind::batch) {
      o.results.resize(calls, Result::make_goodbye());  // none of the rest ran either
      return o;
    }
    o.results.push_back(std::move(result));
  }
  if (op.kind == Kind::streaming) {
    // The consumer's bytes are a prefix of the content, checked by the caller; the result
    // carries none.
    o.consumed = o.results[0].response;
    o.results[0].response.clear();
  }
  return o;
}

// ---- the run ---------------------------------------------------------------------------------

std::string socket_name() {
  // Linux's abstract namespace (leading NUL): no file to clean up; the pid keeps parallel
  // fuzzing jobs apart. The '/' makes the client take it for a Unix socket path.
  std::string name("\0/serialserver-fuzz-client-", 27);
  return name + std::to_string(::getpid());
}

struct Fixture {
  asio::io_context io;
  std::string name = socket_name();
  local::acceptor acceptor{io, local::endpoint(name)};
};

Fixture& fixture() {
  static Fixture* const f = new Fixture();  // for the whole run; never destroyed
  return *f;
}

asio::awaitable<void> serve(local::acceptor& acceptor, Bytes wire,
                            std::vector<std::size_t> chunks) {
  local::socket socket = co_await acceptor.async_accept(asio::use_awaitable);
  std::error_code ec;
  std::size_t pos = 0;
  for (const std::size_t n : chunks) {
    co_await asio::async_write(socket, asio::buffer(wire.data() + pos, n),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      co_return;  // the client went away early (after Goodbye, or a protocol error)
    }
    pos += n;
  }
  socket.shutdown(local::socket::shutdown_send, ec);
  // Read what the client sends until it closes, so that its writes never fail for want of a
  // reader: the client's errors are then all about what it read.
  std::uint8_t scratch[4096];
  for (;;) {
    co_await socket.async_read_some(asio::buffer(scratch),
                                    asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      co_return;
    }
  }
}

asio::awaitable<void> run_client(const std::string& name, const std::vector<Op>& ops,
                                 std::vector<Outcome>& outcomes) {
  serialclient::Options options;
  options.keep_alive_interval = std::chrono::nanoseconds::zero();
  options.response_timeout = std::chrono::seconds(30);
  options.read_timeout = std::chrono::seconds(30);
  options.write_timeout = std::chrono::seconds(30);
  auto conn = co_await serialclient::Connection::async_connect(name, options);
  for (const Op& op : ops) {
    Outcome o;
    const Bytes request(op.request_size, 0x5A);
    try {
      switch (op.kind) {
        case Kind::call:
          o.results.push_back(co_await conn.async_call(op.code, request));
          break;
        case Kind::streaming: {
          Bytes& got = o.consumed;
          const Op copy = op;
          o.results.push_back(co_await conn.async_call(
              op.code,
              [&request](serialclient::RequestWriter& w) -> asio::awaitable<void> {
                const auto half = std::span(request).first(request.size() / 2);
                co_await w.async_write(half);
                co_await w.async_flush();
                co_await w.async_write(std::span(request).subspan(half.size()));
              },
              [&got, copy](serialclient::ResponseReader& r) -> asio::awaitable<void> {
                Bytes piece(copy.read_piece);
                while (got.size() < copy.read_limit) {
                  const std::size_t n = co_await r.async_read_some(piece);
                  FUZZ_CHECK(n <= piece.size());
                  if (n == 0) {
                    FUZZ_CHECK(r.at_end());
                    break;
                  }
                  got.insert(got.end(), piece.begin(),
                             piece.begin() + static_cast<std::ptrdiff_t>(n));
                }
              }));
          break;
        }
        case Kind::batch: {
          std::vector<serialclient::Call> calls(op.batch, serialclient::Call{op.code, request});
          o.results = co_await conn.async_call_batch(calls);
          break;
        }
        case Kind::keep_alive:
          o.results.push_back(co_await conn.async_keep_alive());
          break;
        case Kind::goodbye:
          o.results.push_back(co_await conn.async_goodbye());
          break;
      }
    } catch (const std::system_error& e) {
      o.results.clear();
      o.consumed.clear();
      o.error = e.code();
    }
    outcomes.push_back(std::move(o));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider provider(data, size);
  // The script of calls and the chunking come from the end of the input; the front is the
  // server's byte stream.
  std::vector<Op> ops(provider.ConsumeIntegralInRange<std::size_t>(1, 8));
  for (Op& op : ops) {
    op.kind = static_cast<Kind>(provider.ConsumeIntegralInRange<int>(0, 4));
    op.code = provider.ConsumeIntegral<std::uint8_t>();
    op.request_size = provider.ConsumeIntegralInRange<std::size_t>(0, 600);
    op.batch = provider.ConsumeIntegralInRange<std::size_t>(1, 4);
    op.read_piece = provider.ConsumeIntegralInRange<std::size_t>(1, 300);
    op.read_limit = provider.ConsumeIntegralInRange<std::size_t>(0, 1000);
  }
  Sequence seq(provider.ConsumeIntegral<std::uint64_t>());
  const Bytes wire = provider.ConsumeRemainingBytes<std::uint8_t>();
  std::vector<std::size_t> chunks;
  for (std::size_t left = wire.size(); left > 0;) {
    const std::size_t n = seq.in(0, 3) == 0 ? left : std::min<std::size_t>(left, seq.in(1, 64));
    chunks.push_back(n);
    left -= n;
  }

  Fixture& f = fixture();
  std::vector<Outcome> outcomes;
  bool client_done = false;
  bool server_done = false;
  f.io.restart();
  asio::co_spawn(f.io, serve(f.acceptor, wire, chunks), [&](const std::exception_ptr& e) {
    FUZZ_CHECK(e == nullptr);
    server_done = true;
  });
  asio::co_spawn(f.io, run_client(f.name, ops, outcomes), [&](const std::exception_ptr& e) {
    if (e) {
      std::rethrow_exception(e);  // anything but std::system_error from a call is a defect
    }
    client_done = true;
  });
  f.io.run();
  FUZZ_CHECK(client_done && server_done);

  Model model(wire);
  FUZZ_CHECK(outcomes.size() == ops.size());
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    Outcome expected = predict(model, op);
    const Outcome& got = outcomes[i];
    bool ok = got.error == expected.error && got.results.size() == expected.results.size();
    for (std::size_t j = 0; ok && j < got.results.size(); ++j) {
      ok = same(got.results[j], expected.results[j]);
    }
    if (ok && op.kind == Kind::streaming && !got.error) {
      // The consumer read a prefix of the content: at least what it asked for (or all there
      // was), at most one piece more.
      const Bytes& content = expected.consumed;
      const std::size_t want = std::min(op.read_limit, content.size());
      ok = got.consumed.size() >= want &&
           got.consumed.size() <= std::min(content.size(), op.read_limit + op.read_piece) &&
           std::equal(got.consumed.begin(), got.consumed.end(), content.begin());
    }
    if (!ok) {
      std::fprintf(stderr,
                   "call %zu (kind %d, code %d): got error '%s' and %zu results; expected "
                   "error '%s' and %zu results\n",
                   i, static_cast<int>(op.kind), op.code, got.error.message().c_str(),
                   got.results.size(), expected.error.message().c_str(), expected.results.size());
      FUZZ_CHECK(ok);
    }
  }
  return 0;
}
