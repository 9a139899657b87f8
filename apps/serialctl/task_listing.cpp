#include "task_listing.hpp"

#include <serialserver/wire/block_decoder.hpp>

#include <array>
#include <cstdio>
#include <system_error>

namespace serialctl {
namespace {

/// The largest listing read: 250 entries of 257 bytes fit in 64 KiB; more is not a listing.
constexpr std::size_t kMaxListingBytes = std::size_t{1} << 20;

asio::awaitable<serialserver::ByteOrder> describe(serialclient::HandshakeStream& stream,
                                                  DescribeAnswer* answer) {
  const std::array<std::uint8_t, 2> request{serialserver::kDescribeTaskCode, 0x00};
  co_await stream.async_write(request);
  std::array<std::uint8_t, 1> code{};
  co_await stream.async_read_exact(code);
  answer->code = static_cast<serialserver::ResponseCode>(code[0]);
  if (answer->code == serialserver::ResponseCode::error) {
    co_await stream.async_read_exact(code);
    answer->error_code = code[0];
  } else if (answer->code == serialserver::ResponseCode::ok) {
    serialserver::wire::BlockDecoder decoder;
    std::array<std::uint8_t, 4096> buffer{};
    bool end = false;
    while (!end) {
      const std::size_t n = co_await stream.async_read_some(buffer);
      std::span<const std::uint8_t> input(buffer.data(), n);
      while (!input.empty() && !end) {
        const auto chunk = decoder.next(input);
        answer->content.insert(answer->content.end(), chunk.content.begin(), chunk.content.end());
        input = input.subspan(chunk.consumed);
        end = chunk.end;
      }
      if (answer->content.size() > kMaxListingBytes) {
        throw std::system_error(std::make_error_code(std::errc::message_size),
                                "describe answer larger than any listing");
      }
    }
  }
  co_return serialserver::ByteOrder::big_endian;
}

}  // namespace

std::vector<ListedTask> parse_listing(std::span<const std::uint8_t> content) {
  if (content.empty()) {
    throw MalformedListing("empty listing (no format byte)");
  }
  if (content[0] != 1) {
    throw MalformedListing("unknown listing format " + std::to_string(content[0]) +
                           " (expected 1)");
  }
  std::vector<ListedTask> tasks;
  std::size_t pos = 1;
  while (pos < content.size()) {
    if (content.size() - pos < 2) {
      throw MalformedListing("listing cut off inside the entry at byte " + std::to_string(pos));
    }
    ListedTask task;
    task.code = content[pos];
    const std::size_t length = content[pos + 1];
    pos += 2;
    if (content.size() - pos < length) {
      throw MalformedListing("listing cut off inside the name of task " +
                             std::to_string(task.code));
    }
    if (!tasks.empty() && task.code <= tasks.back().code) {
      throw MalformedListing("task codes not in ascending order at task " +
                             std::to_string(task.code));
    }
    task.name.assign(content.begin() + static_cast<std::ptrdiff_t>(pos),
                     content.begin() + static_cast<std::ptrdiff_t>(pos + length));
    pos += length;
    tasks.push_back(std::move(task));
  }
  return tasks;
}

serialclient::HandshakeFunction describe_hook(DescribeAnswer* answer) {
  // Not a coroutine itself: the coroutine gets `answer` as a parameter, not as a capture of a
  // lambda that may be gone while it is suspended.
  return [answer](serialclient::HandshakeStream& stream) { return describe(stream, answer); };
}

std::string printable_name(const std::string& name) {
  std::string out;
  for (const char ch : name) {
    const auto byte = static_cast<unsigned char>(ch);
    if (byte < 0x20 || byte == 0x7f || ch == '\\') {
      std::array<char, 5> escaped{};
      std::snprintf(escaped.data(), escaped.size(), "\\x%02x", byte);
      out += escaped.data();
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace serialctl
