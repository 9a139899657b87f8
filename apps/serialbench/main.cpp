// serialbench: a closed-loop load generator for serial-protocol servers, in the spirit of
// redis-benchmark. Each connection keeps --pipeline requests in flight; every response is
// validated (an echo must carry back the very request it answers: each request holds its
// connection number and sequence number), and latencies go into a histogram.
//
// It must not be the bottleneck, so each thread runs an epoll loop over non-blocking sockets:
// one read() of up to 256 KiB per readable socket, responses parsed in place by a streaming
// state machine (nothing is buffered or allocated per request), and one write() per socket per
// loop turn carrying every request that the read freed room for.
//
// The io_uring engine (--engine io_uring, the default where the kernel allows it) keeps the same
// connections, requests, parsing and validation, and changes only how bytes move: each connection
// has one recv always queued in the thread's ring and at most one send, and a loop turn is one
// io_uring_submit_and_wait_timeout() that hands the kernel every send and recv queued since the
// last turn and collects what completed, so a turn costs one system call whatever the number of
// connections (the epoll loop makes an epoll_wait, then a recv and a send per ready connection).
//
// With --tls each connection gets an OpenSSL SSL object over the same non-blocking socket
// (handshake done blocking, before the loop): SSL_read / SSL_write replace read() / write(), and
// WANT_READ / WANT_WRITE count as EAGAIN. The plaintext path is untouched. TLS runs on the epoll
// engine only.

#include <serialserver/duration.hpp>
#include <serialserver/protocol.hpp>
#include <serialserver/wire/block_decoder.hpp>
#include <serialserver/wire/block_encoder.hpp>
#include "common/guarded_main.hpp"
#include "histogram.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#ifdef SERIALBENCH_HAVE_IO_URING
#include <liburing.h>
#endif
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <serialclient/address.hpp>

namespace serialbench {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitErrors = 1;
constexpr int kExitConnect = 3;
constexpr int kExitUsage = 64;

constexpr std::size_t kReadBufferSize = std::size_t{256} * 1024;
// The per-request sequence stamp: connection number in the top 24 bits, sequence below.
constexpr unsigned kSeqBits = 40;
constexpr std::size_t kStampBytes = 8;

enum class Expect { echo, empty, error, any };
enum class Engine { automatic, epoll, io_uring };

const char* engine_name(Engine engine) {
  return engine == Engine::io_uring ? "io_uring" : engine == Engine::epoll ? "epoll" : "auto";
}

struct Config {
  serialclient::Address address;
  std::size_t connections = 1;
  std::size_t pipeline = 1;
  std::size_t size = 0;
  serialserver::TaskCode task = 2;
  Expect expect = Expect::empty;
  std::optional<std::chrono::nanoseconds> duration;
  std::optional<std::uint64_t> requests;
  std::chrono::nanoseconds warmup{0};
  /// How long a loop turn that found nothing keeps polling before it sleeps in the kernel
  /// (0: sleep at once). See kDefaultSpin.
  std::chrono::nanoseconds spin{0};
  unsigned threads = 1;
  bool json = false;
  bool progress = false;
  bool tls = false;
  Engine engine = Engine::automatic;  // resolved to epoll or io_uring before the run
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
};

/// CPU time (user + system) of the whole process so far, in nanoseconds: the generator's own
/// cost, which tells whether it could have been the bottleneck.
std::uint64_t process_cpu_ns() noexcept {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  const auto ns = [](const timeval& tv) {
    return static_cast<std::uint64_t>(tv.tv_sec) * 1000000000ULL +
           static_cast<std::uint64_t>(tv.tv_usec) * 1000ULL;
  };
  return ns(usage.ru_utime) + ns(usage.ru_stime);
}

inline std::uint64_t now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// Decides whether a loop turn polls (asks the kernel for what is ready without sleeping) or
/// waits. A generator that sleeps between responses must be woken by the server's sends, and the
/// wake-up is work the kernel does on the server's core, inside its send: measured against the
/// limit server at C=50, that alone made the server slower under serialbench than under a
/// generator that was busy anyway. Polling for `spin` after the last progress keeps the
/// generator awake while responses flow, at the price of a busy core; an idle run still sleeps.
class Spinner {
 public:
  explicit Spinner(std::chrono::nanoseconds spin) noexcept
      : spin_ns_(static_cast<std::uint64_t>(std::max<std::int64_t>(spin.count(), 0))),
        last_progress_ns_(spin_ns_ != 0 ? now_ns() : 0) {}

  /// True if this turn should poll rather than wait.
  bool spinning() const noexcept {
    return spin_ns_ != 0 && now_ns() - last_progress_ns_ < spin_ns_;
  }
  /// Records the outcome of a turn: `progress` if anything completed.
  void turn(bool progress) noexcept {
    if (progress && spin_ns_ != 0) {
      last_progress_ns_ = now_ns();
    }
  }

 private:
  std::uint64_t spin_ns_;
  std::uint64_t last_progress_ns_;
};

/// Phases that the main thread announces to the workers.
enum class Phase { warmup, measure, stop };

/// One connection: its request template, its place in the sequence, and the state of the
/// response being parsed (which may span any number of reads).
struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;  // --tls only
  std::uint64_t id = 0;
  std::size_t index = 0;  // in its worker's list: the epoll key
  bool alive = true;
  bool want_out = false;     // EPOLLOUT registered: a write is pending (epoll engine)
  bool send_queued = false;  // a send is in the ring (io_uring engine)
  // The io_uring engine's receive buffer: a recv in the ring needs memory of its own.
  std::unique_ptr<std::uint8_t[]> recv_buffer;
  std::size_t recv_size = 0;
  // Requests: `batch` holds `pipeline` copies of the encoded request; a batch of k requests is
  // the first k copies with their stamps rewritten, sent with one write().
  std::vector<std::uint8_t> batch;
  std::size_t write_pos = 0;  // a partly written batch: [write_pos, write_end) is pending
  std::size_t write_end = 0;
  std::size_t owed = 0;         // requests that may go out once the pending write is done
  std::uint64_t quota = ~0ULL;  // requests still to send (requests mode)
  std::uint64_t next_seq = 0;
  std::uint64_t expect_seq = 0;
  std::size_t inflight = 0;
  std::vector<std::uint64_t> sent_at;  // by seq % pipeline
  // Response parsing.
  enum class State : std::uint8_t { code, error_code, content } state = State::code;
  serialserver::wire::BlockDecoder decoder;
  std::size_t content_offset = 0;
  bool content_bad = false;
  bool response_ok = false;
  std::vector<std::uint8_t> expected;  // the content of the request being answered
};

/// Per-thread counters; the progress line reads the atomics.
struct Stats {
  Histogram histogram;
  std::uint64_t completed = 0;
  std::uint64_t errors = 0;
  std::uint64_t lost = 0;
  std::uint64_t end_ns = 0;
  std::atomic<std::uint64_t> live_completed{0};
  std::atomic<std::uint64_t> live_errors{0};
  std::atomic<bool> done{false};
};

class Worker {
 public:
  Worker(const Config& config, const std::atomic<Phase>& phase)
      : config_(config), phase_(phase), read_buffer_(kReadBufferSize) {}

  void add(std::unique_ptr<Conn> conn) {
    conn->index = conns_.size();
    conns_.push_back(std::move(conn));
  }
  Stats& stats() { return stats_; }

  ~Worker() {
#ifdef SERIALBENCH_HAVE_IO_URING
    if (uring_) {
      ::io_uring_queue_exit(&ring_);
    }
#endif
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void run() {
#ifdef SERIALBENCH_HAVE_IO_URING
    if (uring_) {
      run_uring();
      return;
    }
#endif
    run_epoll();
  }

#ifdef SERIALBENCH_HAVE_IO_URING
  /// Sets up this worker's ring for up to `conns` connections, from the main thread: single
  /// issuer with task work deferred to io_uring_enter() where the kernel has them (6.1 and
  /// later), created disabled so that the worker thread that enables it becomes the issuer;
  /// plain flags where setup refuses those with EINVAL. Returns 0 or -errno.
  int setup_ring(std::size_t conns) {
    // Two SQEs per connection at most between two submissions (a recv and a send): no
    // submission inside a turn up to 2048 connections a thread.
    const auto entries = static_cast<unsigned>(std::min<std::size_t>(2 * conns + 8, 4096));
    io_uring_params params{};
    params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
                   IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED;
    params.cq_entries = 2 * entries;
    int r = ::io_uring_queue_init_params(entries, &ring_, &params);
    ring_disabled_ = r == 0;
    if (r == -EINVAL) {
      params = io_uring_params{};
      params.flags = IORING_SETUP_CQSIZE;
      params.cq_entries = 2 * entries;
      r = ::io_uring_queue_init_params(entries, &ring_, &params);
    }
    uring_ = r == 0;
    return r;
  }
#endif

  /// Connections that still owe requests (requests mode) or are alive (duration mode).
  void set_active(std::size_t n) { active_ = n; }

 private:
  /// Follows the main thread's phases; false once the loop must end.
  bool keep_going(Phase& seen_phase) {
    const Phase phase = phase_.load(std::memory_order_acquire);
    if (phase != seen_phase) {
      if (phase == Phase::measure) {
        // Warm-up is over: what came before does not count.
        stats_.histogram.clear();
        stats_.completed = stats_.errors = 0;
      }
      seen_phase = phase;
    }
    if (seen_phase == Phase::stop) {
      return false;  // responses still in flight are not counted: the window has closed
    }
    // In requests mode, 0 once every quota is done (or every connection is lost).
    return active_ != 0;
  }

  void publish() {
    stats_.live_completed.store(stats_.completed, std::memory_order_relaxed);
    stats_.live_errors.store(stats_.errors, std::memory_order_relaxed);
  }

  void finish() {
    stats_.end_ns = now_ns();
    publish();
    stats_.done.store(true, std::memory_order_release);
  }

  void close_all() {
    for (auto& c : conns_) {
      if (c->ssl != nullptr) {
        ::SSL_free(c->ssl);
        c->ssl = nullptr;
      }
      ::close(c->fd);
    }
  }

  void run_epoll() {
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    for (std::size_t i = 0; i < conns_.size(); ++i) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      ::epoll_ctl(epoll_, EPOLL_CTL_ADD, conns_[i]->fd, &ev);
    }
    Phase seen_phase = phase_.load(std::memory_order_acquire);
    const std::uint64_t start = now_ns();
    for (auto& c : conns_) {
      send(*c, config_.pipeline, start);
    }
    std::vector<epoll_event> events(512);
    Spinner spinner(config_.spin);
    while (keep_going(seen_phase)) {
      const int n = ::epoll_wait(epoll_, events.data(), static_cast<int>(events.size()),
                                 spinner.spinning() ? 0 : 20);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        std::perror("serialbench: epoll_wait");
        break;
      }
      spinner.turn(n > 0);
      for (int i = 0; i < n; ++i) {
        Conn& c = *conns_[events[static_cast<std::size_t>(i)].data.u64];
        if (!c.alive) {
          continue;
        }
        if (events[static_cast<std::size_t>(i)].events & EPOLLOUT) {
          flush(c);
        }
        if (events[static_cast<std::size_t>(i)].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
          on_readable(c);
        }
      }
      publish();
    }
    finish();
    close_all();
    ::close(epoll_);
  }

#ifdef SERIALBENCH_HAVE_IO_URING
  static constexpr std::uint64_t kOpRecv = 0;
  static constexpr std::uint64_t kOpSend = 1;

  void run_uring() {
    if (ring_disabled_) {
      // This thread becomes the ring's single issuer. (io_uring_enable_rings() is declared by
      // liburing 2.3 but missing from its exported symbols: the register call it wraps.)
      ::io_uring_register(ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
    }
    Phase seen_phase = phase_.load(std::memory_order_acquire);
    const std::uint64_t start = now_ns();
    for (auto& c : conns_) {
      queue_recv(*c);
      send(*c, config_.pipeline, start);
    }
    Spinner spinner(config_.spin);
    while (keep_going(seen_phase)) {
      int r = 0;
      if (spinner.spinning()) {
        // Submits and collects what has completed, without waiting (task work deferred to
        // io_uring_enter runs here too).
        r = ::io_uring_submit_and_get_events(&ring_);
      } else {
        // Waits for this turn's sends and one completion more: a send to a socket with room
        // completes within the submission, and must not end the wait before a response comes.
        const unsigned wait = queued_sends_ + 1;
        __kernel_timespec timeout{0, 20'000'000};
        io_uring_cqe* cqe = nullptr;
        r = ::io_uring_submit_and_wait_timeout(&ring_, &cqe, wait, &timeout, nullptr);
      }
      queued_sends_ = 0;
      if (r < 0 && r != -ETIME && r != -EINTR) {
        std::fprintf(stderr, "serialbench: io_uring_submit_and_wait: %s\n", std::strerror(-r));
        break;
      }
      spinner.turn(reap() != 0);
      publish();
    }
    finish();
    // Ends every recv and send still in the ring before their buffers go: shutdown() completes
    // them (a recv with 0, a send with EPIPE).
    draining_ = true;
    for (auto& c : conns_) {
      ::shutdown(c->fd, SHUT_RDWR);
    }
    const std::uint64_t deadline = now_ns() + 1'000'000'000ULL;
    while (ops_ != 0 && now_ns() < deadline) {
      __kernel_timespec timeout{0, 100'000'000};
      io_uring_cqe* cqe = nullptr;
      ::io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &timeout, nullptr);
      reap();
    }
    ::io_uring_queue_exit(&ring_);
    uring_ = false;
    close_all();
  }

  /// A free SQE; when the queue is full, what it holds is submitted first.
  io_uring_sqe* next_sqe() {
    io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {
      ::io_uring_submit(&ring_);
      queued_sends_ = 0;
      sqe = ::io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  void queue_recv(Conn& c) {
    io_uring_sqe* sqe = next_sqe();
    ::io_uring_prep_recv(sqe, c.fd, c.recv_buffer.get(), c.recv_size, 0);
    // The response to what was just sent is not there yet: wait for readiness first rather
    // than try a recv that would fail (a socket already readable completes at once anyway).
    sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    ::io_uring_sqe_set_data64(sqe, (c.index << 1) | kOpRecv);
    ++ops_;
  }

  /// Queues a send of the pending part of the batch, unless one is already in the ring.
  void flush_uring(Conn& c) {
    if (c.send_queued || c.write_pos == c.write_end) {
      return;
    }
    io_uring_sqe* sqe = next_sqe();
    // MSG_WAITALL: the kernel sends the rest itself after a short send.
    ::io_uring_prep_send(sqe, c.fd, c.batch.data() + c.write_pos, c.write_end - c.write_pos,
                         MSG_NOSIGNAL | MSG_WAITALL);
    ::io_uring_sqe_set_data64(sqe, (c.index << 1) | kOpSend);
    c.send_queued = true;
    ++ops_;
    ++queued_sends_;
  }

  /// Handles every completion in the ring; returns how many there were.
  unsigned reap() {
    unsigned head = 0;
    unsigned count = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++count;
      --ops_;
      if (draining_) {
        continue;
      }
      const std::uint64_t data = ::io_uring_cqe_get_data64(cqe);
      Conn& c = *conns_[data >> 1];
      if ((data & 1) == kOpSend) {
        on_sent(c, cqe->res);
      } else {
        on_received(c, cqe->res);
      }
    }
    ::io_uring_cq_advance(&ring_, count);
    return count;
  }

  void on_sent(Conn& c, int res) {
    c.send_queued = false;
    if (!c.alive) {
      return;
    }
    if (res < 0) {
      if (res == -EAGAIN || res == -EINTR) {
        flush_uring(c);
      } else {
        lose(c);
      }
      return;
    }
    c.write_pos += static_cast<std::size_t>(res);
    if (c.write_pos < c.write_end) {
      flush_uring(c);
      return;
    }
    c.write_pos = c.write_end = 0;
    if (c.owed != 0) {
      emit(c, now_ns());
    }
  }

  void on_received(Conn& c, int res) {
    if (!c.alive) {
      return;
    }
    if (res <= 0) {
      if (res == -EAGAIN || res == -EINTR) {
        queue_recv(c);
      } else {
        lose(c);  // the server closed (or reset) the connection
      }
      return;
    }
    if (consume(
            c, std::span<const std::uint8_t>(c.recv_buffer.get(), static_cast<std::size_t>(res)))) {
      queue_recv(c);
    }
  }
#endif

  void lose(Conn& c) {
    if (!c.alive) {
      return;
    }
    ++stats_.errors;
    ++stats_.lost;
    retire(c);
  }

  /// Takes a connection out of the loop (its quota is done, or it is lost).
  void retire(Conn& c) {
    if (epoll_ >= 0) {
      ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
    }
    c.alive = false;
    --active_;
  }

  /// Parses what was read; then retires the connection if its quota is done, or sends the
  /// requests that the responses made room for. False once the connection is out of the loop.
  bool consume(Conn& c, std::span<const std::uint8_t> data) {
    const std::uint64_t now = now_ns();
    const std::uint64_t freed = parse(c, data, now);
    if (!c.alive) {
      return false;
    }
    if (c.quota == 0 && c.inflight == 0 && c.owed == 0) {
      retire(c);
      return false;
    }
    if (phase_.load(std::memory_order_relaxed) != Phase::stop) {
      send(c, freed, now);
    }
    return c.alive;
  }

  /// Sends up to k more requests (fewer if the quota runs out), or owes them while an earlier
  /// write is pending.
  void send(Conn& c, std::uint64_t k, std::uint64_t now) {
    k = std::min(k, c.quota);
    if (k == 0 || !c.alive) {
      return;
    }
    c.quota -= k;
    c.owed += k;
    if (c.write_pos == c.write_end) {
      emit(c, now);
    }
  }

  /// Writes every owed request in one write(), stamped with its sequence number and `now`.
  void emit(Conn& c, std::uint64_t now) {
    const std::uint64_t k = c.owed;
    c.owed = 0;
    const std::size_t request_size = c.batch.size() / config_.pipeline;
    const std::size_t stamp_bytes = std::min(kStampBytes, config_.size);
    for (std::uint64_t i = 0; i < k; ++i) {
      const std::uint64_t seq = c.next_seq++;
      c.sent_at[seq % config_.pipeline] = now;
      if (stamp_bytes != 0) {
        stamp(&c.batch[i * request_size + 2], stamp_bytes, c.id, seq);
      }
    }
    c.inflight += k;
    c.write_pos = 0;
    c.write_end = k * request_size;
    flush(c);
  }

  static void stamp(std::uint8_t* at, std::size_t n, std::uint64_t id, std::uint64_t seq) {
    const std::uint64_t value = (id << kSeqBits) | (seq & ((1ULL << kSeqBits) - 1));
    for (std::size_t i = 0; i < n; ++i) {
      at[i] = static_cast<std::uint8_t>(value >> (8 * (kStampBytes - 1 - i)));
    }
  }

  void flush(Conn& c) {
#ifdef SERIALBENCH_HAVE_IO_URING
    if (uring_) {
      flush_uring(c);
      return;
    }
#endif
    while (c.write_pos < c.write_end) {
      if (c.ssl != nullptr) {
        // A retry after WANT_WRITE passes the same bytes, as SSL_write requires.
        const int n = ::SSL_write(c.ssl, c.batch.data() + c.write_pos,
                                  static_cast<int>(c.write_end - c.write_pos));
        if (n <= 0) {
          const int err = ::SSL_get_error(c.ssl, n);
          if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
            break;
          }
          lose(c);
          return;
        }
        c.write_pos += static_cast<std::size_t>(n);
        continue;
      }
      // send()/recv() rather than write()/read(): the socket calls skip the VFS layer, and
      // MSG_NOSIGNAL keeps a reset peer from raising SIGPIPE even where it is not ignored.
      const ssize_t n =
          ::send(c.fd, c.batch.data() + c.write_pos, c.write_end - c.write_pos, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        if (errno == EAGAIN) {
          break;
        }
        lose(c);
        return;
      }
      c.write_pos += static_cast<std::size_t>(n);
    }
    const bool pending = c.write_pos < c.write_end;
    if (pending != c.want_out) {
      epoll_event ev{};
      ev.events = EPOLLIN | (pending ? EPOLLOUT : 0U);
      ev.data.u64 = c.index;
      ::epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
      c.want_out = pending;
    }
    if (!pending) {
      c.write_pos = c.write_end = 0;
      if (c.owed != 0 && c.alive) {
        emit(c, now_ns());
      }
    }
  }

  void on_readable(Conn& c) {
    if (c.ssl != nullptr) {
      on_readable_tls(c);
      return;
    }
    const ssize_t n = ::recv(c.fd, read_buffer_.data(), read_buffer_.size(), 0);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
      }
      lose(c);  // the server closed (or reset) the connection
      return;
    }
    consume(c, std::span(read_buffer_).first(static_cast<std::size_t>(n)));
  }

  /// As on_readable, through OpenSSL: SSL_read returns about one record per call, so it reads
  /// until the socket is drained (WANT_READ) and OpenSSL holds nothing back, since epoll cannot
  /// report bytes that sit decrypted in OpenSSL's buffer.
  void on_readable_tls(Conn& c) {
    for (;;) {
      std::size_t total = 0;
      bool drained = false;
      while (total < read_buffer_.size()) {
        const int n = ::SSL_read(c.ssl, read_buffer_.data() + total,
                                 static_cast<int>(read_buffer_.size() - total));
        if (n > 0) {
          total += static_cast<std::size_t>(n);
          continue;
        }
        const int err = ::SSL_get_error(c.ssl, n);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
          drained = true;
          break;
        }
        lose(c);  // closed (close_notify or not) or a TLS error
        return;
      }
      if (total == 0) {
        return;
      }
      if (!consume(c, std::span(read_buffer_).first(total))) {
        return;
      }
      if (drained && ::SSL_pending(c.ssl) == 0) {
        return;
      }
    }
  }

  /// Parses responses out of `data`; returns how many completed.
  std::uint64_t parse(Conn& c, std::span<const std::uint8_t> data, std::uint64_t now) {
    std::uint64_t completed = 0;
    std::size_t pos = 0;
    while (pos < data.size()) {
      switch (c.state) {
        case Conn::State::code: {
          if (c.inflight == 0) {
            lose(c);  // bytes nobody asked for
            return completed;
          }
          const auto code = static_cast<serialserver::ResponseCode>(data[pos++]);
          if (code == serialserver::ResponseCode::ok) {
            c.state = Conn::State::content;
            c.decoder.reset();
            c.content_offset = 0;
            c.content_bad = false;
            if (config_.expect == Expect::echo) {
              stamp(c.expected.data(), std::min(kStampBytes, config_.size), c.id, c.expect_seq);
            }
          } else if (code == serialserver::ResponseCode::error) {
            c.state = Conn::State::error_code;
          } else {
            lose(c);  // Goodbye, or not a response code: the stream cannot go on
            return completed;
          }
          break;
        }
        case Conn::State::error_code:
          ++pos;
          complete(c, config_.expect == Expect::error || config_.expect == Expect::any, now);
          ++completed;
          c.state = Conn::State::code;
          break;
        case Conn::State::content: {
          const auto chunk = c.decoder.next(data.subspan(pos));
          pos += chunk.consumed;
          if (!chunk.content.empty()) {
            check_content(c, chunk.content);
          }
          if (chunk.end) {
            bool valid = !c.content_bad;
            if (config_.expect == Expect::echo) {
              valid = valid && c.content_offset == config_.size;
            } else if (config_.expect == Expect::empty) {
              valid = valid && c.content_offset == 0;
            } else if (config_.expect == Expect::error) {
              valid = false;
            }
            complete(c, valid, now);
            ++completed;
            c.state = Conn::State::code;
          }
          break;
        }
      }
    }
    return completed;
  }

  void check_content(Conn& c, std::span<const std::uint8_t> content) {
    if (config_.expect == Expect::echo) {
      const std::size_t offset = c.content_offset;
      if (offset + content.size() > config_.size ||
          std::memcmp(c.expected.data() + offset, content.data(), content.size()) != 0) {
        c.content_bad = true;
      }
    }
    c.content_offset += content.size();
  }

  void complete(Conn& c, bool valid, std::uint64_t now) {
    const std::uint64_t sent = c.sent_at[c.expect_seq % config_.pipeline];
    ++c.expect_seq;
    --c.inflight;
    stats_.histogram.record(now - sent);
    ++stats_.completed;
    if (!valid) {
      ++stats_.errors;
    }
  }

  const Config& config_;
  const std::atomic<Phase>& phase_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<std::uint8_t> read_buffer_;
  int epoll_ = -1;
  std::size_t active_ = 0;
  Stats stats_;
#ifdef SERIALBENCH_HAVE_IO_URING
  io_uring ring_{};
  bool uring_ = false;          // the io_uring engine: ring_ is set up
  bool ring_disabled_ = false;  // created with IORING_SETUP_R_DISABLED
  bool draining_ = false;       // the run is over: completions are only counted
  std::size_t ops_ = 0;         // SQEs queued whose completion has not been reaped
  unsigned queued_sends_ = 0;   // sends queued since the last submission
#endif
};

/// Connects one blocking socket, then (if `non_blocking`) makes it non-blocking. Returns -1 with
/// errno set.
int connect_socket(const serialclient::Address& address, bool non_blocking) {
  int fd = -1;
  if (address.is_unix) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (address.path.size() >= sizeof sa.sun_path) {
      errno = ENAMETOOLONG;
      return -1;
    }
    std::memcpy(sa.sun_path, address.path.c_str(), address.path.size() + 1);
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      const int saved = errno;
      if (fd >= 0) {
        ::close(fd);
      }
      errno = saved;
      return -1;
    }
  } else {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* list = nullptr;
    if (::getaddrinfo(address.host.c_str(), address.port.c_str(), &hints, &list) != 0) {
      errno = EHOSTUNREACH;
      return -1;
    }
    int saved = ECONNREFUSED;
    for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
      fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd >= 0 && ::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        break;
      }
      saved = errno;
      if (fd >= 0) {
        ::close(fd);
      }
      fd = -1;
    }
    ::freeaddrinfo(list);
    if (fd < 0) {
      errno = saved;
      return -1;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  if (non_blocking) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return fd;
}

/// The OpenSSL error queue as one line (and emptied).
std::string openssl_errors() {
  std::string text;
  while (const unsigned long code = ::ERR_get_error()) {
    char buffer[256];
    ::ERR_error_string_n(code, buffer, sizeof buffer);
    if (!text.empty()) {
      text += "; ";
    }
    text += buffer;
  }
  return text.empty() ? std::string("unknown TLS error") : text;
}

/// The client TLS context of --tls: TLS 1.2 or later, the server verified against --tls-ca (or
/// the system's CAs), the client certificate of --tls-cert. Null with a message on failure.
SSL_CTX* make_tls_context(const Config& config) {
  SSL_CTX* ctx = ::SSL_CTX_new(::TLS_client_method());
  if (ctx == nullptr) {
    std::fprintf(stderr, "serialbench: TLS: %s\n", openssl_errors().c_str());
    return nullptr;
  }
  ::SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  ::SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  ::SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  const bool ca_ok = config.tls_ca.empty() ? ::SSL_CTX_set_default_verify_paths(ctx) == 1
                                           : ::SSL_CTX_load_verify_locations(
                                                 ctx, config.tls_ca.c_str(), nullptr) == 1;
  const bool cert_ok =
      config.tls_cert.empty() ||
      (::SSL_CTX_use_certificate_chain_file(ctx, config.tls_cert.c_str()) == 1 &&
       ::SSL_CTX_use_PrivateKey_file(ctx, config.tls_key.c_str(), SSL_FILETYPE_PEM) == 1);
  if (!ca_ok || !cert_ok) {
    std::fprintf(stderr, "serialbench: TLS %s: %s\n", ca_ok ? "certificate" : "CA file",
                 openssl_errors().c_str());
    ::SSL_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

/// The TLS handshake over a connected, still blocking socket, bounded by `timeout` per read or
/// write. Returns the SSL object, or null with a message.
SSL* tls_handshake(SSL_CTX* ctx, int fd, const Config& config) {
  SSL* ssl = ::SSL_new(ctx);
  const std::string& name =
      config.tls_server_name.empty() ? config.address.host : config.tls_server_name;
  in6_addr scratch{};
  const bool is_ip = ::inet_pton(AF_INET, name.c_str(), &scratch) == 1 ||
                     ::inet_pton(AF_INET6, name.c_str(), &scratch) == 1;
  X509_VERIFY_PARAM* param = ::SSL_get0_param(ssl);
  if (is_ip) {
    ::X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
  } else {
    ::SSL_set_tlsext_host_name(ssl, name.c_str());
    ::X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
  }
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  ::SSL_set_fd(ssl, fd);
  if (::SSL_connect(ssl) != 1) {
    const long verify = ::SSL_get_verify_result(ssl);
    const std::string reason = verify != X509_V_OK
                                   ? std::string("certificate verify failed (") +
                                         ::X509_verify_cert_error_string(verify) + ")"
                                   : openssl_errors();
    std::fprintf(stderr, "serialbench: TLS handshake with %s failed: %s\n",
                 config.address.to_string().c_str(), reason.c_str());
    ::SSL_free(ssl);
    return nullptr;
  }
  timeval none{0, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
  return ssl;
}

/// Builds connection `id`: its request template, repeated `pipeline` times.
std::unique_ptr<Conn> make_conn(const Config& config, int fd, std::uint64_t id) {
  auto c = std::make_unique<Conn>();
  c->fd = fd;
  c->id = id;
  // Bytes after the stamp vary per connection, so a response routed to the wrong connection
  // is caught as well as a swapped one.
  std::vector<std::uint8_t> content(config.size);
  for (std::size_t i = 0; i < content.size(); ++i) {
    content[i] = static_cast<std::uint8_t>(i * 131 + id * 7 + 1);
  }
  std::vector<std::uint8_t> request(1 + serialserver::wire::encoded_size(content.size()));
  request[0] = config.task;
  serialserver::wire::encode_message(content, std::span(request).subspan(1));
  c->batch.reserve(request.size() * config.pipeline);
  for (std::size_t i = 0; i < config.pipeline; ++i) {
    c->batch.insert(c->batch.end(), request.begin(), request.end());
  }
  c->expected = std::move(content);
  c->sent_at.assign(config.pipeline, 0);
  return c;
}

double to_us(std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

std::string json_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
    }
    out += ch;
  }
  return out;
}

/// The receive buffer of a connection on the io_uring engine: room for the responses to a full
/// pipeline of requests (an echo is as long as its request; other answers may take more reads),
/// at least 16 KiB and at most the epoll engine's 256 KiB.
std::size_t recv_buffer_size(const Conn& c, std::size_t pipeline) {
  const std::size_t want = c.batch.size() + 16 * pipeline;
  const std::size_t rounded = (want + 4095) / 4096 * 4096;
  return std::clamp<std::size_t>(rounded, std::size_t{16} * 1024, kReadBufferSize);
}

int run(Config config) {
  std::signal(SIGPIPE, SIG_IGN);
  const std::size_t thread_count =
      std::max<std::size_t>(1, std::min<std::size_t>(config.threads, config.connections));
  std::atomic<Phase> phase{config.warmup.count() > 0 && config.duration ? Phase::warmup
                                                                        : Phase::measure};
  std::vector<std::unique_ptr<Worker>> workers;
  for (std::size_t t = 0; t < thread_count; ++t) {
    workers.push_back(std::make_unique<Worker>(config, phase));
  }
  if (config.tls) {
    config.engine = Engine::epoll;  // TLS runs on the epoll engine (io_uring is refused earlier)
  }
#ifdef SERIALBENCH_HAVE_IO_URING
  if (config.engine != Engine::epoll) {
    for (std::size_t t = 0; t < thread_count; ++t) {
      // Connection i goes to worker i % thread_count.
      const std::size_t conns = (config.connections + thread_count - 1 - t) / thread_count;
      const int r = workers[t]->setup_ring(conns);
      if (r == 0) {
        continue;
      }
      if (config.engine == Engine::io_uring) {
        std::fprintf(stderr, "serialbench: --engine io_uring: cannot set up an io_uring: %s\n",
                     std::strerror(-r));
        return kExitUsage;
      }
      std::fprintf(stderr,
                   "serialbench: io_uring is not available (cannot set up a ring: %s); using "
                   "the epoll engine\n",
                   std::strerror(-r));
      config.engine = Engine::epoll;
      workers.clear();  // and their rings
      for (std::size_t w = 0; w < thread_count; ++w) {
        workers.push_back(std::make_unique<Worker>(config, phase));
      }
      break;
    }
    if (config.engine == Engine::automatic) {
      config.engine = Engine::io_uring;
    }
  }
#else
  if (config.engine == Engine::automatic) {
    std::fprintf(stderr,
                 "serialbench: this build has no io_uring engine (liburing was not found when "
                 "it was configured); using the epoll engine\n");
    config.engine = Engine::epoll;
  }
#endif
  const bool uring = config.engine == Engine::io_uring;
  std::vector<std::size_t> per_worker(thread_count, 0);
  std::unique_ptr<SSL_CTX, decltype(&::SSL_CTX_free)> tls_context(nullptr, &::SSL_CTX_free);
  if (config.tls) {
    tls_context.reset(make_tls_context(config));
    if (!tls_context) {
      return kExitConnect;
    }
  }
  for (std::size_t i = 0; i < config.connections; ++i) {
    // The io_uring engine keeps its sockets blocking: io_uring tries each operation without
    // blocking and, if it would block, waits for readiness itself.
    const int fd = connect_socket(config.address, !config.tls && !uring);
    if (fd < 0) {
      std::fprintf(stderr, "serialbench: cannot connect to %s: %s\n",
                   config.address.to_string().c_str(), std::strerror(errno));
      return kExitConnect;
    }
    SSL* ssl = nullptr;
    if (config.tls) {
      ssl = tls_handshake(tls_context.get(), fd, config);
      if (ssl == nullptr) {
        ::close(fd);
        return kExitConnect;
      }
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    auto conn = make_conn(config, fd, i);
    conn->ssl = ssl;
    if (uring) {
      conn->recv_size = recv_buffer_size(*conn, config.pipeline);
      conn->recv_buffer = std::make_unique_for_overwrite<std::uint8_t[]>(conn->recv_size);
    }
    if (config.requests) {
      conn->quota = *config.requests / config.connections +
                    (i < *config.requests % config.connections ? 1 : 0);
      if (conn->quota == 0) {
        if (ssl != nullptr) {
          ::SSL_free(ssl);
        }
        ::close(fd);
        continue;
      }
    }
    workers[i % thread_count]->add(std::move(conn));
    ++per_worker[i % thread_count];
  }
  for (std::size_t t = 0; t < thread_count; ++t) {
    workers[t]->set_active(per_worker[t]);
  }

  const std::uint64_t start = now_ns();
  std::vector<std::thread> threads;
  threads.reserve(workers.size());
  try {
    for (auto& w : workers) {
      threads.emplace_back([&w] { w->run(); });
    }
  } catch (...) {
    // A thread that cannot start (std::system_error: the process is out of threads) ends the
    // run like any other failure, after the threads already started have been stopped and
    // joined: destroying a joinable std::thread would call std::terminate.
    phase.store(Phase::stop, std::memory_order_release);
    for (auto& t : threads) {
      t.join();
    }
    throw;
  }
  std::uint64_t measure_start = start;
  std::uint64_t measure_end = 0;
  std::uint64_t cpu_start = process_cpu_ns();
  bool warm = phase.load() == Phase::warmup;
  const auto live = [&](std::uint64_t& completed, std::uint64_t& errors) {
    completed = errors = 0;
    for (auto& w : workers) {
      completed += w->stats().live_completed.load(std::memory_order_relaxed);
      errors += w->stats().live_errors.load(std::memory_order_relaxed);
    }
  };
  std::uint64_t last_completed = 0;
  std::uint64_t last_tick = start;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const std::uint64_t now = now_ns();
    if (warm && now - start >= static_cast<std::uint64_t>(config.warmup.count())) {
      phase.store(Phase::measure, std::memory_order_release);
      measure_start = now;
      cpu_start = process_cpu_ns();
      warm = false;
      last_completed = 0;
      last_tick = now;
    }
    if (config.duration && !warm &&
        now - measure_start >= static_cast<std::uint64_t>(config.duration->count())) {
      phase.store(Phase::stop, std::memory_order_release);
      measure_end = now;
      break;
    }
    bool all_done = config.requests.has_value();
    for (auto& w : workers) {
      all_done = all_done && w->stats().done.load(std::memory_order_acquire);
    }
    if (config.progress && now - last_tick >= 1000000000ULL) {
      std::uint64_t completed = 0;
      std::uint64_t errors = 0;
      live(completed, errors);
      const double rate = static_cast<double>(completed - last_completed) * 1e9 /
                          static_cast<double>(now - last_tick);
      std::fprintf(
          stderr, "\r\033[K%s%.1fs  %.0f requests/s  %" PRIu64 " requests  %" PRIu64 " errors",
          warm ? "warm-up " : "", static_cast<double>(now - start) / 1e9, rate, completed, errors);
      last_completed = completed;
      last_tick = now;
    }
    if (all_done) {
      break;
    }
  }
  for (auto& t : threads) {
    t.join();
  }
  const std::uint64_t cpu_used = process_cpu_ns() - cpu_start;
  if (config.progress) {
    std::fputs("\r\033[K", stderr);
  }
  if (!config.duration) {
    measure_end = 0;
    for (auto& w : workers) {
      measure_end = std::max(measure_end, w->stats().end_ns);
    }
  }
  Histogram histogram;
  std::uint64_t completed = 0;
  std::uint64_t errors = 0;
  std::uint64_t lost = 0;
  for (auto& w : workers) {
    histogram.merge(w->stats().histogram);
    completed += w->stats().completed;
    errors += w->stats().errors;
    lost += w->stats().lost;
  }
  const double seconds = static_cast<double>(measure_end - measure_start) / 1e9;
  const double rps = seconds > 0 ? static_cast<double>(completed) / seconds : 0.0;
  const double p50 = to_us(histogram.quantile(0.50));
  const double p90 = to_us(histogram.quantile(0.90));
  const double p99 = to_us(histogram.quantile(0.99));
  const double p999 = to_us(histogram.quantile(0.999));
  const double max = to_us(histogram.max());
  const double cpu_percent =
      seconds > 0 ? static_cast<double>(cpu_used) / 1e9 / seconds * 100.0 : 0.0;
  if (config.json) {
    std::printf(
        "{\"address\":\"%s\",\"task\":%u,\"size\":%zu,\"connections\":%zu,\"pipeline\":%zu,"
        "\"threads\":%zu,\"seconds\":%.3f,\"requests\":%" PRIu64 ",\"errors\":%" PRIu64
        ",\"connections_lost\":%" PRIu64
        ",\"requests_per_second\":%.1f,\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
        "\"p99_9\":%.1f,\"max\":%.1f},\"cpu_percent\":%.1f,\"engine\":\"%s\"}\n",
        json_escape(config.address.to_string()).c_str(), static_cast<unsigned>(config.task),
        config.size, config.connections, config.pipeline, thread_count, seconds, completed, errors,
        lost, rps, p50, p90, p99, p999, max, cpu_percent, engine_name(config.engine));
  } else {
    std::printf(
        "serialbench %s: task %u, %zu-byte requests, %zu connections, pipeline %zu, "
        "%zu thread%s, %s engine\n",
        config.address.to_string().c_str(), static_cast<unsigned>(config.task), config.size,
        config.connections, config.pipeline, thread_count, thread_count == 1 ? "" : "s",
        engine_name(config.engine));
    std::printf("  requests      %" PRIu64 " in %.3f s\n", completed, seconds);
    std::printf("  throughput    %.0f requests/s\n", rps);
    std::printf("  errors        %" PRIu64 " (connections lost: %" PRIu64 ")\n", errors, lost);
    std::printf("  own CPU       %.0f %% of one core\n", cpu_percent);
    std::printf("  latency (us)  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", p50, p90,
                p99, p999, max);
  }
  return errors == 0 && completed > 0 ? kExitOk : kExitErrors;
}

std::chrono::nanoseconds duration_arg(const std::string& text, const char* flag) {
  try {
    return serialserver::parse_duration(text);
  } catch (const std::invalid_argument& e) {
    throw CLI::ValidationError(flag, e.what());
  }
}

}  // namespace
}  // namespace serialbench

namespace {

int run_main(int argc, char** argv) {
  using serialbench::Config;
  using serialbench::Expect;
  CLI::App app{
      "serialbench: a load generator for serial-protocol servers.\n"
      "Every response is validated; latencies are measured per request."};
  app.footer(R"(ADDR is host:port, [v6]:port or a Unix socket path. Durations: 500ms, 10s, 1m.
Engines: io_uring (one io_uring_submit_and_wait per loop turn carries every connection's sends
and recvs) and epoll (epoll_wait, then recv and send per ready socket). auto picks io_uring when
a ring can be set up, else epoll with a line on stderr saying why. --tls always runs on epoll.
Exit status: 0 no errors, 1 errors (or nothing completed), 3 cannot connect, 64 usage (also
--engine io_uring where this build or the kernel has no io_uring).

Examples:
  serialbench 127.0.0.1:7070 --connections 50 --duration 10s            ping (task 2)
  serialbench 127.0.0.1:7070 -c 50 -P 16 --task 1 --size 4096 -n 1000000 echo, pipelined
  serialbench /tmp/app.sock -c 8 --threads 2 --duration 5s --json
  serialbench localhost:7070 --tls --tls-ca ca.pem -c 50 --duration 10s  over TLS)");
  std::string address;
  std::string duration;
  std::string warmup = "0s";
  std::string expect;
  std::uint64_t requests = 0;
  unsigned task = 2;
  Config config;
  app.add_option("ADDR", address, "server address")->required();
  app.add_option("-c,--connections", config.connections, "connections")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}));
  app.add_option("-P,--pipeline", config.pipeline, "requests in flight per connection")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{65536}));
  app.add_option("-s,--size", config.size, "request content bytes")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{64} << 20));
  app.add_option("-t,--task", task, "task code, 0..249 (1 echo, 2 ping on the demo server)")
      ->capture_default_str()
      ->check(CLI::Range(0U, 249U));
  auto* d = app.add_option("-d,--duration", duration, "measure for this long");
  auto* n = app.add_option("-n,--requests", requests, "send exactly this many requests");
  d->excludes(n);
  app.add_option("-w,--warmup", warmup, "unmeasured warm-up before --duration")
      ->capture_default_str();
  app.add_option("-x,--expect", expect,
                 "expected answer: echo, empty, error or any (default: echo for task 1, empty "
                 "for task 2, any otherwise)")
      ->check(CLI::IsMember({"echo", "empty", "error", "any"}));
  app.add_option("-T,--threads", config.threads, "event-loop threads")
      ->capture_default_str()
      ->check(CLI::Range(1U, 256U));
  std::string spin = "0s";
  app.add_option("--spin", spin,
                 "keep polling for this long after the last response before sleeping in the "
                 "kernel (0s: sleep at once); a busy core, but the server is spared waking "
                 "this generator")
      ->capture_default_str();
  std::string engine = "auto";
  app.add_option("-e,--engine", engine,
                 "I/O engine: auto, epoll or io_uring (auto: io_uring where available; epoll "
                 "with --tls)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "epoll", "io_uring"}));
  app.add_flag("--json", config.json, "machine-readable summary on stdout");
  bool quiet = false;
  app.add_flag("-q,--quiet", quiet, "no progress line");
  auto* tls_flag = app.add_flag("--tls", config.tls,
                                "connect with TLS (1.2 or later); the server's certificate is "
                                "verified and must carry the server's name");
  auto* tls_ca = app.add_option("--tls-ca", config.tls_ca,
                                "CA certificates (PEM) for the server's certificate; default: "
                                "the system's CAs");
  auto* tls_cert = app.add_option("--tls-cert", config.tls_cert,
                                  "client certificate (PEM), for servers that require one");
  auto* tls_key =
      app.add_option("--tls-key", config.tls_key, "the private key of --tls-cert (PEM)");
  auto* tls_name = app.add_option("--tls-server-name", config.tls_server_name,
                                  "the name to verify and send as SNI; default: the host of ADDR");
  for (auto* option : {tls_ca, tls_cert, tls_key, tls_name}) {
    option->needs(tls_flag);
  }
  tls_cert->needs(tls_key);
  tls_key->needs(tls_cert);
  try {
    app.parse(argc, argv);
    config.address = serialclient::parse_address(address);
    if (config.tls && config.address.is_unix) {
      throw CLI::ValidationError("--tls", "TLS needs a TCP address, not a Unix socket");
    }
    if (engine == "io_uring") {
#ifndef SERIALBENCH_HAVE_IO_URING
      throw CLI::ValidationError("--engine",
                                 "io_uring: this serialbench was built without liburing (the "
                                 "epoll engine only)");
#endif
      if (config.tls) {
        throw CLI::ValidationError("--engine", "io_uring does not do TLS; --tls runs on epoll");
      }
      config.engine = serialbench::Engine::io_uring;
    } else if (engine == "epoll") {
      config.engine = serialbench::Engine::epoll;
    }
    if (!duration.empty()) {
      config.duration = serialbench::duration_arg(duration, "--duration");
    } else if (n->count() != 0) {
      if (requests == 0) {
        throw CLI::ValidationError("--requests", "must be at least 1");
      }
      config.requests = requests;
    } else {
      config.duration = std::chrono::seconds(10);
    }
    config.warmup = serialbench::duration_arg(warmup, "--warmup");
    config.spin = serialbench::duration_arg(spin, "--spin");
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);
    return status == 0 ? 0 : serialbench::kExitUsage;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "serialbench: %s\n", e.what());
    return serialbench::kExitUsage;
  }
  config.task = static_cast<serialserver::TaskCode>(task);
  if (expect == "echo") {
    config.expect = Expect::echo;
  } else if (expect == "empty") {
    config.expect = Expect::empty;
  } else if (expect == "error") {
    config.expect = Expect::error;
  } else if (expect == "any") {
    config.expect = Expect::any;
  } else {
    config.expect = task == 1 ? Expect::echo : task == 2 ? Expect::empty : Expect::any;
  }
  config.progress = !quiet && !config.json && ::isatty(STDERR_FILENO) == 1;
  return serialbench::run(config);
}

}  // namespace

int main(int argc, char** argv) {
  // Any other exception (such as std::bad_alloc for connections too large to build) ends the run
  // with nothing measured: status 1.
  return serialserver::apps::guarded_main("serialbench", serialbench::kExitErrors, run_main, argc,
                                          argv);
}
