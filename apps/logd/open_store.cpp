#include "open_store.hpp"

#include <serialserver/duration.hpp>

#include <sys/stat.h>

#include <ctime>

namespace logd {

std::shared_ptr<Store> open_store(const StoreOptions& options, std::chrono::nanoseconds wait,
                                  const sigset_t& signals, serialserver::Logger& log) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  bool warned = false;
  for (;;) {
    // The database, its WAL and shared-memory files hold the logs: readable by this user only
    // (SQLite creates the WAL and SHM files with the database file's mode).
    const mode_t old_mask = ::umask(077);
    try {
      auto store = std::make_shared<Store>(options);
      ::umask(old_mask);
      return store;
    } catch (const DatabaseInUse& e) {
      ::umask(old_mask);
      if (std::chrono::steady_clock::now() >= deadline) {
        throw;
      }
      if (!warned) {
        log.warn("{}; waiting up to {} for it to stop (--db-wait)", e.what(),
                 serialserver::format_duration(wait));
        warned = true;
      }
    } catch (...) {
      ::umask(old_mask);
      throw;
    }
    timespec pause{};
    pause.tv_nsec = 100'000'000;
    const int signal_number = ::sigtimedwait(&signals, nullptr, &pause);
    if (signal_number == SIGINT || signal_number == SIGTERM) {
      return nullptr;
    }
  }
}

}  // namespace logd
