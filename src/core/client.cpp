#include <serialserver/client.hpp>
#include <serialserver/server.hpp>
#include <serialserver/task.hpp>

#include <bit>
#include <thread>

namespace serialserver {

namespace {
std::atomic<std::uint64_t> next_client_id{1};
}

Client::Client(Server& server, ByteOrder byte_order, std::string local_address,
               std::string remote_address)
    : local_address_(std::move(local_address)),
      remote_address_(std::move(remote_address)),
      timestamp_(std::chrono::system_clock::now()),
      id_(next_client_id.fetch_add(1, std::memory_order_relaxed)),
      server_(server),
      byte_order_(byte_order),
      task_start_(timestamp_.time_since_epoch().count()) {}

Client::~Client() = default;

void Client::cancel() { do_cancel(); }
void Client::close() { do_close(); }
void Client::disconnect(std::chrono::nanoseconds grace) { do_disconnect(grace); }

std::shared_ptr<Logger> Client::log() const {
  {
    std::lock_guard lock(mutex_);
    if (logger_) {
      return logger_;
    }
  }
  return server_.log();
}

void Client::set_logger(std::shared_ptr<Logger> logger) {
  std::lock_guard lock(mutex_);
  logger_ = std::move(logger);
  settings_version_.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<Metrics> Client::metrics() const {
  {
    std::lock_guard lock(mutex_);
    if (metrics_) {
      return metrics_;
    }
  }
  return server_.metrics();
}

void Client::set_metrics(std::shared_ptr<Metrics> metrics) {
  std::lock_guard lock(mutex_);
  metrics_ = std::move(metrics);
  settings_version_.fetch_add(1, std::memory_order_release);
}

void Client::refresh(Snapshot& snapshot) const {
  // Two relaxed-cost loads on the hot path; the locks are taken only when something changed.
  const auto client_version = settings_version_.load(std::memory_order_acquire);
  const auto server_version = server_.settings_version_.load(std::memory_order_acquire);
  if (client_version == snapshot.client_version && server_version == snapshot.server_version) {
    return;
  }
  snapshot.client_version = client_version;
  snapshot.server_version = server_version;
  snapshot.logger = log();
  snapshot.metrics = metrics();
}

void Client::begin_task(TaskCode code, const std::string* name,
                        std::chrono::system_clock::time_point start) {
  // The writer's half of the sequence lock (one writer: the connection's thread). No lock and
  // no atomic read-modify-write: this runs once per request.
  const std::uint32_t sequence = task_sequence_.load(std::memory_order_relaxed);
  task_sequence_.store(sequence + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  task_code_.store(code, std::memory_order_relaxed);
  task_name_.store(name, std::memory_order_relaxed);
  task_start_.store(start.time_since_epoch().count(), std::memory_order_relaxed);
  auto& codes = assigned_codes_[code / 64];
  const std::uint64_t bit = std::uint64_t{1} << (code % 64);
  if ((codes.load(std::memory_order_relaxed) & bit) == 0) {
    codes.store(codes.load(std::memory_order_relaxed) | bit, std::memory_order_relaxed);
  }
  task_active_.store(true, std::memory_order_relaxed);
  task_sequence_.store(sequence + 2, std::memory_order_release);
}

void Client::end_task() noexcept {
  // Outside the sequence: a reader that still sees the task active copies a name that stays
  // alive, because the connection drops a task table only under the mutex (lock_task_metadata),
  // which metadata() holds.
  task_active_.store(false, std::memory_order_release);
}

std::optional<TaskMetadata> Client::metadata() const {
  std::lock_guard lock(mutex_);  // keeps the task table, and so *name, alive
  bool active = false;
  TaskCode code = 0;
  const std::string* name = nullptr;
  std::chrono::system_clock::rep start = 0;
  for (unsigned attempt = 0;; ++attempt) {
    const std::uint32_t before = task_sequence_.load(std::memory_order_acquire);
    if ((before & 1U) == 0) {
      active = task_active_.load(std::memory_order_relaxed);
      code = task_code_.load(std::memory_order_relaxed);
      name = task_name_.load(std::memory_order_relaxed);
      start = task_start_.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (task_sequence_.load(std::memory_order_relaxed) == before) {
        break;
      }
    }
    if (attempt >= 64) {
      std::this_thread::yield();  // the writer was preempted mid-update: let it finish
    }
  }
  if (!active) {
    return std::nullopt;
  }
  TaskMetadata m;
  m.code = code;
  if (name != nullptr) {
    m.name = *name;
  }
  m.start = std::chrono::system_clock::time_point(std::chrono::system_clock::duration(start));
  m.bytes_read = task_bytes_read_.load(std::memory_order_relaxed);
  m.bytes_written = task_bytes_written_.load(std::memory_order_relaxed);
  return m;
}

std::vector<TaskCode> Client::task_codes() const {
  std::vector<TaskCode> codes;
  for (unsigned word = 0; word < assigned_codes_.size(); ++word) {
    std::uint64_t bits = assigned_codes_[word].load(std::memory_order_relaxed);
    while (bits != 0) {
      const int bit = std::countr_zero(bits);
      codes.push_back(static_cast<TaskCode>(word * 64 + static_cast<unsigned>(bit)));
      bits &= bits - 1;
    }
  }
  return codes;
}

ByteOrder TaskContext::byte_order() const noexcept { return client_.byte_order(); }

}  // namespace serialserver
