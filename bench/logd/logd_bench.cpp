// logd_bench: acknowledged messages per second against a running serialserver-logd.
//
//   logd_bench [--addr 127.0.0.1:7070] [--connections 50] [--batch 100] [--seconds 10]
//              [--text-bytes 60] [--log bench] [--token-file F]
//              [--followers 0] [--follow-log NAME]
//
// Each connection sends batches (task 2) back to back and counts a batch once its OK arrives,
// i.e. once it is committed. Bounded: it stops after --seconds.
//
// --followers N adds N more connections that follow --follow-log (default: the --log name with
// "-followed" appended, a log nobody writes) with tails that wait up to a second for new
// records, as `serialserver-log tail LOG --follow` does: the appends' latency beside waiting
// followers. --follow-log set to --log makes every commit wake them.

#include "logd_client.hpp"
#include "logd_protocol.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string address = "127.0.0.1:7070";
  int connections = 50;
  int batch = 100;
  double seconds = 10;
  std::size_t text_bytes = 60;
  std::string log = "bench";
  std::string token_file;
  int followers = 0;
  std::string follow_log;
};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: logd_bench [--addr A] [--connections N] [--batch N] [--seconds S] "
               "[--text-bytes N] [--log NAME] [--token-file F] [--followers N] "
               "[--follow-log NAME]\n");
  std::exit(64);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      usage();
    }
    const std::string value = argv[++i];
    if (flag == "--addr") {
      o.address = value;
    } else if (flag == "--connections") {
      o.connections = std::stoi(value);
    } else if (flag == "--batch") {
      o.batch = std::stoi(value);
    } else if (flag == "--seconds") {
      o.seconds = std::stod(value);
    } else if (flag == "--text-bytes") {
      o.text_bytes = std::stoul(value);
    } else if (flag == "--log") {
      o.log = value;
    } else if (flag == "--token-file") {
      o.token_file = value;
    } else if (flag == "--followers") {
      o.followers = std::stoi(value);
    } else if (flag == "--follow-log") {
      o.follow_log = value;
    } else {
      usage();
    }
  }
  if (o.connections < 1 || o.batch < 1 || o.seconds <= 0 || o.followers < 0) {
    usage();
  }
  if (o.follow_log.empty()) {
    o.follow_log = o.log + "-followed";
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  logd::ClientOptions client_options;
  client_options.address = o.address;
  client_options.timeout = std::chrono::milliseconds(30000);
  if (!o.token_file.empty()) {
    client_options.token = logd::read_token_file(o.token_file);
  }

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> acked{0};
  std::atomic<int> failures{0};
  std::mutex latencies_mutex;
  std::vector<double> latencies_ms;
  std::atomic<std::uint64_t> followed{0};
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(o.connections) + static_cast<std::size_t>(o.followers));
  for (int f = 0; f < o.followers; ++f) {
    threads.emplace_back([&, f] {
      try {
        logd::Client client(client_options);
        logd::TailQuery q;
        q.log = o.follow_log;
        q.after_id = logd::kTailLast;  // first the last record: the cursor to follow from
        q.limit = 1;
        q.wait_ms = 1000;
        bool first = true;
        while (!stop.load(std::memory_order_relaxed)) {
          const auto records = client.tail(q);
          if (first) {
            q.after_id = records.empty() ? 0 : records.back().id;
            q.limit = 1000;
            first = false;
          } else if (!records.empty()) {
            q.after_id = records.back().id;
            followed.fetch_add(records.size(), std::memory_order_relaxed);
          }
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "follower %d: %s\n", f, e.what());
        ++failures;
      }
    });
  }
  if (o.followers > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the followers are waiting
  }
  const auto start = std::chrono::steady_clock::now();
  for (int c = 0; c < o.connections; ++c) {
    threads.emplace_back([&, c] {
      std::vector<double> mine;
      try {
        logd::Client client(client_options);
        std::vector<logd::Message> batch(static_cast<std::size_t>(o.batch));
        for (auto& m : batch) {
          m.log = o.log;
          m.text.assign(o.text_bytes, 'x');
          m.fields = {{"conn", std::to_string(c)}};
        }
        while (!stop.load(std::memory_order_relaxed)) {
          const auto t0 = std::chrono::steady_clock::now();
          client.append_batch(batch);
          const auto t1 = std::chrono::steady_clock::now();
          acked.fetch_add(batch.size(), std::memory_order_relaxed);
          mine.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "connection %d: %s\n", c, e.what());
        ++failures;
      }
      std::lock_guard lock(latencies_mutex);
      latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  stop = true;
  for (auto& t : threads) {
    t.join();
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto percentile = [&](double p) {
    if (latencies_ms.empty()) {
      return 0.0;
    }
    const auto i = static_cast<std::size_t>(p * static_cast<double>(latencies_ms.size() - 1));
    return latencies_ms[i];
  };
  std::printf(
      "connections=%d batch=%d text_bytes=%zu seconds=%.2f acked_messages=%llu "
      "messages_per_second=%.0f batch_latency_ms_p50=%.2f p99=%.2f followers=%d "
      "followed_records=%llu failures=%d\n",
      o.connections, o.batch, o.text_bytes, elapsed, static_cast<unsigned long long>(acked.load()),
      static_cast<double>(acked.load()) / elapsed, percentile(0.5), percentile(0.99), o.followers,
      static_cast<unsigned long long>(followed.load()), failures.load());
  return failures.load() == 0 ? 0 : 1;
}
