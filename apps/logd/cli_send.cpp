#include "cli_send.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace logd::cli {

namespace {

constexpr std::size_t kReadChunk = std::size_t{64} << 10;

/// Reads up to `out.size()` bytes; 0 at the end. Throws std::system_error on a read error.
std::size_t read_chunk(std::FILE* in, std::vector<char>& out) {
  const std::size_t n = std::fread(out.data(), 1, out.size(), in);
  if (n == 0 && std::ferror(in) != 0) {
    throw std::system_error(errno, std::generic_category(), "reading standard input");
  }
  return n;
}

std::size_t encoded_bytes(const Message& m) {
  std::size_t n = 21 + m.log.size() + m.text.size();
  for (const auto& f : m.fields) {
    n += 8 + f.key.size() + f.value.size();
  }
  return n;
}

/// Collects messages and sends them as batches.
class Batcher {
 public:
  Batcher(Client& client, std::uint64_t& stored) : client_(client), stored_(stored) {}

  void add(Message message) {
    const std::size_t size = encoded_bytes(message);
    if (!batch_.empty() && (batch_.size() >= kMaxBatch || bytes_ + size > kBatchBytes)) {
      flush();
    }
    bytes_ += size;
    batch_.push_back(std::move(message));
  }

  void flush() {
    if (batch_.empty()) {
      return;
    }
    client_.append_batch(batch_);
    stored_ += batch_.size();
    batch_.clear();
    bytes_ = 0;
  }

 private:
  Client& client_;
  std::uint64_t& stored_;
  std::vector<Message> batch_;
  std::size_t bytes_ = 0;
};

}  // namespace

void send_lines(Client& client, const Message& base, std::FILE* in, std::uint64_t& stored) {
  Batcher batcher(client, stored);
  std::vector<char> chunk(kReadChunk);
  std::string line;
  std::uint64_t line_number = 0;
  bool too_long = false;
  const auto finish_line = [&] {
    ++line_number;
    if (too_long) {
      batcher.flush();
      throw std::runtime_error("line " + std::to_string(line_number) + " of standard input is " +
                               "longer than " + std::to_string(kMaxTextBytes) +
                               " bytes, the most a message may hold");
    }
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    if (!line.empty()) {
      Message message = base;
      message.text = std::move(line);
      batcher.add(std::move(message));
    }
    line.clear();
  };
  for (;;) {
    const std::size_t n = read_chunk(in, chunk);
    if (n == 0) {
      break;
    }
    std::size_t begin = 0;
    while (begin < n) {
      const void* found = std::memchr(chunk.data() + begin, '\n', n - begin);
      const std::size_t end =
          found == nullptr
              ? n
              : static_cast<std::size_t>(static_cast<const char*>(found) - chunk.data());
      // Past the limit (and a carriage return), the rest of the line is not kept.
      if (line.size() + (end - begin) > kMaxTextBytes + 1) {
        too_long = true;
      } else {
        line.append(chunk.data() + begin, end - begin);
      }
      if (found == nullptr) {
        break;
      }
      if (line.size() > kMaxTextBytes + (line.ends_with('\r') ? 1 : 0)) {
        too_long = true;
      }
      finish_line();
      too_long = false;
      begin = end + 1;
    }
  }
  if (!line.empty() || too_long) {
    if (line.size() > kMaxTextBytes + (line.ends_with('\r') ? 1 : 0)) {
      too_long = true;
    }
    finish_line();
  }
  batcher.flush();
}

std::string read_whole(std::FILE* in) {
  std::vector<char> chunk(kReadChunk);
  std::string text;
  for (;;) {
    const std::size_t n = read_chunk(in, chunk);
    if (n == 0) {
      return text;
    }
    text.append(chunk.data(), n);
    if (text.size() > kMaxTextBytes) {
      throw std::runtime_error("standard input holds more than " + std::to_string(kMaxTextBytes) +
                               " bytes, the most a message may hold");
    }
  }
}

}  // namespace logd::cli
