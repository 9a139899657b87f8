#include "logd_server.hpp"

#include <serialserver/binary_reader.hpp>
#include <serialserver/binary_writer.hpp>
#include <serialserver/error.hpp>

#include <array>
#include <chrono>

namespace logd {

using serialserver::BinaryWriter;
using serialserver::Response;
using serialserver::TaskContext;
using serialserver::TaskError;

namespace {

/// Runs a task body, mapping the application's failures to their error codes.
template <class F>
Response guarded(TaskContext& ctx, F body) {
  try {
    return body();
  } catch (const ProtocolError& e) {
    ctx.log().debug("{}: task {}: error {}: {}", ctx.client().to_string(), ctx.code(), e.code(),
                    e.what());
    throw TaskError(e.code(), e.what());
  } catch (const StoreClosed& e) {
    throw TaskError(kErrShuttingDown, e.what());
  } catch (const StorageError& e) {
    ctx.log().error("{}: task {}: storage error: {}", ctx.client().to_string(), ctx.code(),
                    e.what());
    throw TaskError(kErrStorage, e.what());
  }
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void stamp(Message& m, std::int64_t now) {
  if (m.time_ns == 0) {
    m.time_ns = now;
  }
}

/// Streams the records of a read cursor, one encoded record at a time: constant memory.
class RecordProducer final : public serialserver::BlockingResponseProducer {
 public:
  RecordProducer(std::unique_ptr<ReadCursor> cursor, std::optional<Record> first,
                 serialserver::ByteOrder order)
      : cursor_(std::move(cursor)), pending_(order) {
    if (first) {
      encode_record(pending_, *first);
    } else {
      cursor_.reset();
    }
  }

  std::size_t produce(std::span<std::uint8_t> out) override {
    std::size_t n = 0;
    while (n < out.size()) {
      if (offset_ == pending_.size()) {
        pending_.clear();
        offset_ = 0;
        if (!cursor_) {
          break;
        }
        Record r;
        if (!cursor_->next(r)) {
          cursor_.reset();  // ends the read transaction and returns the connection now
          break;
        }
        encode_record(pending_, r);
      }
      const std::size_t take = std::min(out.size() - n, pending_.size() - offset_);
      std::copy_n(pending_.data().begin() + static_cast<std::ptrdiff_t>(offset_), take,
                  out.begin() + static_cast<std::ptrdiff_t>(n));
      offset_ += take;
      n += take;
    }
    return n;
  }

 private:
  std::unique_ptr<ReadCursor> cursor_;
  BinaryWriter pending_;
  std::size_t offset_ = 0;
};

asio::awaitable<serialserver::HandshakeResult> handshake(serialserver::HandshakeStream& stream,
                                                         std::shared_ptr<const std::string> token) {
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
  std::vector<std::uint8_t> given;
  if (ok) {
    given.resize(length);
    co_await stream.async_read_exact(given);
    // Constant-time comparison: the time taken does not tell how much of the token matched.
    unsigned diff = given.size() == token->size() ? 0U : 1U;
    for (std::size_t i = 0; i < given.size(); ++i) {
      diff |=
          static_cast<unsigned>(given[i] ^ static_cast<std::uint8_t>((*token)[i % token->size()]));
    }
    ok = diff == 0;
  }
  const std::array<std::uint8_t, 1> status{ok ? kTokenAccepted : kTokenRejected};
  co_await stream.async_write(status);
  if (!ok) {
    throw std::runtime_error("wrong token");
  }
  co_return result;
}

}  // namespace

void register_logd_tasks(serialserver::Server& server, std::shared_ptr<Store> store) {
  server.register_blocking_task(
      kTaskAppend,
      [store](TaskContext& ctx) {
        return guarded(ctx, [&] {
          Message m = decode_append(ctx.request().read_all(), ctx.byte_order());
          stamp(m, now_ns());
          std::vector<Message> one;
          one.push_back(std::move(m));
          BinaryWriter w(ctx.byte_order());
          w.write_u64(store->append(std::move(one)));
          return Response(w.take());
        });
      },
      "append");
  server.register_blocking_task(
      kTaskAppendBatch,
      [store](TaskContext& ctx) {
        return guarded(ctx, [&] {
          std::vector<Message> batch = decode_batch(ctx.request().read_all(), ctx.byte_order());
          const std::int64_t now = now_ns();
          for (auto& m : batch) {
            stamp(m, now);
          }
          const auto count = static_cast<std::uint32_t>(batch.size());
          const std::uint64_t first = batch.empty() ? 0 : store->append(std::move(batch));
          BinaryWriter w(ctx.byte_order());
          w.write_u64(first);
          w.write_u32(count);
          return Response(w.take());
        });
      },
      "append-batch");
  server.register_blocking_task(
      kTaskRead,
      [store](TaskContext& ctx) {
        return guarded(ctx, [&] {
          const ReadQuery q = decode_read_query(ctx.request().read_all(), ctx.byte_order());
          auto cursor = store->read(q);
          // The first row is fetched here so that a storage failure is still an Error response.
          std::optional<Record> first;
          if (Record r; cursor->next(r)) {
            first = std::move(r);
          }
          return Response::stream(std::unique_ptr<serialserver::BlockingResponseProducer>(
              std::make_unique<RecordProducer>(std::move(cursor), std::move(first),
                                               ctx.byte_order())));
        });
      },
      "read");
  server.register_blocking_task(
      kTaskTail,
      [store](TaskContext& ctx) {
        return guarded(ctx, [&] {
          const TailQuery q = decode_tail_query(ctx.request().read_all(), ctx.byte_order());
          BinaryWriter w(ctx.byte_order());
          for (const auto& r : store->tail(q, ctx.stop_token())) {
            encode_record(w, r);
          }
          return Response(w.take());
        });
      },
      "tail");
  server.register_blocking_task(
      kTaskList,
      [store](TaskContext& ctx) {
        return guarded(ctx, [&] {
          const auto payload = ctx.request().read_all();
          if (!payload.empty()) {
            throw ProtocolError(kErrMalformed, "list takes no payload");
          }
          const auto logs = store->list();
          BinaryWriter w(ctx.byte_order());
          w.write_u32(static_cast<std::uint32_t>(logs.size()));
          for (const auto& info : logs) {
            encode_log_info(w, info);
          }
          return Response(w.take());
        });
      },
      "list");
}

serialserver::HandshakeFunction make_handshake(std::optional<std::string> token) {
  std::shared_ptr<const std::string> shared;
  if (token) {
    shared = std::make_shared<const std::string>(std::move(*token));
  }
  return [shared](serialserver::HandshakeStream& stream) { return handshake(stream, shared); };
}

}  // namespace logd
