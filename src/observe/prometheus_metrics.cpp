#include <serialserver/error.hpp>
#include <serialserver/prometheus_metrics.hpp>

#include <iterator>

#include <fmt/format.h>

namespace serialserver {

namespace {

constexpr std::memory_order kRelaxed = std::memory_order_relaxed;

/// The `le` labels of PrometheusMetrics::kLatencyBucketsNs, in seconds, then +Inf.
constexpr std::array<std::string_view, PrometheusMetrics::kLatencyBucketsNs.size() + 1>
    kBucketLabels = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                     "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
                     "1",      "2.5",     "5",      "10",    "+Inf"};

/// Close reasons by slot: 0 no error, 1..13 the Errc values, 14 anything else.
constexpr std::size_t kOtherCloseReason = 15;
std::size_t close_reason_slot(std::error_code reason) noexcept {
  if (!reason) {
    return 0;
  }
  if (reason.category() == error_category() && reason.value() >= 1 &&
      reason.value() < static_cast<int>(kOtherCloseReason)) {
    return static_cast<std::size_t>(reason.value());
  }
  return kOtherCloseReason;
}
std::string_view close_reason_of_slot(std::size_t slot) {
  if (slot == 0) {
    return close_reason_name({});
  }
  if (slot == kOtherCloseReason) {
    return "other";
  }
  return close_reason_name(make_error_code(static_cast<Errc>(slot)));
}

/// A label value with backslash, double quote and line feed escaped, as the format asks.
std::string escape_label(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char ch : value) {
    if (ch == '\\') {
      out += "\\\\";
    } else if (ch == '"') {
      out += "\\\"";
    } else if (ch == '\n') {
      out += "\\n";
    } else {
      out += ch;
    }
  }
  return out;
}

void header(fmt::memory_buffer& out, std::string_view name, std::string_view type,
            std::string_view help) {
  fmt::format_to(std::back_inserter(out), "# HELP serialserver_{} {}\n# TYPE serialserver_{} {}\n",
                 name, help, name, type);
}

}  // namespace

PrometheusMetrics::PrometheusMetrics() : codes_(std::make_unique<std::array<CodeSlot, 256>>()) {}

PrometheusMetrics::~PrometheusMetrics() = default;

void PrometheusMetrics::connection_opened(const Client& /*client*/) noexcept {
  opened_.fetch_add(1, kRelaxed);
  open_.fetch_add(1, kRelaxed);
}

void PrometheusMetrics::connection_closed(const Client& /*client*/,
                                          std::error_code reason) noexcept {
  open_.fetch_sub(1, kRelaxed);
  closed_[close_reason_slot(reason)].fetch_add(1, kRelaxed);
}

void PrometheusMetrics::connection_dropped(std::string_view /*remote_address*/,
                                           DropReason reason) noexcept {
  const auto slot = static_cast<std::size_t>(reason);
  if (slot < dropped_.size()) {
    dropped_[slot].fetch_add(1, kRelaxed);
  }
}

void PrometheusMetrics::task_finished(const Client& /*client*/, const TaskRecord& record) noexcept {
  CodeSlot& slot = (*codes_)[record.code];
  const std::string* name = slot.name.load(std::memory_order_acquire);
  if (name == nullptr ? !record.name.empty() : *name != record.name) {
    set_name(slot, record.name);
  }
  const auto outcome = static_cast<std::size_t>(record.outcome);
  if (outcome < kOutcomes) {
    slot.tasks[outcome].fetch_add(1, kRelaxed);
  }
  slot.bytes_in.fetch_add(record.bytes_read, kRelaxed);
  slot.bytes_out.fetch_add(record.bytes_written, kRelaxed);
  if (record.outcome != TaskOutcome::goodbye) {
    const std::int64_t ns = record.duration.count();
    std::size_t bucket = 0;
    while (bucket < kLatencyBucketsNs.size() && ns > kLatencyBucketsNs[bucket]) {
      ++bucket;
    }
    slot.buckets[bucket].fetch_add(1, kRelaxed);
    slot.duration_sum_ns.fetch_add(ns > 0 ? static_cast<std::uint64_t>(ns) : 0, kRelaxed);
  }
}

void PrometheusMetrics::set_name(CodeSlot& slot, std::string_view name) noexcept {
  try {
    std::lock_guard lock(names_mutex_);
    const std::string* current = slot.name.load(std::memory_order_acquire);
    if (current != nullptr && *current == name) {
      return;  // another thread got here first
    }
    if (name.empty()) {
      slot.name.store(nullptr, std::memory_order_release);
      return;
    }
    // Strings are never freed before the object (a concurrent render() or task_finished() may
    // be reading the old one) but are shared, so their number is that of distinct names.
    for (const auto& known : names_) {
      if (*known == name) {
        slot.name.store(known.get(), std::memory_order_release);
        return;
      }
    }
    names_.push_back(std::make_unique<const std::string>(name));
    slot.name.store(names_.back().get(), std::memory_order_release);
  } catch (...) {  // out of memory: keep the old name
  }
}

std::string PrometheusMetrics::render() const {
  fmt::memory_buffer out;
  auto it = std::back_inserter(out);

  header(out, "connections_open", "gauge", "Connections being served now.");
  fmt::format_to(it, "serialserver_connections_open {}\n", open_.load(kRelaxed));
  header(out, "connections_total", "counter", "Connections served since the start.");
  fmt::format_to(it, "serialserver_connections_total {}\n", opened_.load(kRelaxed));

  header(out, "connections_closed_total", "counter", "Served connections that ended, by reason.");
  for (std::size_t i = 0; i < closed_.size(); ++i) {
    fmt::format_to(it, "serialserver_connections_closed_total{{reason=\"{}\"}} {}\n",
                   close_reason_of_slot(i), closed_[i].load(kRelaxed));
  }
  header(out, "connections_dropped_total", "counter",
         "Connections dropped before being served, by reason.");
  for (std::size_t i = 0; i < dropped_.size(); ++i) {
    fmt::format_to(it, "serialserver_connections_dropped_total{{reason=\"{}\"}} {}\n",
                   drop_reason_name(static_cast<DropReason>(i)), dropped_[i].load(kRelaxed));
  }
  header(out, "timeouts_total", "counter",
         "Connections closed by the wait, read, write or request timeout, and handshakes that "
         "timed out.");
  const std::pair<std::string_view, std::uint64_t> timeouts[] = {
      {"wait", closed_[static_cast<std::size_t>(Errc::timeout_waiting_for_task)].load(kRelaxed)},
      {"read", closed_[static_cast<std::size_t>(Errc::read_timeout)].load(kRelaxed)},
      {"write", closed_[static_cast<std::size_t>(Errc::write_timeout)].load(kRelaxed)},
      {"request", closed_[static_cast<std::size_t>(Errc::request_timeout)].load(kRelaxed)},
      {"handshake",
       dropped_[static_cast<std::size_t>(DropReason::handshake_timeout)].load(kRelaxed)},
  };
  for (const auto& [kind, count] : timeouts) {
    fmt::format_to(it, "serialserver_timeouts_total{{kind=\"{}\"}} {}\n", kind, count);
  }

  // The per-code families: only codes that have seen a task. Their label sets are computed
  // once per scrape.
  struct Seen {
    unsigned code;
    std::string labels;  // code="1",name="echo"
  };
  std::vector<Seen> seen;
  for (unsigned code = 0; code < codes_->size(); ++code) {
    const CodeSlot& slot = (*codes_)[code];
    std::uint64_t tasks = 0;
    for (const auto& c : slot.tasks) {
      tasks += c.load(kRelaxed);
    }
    if (tasks == 0) {
      continue;
    }
    const std::string* name = slot.name.load(std::memory_order_acquire);
    seen.push_back({code, fmt::format(R"(code="{}",name="{}")", code,
                                      name != nullptr ? escape_label(*name) : std::string())});
  }

  header(out, "tasks_total", "counter", "Finished tasks by task code and outcome.");
  for (const auto& s : seen) {
    const CodeSlot& slot = (*codes_)[s.code];
    for (std::size_t o = 0; o < kOutcomes; ++o) {
      fmt::format_to(it, "serialserver_tasks_total{{{},outcome=\"{}\"}} {}\n", s.labels,
                     task_outcome_name(static_cast<TaskOutcome>(o)), slot.tasks[o].load(kRelaxed));
    }
  }
  header(out, "request_bytes_total", "counter", "Request content bytes read, by task code.");
  for (const auto& s : seen) {
    fmt::format_to(it, "serialserver_request_bytes_total{{{}}} {}\n", s.labels,
                   (*codes_)[s.code].bytes_in.load(kRelaxed));
  }
  header(out, "response_bytes_total", "counter", "Response content bytes written, by task code.");
  for (const auto& s : seen) {
    fmt::format_to(it, "serialserver_response_bytes_total{{{}}} {}\n", s.labels,
                   (*codes_)[s.code].bytes_out.load(kRelaxed));
  }
  header(out, "task_duration_seconds", "histogram", "Task durations, by task code.");
  for (const auto& s : seen) {
    const CodeSlot& slot = (*codes_)[s.code];
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < kBuckets; ++b) {
      cumulative += slot.buckets[b].load(kRelaxed);
      fmt::format_to(it, "serialserver_task_duration_seconds_bucket{{{},le=\"{}\"}} {}\n", s.labels,
                     kBucketLabels[b], cumulative);
    }
    fmt::format_to(it, "serialserver_task_duration_seconds_sum{{{}}} {}\n", s.labels,
                   static_cast<double>(slot.duration_sum_ns.load(kRelaxed)) / 1e9);
    fmt::format_to(it, "serialserver_task_duration_seconds_count{{{}}} {}\n", s.labels, cumulative);
  }
  return fmt::to_string(out);
}

}  // namespace serialserver
