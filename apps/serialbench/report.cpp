#include "report.hpp"

#include <cinttypes>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace serialbench {
namespace {

double to_us(std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

/// A value rounded to `decimals` places, so that the JSON says 12.3 rather than 12.299999.
double rounded(double value, int decimals) {
  double scale = 1;
  for (int i = 0; i < decimals; ++i) {
    scale *= 10;
  }
  return static_cast<double>(static_cast<std::int64_t>(value * scale + (value < 0 ? -0.5 : 0.5))) /
         scale;
}

/// The summary as one JSON object; its field order is the order of the text summary.
nlohmann::ordered_json to_json(const Config& config, const Summary& summary) {
  const Histogram& histogram = summary.histogram;
  nlohmann::ordered_json out;
  out["address"] = config.address.to_string();
  out["task"] = config.task;
  out["size"] = config.size;
  out["connections"] = config.connections;
  out["pipeline"] = config.pipeline;
  out["threads"] = summary.threads;
  out["seconds"] = rounded(summary.seconds, 3);
  out["requests"] = summary.completed;
  out["errors"] = summary.errors;
  out["connections_lost"] = summary.lost;
  out["requests_per_second"] = rounded(summary.requests_per_second(), 1);
  nlohmann::ordered_json latency;
  latency["p50"] = rounded(to_us(histogram.quantile(0.50)), 1);
  latency["p90"] = rounded(to_us(histogram.quantile(0.90)), 1);
  latency["p99"] = rounded(to_us(histogram.quantile(0.99)), 1);
  latency["p99_9"] = rounded(to_us(histogram.quantile(0.999)), 1);
  latency["max"] = rounded(to_us(histogram.max()), 1);
  out["latency_us"] = std::move(latency);
  out["cpu_percent"] = rounded(summary.cpu_percent(), 1);
  out["engine"] = engine_name(config.engine);
  return out;
}

/// One CSV field: quoted (with doubled quotes) when it holds a comma, a quote or a line break.
std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) {
    return text;
  }
  std::string out = "\"";
  for (const char ch : text) {
    if (ch == '"') {
      out += '"';
    }
    out += ch;
  }
  out += '"';
  return out;
}

/// The JSON summary flattened into "field,value" rows: nested names joined with '.'.
void flatten(const nlohmann::ordered_json& value, const std::string& name,
             std::vector<std::pair<std::string, std::string>>& rows) {
  if (value.is_object()) {
    for (const auto& [key, item] : value.items()) {
      flatten(item, name.empty() ? key : name + "." + key, rows);
    }
  } else if (value.is_array()) {
    for (std::size_t i = 0; i < value.size(); ++i) {
      flatten(value[i], name + "." + std::to_string(i), rows);
    }
  } else if (value.is_string()) {
    rows.emplace_back(name, value.get<std::string>());
  } else {
    rows.emplace_back(name, value.dump());
  }
}

}  // namespace

void print_summary(const Config& config, const Summary& summary) {
  if (config.format == OutputFormat::json) {
    const std::string text =
        to_json(config, summary).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::printf("%s\n", text.c_str());
    return;
  }
  if (config.format == OutputFormat::csv) {
    std::vector<std::pair<std::string, std::string>> rows;
    flatten(to_json(config, summary), "", rows);
    std::printf("field,value\n");
    for (const auto& [name, value] : rows) {
      std::printf("%s,%s\n", csv_field(name).c_str(), csv_field(value).c_str());
    }
    return;
  }
  const Histogram& histogram = summary.histogram;
  const std::size_t thread_count = summary.threads;
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
  std::printf("  latency (us)  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
              to_us(histogram.quantile(0.50)), to_us(histogram.quantile(0.90)),
              to_us(histogram.quantile(0.99)), to_us(histogram.quantile(0.999)),
              to_us(histogram.max()));
}

}  // namespace serialbench
