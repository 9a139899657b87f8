#include "logd_server.hpp"

#include <serialserver/binary_reader.hpp>
#include <serialserver/binary_writer.hpp>
#include <serialserver/error.hpp>
#include "batch_stream.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <random>

#include <asio/co_spawn.hpp>
#include <asio/use_awaitable.hpp>

namespace logd {

using serialserver::BinaryWriter;
using serialserver::Response;
using serialserver::TaskContext;
using serialserver::TaskError;

namespace {

/// Maps the application's failures to their error codes (TaskError); anything else goes on.
[[noreturn]] void rethrow_as_task_error(TaskContext& ctx, const std::exception_ptr& failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const ProtocolError& e) {
    ctx.log().debug("{}: task {}: error {}: {}", ctx.client().to_string(), ctx.code(), e.code(),
                    e.what());
    throw TaskError(e.code(), e.what());
  } catch (const StoreClosed& e) {
    throw TaskError(kErrShuttingDown, e.what());
  } catch (const StoreBusy& e) {
    ctx.log().warn("{}: task {}: {}", ctx.client().to_string(), ctx.code(), e.what());
    throw TaskError(kErrBusy, e.what());
  } catch (const StorageError& e) {
    ctx.log().error("{}: task {}: storage error: {}", ctx.client().to_string(), ctx.code(),
                    e.what());
    throw TaskError(kErrStorage, e.what());
  }
}

/// Runs a task body, mapping the application's failures to their error codes.
template <class F>
Response guarded(TaskContext& ctx, F body) {
  try {
    return body();
  } catch (...) {
    rethrow_as_task_error(ctx, std::current_exception());
  }
}

/// As guarded, for a coroutine task body.
template <class F>
asio::awaitable<Response> guarded_async(TaskContext& ctx, F body) {
  std::exception_ptr failure;
  try {
    co_return co_await body();
  } catch (...) {
    failure = std::current_exception();
  }
  rethrow_as_task_error(ctx, failure);
}

/// Runs `f` on `pool` and resumes the calling coroutine on its own executor with the result
/// (or the exception).
template <class F>
asio::awaitable<std::invoke_result_t<F&>> on_pool(asio::thread_pool& pool, F f) {
  using Result = std::invoke_result_t<F&>;
  co_return co_await asio::co_spawn(
      pool, [f = std::move(f)]() mutable -> asio::awaitable<Result> { co_return f(); },
      asio::use_awaitable);
}

/// The request content of a small task (read, tail, list): at most `cap` bytes, or Error 1.
asio::awaitable<std::vector<std::uint8_t>> read_small_request(TaskContext& ctx, std::size_t cap) {
  std::vector<std::uint8_t> content(cap + 1);
  std::size_t n = 0;
  for (;;) {
    const std::size_t got =
        co_await ctx.request().async_read_some(std::span<std::uint8_t>(content).subspan(n));
    if (got == 0) {
      break;
    }
    n += got;
    if (n > cap) {
      co_await ctx.request().async_skip_all();
      throw ProtocolError(kErrMalformed, "request longer than " + std::to_string(cap) + " bytes");
    }
  }
  content.resize(n);
  co_return content;
}

/// One of a bounded number of slots (reads or lists in progress), given back on destruction.
class Slot {
 public:
  Slot() = default;
  /// Takes a slot of `counter` if fewer than `max` are taken; else Error 8.
  static Slot take(const std::shared_ptr<std::atomic<std::size_t>>& counter, std::size_t max,
                   const char* what) {
    if (counter->fetch_add(1) >= max) {
      counter->fetch_sub(1);
      throw ProtocolError(
          kErrBusy, std::string("more than ") + std::to_string(max) + " " + what + " at once");
    }
    Slot s;
    s.counter_ = counter;
    return s;
  }
  Slot(Slot&& other) noexcept = default;
  Slot& operator=(Slot&& other) noexcept {
    release();
    counter_ = std::move(other.counter_);
    return *this;
  }
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  ~Slot() { release(); }

 private:
  void release() noexcept {
    if (counter_) {
      counter_->fetch_sub(1);
      counter_.reset();
    }
  }
  std::shared_ptr<std::atomic<std::size_t>> counter_;
};

/// The bytes a streamed response encodes ahead, per trip to the query pool.
constexpr std::size_t kStreamChunkBytes = std::size_t{64} * 1024;

/// Streams the rows of a cursor (a ReadCursor or a ListCursor): the rows are fetched and encoded
/// on the query pool, a chunk at a time, and handed to the I/O thread; constant memory. The
/// cursor (and its reader connection) goes back as soon as the rows end, or when the response
/// stops (a client that does not read is ended by the write timeout, and this destroyed).
template <class Cursor, class Row>
class RowStream final : public serialserver::ResponseProducer {
 public:
  using Encode = void (*)(BinaryWriter&, const Row&);
  RowStream(asio::thread_pool& pool, std::unique_ptr<Cursor> cursor, BinaryWriter first,
            Encode encode, Slot slot, std::shared_ptr<const std::atomic<bool>> abandoned)
      : abandoned_(std::move(abandoned)),
        pool_(pool),
        cursor_(std::move(cursor)),
        pending_(std::move(first)),
        encode_(encode),
        slot_(std::move(slot)) {}

  asio::awaitable<std::size_t> async_produce(std::span<std::uint8_t> out) override {
    if (abandoned_->load()) {
      throw std::runtime_error("shutdown: the grace period is over");
    }
    if (offset_ == pending_.size()) {
      pending_.clear();
      offset_ = 0;
      if (!cursor_) {
        co_return 0;
      }
      co_await on_pool(pool_, [this] {
        fill();
        return 0;
      });
      if (pending_.size() == 0) {
        co_return 0;
      }
    }
    const std::size_t take = std::min(out.size(), pending_.size() - offset_);
    std::copy_n(pending_.data().begin() + static_cast<std::ptrdiff_t>(offset_), take, out.begin());
    offset_ += take;
    co_return take;
  }

  /// Encodes rows until a chunk is full or the rows end (then gives the cursor back).
  void fill() {
    Row row;
    while (pending_.size() < kStreamChunkBytes) {
      if (!cursor_->next(row)) {
        cursor_.reset();
        slot_ = Slot();
        return;
      }
      encode_(pending_, row);
    }
  }

 private:
  std::shared_ptr<const std::atomic<bool>> abandoned_;
  asio::thread_pool& pool_;
  std::unique_ptr<Cursor> cursor_;
  BinaryWriter pending_;
  std::size_t offset_ = 0;
  Encode encode_;
  Slot slot_;
};

/// Waits a random time shorter than `longest`, not past `deadline`, and not past shutdown. A
/// commit to a log with many followers would otherwise make them all answer (and ask again) at
/// once, a burst of work that the appends queue behind; spread out, each answer also gathers the
/// commits of its wait.
asio::awaitable<void> spread_out(TailWaiters& waiters, std::chrono::nanoseconds longest,
                                 std::chrono::steady_clock::time_point deadline) {
  if (longest <= std::chrono::nanoseconds::zero()) {
    co_return;
  }
  static thread_local std::minstd_rand random{std::random_device{}()};
  const std::chrono::nanoseconds pause(
      std::uniform_int_distribution<std::int64_t>(0, longest.count() - 1)(random));
  co_await waiters.pause(std::min(std::chrono::steady_clock::now() + pause, deadline));
}

/// The largest request of a read, tail or list: a name and a few numbers.
constexpr std::size_t kMaxSmallRequest = 4096;

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

}  // namespace

LogdService::LogdService(std::shared_ptr<Store> store, TaskLimits limits,
                         RetentionOptions retention, std::chrono::nanoseconds retention_interval,
                         std::shared_ptr<serialserver::Logger> logger)
    : store_(std::move(store)),
      limits_(limits),
      waiters_(std::make_shared<TailWaiters>(limits.max_waiting_tails)),
      queries_(limits.query_threads) {
  store_->set_commit_listener(
      [waiters = waiters_](const std::vector<std::string>& logs) { waiters->notify_commit(logs); });
  const bool retain = retention.any();
  maintenance_ = std::jthread([store = store_, retention = std::move(retention), retention_interval,
                               retain, logger = std::move(logger)](const std::stop_token& stop) {
    std::mutex mutex;
    std::condition_variable_any cv;
    std::unique_lock lock(mutex);
    auto next_retention = std::chrono::steady_clock::now();
    while (!cv.wait_for(lock, stop, std::chrono::seconds(1), [] { return false; })) {
      if (stop.stop_requested()) {
        return;
      }
      store->close_idle_readers();
      if (retain && std::chrono::steady_clock::now() >= next_retention) {
        try {
          const std::uint64_t deleted = store->enforce_retention(retention, now_ns());
          if (deleted > 0 && logger) {
            logger->info("retention: deleted {} messages", deleted);
          }
        } catch (const StorageError& e) {  // tried again at the next interval
          if (logger) {
            logger->error("retention: {}", e.what());
          }
        }
        next_retention = std::chrono::steady_clock::now() + retention_interval;
      }
    }
  });
}

LogdService::~LogdService() {
  maintenance_.request_stop();
  if (maintenance_.joinable()) {
    maintenance_.join();
  }
  waiters_->close();
  queries_.join();
  deletes_.join();
}

void LogdService::begin_shutdown() { waiters_->close(); }

void LogdService::register_tasks(serialserver::Server& server) {
  auto store = store_;
  server.register_task(kTaskAppend,
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
                       {.name = "append", .kind = serialserver::TaskKind::blocking});
  server.register_task(kTaskAppendBatch,
                       [store](TaskContext& ctx) {
                         return guarded(ctx, [&] {
                           std::vector<Message> batch = read_batch(ctx.request(), ctx.byte_order());
                           const std::int64_t now = now_ns();
                           for (auto& m : batch) {
                             stamp(m, now);
                           }
                           const auto count = static_cast<std::uint32_t>(batch.size());
                           const std::uint64_t first =
                               batch.empty() ? 0 : store->append(std::move(batch));
                           BinaryWriter w(ctx.byte_order());
                           w.write_u64(first);
                           w.write_u32(count);
                           return Response(w.take());
                         });
                       },
                       {.name = "append-batch", .kind = serialserver::TaskKind::blocking});
  asio::thread_pool* pool = &queries_;
  std::shared_ptr<const std::atomic<bool>> abandoned = abandoned_;
  auto reads = reads_;
  const std::size_t max_reads = limits_.max_reads;
  server.register_task(
      kTaskRead,
      [store, pool, reads, max_reads, abandoned](TaskContext& ctx) -> asio::awaitable<Response> {
        co_return co_await guarded_async(ctx, [&]() -> asio::awaitable<Response> {
          const ReadQuery q = decode_read_query(co_await read_small_request(ctx, kMaxSmallRequest),
                                                ctx.byte_order());
          Slot slot = Slot::take(reads, max_reads, "reads");
          using Stream = RowStream<ReadCursor, Record>;
          auto stream = co_await on_pool(*pool, [&] {
            // The first chunk is fetched here so that a storage failure is still an Error.
            auto s = std::make_unique<Stream>(*pool, store->read(q), BinaryWriter(ctx.byte_order()),
                                              &encode_record, std::move(slot), abandoned);
            s->fill();
            return s;
          });
          co_return Response::stream(
              std::unique_ptr<serialserver::ResponseProducer>(std::move(stream)));
        });
      },
      "read");
  auto waiters = waiters_;
  const auto spread = limits_.tail_spread;
  server.register_task(
      kTaskTail,
      [store, pool, waiters, spread](TaskContext& ctx) -> asio::awaitable<Response> {
        co_return co_await guarded_async(ctx, [&]() -> asio::awaitable<Response> {
          const TailQuery q = decode_tail_query(co_await read_small_request(ctx, kMaxSmallRequest),
                                                ctx.byte_order());
          const auto deadline =
              std::chrono::steady_clock::now() + std::chrono::milliseconds(q.wait_ms);
          std::vector<Record> records;
          for (;;) {
            const std::uint64_t seen = waiters->sequence(q.log);
            // A tail caught up with its log is answered from memory, here; others query.
            if (auto recent = store->recent_tail(q)) {
              records = std::move(*recent);
            } else {
              records = co_await on_pool(*pool, [&] { return store->tail(q); });
            }
            if (!records.empty() || ctx.stop_requested() ||
                std::chrono::steady_clock::now() >= deadline) {
              break;
            }
            const WaitOutcome outcome = co_await waiters->wait(q.log, seen, deadline);
            if (outcome == WaitOutcome::full) {
              throw ProtocolError(kErrBusy, "too many tails waiting");
            }
            if (outcome != WaitOutcome::committed || ctx.stop_requested()) {
              break;
            }
            co_await spread_out(*waiters, spread, deadline);
          }
          BinaryWriter w(ctx.byte_order());
          for (const auto& r : records) {
            encode_record(w, r);
          }
          co_return Response(w.take());
        });
      },
      "tail");
  auto lists = lists_;
  const std::size_t max_lists = limits_.max_lists;
  server.register_task(
      kTaskList,
      [store, pool, lists, max_lists, abandoned](TaskContext& ctx) -> asio::awaitable<Response> {
        co_return co_await guarded_async(ctx, [&]() -> asio::awaitable<Response> {
          if (!(co_await read_small_request(ctx, 0)).empty()) {
            throw ProtocolError(kErrMalformed, "list takes no payload");
          }
          Slot slot = Slot::take(lists, max_lists, "lists");
          using Stream = RowStream<ListCursor, LogInfo>;
          auto stream = co_await on_pool(*pool, [&] {
            auto cursor = store->list();
            BinaryWriter first(ctx.byte_order());
            first.write_u32(static_cast<std::uint32_t>(cursor->count()));
            auto s = std::make_unique<Stream>(*pool, std::move(cursor), std::move(first),
                                              &encode_log_info, std::move(slot), abandoned);
            s->fill();
            return s;
          });
          co_return Response::stream(
              std::unique_ptr<serialserver::ResponseProducer>(std::move(stream)));
        });
      },
      "list");
  asio::thread_pool* deletes = &deletes_;
  server.register_task(
      kTaskDelete,
      [store, deletes](TaskContext& ctx) -> asio::awaitable<Response> {
        co_return co_await guarded_async(ctx, [&]() -> asio::awaitable<Response> {
          const auto content = co_await read_small_request(ctx, kMaxSmallRequest);
          serialserver::BinaryReader r(content, ctx.byte_order());
          std::string log;
          std::int64_t before = 0;
          try {
            log = r.read_string();
            before = r.read_i64();
          } catch (const serialserver::EndOfMessage&) {
            throw ProtocolError(kErrMalformed, "delete payload cut off");
          }
          if (!r.at_end()) {
            throw ProtocolError(kErrMalformed, "bytes after the delete payload");
          }
          if (log.empty() || log.size() > kMaxNameBytes) {
            throw ProtocolError(
                kErrBadName, "log name must have 1.." + std::to_string(kMaxNameBytes) + " bytes");
          }
          const std::uint64_t deleted =
              co_await on_pool(*deletes, [&] { return store->delete_before(log, before); });
          ctx.log().info("{}: deleted {} messages of {}", ctx.client().to_string(), deleted, log);
          BinaryWriter w(ctx.byte_order());
          w.write_u64(deleted);
          co_return Response(w.take());
        });
      },
      "delete");
}

}  // namespace logd
