#include "address_rotation.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include <asio/ip/tcp.hpp>
#include <serialclient/address.hpp>

namespace serialclient::detail {

AddressRotation::AddressRotation(std::vector<std::string> addresses, AddressBackoff backoff,
                                 asio::any_io_executor executor)
    : configured_(std::move(addresses)), backoff_(backoff), executor_(std::move(executor)) {
  if (configured_.empty()) {
    throw std::invalid_argument("a pool needs at least one address");
  }
}

void AddressRotation::resolve_locked() {
  std::vector<std::string> seen;
  const auto add = [&](std::string address, std::string server_name) {
    if (std::find(seen.begin(), seen.end(), address) != seen.end()) {
      return;
    }
    seen.push_back(address);
    Entry entry;
    entry.target = Target{entries_.size(), std::move(address), std::move(server_name)};
    entry.next_backoff = backoff_.initial;
    entries_.push_back(std::move(entry));
  };
  asio::ip::tcp::resolver resolver(executor_);
  for (const std::string& text : configured_) {
    Address parsed;
    try {
      parsed = parse_address(text);
    } catch (const std::invalid_argument&) {
      add(text, {});  // Client::connect reports it (Errc::invalid_address)
      continue;
    }
    if (parsed.is_unix) {
      add(text, {});
      continue;
    }
    std::error_code ec;
    const auto results =
        resolver.resolve(parsed.host, parsed.port, asio::ip::resolver_base::numeric_service, ec);
    if (ec || results.empty()) {
      // Left to Client::connect, which resolves again at every attempt: a name that does not
      // resolve now may later, and until then it backs off as any failing address.
      add(parsed.to_string(), {});
      continue;
    }
    asio::error_code literal_ec;
    asio::ip::make_address(parsed.host, literal_ec);
    const std::string server_name = literal_ec ? parsed.host : std::string();
    for (const auto& result : results) {
      Address resolved;
      resolved.host = result.endpoint().address().to_string();
      resolved.port = parsed.port;
      add(resolved.to_string(), server_name);
    }
  }
  resolved_ = true;
}

std::vector<AddressRotation::Target> AddressRotation::plan() {
  std::lock_guard lock(mutex_);
  if (!resolved_) {
    resolve_locked();
  }
  const auto now = std::chrono::steady_clock::now();
  const std::size_t count = entries_.size();
  std::vector<Target> order;
  order.reserve(count);
  std::vector<const Entry*> backing_off;
  for (std::size_t step = 0; step < count; ++step) {
    const Entry& entry = entries_[(next_ + step) % count];
    if (entry.skip_until <= now) {
      order.push_back(entry.target);
    } else {
      backing_off.push_back(&entry);
    }
  }
  if (!order.empty()) {
    next_ = (order.front().index + 1) % count;
  }
  std::sort(backing_off.begin(), backing_off.end(),
            [](const Entry* a, const Entry* b) { return a->skip_until < b->skip_until; });
  for (const Entry* entry : backing_off) {
    order.push_back(entry->target);
  }
  return order;
}

void AddressRotation::succeeded(std::size_t index) {
  std::lock_guard lock(mutex_);
  Entry& entry = entries_.at(index);
  entry.skip_until = {};
  entry.next_backoff = backoff_.initial;
}

void AddressRotation::failed(std::size_t index) {
  std::lock_guard lock(mutex_);
  Entry& entry = entries_.at(index);
  const std::chrono::nanoseconds max = std::max(backoff_.max, backoff_.initial);
  entry.skip_until = std::chrono::steady_clock::now() + entry.next_backoff;
  entry.next_backoff = entry.next_backoff > max / 2 ? max : entry.next_backoff * 2;
}

}  // namespace serialclient::detail
