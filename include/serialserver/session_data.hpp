#pragma once

#include <any>
#include <memory>
#include <utility>

namespace serialserver {

/// Session-specific data negotiated in a handshake (user name, credentials, ...), handed to
/// every task function of the connection. The Go counterpart is HandleConnection's variadic
/// args and context values; here the value has one type of the application's choosing and is
/// read back type-safely.
/// Thread-safety: immutable once made; copies share the value and may be read from any thread.
class SessionData {
 public:
  SessionData() = default;
  /// Holds `value` (any copy- or move-constructible type).
  template <class T>
  explicit SessionData(T value)
      : value_(std::make_shared<const std::any>(std::in_place_type<T>, std::move(value))) {}

  /// True if a value is held.
  bool has_value() const noexcept { return value_ != nullptr; }
  /// The value if it has type T, else nullptr.
  template <class T>
  const T* get_if() const noexcept {
    return value_ ? std::any_cast<T>(value_.get()) : nullptr;
  }
  /// The value; throws std::bad_any_cast if there is none or it has another type.
  template <class T>
  const T& get() const {
    if (const T* p = get_if<T>()) {
      return *p;
    }
    throw std::bad_any_cast();
  }

 private:
  std::shared_ptr<const std::any> value_;
};

}  // namespace serialserver
