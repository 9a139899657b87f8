#include "bench.hpp"

#include "clock.hpp"
#include "connection.hpp"
#include "epoll_engine.hpp"
#include "report.hpp"
#include "tls.hpp"
#include "worker.hpp"
#ifdef SERIALBENCH_HAVE_IO_URING
#include "uring_engine.hpp"
#endif

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

namespace serialbench {
namespace {

/// Set by the first SIGINT: the run ends and its summary is printed. The handler is reset by
/// then, so a second Ctrl-C ends the process at once.
volatile std::sig_atomic_t interrupted = 0;

extern "C" void on_interrupt(int /*signal*/) { interrupted = 1; }

/// Sends SIGINT to on_interrupt (once), and keeps it away from the threads started while the
/// returned mask is in place: the main thread alone watches the flag.
void catch_interrupt() {
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
}

/// A worker for the engine of `config`: io_uring only once resolved to it (or while probing).
std::unique_ptr<Worker> make_worker(const Config& config, const std::atomic<Phase>& phase) {
#ifdef SERIALBENCH_HAVE_IO_URING
  if (config.engine != Engine::epoll) {
    return std::make_unique<UringWorker>(config, phase);
  }
#endif
  return std::make_unique<EpollWorker>(config, phase);
}

}  // namespace

int run(Config config) {
  std::signal(SIGPIPE, SIG_IGN);
  const std::size_t thread_count =
      std::max<std::size_t>(1, std::min<std::size_t>(config.threads, config.connections));
  std::atomic<Phase> phase{config.warmup.count() > 0 && config.duration ? Phase::warmup
                                                                        : Phase::measure};
  if (config.tls) {
    config.engine = Engine::epoll;  // TLS runs on the epoll engine (io_uring is refused earlier)
  }
  std::vector<std::unique_ptr<Worker>> workers;
  for (std::size_t t = 0; t < thread_count; ++t) {
    workers.push_back(make_worker(config, phase));
  }
#ifdef SERIALBENCH_HAVE_IO_URING
  if (config.engine != Engine::epoll) {
    for (std::size_t t = 0; t < thread_count; ++t) {
      // Connection i goes to worker i % thread_count.
      const std::size_t conns = (config.connections + thread_count - 1 - t) / thread_count;
      const int r = dynamic_cast<UringWorker&>(*workers[t]).setup_ring(conns);
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
        workers.push_back(make_worker(config, phase));
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
    for (auto& w : workers) {
      w->set_tls_context(tls_context.get());
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

  catch_interrupt();
  sigset_t interrupt_only;
  sigemptyset(&interrupt_only);
  sigaddset(&interrupt_only, SIGINT);
  ::pthread_sigmask(SIG_BLOCK, &interrupt_only, nullptr);  // inherited by the workers
  const std::uint64_t start = now_ns();
  std::vector<std::thread> threads;
  threads.reserve(workers.size());
  try {
    for (auto& w : workers) {
      threads.emplace_back([&w] { w->run(); });
    }
    ::pthread_sigmask(SIG_UNBLOCK, &interrupt_only, nullptr);
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
    if (interrupted != 0) {
      phase.store(Phase::stop, std::memory_order_release);
      measure_end = now;
      break;
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
  if (!config.duration && interrupted == 0) {
    measure_end = 0;
    for (auto& w : workers) {
      measure_end = std::max(measure_end, w->stats().end_ns);
    }
  }
  Summary summary;
  for (auto& w : workers) {
    summary.add(w->stats());
  }
  summary.seconds = static_cast<double>(measure_end - measure_start) / 1e9;
  summary.cpu_ns = cpu_used;
  summary.threads = thread_count;
  summary.interrupted = interrupted != 0;
  print_summary(config, summary);
  return summary.errors() == 0 && summary.completed > 0 ? kExitOk : kExitErrors;
}

}  // namespace serialbench
