// tutorial-server: the server that docs/tutorial.md builds step by step.
//
// Tasks:
//   1 upper  answers the request's text in upper case
//   2 stats  the request holds uint32 numbers; answers their count (uint32), sum (uint64),
//            minimum and maximum (uint32 each). Error 1: not a whole number of uint32 values;
//            Error 2: no numbers
//   3 delay  the request holds a uint32 number of milliseconds (at most 60000); answers "done"
//            after that long. Error 1: not one uint32
// Numbers are big-endian (the byte order of a connection without a handshake).
//
// Usage: tutorial-server [ADDRESS]   ("host:port", "[v6]:port" or a Unix socket path;
//                                     default 127.0.0.1:7070). SIGINT or SIGTERM stops it.

#include <serialserver/serialserver.hpp>

#include <pthread.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <exception>
#include <iostream>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace ss = serialserver;

namespace {

constexpr ss::TaskCode kUpper = 1;
constexpr ss::TaskCode kStats = 2;
constexpr ss::TaskCode kDelay = 3;

constexpr ss::ErrorCode kBadRequest = 1;  // the request does not have the expected shape
constexpr ss::ErrorCode kNoNumbers = 2;   // stats of nothing

// Task 1, a coroutine task: it runs on an I/O thread, so it must not block.
asio::awaitable<ss::Response> upper(ss::TaskContext& ctx) {
  std::vector<std::uint8_t> text = co_await ctx.request().async_read_all();
  for (std::uint8_t& c : text) {
    c = static_cast<std::uint8_t>(std::toupper(c));
  }
  co_return ss::Response(std::move(text));
}

// Task 2, a blocking task: it runs on the server's worker pool, where blocking is allowed.
ss::Response stats(ss::TaskContext& ctx) {
  const std::vector<std::uint8_t> request = ctx.request().read_all();
  if (request.size() % 4 != 0) {
    throw ss::TaskError(kBadRequest, "stats: not a whole number of uint32 values");
  }
  if (request.empty()) {
    throw ss::TaskError(kNoNumbers, "stats: no numbers");
  }
  ss::BinaryReader in(request, ctx.byte_order());
  std::uint32_t count = 0;
  std::uint64_t sum = 0;
  std::uint32_t min = std::numeric_limits<std::uint32_t>::max();
  std::uint32_t max = 0;
  while (!in.at_end()) {
    const std::uint32_t n = in.read_u32();
    ++count;
    sum += n;
    min = std::min(min, n);
    max = std::max(max, n);
  }
  ctx.log().debug("stats of {} numbers from {}", count, ctx.client().remote_address());
  ss::BinaryWriter out(ctx.byte_order());
  out.write_u32(count);
  out.write_u64(sum);
  out.write_u32(min);
  out.write_u32(max);
  return ss::Response(out.take());
}

// Task 3: waits without blocking a thread. When the task is cancelled (shutdown past the grace
// period, the connection closing), the pending wait ends with an error and the connection is
// dropped without a response.
asio::awaitable<ss::Response> delay(ss::TaskContext& ctx) {
  const std::vector<std::uint8_t> request = co_await ctx.request().async_read_all();
  if (request.size() != 4) {
    throw ss::TaskError(kBadRequest, "delay: the request is not one uint32");
  }
  const std::uint32_t ms = ss::BinaryReader(request, ctx.byte_order()).read_u32();
  if (ms > 60000) {
    throw ss::TaskError(kBadRequest, "delay: more than 60000 ms");
  }
  asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
  co_await timer.async_wait(asio::use_awaitable);
  co_return ss::Response::copy_of(std::string_view("done"));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string address = argc > 1 ? argv[1] : "127.0.0.1:7070";

  // SIGINT and SIGTERM are taken by this thread with sigwait: block them before any thread
  // starts, so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Logging: the library and the tasks write through this spdlog logger.
  auto console = spdlog::stderr_color_mt("tutorial");
  console->set_level(spdlog::level::info);

  ss::ServerOptions options;
  options.timeout.wait = std::chrono::minutes(5);    // an idle connection is closed after 5 min
  options.timeout.read = std::chrono::seconds(5);    // rolling, while a request arrives
  options.timeout.write = std::chrono::seconds(5);   // rolling, while a response leaves
  options.max_request_bytes = 1 << 20;               // larger requests: Error 254
  options.max_concurrent_tasks = 64;                 // more at once: Error 253 (busy), not run
  options.task_deadline = std::chrono::seconds(10);  // a task past it is cancelled: Error 252
  options.shutdown_grace = std::chrono::seconds(3);
  options.logger = std::make_shared<ss::SpdlogLogger>(console);

  ss::Server server(options);
  server.register_task(kUpper, upper, {.name = "upper"});
  server.register_task(kStats, stats, {.name = "stats"});
  server.register_task(kDelay, delay, {.name = "delay"});

  ss::ListenerOptions listener_options;
  listener_options.address = address;
  ss::Listener listener(server, listener_options);
  try {
    listener.start();
  } catch (const std::exception& e) {
    std::cerr << "tutorial-server: cannot listen on " << address << ": " << e.what() << "\n";
    return 1;
  }

  // Graceful shutdown: stop accepting, let running tasks finish for up to the grace period,
  // answer Goodbye to new tasks, then close every connection.
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  server.log()->info("signal {}: shutting down", signal_number);
  listener.shutdown(options.shutdown_grace);
  listener.wait();
  server.log()->info("stopped");
  return 0;
}
