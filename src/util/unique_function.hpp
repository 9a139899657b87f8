#pragma once

#include <memory>
#include <utility>

namespace serialserver::detail {

/// A move-only `void()` callable (std::move_only_function is C++23); it holds Asio completion
/// handlers, which cannot be copied.
class UniqueFunction {
 public:
  UniqueFunction() = default;
  template <class F>
  explicit UniqueFunction(F f) : impl_(std::make_unique<Impl<F>>(std::move(f))) {}
  void operator()() { impl_->call(); }
  explicit operator bool() const noexcept { return impl_ != nullptr; }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual void call() = 0;
  };
  template <class F>
  struct Impl final : Base {
    explicit Impl(F f) : function(std::move(f)) {}
    void call() override { function(); }
    F function;
  };
  std::unique_ptr<Base> impl_;
};

}  // namespace serialserver::detail
