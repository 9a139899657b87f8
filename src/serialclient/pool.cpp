#include "address_rotation.hpp"
#include "retry_rules.hpp"

#include <chrono>
#include <optional>
#include <utility>

#include <serialclient/pool.hpp>

namespace serialclient {

Pool::Pool(std::string address, PoolOptions options)
    : Pool(std::vector<std::string>{std::move(address)}, std::move(options)) {}

Pool::Pool(std::vector<std::string> addresses, PoolOptions options)
    : options_(std::move(options)),
      work_(io_.get_executor()),
      addresses_(std::make_unique<detail::AddressRotation>(
          std::move(addresses), options_.address_backoff, io_.get_executor())) {
  const unsigned threads = options_.io_threads == 0 ? 1 : options_.io_threads;
  threads_.reserve(threads);
  for (unsigned i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { io_.run(); });
  }
}

Pool::~Pool() {
  close();
  work_.reset();
  for (auto& thread : threads_) {
    thread.join();
  }
}

std::unique_ptr<Client> Pool::acquire(std::error_code& ec, bool& reused) {
  reused = false;
  {
    std::unique_lock lock(mutex_);
    available_.wait(lock,
                    [&] { return closed_ || !idle_.empty() || open_ < options_.max_connections; });
    if (closed_) {
      ec = make_error_code(Errc::connection_closed);
      return nullptr;
    }
    if (!idle_.empty()) {
      auto client = std::move(idle_.back());
      idle_.pop_back();
      reused = true;
      return client;
    }
    ++open_;  // reserve the slot, then connect without holding the lock
  }
  auto client = connect_new(ec);
  if (!client) {
    std::lock_guard lock(mutex_);
    --open_;
    available_.notify_one();
    return nullptr;
  }
  return client;
}

std::unique_ptr<Client> Pool::connect_new(std::error_code& ec) {
  for (const auto& target : addresses_->plan()) {
    if (is_closed()) {
      ec = make_error_code(Errc::connection_closed);
      return nullptr;
    }
    const bool name_for_tls = options_.connection.tls &&
                              options_.connection.tls->server_name.empty() &&
                              !target.server_name.empty();
    std::unique_ptr<Client> client;
    if (name_for_tls) {
      // The address was resolved here from a name: the certificate must still carry the name.
      Options options = options_.connection;
      options.tls->server_name = target.server_name;
      client = std::make_unique<Client>(io_, std::move(options));
    } else {
      client = std::make_unique<Client>(io_, options_.connection);
    }
    client->connect(target.address, ec);
    if (!ec) {
      addresses_->succeeded(target.index);
      return client;
    }
    if (ec != Errc::invalid_address) {
      addresses_->failed(target.index);
    }
  }
  return nullptr;  // with the last address's error
}

void Pool::release(std::unique_ptr<Client> client) {
  std::unique_ptr<Client> dropped;
  {
    std::lock_guard lock(mutex_);
    if (client->is_open() && !closed_) {
      idle_.push_back(std::move(client));
    } else {
      dropped = std::move(client);
      --open_;
    }
  }
  available_.notify_one();
  // dropped is destroyed here, outside the lock: its destructor posts the close.
}

Result Pool::call(TaskCode code, std::span<const std::uint8_t> request, std::error_code& ec,
                  CallOptions call) {
  ec.clear();
  if (serialserver::is_reserved_task_code(code)) {
    ec = make_error_code(Errc::reserved_task_code);
    return {};
  }
  const RetryPolicy& policy = options_.retry;
  const auto start = std::chrono::steady_clock::now();
  std::optional<detail::Backoff> backoff;  // made at the first retry: most calls need none
  for (;;) {
    detail::Attempt attempt;
    bool reused = false;
    auto client = acquire(ec, reused);
    if (client) {
      attempt.connected = true;
      attempt.result = client->call_reporting(code, request, ec, attempt.written);
      release(std::move(client));
      if (reused && !attempt.written && (ec || attempt.result.is_goodbye())) {
        // The server left this idle connection (an unprompted Goodbye, or its end) before the
        // call went out: it is dropped, and the call goes to the next one (at worst a new
        // connection) at once, retry policy or not.
        continue;
      }
    } else if (is_closed()) {
      return {};
    }
    attempt.error = ec;
    if (!policy.enabled || !detail::may_retry(attempt, call)) {
      return attempt.result;
    }
    if (!backoff) {
      backoff.emplace(policy);
    }
    const std::chrono::nanoseconds delay = backoff->next();
    if (std::chrono::steady_clock::now() - start + delay > policy.budget ||
        !sleep_unless_closed(delay)) {
      return attempt.result;  // with `ec` as the attempt left it
    }
  }
}

bool Pool::sleep_unless_closed(std::chrono::nanoseconds delay) {
  std::unique_lock lock(mutex_);
  return !closing_.wait_for(lock, delay, [&] { return closed_; });
}

bool Pool::is_closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

std::vector<Result> Pool::call_batch(std::span<const Call> calls, std::error_code& ec) {
  ec.clear();
  for (;;) {
    bool reused = false;
    auto client = acquire(ec, reused);
    if (!client) {
      return {};
    }
    bool written = false;
    auto results = client->call_batch_reporting(calls, ec, written);
    release(std::move(client));
    const bool left_idle = !written && (ec || (!results.empty() && results.front().is_goodbye()));
    if (!(reused && left_idle)) {
      return results;
    }
  }
}

std::size_t Pool::size() const {
  std::lock_guard lock(mutex_);
  return open_;
}

std::size_t Pool::idle() const {
  std::lock_guard lock(mutex_);
  return idle_.size();
}

void Pool::close() {
  std::vector<std::unique_ptr<Client>> idle;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    idle.swap(idle_);
    open_ -= idle.size();
  }
  available_.notify_all();
  closing_.notify_all();
  idle.clear();
}

}  // namespace serialclient
