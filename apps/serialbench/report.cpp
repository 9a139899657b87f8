#include "report.hpp"

#include <cinttypes>
#include <cstdio>
#include <string>

namespace serialbench {
namespace {

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

}  // namespace

void print_summary(const Config& config, const Summary& summary) {
  const Histogram& histogram = summary.histogram;
  const double p50 = to_us(histogram.quantile(0.50));
  const double p90 = to_us(histogram.quantile(0.90));
  const double p99 = to_us(histogram.quantile(0.99));
  const double p999 = to_us(histogram.quantile(0.999));
  const double max = to_us(histogram.max());
  const std::size_t thread_count = summary.threads;
  if (config.json) {
    std::printf(
        "{\"address\":\"%s\",\"task\":%u,\"size\":%zu,\"connections\":%zu,\"pipeline\":%zu,"
        "\"threads\":%zu,\"seconds\":%.3f,\"requests\":%" PRIu64 ",\"errors\":%" PRIu64
        ",\"connections_lost\":%" PRIu64
        ",\"requests_per_second\":%.1f,\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
        "\"p99_9\":%.1f,\"max\":%.1f},\"cpu_percent\":%.1f,\"engine\":\"%s\"}\n",
        json_escape(config.address.to_string()).c_str(), static_cast<unsigned>(config.task),
        config.size, config.connections, config.pipeline, thread_count, summary.seconds,
        summary.completed, summary.errors, summary.lost, summary.requests_per_second(), p50, p90,
        p99, p999, max, summary.cpu_percent(), engine_name(config.engine));
    return;
  }
  std::printf(
      "serialbench %s: task %u, %zu-byte requests, %zu connections, pipeline %zu, "
      "%zu thread%s, %s engine\n",
      config.address.to_string().c_str(), static_cast<unsigned>(config.task), config.size,
      config.connections, config.pipeline, thread_count, thread_count == 1 ? "" : "s",
      engine_name(config.engine));
  std::printf("  requests      %" PRIu64 " in %.3f s\n", summary.completed, summary.seconds);
  std::printf("  throughput    %.0f requests/s\n", summary.requests_per_second());
  std::printf("  errors        %" PRIu64 " (connections lost: %" PRIu64 ")\n", summary.errors,
              summary.lost);
  std::printf("  own CPU       %.0f %% of one core\n", summary.cpu_percent());
  std::printf("  latency (us)  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", p50, p90, p99,
              p999, max);
}

}  // namespace serialbench
