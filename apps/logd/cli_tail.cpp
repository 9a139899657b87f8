#include "cli_tail.hpp"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <system_error>
#include <thread>

namespace logd::cli {

namespace {

/// Connects again after `reason`, pausing longer after each failed attempt. Says so once on
/// stderr. A handshake refused by the server (std::runtime_error) is not retried.
std::unique_ptr<Client> reconnect(const ClientOptions& client_options, const TailOptions& options,
                                  const std::string& reason, std::uint64_t cursor) {
  std::fprintf(stderr,
               "serialserver-log: lost the connection to %s (%s); reconnecting, then following "
               "after id %llu\n",
               client_options.address.c_str(), reason.c_str(),
               static_cast<unsigned long long>(cursor));
  std::fflush(stderr);
  auto pause = options.reconnect_first;
  for (;;) {
    std::this_thread::sleep_for(pause);
    try {
      return std::make_unique<Client>(client_options);
    } catch (const std::system_error&) {
      pause = std::min(pause * 2, options.reconnect_max);
    }
  }
}

}  // namespace

void run_tail(const ClientOptions& client_options, const TailOptions& options,
              const RecordPrinter& print) {
  auto client = std::make_unique<Client>(client_options);
  TailQuery query;
  query.log = options.log;
  query.after_id = kTailLast;
  query.limit = std::clamp<std::uint32_t>(options.last, 1, kMaxTailLimit);
  std::uint64_t cursor = 0;
  for (const auto& record : client->tail(query)) {
    // With -n 0 the last record only gives the cursor to follow from.
    if (options.last > 0 && !print(record)) {
      return;
    }
    cursor = record.id;
  }
  if (std::fflush(stdout) != 0 || !options.follow) {
    return;
  }
  query.limit = 1000;
  query.wait_ms = options.wait_ms;
  for (;;) {
    query.after_id = cursor;
    std::vector<Record> records;
    try {
      records = client->tail(query);
    } catch (const std::system_error& e) {
      client = reconnect(client_options, options, e.what(), cursor);
      continue;
    } catch (const GoodbyeReceived& e) {
      client = reconnect(client_options, options, e.what(), cursor);
      continue;
    } catch (const ServerError& e) {
      if (e.code() != kErrShuttingDown) {
        throw;
      }
      client = reconnect(client_options, options, "the server is shutting down", cursor);
      continue;
    }
    for (const auto& record : records) {
      if (!print(record)) {
        return;
      }
      cursor = record.id;
    }
    if (std::fflush(stdout) != 0) {
      return;
    }
  }
}

}  // namespace logd::cli
