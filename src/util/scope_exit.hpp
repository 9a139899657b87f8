#pragma once

#include <type_traits>
#include <utility>

namespace serialserver::detail {

/// Runs a function when the enclosing scope ends, however it ends: the cleanup of a local
/// acquisition (a pool slot, a connection count, a tracked socket), also in coroutines, where
/// the scope is the coroutine's frame. The function must not throw.
/// Thread-safety: a local object of one thread. Not copyable or movable.
template <class F>
class ScopeExit {
 public:
  explicit ScopeExit(F f) noexcept(std::is_nothrow_move_constructible_v<F>) : f_(std::move(f)) {}
  ~ScopeExit() { f_(); }
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;

 private:
  F f_;
};

}  // namespace serialserver::detail
