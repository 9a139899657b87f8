#include "open_store.hpp"

#include <serialserver/duration.hpp>

#include <sys/stat.h>

#include <ctime>

namespace logd {
namespace {

/// Sets the umask for its lifetime and restores the previous one however the scope ends.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : previous_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(previous_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t previous_;
};

}  // namespace

std::shared_ptr<Store> open_store(const StoreOptions& options, std::chrono::nanoseconds wait,
                                  const sigset_t& signals, serialserver::Logger& log) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  bool warned = false;
  for (;;) {
    // The database, its WAL and shared-memory files hold the logs: readable by this user only
    // (SQLite creates the WAL and SHM files with the database file's mode).
    try {
      const ScopedUmask private_files(077);
      return std::make_shared<Store>(options);
    } catch (const DatabaseInUse& e) {
      if (std::chrono::steady_clock::now() >= deadline) {
        throw;
      }
      if (!warned) {
        log.warn("{}; waiting up to {} for it to stop (--db-wait)", e.what(),
                 serialserver::format_duration(wait));
        warned = true;
      }
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
