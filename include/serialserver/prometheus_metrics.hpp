#pragma once

// A Metrics implementation that renders the Prometheus text exposition format, version 0.0.4.
//
// Why by hand: Debian 12 ships no prometheus-cpp package (libprometheus-cpp-dev has no
// candidate in bookworm), and the project installs its dependencies from Debian only. The text
// format is small and stable (counters, a gauge and one histogram family), so it is written
// here rather than vendored.

#include <serialserver/metrics.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace serialserver {

/// Counts what the server reports and renders it for a Prometheus scrape. Families (every name
/// starts with `serialserver_`):
///
/// - `connections_open` (gauge) and `connections_total` (counter): served connections now and
///   since start;
/// - `connections_closed_total{reason}`: served connections that ended, by close_reason_name();
/// - `connections_dropped_total{reason}`: connections the listener dropped before serving them,
///   by drop_reason_name() (connection limits, failed or slow handshakes, shutdown);
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
/// Thread-safety: every member function may be called from any thread at once. The Metrics
/// hooks are a few relaxed atomic increments on fixed per-code slots (no allocation and no
/// lock, except the first time a code is seen with a new name); render() reads the counters
/// without stopping the writers, so one scrape may see a task in one family and not yet in
/// another, but every counter is monotonic and each histogram's `_count` equals its `+Inf`
/// bucket. Lifetime: hand it to the server as a std::shared_ptr; keep one to render.
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

  /// Every family in the text exposition format (HELP and TYPE lines, then the samples).
  std::string render() const;

 private:
  static constexpr std::size_t kOutcomes = 4;
  static constexpr std::size_t kCloseReasons = 16;  // none, the 14 Errc values, other
  static constexpr std::size_t kDropReasons = 5;
  static constexpr std::size_t kBuckets = kLatencyBucketsNs.size() + 1;  // the last is +Inf

  using Counter = std::atomic<std::uint64_t>;
  struct CodeSlot {
    std::array<Counter, kOutcomes> tasks{};
    Counter bytes_in{0};
    Counter bytes_out{0};
    std::array<Counter, kBuckets> buckets{};  // not cumulative; render() sums them
    Counter duration_sum_ns{0};
    std::atomic<const std::string*> name{nullptr};  // owned by names_
  };

  void set_name(CodeSlot& slot, std::string_view name) noexcept;

  std::unique_ptr<std::array<CodeSlot, 256>> codes_;
  std::atomic<std::int64_t> open_{0};
  Counter opened_{0};
  std::array<Counter, kCloseReasons> closed_{};
  std::array<Counter, kDropReasons> dropped_{};

  std::mutex names_mutex_;  // guards names_; taken only when a code's name changes
  std::vector<std::unique_ptr<const std::string>> names_;
};

}  // namespace serialserver
