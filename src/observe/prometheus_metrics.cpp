#include <serialserver/error.hpp>
#include <serialserver/prometheus_metrics.hpp>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace serialserver {

namespace {

constexpr std::memory_order kRelaxed = std::memory_order_relaxed;

constexpr std::size_t kOutcomes = 4;
constexpr std::size_t kCodes = 256;
constexpr std::size_t kBuckets = PrometheusMetrics::kLatencyBucketsNs.size() + 1;  // last: +Inf

constexpr std::string_view kDurationFamily = "serialserver_task_duration_seconds";

/// The order families are rendered in (prometheus-cpp's Registry groups them by type).
constexpr std::array<std::string_view, 10> kFamilyOrder = {"serialserver_connections_open",
                                                           "serialserver_connections_total",
                                                           "serialserver_connections_closed_total",
                                                           "serialserver_connections_dropped_total",
                                                           "serialserver_connections_evicted_total",
                                                           "serialserver_timeouts_total",
                                                           "serialserver_tasks_total",
                                                           "serialserver_request_bytes_total",
                                                           "serialserver_response_bytes_total",
                                                           kDurationFamily};

/// Close reasons by slot: 0 no error, 1..14 the Errc values, 15 anything else.
constexpr std::size_t kCloseReasons = 16;
constexpr std::size_t kOtherCloseReason = kCloseReasons - 1;
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
std::string close_reason_of_slot(std::size_t slot) {
  if (slot == 0) {
    return std::string(close_reason_name({}));
  }
  if (slot == kOtherCloseReason) {
    return "other";
  }
  return std::string(close_reason_name(make_error_code(static_cast<Errc>(slot))));
}

constexpr std::size_t kDropReasons = 5;

/// The kinds of serialserver_timeouts_total.
enum class TimeoutKind : std::uint8_t { wait, read, write, request, handshake };
constexpr std::array<std::string_view, 5> kTimeoutKinds = {"wait", "read", "write", "request",
                                                           "handshake"};

/// The timeout a close reason is, if it is one.
std::optional<TimeoutKind> timeout_of(std::error_code reason) noexcept {
  if (reason == make_error_code(Errc::timeout_waiting_for_task)) return TimeoutKind::wait;
  if (reason == make_error_code(Errc::read_timeout)) return TimeoutKind::read;
  if (reason == make_error_code(Errc::write_timeout)) return TimeoutKind::write;
  if (reason == make_error_code(Errc::request_timeout)) return TimeoutKind::request;
  return std::nullopt;
}

/// The series of one task code under one name: prometheus-cpp counters, and the duration
/// histogram's buckets (not cumulative; Collect() sums them).
struct CodeSeries {
  unsigned code = 0;
  std::string name;
  std::array<prometheus::Counter*, kOutcomes> tasks{};
  prometheus::Counter* request_bytes = nullptr;
  prometheus::Counter* response_bytes = nullptr;
  std::array<std::atomic<std::uint64_t>, kBuckets> buckets{};
  std::atomic<std::uint64_t> duration_sum_ns{0};
};

}  // namespace

/// The families, and the Collectable that gathers them for a scrape.
class PrometheusMetrics::State final : public prometheus::Collectable {
  // First: the members below that refer to families are initialized from it.
  prometheus::Registry registry_;

 public:
  State()
      : open(prometheus::BuildGauge()
                 .Name("serialserver_connections_open")
                 .Help("Connections being served now.")
                 .Register(registry_)
                 .Add({})),
        opened(prometheus::BuildCounter()
                   .Name("serialserver_connections_total")
                   .Help("Connections served since the start.")
                   .Register(registry_)
                   .Add({})),
        evicted(prometheus::BuildCounter()
                    .Name("serialserver_connections_evicted_total")
                    .Help("Idle connections closed gracefully at max_connections to admit a "
                          "newcomer.")
                    .Register(registry_)
                    .Add({})),
        tasks_(prometheus::BuildCounter()
                   .Name("serialserver_tasks_total")
                   .Help("Finished tasks by task code and outcome.")
                   .Register(registry_)),
        request_bytes_(prometheus::BuildCounter()
                           .Name("serialserver_request_bytes_total")
                           .Help("Request content bytes read, by task code.")
                           .Register(registry_)),
        response_bytes_(prometheus::BuildCounter()
                            .Name("serialserver_response_bytes_total")
                            .Help("Response content bytes written, by task code.")
                            .Register(registry_)) {
    auto& closed_family = prometheus::BuildCounter()
                              .Name("serialserver_connections_closed_total")
                              .Help("Served connections that ended, by reason.")
                              .Register(registry_);
    for (std::size_t i = 0; i < closed.size(); ++i) {
      closed[i] = &closed_family.Add({{"reason", close_reason_of_slot(i)}});
    }
    auto& dropped_family = prometheus::BuildCounter()
                               .Name("serialserver_connections_dropped_total")
                               .Help("Connections dropped before being served, by reason.")
                               .Register(registry_);
    for (std::size_t i = 0; i < dropped.size(); ++i) {
      dropped[i] = &dropped_family.Add(
          {{"reason", std::string(drop_reason_name(static_cast<DropReason>(i)))}});
    }
    auto& timeouts_family =
        prometheus::BuildCounter()
            .Name("serialserver_timeouts_total")
            .Help(
                "Connections closed by the wait, read, write or request timeout, and handshakes "
                "that timed out.")
            .Register(registry_);
    for (std::size_t i = 0; i < timeouts.size(); ++i) {
      timeouts[i] = &timeouts_family.Add({{"kind", std::string(kTimeoutKinds[i])}});
    }
  }

  /// The series of `code` named `name`, made the first time that pair is seen; null if making
  /// it failed (out of memory).
  CodeSeries* series_for(unsigned code, std::string_view name) noexcept {
    try {
      const std::lock_guard lock(mutex_);
      auto found = std::find_if(series_.begin(), series_.end(),
                                [&](const auto& s) { return s->code == code && s->name == name; });
      if (found == series_.end()) {
        series_.push_back(make_series(code, name));
        found = std::prev(series_.end());
      }
      current[code].store(found->get(), std::memory_order_release);
      return found->get();
    } catch (...) {
      return nullptr;
    }
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> families = registry_.Collect();
    prometheus::MetricFamily durations = collect_durations();
    if (!durations.metric.empty()) {
      families.push_back(std::move(durations));
    }
    const auto rank = [](const prometheus::MetricFamily& family) {
      return std::find(kFamilyOrder.begin(), kFamilyOrder.end(), family.name) -
             kFamilyOrder.begin();
    };
    std::stable_sort(families.begin(), families.end(),
                     [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
    return families;
  }

  prometheus::Gauge& open;
  prometheus::Counter& opened;
  prometheus::Counter& evicted;
  std::array<prometheus::Counter*, kCloseReasons> closed{};
  std::array<prometheus::Counter*, kDropReasons> dropped{};
  std::array<prometheus::Counter*, kTimeoutKinds.size()> timeouts{};
  /// Each code's series under the name it was last seen with; null before its first task.
  std::array<std::atomic<CodeSeries*>, kCodes> current{};

 private:
  std::unique_ptr<CodeSeries> make_series(unsigned code, std::string_view name) {
    auto series = std::make_unique<CodeSeries>();
    series->code = code;
    series->name = name;
    const prometheus::Labels labels = {{"code", std::to_string(code)}, {"name", series->name}};
    for (std::size_t o = 0; o < kOutcomes; ++o) {
      prometheus::Labels with_outcome = labels;
      with_outcome.emplace("outcome", task_outcome_name(static_cast<TaskOutcome>(o)));
      series->tasks[o] = &tasks_.Add(with_outcome);
    }
    series->request_bytes = &request_bytes_.Add(labels);
    series->response_bytes = &response_bytes_.Add(labels);
    return series;
  }

  prometheus::MetricFamily collect_durations() const {
    prometheus::MetricFamily family;
    family.name = kDurationFamily;
    family.help = "Task durations, by task code.";
    family.type = prometheus::MetricType::Histogram;
    const std::lock_guard lock(mutex_);
    std::vector<const CodeSeries*> sorted;
    sorted.reserve(series_.size());
    for (const auto& s : series_) {
      sorted.push_back(s.get());
    }
    std::sort(sorted.begin(), sorted.end(), [](const CodeSeries* a, const CodeSeries* b) {
      return std::tie(a->code, a->name) < std::tie(b->code, b->name);
    });
    for (const CodeSeries* s : sorted) {
      prometheus::ClientMetric metric;
      metric.label = {{"code", std::to_string(s->code)}, {"name", s->name}};
      std::uint64_t cumulative = 0;
      for (std::size_t b = 0; b < kBuckets; ++b) {
        cumulative += s->buckets[b].load(kRelaxed);
        const double upper = b < kLatencyBucketsNs.size()
                                 ? static_cast<double>(kLatencyBucketsNs[b]) / 1e9
                                 : std::numeric_limits<double>::infinity();
        metric.histogram.bucket.push_back({cumulative, upper});
      }
      metric.histogram.sample_count = cumulative;
      metric.histogram.sample_sum = static_cast<double>(s->duration_sum_ns.load(kRelaxed)) / 1e9;
      family.metric.push_back(std::move(metric));
    }
    return family;
  }

  prometheus::Family<prometheus::Counter>& tasks_;
  prometheus::Family<prometheus::Counter>& request_bytes_;
  prometheus::Family<prometheus::Counter>& response_bytes_;
  mutable std::mutex mutex_;  // guards series_ (appended to, and read by a scrape)
  std::vector<std::unique_ptr<CodeSeries>> series_;  // never shrinks: the hooks hold pointers
};

PrometheusMetrics::PrometheusMetrics() : state_(std::make_shared<State>()) {}

PrometheusMetrics::~PrometheusMetrics() = default;

void PrometheusMetrics::connection_opened(const Client& /*client*/) noexcept {
  state_->opened.Increment();
  state_->open.Increment();
}

void PrometheusMetrics::connection_closed(const Client& /*client*/,
                                          std::error_code reason) noexcept {
  state_->open.Decrement();
  state_->closed[close_reason_slot(reason)]->Increment();
  if (const auto kind = timeout_of(reason)) {
    state_->timeouts[static_cast<std::size_t>(*kind)]->Increment();
  }
}

void PrometheusMetrics::connection_dropped(std::string_view /*remote_address*/,
                                           DropReason reason) noexcept {
  const auto slot = static_cast<std::size_t>(reason);
  if (slot < state_->dropped.size()) {
    state_->dropped[slot]->Increment();
  }
  if (reason == DropReason::handshake_timeout) {
    state_->timeouts[static_cast<std::size_t>(TimeoutKind::handshake)]->Increment();
  }
}

void PrometheusMetrics::connection_evicted(const Client& /*client*/) noexcept {
  state_->evicted.Increment();
}

void PrometheusMetrics::task_finished(const Client& /*client*/, const TaskRecord& record) noexcept {
  CodeSeries* series = state_->current[record.code].load(std::memory_order_acquire);
  if (series == nullptr || series->name != record.name) {
    series = state_->series_for(record.code, record.name);
    if (series == nullptr) {
      return;
    }
  }
  const auto outcome = static_cast<std::size_t>(record.outcome);
  if (outcome < kOutcomes) {
    series->tasks[outcome]->Increment();
  }
  if (record.bytes_read != 0) {
    series->request_bytes->Increment(static_cast<double>(record.bytes_read));
  }
  if (record.bytes_written != 0) {
    series->response_bytes->Increment(static_cast<double>(record.bytes_written));
  }
  if (record.outcome != TaskOutcome::goodbye) {
    const std::int64_t ns = record.duration.count();
    std::size_t bucket = 0;
    while (bucket < kLatencyBucketsNs.size() && ns > kLatencyBucketsNs[bucket]) {
      ++bucket;
    }
    series->buckets[bucket].fetch_add(1, kRelaxed);
    series->duration_sum_ns.fetch_add(ns > 0 ? static_cast<std::uint64_t>(ns) : 0, kRelaxed);
  }
}

std::string PrometheusMetrics::render() const {
  return prometheus::TextSerializer().Serialize(state_->Collect());
}

std::shared_ptr<prometheus::Collectable> PrometheusMetrics::collectable() const noexcept {
  return state_;
}

}  // namespace serialserver
