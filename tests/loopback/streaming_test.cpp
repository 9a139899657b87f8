// Streaming over real sockets with an in-process server: a 1 GiB request into demo task 6 (count)
// and a 1 GiB response from demo task 4 (pattern), each in bounded server memory. Under the
// sanitizers some sizes are smaller (they slow every byte down), but still far above the memory
// bound.

#include "demo_tasks.hpp"
#include "support/loopback.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <iostream>

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
#if defined(__SANITIZE_THREAD__)
constexpr bool kThreadSanitized = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kThreadSanitized = true;
#else
constexpr bool kThreadSanitized = false;
#endif
#else
constexpr bool kThreadSanitized = false;
#endif
/// The streamed request: 1 GiB (256 MiB under ThreadSanitizer, which slows every byte down).
constexpr std::uint64_t kRequestSize = kThreadSanitized ? kGiB / 4 : kGiB;
/// The streamed response: 1 GiB (128 MiB under ThreadSanitizer: producing and checking it is
/// byte by byte).
constexpr std::uint64_t kResponseSize = kThreadSanitized ? kGiB / 8 : kGiB;
/// How much the process may grow while streaming.
constexpr std::uint64_t kMaxGrowth = std::uint64_t{64} << 20;

/// Samples VmRSS every few milliseconds on a thread and keeps the largest value.
class RssSampler {
 public:
  RssSampler() : baseline_(vm_rss_bytes()), peak_(baseline_) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        note();
        std::this_thread::sleep_for(10ms);
      }
    });
  }
  ~RssSampler() { stop(); }
  void stop() {
    if (thread_.joinable()) {
      stop_ = true;
      thread_.join();
      note();
    }
  }
  std::uint64_t baseline() const { return baseline_; }
  std::uint64_t growth() const { return peak_.load() > baseline_ ? peak_.load() - baseline_ : 0; }

 private:
  void note() {
    const auto rss = vm_rss_bytes();
    auto seen = peak_.load();
    while (rss > seen && !peak_.compare_exchange_weak(seen, rss)) {
    }
  }
  std::uint64_t baseline_;
  std::atomic<std::uint64_t> peak_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class Streaming : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o = TestServer::quiet_options();
    o.timeout.read = 30s;
    o.timeout.write = 30s;
    o.max_request_bytes = 0;  // the 1 GiB request is streamed: no limit
    server_ = std::make_unique<TestServer>(std::move(o));
    demo::register_demo_tasks(server_->server());
    server_->start();
    // Warm up: the first connection allocates what every connection needs.
    RawClient warm(server_->port());
    ASSERT_EQ(warm.call(request(2), 2), bytes({0x00, 0x00}));
  }
  std::unique_ptr<TestServer> server_;
};

TEST_F(Streaming, HugeRequestIsCountedInBoundedMemory) {
  RawClient c(server_->port());
  ASSERT_EQ(c.call(request(6, bytes({1, 2, 3})), 11), bytes({0, 8, 0, 0, 0, 0, 0, 0, 0, 3, 0}));

  // A chunk of 1024 full blocks, content byte i = i mod 256 (any content would do).
  constexpr std::size_t kBlocksPerChunk = 1024;
  Bytes chunk;
  chunk.reserve(kBlocksPerChunk * (kMaxBlockSize + 1));
  std::uint8_t next = 0;
  for (std::size_t b = 0; b < kBlocksPerChunk; ++b) {
    chunk.push_back(static_cast<std::uint8_t>(kMaxBlockSize));
    for (std::size_t i = 0; i < kMaxBlockSize; ++i) {
      chunk.push_back(next++);
    }
  }
  const std::uint64_t full_blocks = kRequestSize / kMaxBlockSize;
  const auto remainder = static_cast<std::size_t>(kRequestSize % kMaxBlockSize);

  RssSampler rss;
  const auto start = std::chrono::steady_clock::now();
  c.send(bytes({6}));
  std::uint64_t sent_blocks = 0;
  while (sent_blocks + kBlocksPerChunk <= full_blocks) {
    c.send(chunk);
    sent_blocks += kBlocksPerChunk;
  }
  Bytes tail(chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(
                                                (full_blocks - sent_blocks) * (kMaxBlockSize + 1)));
  if (remainder > 0) {
    tail.push_back(static_cast<std::uint8_t>(remainder));
    tail.insert(tail.end(), remainder, 0x5A);
  }
  tail.push_back(0x00);
  c.send(tail);

  Bytes expected{0x00, 0x08};
  const Bytes count = big_endian<std::uint64_t>(kRequestSize);
  expected.insert(expected.end(), count.begin(), count.end());
  expected.push_back(0x00);
  EXPECT_EQ(c.recv(expected.size(), 60000ms), expected);
  rss.stop();
  const auto took = elapsed_since(start);
  EXPECT_LT(rss.growth(), kMaxGrowth) << "the server's memory grew with the request";
  std::cout << "[ info     ] " << (kRequestSize >> 20) << " MiB request in " << took.count()
            << " ms; RSS " << (rss.baseline() >> 20) << " MiB, growth " << (rss.growth() >> 20)
            << " MiB\n";
  // The connection is still in step.
  EXPECT_EQ(c.call(request(1, bytes({9})), 4), bytes({0x00, 0x01, 0x09, 0x00}));
}

/// Reads a response from a RawClient's socket and checks it as it comes: OK, then full 255-byte
/// blocks, then the remainder, then the end byte; content byte i = i mod 256.
class PatternResponseChecker {
 public:
  explicit PatternResponseChecker(std::uint64_t size) : size_(size) {
    for (std::size_t i = 0; i < pattern_.size(); ++i) {
      pattern_[i] = static_cast<std::uint8_t>(i);
    }
  }

  /// Reads until the end byte (or a failure, or the deadline); returns a failure message or "".
  std::string read_from(int fd, std::chrono::milliseconds timeout) {
    std::vector<std::uint8_t> buffer(1 << 20);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return "timed out after " + std::to_string(content_) + " content bytes";
      }
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
        continue;
      }
      const ssize_t r = ::recv(fd, buffer.data(), buffer.size(), 0);
      if (r <= 0) {
        return "connection ended after " + std::to_string(content_) + " content bytes";
      }
      if (auto failure = feed(std::span(buffer.data(), static_cast<std::size_t>(r)));
          !failure.empty()) {
        return failure;
      }
    }
    return "";
  }
  std::uint64_t blocks() const { return blocks_; }

 private:
  std::string feed(std::span<const std::uint8_t> data) {
    while (!data.empty()) {
      if (done_) {
        return "bytes after the end of the response";
      }
      if (!code_seen_) {
        if (data[0] != 0x00) {
          return "response code " + std::to_string(data[0]) + ", expected OK";
        }
        code_seen_ = true;
        data = data.subspan(1);
        continue;
      }
      if (block_left_ == 0) {  // a block length or the end byte
        const std::uint8_t n = data[0];
        data = data.subspan(1);
        const std::uint64_t left = size_ - content_;
        if (n == 0) {
          if (left != 0) {
            return "end byte after " + std::to_string(content_) + " content bytes";
          }
          done_ = true;
          continue;
        }
        const std::uint64_t want = std::min<std::uint64_t>(left, kMaxBlockSize);
        if (n != want) {
          return "block " + std::to_string(blocks_) + " at content offset " +
                 std::to_string(content_) + " has length " + std::to_string(n) + ", expected " +
                 std::to_string(want);
        }
        block_left_ = n;
        ++blocks_;
        continue;
      }
      const std::size_t n = std::min<std::size_t>(block_left_, data.size());
      if (std::memcmp(data.data(), pattern_.data() + (content_ % 256), n) != 0) {
        for (std::size_t i = 0; i < n; ++i) {
          if (data[i] != static_cast<std::uint8_t>(content_ + i)) {
            return "content byte " + std::to_string(content_ + i) + " is " +
                   std::to_string(data[i]);
          }
        }
      }
      content_ += n;
      block_left_ -= n;
      data = data.subspan(n);
    }
    return "";
  }

  std::uint64_t size_;
  std::array<std::uint8_t, 512>
      pattern_{};  // pattern_[i] = i mod 256: any block fits from any offset
  bool code_seen_ = false;
  bool done_ = false;
  std::size_t block_left_ = 0;
  std::uint64_t content_ = 0;
  std::uint64_t blocks_ = 0;
};

TEST_F(Streaming, HugeResponseIsStreamedInBoundedMemoryAndFramedInFullBlocks) {
  RawClient c(server_->port());
  RssSampler rss;
  const auto start = std::chrono::steady_clock::now();
  c.send(request(4, big_endian<std::uint64_t>(kResponseSize)));
  PatternResponseChecker checker(kResponseSize);
  const std::string failure = checker.read_from(c.fd(), 60000ms);
  rss.stop();
  const auto took = elapsed_since(start);
  EXPECT_EQ(failure, "");
  EXPECT_EQ(checker.blocks(), (kResponseSize + kMaxBlockSize - 1) / kMaxBlockSize);
  EXPECT_LT(rss.growth(), kMaxGrowth) << "the server's memory grew with the response";
  std::cout << "[ info     ] " << (kResponseSize >> 20) << " MiB response in " << took.count()
            << " ms; RSS " << (rss.baseline() >> 20) << " MiB, growth " << (rss.growth() >> 20)
            << " MiB\n";
  // Nothing follows the end byte, and the connection is still in step.
  EXPECT_EQ(c.call(request(1, bytes({9})), 4), bytes({0x00, 0x01, 0x09, 0x00}));
}

TEST_F(Streaming, ResponseSizesAroundTheBlockSizeAreFramedExactly) {
  RawClient c(server_->port());
  for (const std::uint64_t size :
       {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{254}, std::uint64_t{255},
        std::uint64_t{256}, std::uint64_t{510}, std::uint64_t{16384}, std::uint64_t{16385},
        std::uint64_t{65536 * 3 + 1}}) {
    SCOPED_TRACE("size " + std::to_string(size));
    c.send(request(4, big_endian<std::uint64_t>(size)));
    PatternResponseChecker checker(size);
    EXPECT_EQ(checker.read_from(c.fd(), 10000ms), "");
  }
  EXPECT_EQ(c.call(request(2), 2), bytes({0x00, 0x00}));
}

}  // namespace
}  // namespace serialserver::test
