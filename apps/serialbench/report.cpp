#include "report.hpp"

#include "common/program.hpp"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace serialbench {
namespace {

using Json = nlohmann::ordered_json;

double to_us(double ns) { return ns / 1000.0; }

/// A value rounded to `decimals` places, so that the JSON says 12.3 rather than 12.299999.
double rounded(double value, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(value * scale) / scale;
}

/// One bar of the latency histogram: the values up to `mark_ns` (above the mark before it).
struct Bar {
  double mark_ns = 0;
  std::uint64_t count = 0;
};

/// The latency histogram in ghz's manner: ten equal steps from the fastest to the slowest, plus
/// the fastest itself, each with the number of requests that fall in it.
std::vector<Bar> histogram_bars(const Histogram& histogram) {
  constexpr int kSteps = 10;
  if (histogram.count() == 0) {
    return {};
  }
  const auto fastest = static_cast<double>(histogram.min());
  const auto slowest = static_cast<double>(histogram.max());
  const double step = (slowest - fastest) / kSteps;
  std::vector<Bar> bars(kSteps + 1);
  for (int i = 0; i < kSteps; ++i) {
    bars[static_cast<std::size_t>(i)].mark_ns = fastest + step * i;
  }
  bars[kSteps].mark_ns = slowest;
  std::size_t bar = 0;
  bool fastest_bucket = true;
  histogram.for_each_bucket([&](std::uint64_t value, std::uint64_t count) {
    // The bucket that holds the fastest is within 1.6 % of it: it is the first bar, as in ghz.
    const double at = fastest_bucket ? fastest : static_cast<double>(value);
    fastest_bucket = false;
    while (bar < bars.size() - 1 && at > bars[bar].mark_ns) {
      ++bar;
    }
    bars[bar].count += count;
  });
  return bars;
}

/// What went wrong, as "error 3: 100", "wrong OK answers: 2", "goodbye: 1", "connections lost:
/// 1", in that order; empty when nothing did.
std::vector<std::pair<std::string, std::uint64_t>> error_reasons(const Answers& answers) {
  std::vector<std::pair<std::string, std::uint64_t>> reasons;
  for (std::size_t code = 0; code < answers.wrong_error_by_code.size(); ++code) {
    if (answers.wrong_error_by_code[code] != 0) {
      reasons.emplace_back(
          serialserver::apps::describe_error_answer(static_cast<serialserver::ErrorCode>(code)),
          answers.wrong_error_by_code[code]);
    }
  }
  if (answers.wrong_ok != 0) {
    reasons.emplace_back("wrong OK answers", answers.wrong_ok);
  }
  if (answers.goodbye != 0) {
    reasons.emplace_back("goodbye", answers.goodbye);
  }
  if (answers.lost != 0) {
    reasons.emplace_back("connections lost", answers.lost);
  }
  return reasons;
}

Json codes_json(const std::array<std::uint64_t, 256>& by_code) {
  Json out = Json::object();
  for (std::size_t code = 0; code < by_code.size(); ++code) {
    if (by_code[code] != 0) {
      out[std::to_string(code)] = by_code[code];
    }
  }
  return out;
}

/// The summary as one JSON object; its field order is the order of the text summary.
Json to_json(const Config& config, const Summary& summary) {
  const Histogram& histogram = summary.histogram;
  const Answers& answers = summary.answers;
  Json out;
  out["address"] = config.address.to_string();
  out["task"] = config.task;
  out["size"] = config.size;
  out["connections"] = config.connections;
  out["pipeline"] = config.pipeline;
  out["threads"] = summary.threads;
  out["rps_target"] = config.rps;
  out["interrupted"] = summary.interrupted;
  out["seconds"] = rounded(summary.seconds, 3);
  out["requests"] = summary.completed;
  out["answers"] = Json{{"ok", answers.ok},
                        {"error", answers.errors_answered()},
                        {"error_by_code", codes_json(answers.error_by_code)},
                        {"goodbye", answers.goodbye}};
  out["errors"] = summary.errors();
  out["retries"] = summary.retries;
  out["reconnects"] = summary.reconnects;
  out["error_reasons"] = Json{{"error_by_code", codes_json(answers.wrong_error_by_code)},
                              {"wrong_ok", answers.wrong_ok},
                              {"goodbye", answers.goodbye},
                              {"connections_lost", answers.lost}};
  out["connections_lost"] = answers.lost;
  out["requests_per_second"] = rounded(summary.requests_per_second(), 1);
  out["latency_us"] =
      Json{{"min", rounded(to_us(static_cast<double>(histogram.min())), 1)},
           {"mean", rounded(to_us(histogram.mean()), 1)},
           {"p50", rounded(to_us(static_cast<double>(histogram.quantile(0.50))), 1)},
           {"p90", rounded(to_us(static_cast<double>(histogram.quantile(0.90))), 1)},
           {"p99", rounded(to_us(static_cast<double>(histogram.quantile(0.99))), 1)},
           {"p99_9", rounded(to_us(static_cast<double>(histogram.quantile(0.999))), 1)},
           {"max", rounded(to_us(static_cast<double>(histogram.max())), 1)}};
  Json bars = Json::array();
  for (const Bar& bar : histogram_bars(histogram)) {
    bars.push_back(Json{
        {"mark_us", rounded(to_us(bar.mark_ns), 3)},
        {"count", bar.count},
        {"frequency",
         rounded(static_cast<double>(bar.count) / static_cast<double>(histogram.count()), 6)}});
  }
  out["histogram"] = std::move(bars);
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
void flatten(const Json& value, const std::string& name,
             std::vector<std::pair<std::string, std::string>>& rows) {
  if (value.is_object()) {
    for (const auto& [key, item] : value.items()) {
      std::string field = name;
      if (!field.empty()) {
        field += '.';
      }
      field += key;
      flatten(item, field, rows);
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

void print_text(const Config& config, const Summary& summary) {
  const Histogram& histogram = summary.histogram;
  const Answers& answers = summary.answers;
  const std::size_t thread_count = summary.threads;
  std::printf(
      "serialbench %s: task %u, %zu-byte requests, %zu connections, pipeline %zu, "
      "%zu thread%s, %s engine\n",
      config.address.to_string().c_str(), static_cast<unsigned>(config.task), config.size,
      config.connections, config.pipeline, thread_count, thread_count == 1 ? "" : "s",
      engine_name(config.engine));
  if (summary.interrupted) {
    std::printf("  interrupted   the summary of what ran before Ctrl-C\n");
  }
  std::printf("  requests      %" PRIu64 " in %.3f s\n", summary.completed, summary.seconds);
  if (config.rps > 0) {
    std::printf("  throughput    %.0f requests/s (paced at %.0f)\n", summary.requests_per_second(),
                config.rps);
  } else {
    std::printf("  throughput    %.0f requests/s\n", summary.requests_per_second());
  }
  std::string errors_by_code;
  for (std::size_t code = 0; code < answers.error_by_code.size(); ++code) {
    if (answers.error_by_code[code] != 0) {
      errors_by_code += (errors_by_code.empty() ? " (code " : ", code ") + std::to_string(code) +
                        ": " + std::to_string(answers.error_by_code[code]);
    }
  }
  if (!errors_by_code.empty()) {
    errors_by_code += ")";
  }
  std::printf("  answers       OK %" PRIu64 "  Error %" PRIu64 "%s  Goodbye %" PRIu64 "\n",
              answers.ok, answers.errors_answered(), errors_by_code.c_str(), answers.goodbye);
  std::string reasons;
  for (const auto& [what, count] : error_reasons(answers)) {
    reasons += (reasons.empty() ? " (" : ", ") + what + ": " + std::to_string(count);
  }
  if (!reasons.empty()) {
    reasons += ")";
  }
  std::printf("  errors        %" PRIu64 "%s\n", summary.errors(), reasons.c_str());
  if (config.retry) {
    std::printf("  retries       %" PRIu64 " (attempts sent again)\n", summary.retries);
    std::printf("  reconnects    %" PRIu64 " (lost connections opened again)\n",
                summary.reconnects);
  }
  std::printf("  own CPU       %.0f %% of one core\n", summary.cpu_percent());
  std::printf(
      "  latency (us)  min %.1f  mean %.1f  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
      to_us(static_cast<double>(histogram.min())), to_us(histogram.mean()),
      to_us(static_cast<double>(histogram.quantile(0.50))),
      to_us(static_cast<double>(histogram.quantile(0.90))),
      to_us(static_cast<double>(histogram.quantile(0.99))),
      to_us(static_cast<double>(histogram.quantile(0.999))),
      to_us(static_cast<double>(histogram.max())));
  const auto bars = histogram_bars(histogram);
  if (bars.empty()) {
    return;
  }
  // ghz's text histogram: the mark, the count, a bar of up to 40 marks.
  constexpr std::uint64_t kWidth = 40;
  std::uint64_t most = 1;
  for (const Bar& bar : bars) {
    most = std::max(most, bar.count);
  }
  std::printf("\n  latency histogram (us):\n");
  for (const Bar& bar : bars) {
    std::string marks;
    for (std::uint64_t i = 0; i < bar.count * kWidth / most; ++i) {
      marks += "\u220e";
    }
    const std::string count = "[" + std::to_string(bar.count) + "]";
    std::printf("  %10.1f %-12s |%s\n", to_us(bar.mark_ns), count.c_str(), marks.c_str());
  }
}

}  // namespace

void print_summary(const Config& config, const Summary& summary) {
  if (config.format == OutputFormat::json) {
    // Replaces bytes that are not UTF-8 (a socket path may hold any) rather than throw.
    const std::string text =
        to_json(config, summary).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::printf("%s\n", text.c_str());
  } else if (config.format == OutputFormat::csv) {
    std::vector<std::pair<std::string, std::string>> rows;
    flatten(to_json(config, summary), "", rows);
    std::printf("field,value\n");
    for (const auto& [name, value] : rows) {
      std::printf("%s,%s\n", csv_field(name).c_str(), csv_field(value).c_str());
    }
  } else {
    print_text(config, summary);
  }
}

}  // namespace serialbench
