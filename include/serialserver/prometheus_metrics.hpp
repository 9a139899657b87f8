#pragma once

// A Metrics implementation on prometheus-cpp (Debian: prometheus-cpp-dev): its families,
// counters and gauge hold the values, and its text serializer renders the Prometheus text
// exposition format, version 0.0.4. The header keeps prometheus-cpp out of sight except for
// collectable(), which hands the families to a prometheus-cpp Exposer or Registry user.

#include <serialserver/metrics.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace prometheus {
class Collectable;
}

namespace serialserver {

/// Counts what the server reports and renders it for a Prometheus scrape. Families (every name
/// starts with `serialserver_`):
///
/// - `connections_open` (gauge) and `connections_total` (counter): served connections now and
///   since start;
/// - `connections_closed_total{reason}`: served connections that ended, by close_reason_name();
/// - `connections_dropped_total{reason}`: connections the listener dropped before serving them,
///   by drop_reason_name() (connection limits, failed or slow handshakes, shutdown);
/// - `connections_evicted_total`: idle served connections the listener closed gracefully at
///   max_connections to admit a newcomer (they count in `connections_closed_total` too);
/// - `timeouts_total{kind}`: `wait`, `read`, `write`, `request` (connections closed by those
///   timeouts; `request` is ServerOptions::max_request_duration) and `handshake` (handshakes
///   that timed out);
/// - `tasks_total{code,name,outcome}`: finished tasks by task code and outcome (ok, error,
///   dropped, goodbye); `name` is the task's registered name (empty for unregistered codes);
/// - `request_bytes_total{code,name}` and `response_bytes_total{code,name}`: request and
///   response content bytes (the block framing, task codes and response codes not counted);
/// - `task_duration_seconds{code,name}` (histogram, kLatencyBuckets): task durations, from the
///   task code to the end of its response in the output buffer (Goodbye answers, which run no
///   task, are not observed).
///
/// Per-code series appear once a task with that code has finished.
///
/// Names are never removed: a code registered again under another name starts series of its
/// own, and the old name's series keep their last values (prometheus-cpp frees a removed series,
/// and the hooks hold pointers to them without a lock).
///
/// Thread-safety: every member function may be called from any thread at once. The Metrics
/// hooks are a few atomic increments of prometheus-cpp counters and of fixed histogram slots
/// (no allocation and no lock, except the first time a code is seen with a new name).
/// task_duration_seconds is not a prometheus::Histogram, whose Observe() takes a mutex: its
/// buckets are relaxed atomics handed to prometheus-cpp as a histogram family at each scrape.
/// render() reads the values without stopping the writers, so one scrape may see a task in one
/// family and not yet in another, but every counter is monotonic and each histogram's `_count`
/// equals its `+Inf` bucket. Lifetime: hand it to the server as a std::shared_ptr; keep one to
/// render.
class PrometheusMetrics final : public Metrics {
 public:
  /// Upper bounds of the task_duration_seconds buckets, in nanoseconds (100 us to 10 s).
  static constexpr std::array<std::int64_t, 16> kLatencyBucketsNs = {
      100'000,       250'000,       500'000,       1'000'000,     2'500'000,   5'000'000,
      10'000'000,    25'000'000,    50'000'000,    100'000'000,   250'000'000, 500'000'000,
      1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000};
  /// The Content-Type of render()'s output.
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

  PrometheusMetrics();
  ~PrometheusMetrics() override;
  PrometheusMetrics(const PrometheusMetrics&) = delete;
  PrometheusMetrics& operator=(const PrometheusMetrics&) = delete;

  void connection_opened(const Client& client) noexcept override;
  void connection_closed(const Client& client, std::error_code reason) noexcept override;
  void task_finished(const Client& client, const TaskRecord& record) noexcept override;
  void connection_dropped(std::string_view remote_address, DropReason reason) noexcept override;
  void connection_evicted(const Client& client) noexcept override;

  /// Every family in the text exposition format (HELP and TYPE lines, then the samples), as
  /// prometheus-cpp's TextSerializer writes it. Families without series yet are left out.
  std::string render() const;

  /// Every family as a prometheus-cpp Collectable, for a prometheus::Exposer
  /// (RegisterCollectable) or any other prometheus-cpp consumer. It stays valid after this
  /// object is gone (it then holds the last values).
  std::shared_ptr<prometheus::Collectable> collectable() const noexcept;

 private:
  class State;
  std::shared_ptr<State> state_;
};

}  // namespace serialserver
