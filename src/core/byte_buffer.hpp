#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

namespace serialserver::detail {

/// Buffer storage recently given back, kept per thread for reuse. A connection at pipeline
/// depth 1 empties its buffers after every request and gives them back (so that an idle
/// connection holds none); without this cache that is a malloc and a free of 16 KiB and
/// 64 KiB per request. Bounded per thread (kSlots sizes, kBlocksPerSlot blocks each), so it
/// adds at most a few MiB per I/O thread however many connections there are.
/// Under AddressSanitizer the cache is off, so every use after release is still caught.
/// Thread-safety: each thread has its own cache; a block may be given back on another thread
/// than the one that took it.
class StorageCache {
 public:
  static std::unique_ptr<std::uint8_t[]> take(std::size_t capacity) {
#if !defined(__SANITIZE_ADDRESS__)
    if (Slot* slot = local().find(capacity); slot != nullptr && slot->count > 0) {
      return std::move(slot->blocks[--slot->count]);
    }
#endif
    return std::make_unique_for_overwrite<std::uint8_t[]>(capacity);
  }

  static void give([[maybe_unused]] std::unique_ptr<std::uint8_t[]> block,
                   [[maybe_unused]] std::size_t capacity) noexcept {
#if !defined(__SANITIZE_ADDRESS__)
    if (Slot* slot = local().find_or_claim(capacity);
        slot != nullptr && slot->count < kBlocksPerSlot) {
      slot->blocks[slot->count++] = std::move(block);
    }
#endif
    // Otherwise `block` frees itself here.
  }

 private:
  static constexpr std::size_t kSlots = 4;
  static constexpr std::size_t kBlocksPerSlot = 16;
  struct Slot {
    std::size_t capacity = 0;
    std::size_t count = 0;
    std::unique_ptr<std::uint8_t[]> blocks[kBlocksPerSlot];
  };
  struct Cache {
    Slot slots[kSlots];
    Slot* find(std::size_t capacity) noexcept {
      for (Slot& s : slots) {
        if (s.capacity == capacity) {
          return &s;
        }
      }
      return nullptr;
    }
    Slot* find_or_claim(std::size_t capacity) noexcept {
      if (Slot* s = find(capacity)) {
        return s;
      }
      for (Slot& s : slots) {
        if (s.capacity == 0) {
          s.capacity = capacity;
          return &s;
        }
      }
      return nullptr;
    }
  };
  static Cache& local() noexcept {
    thread_local Cache cache;
    return cache;
  }
};

/// A contiguous byte queue with a fixed capacity: bytes are appended at the back and consumed
/// from the front. Its storage is taken only while it holds bytes and given back once it is
/// empty (release_if_empty), so an idle connection holds no buffer.
/// Thread-safety: none; owned by one connection.
class ByteBuffer {
 public:
  explicit ByteBuffer(std::size_t capacity) noexcept : capacity_(capacity) {}

  std::size_t size() const noexcept { return end_ - begin_; }
  bool empty() const noexcept { return begin_ == end_; }
  std::size_t capacity() const noexcept { return capacity_; }

  /// The bytes held.
  std::span<const std::uint8_t> readable() const noexcept {
    return {data_.get() + begin_, end_ - begin_};
  }
  std::span<std::uint8_t> readable_mut() noexcept { return {data_.get() + begin_, end_ - begin_}; }
  /// Free space at the back (compacting first when the front has been consumed).
  std::span<std::uint8_t> writable() {
    ensure_storage();
    if (end_ == capacity_ && begin_ > 0) {
      compact();
    }
    return {data_.get() + end_, capacity_ - end_};
  }
  /// Free space at the back without compacting.
  std::size_t tail_room() const noexcept { return data_ ? capacity_ - end_ : capacity_; }
  /// Marks `n` bytes of writable() as filled.
  void commit(std::size_t n) noexcept { end_ += n; }
  /// Drops `n` bytes from the front.
  void consume(std::size_t n) noexcept {
    begin_ += n;
    if (begin_ == end_) {
      begin_ = end_ = 0;
    }
  }
  std::uint8_t front() const noexcept { return data_[begin_]; }
  std::uint8_t pop_front() noexcept {
    const std::uint8_t b = data_[begin_];
    consume(1);
    return b;
  }
  /// Appends one byte; requires tail room.
  void push_back(std::uint8_t b) {
    ensure_storage();
    data_[end_++] = b;
  }
  /// Appends bytes; requires tail room for them.
  void append(std::span<const std::uint8_t> bytes) {
    ensure_storage();
    std::memcpy(data_.get() + end_, bytes.data(), bytes.size());
    end_ += bytes.size();
  }
  /// Moves the held bytes to the front of the storage.
  void compact() noexcept {
    if (begin_ > 0) {
      std::memmove(data_.get(), data_.get() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
  }
  /// Gives the storage back if nothing is held.
  void release_if_empty() noexcept {
    if (empty() && data_) {
      StorageCache::give(std::move(data_), capacity_);
    }
  }
  /// True while storage is held (see release_if_empty).
  bool has_storage() const noexcept { return static_cast<bool>(data_); }

 private:
  void ensure_storage() {
    if (!data_) {
      data_ = StorageCache::take(capacity_);
    }
  }

  std::unique_ptr<std::uint8_t[]> data_;
  std::size_t capacity_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace serialserver::detail
