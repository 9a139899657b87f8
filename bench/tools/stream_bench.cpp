// stream_bench: streaming and idle-connection measurements for bench/compare.sh.
//
//   stream_bench upload   HOST PORT TASK BYTES   request of BYTES content to TASK (e.g. demo 6)
//   stream_bench download HOST PORT BYTES        demo task 4: a response of BYTES, checked
//   stream_bench echo     HOST PORT BYTES        task 1 echo of BYTES, sent and received at once
//   stream_bench idle     HOST PORT N SECONDS    holds N idle connections open for SECONDS
//
// Prints one line: "RESULT mode=... bytes=... seconds=... mbps=..." (MB/s of content, one
// direction). Loopback only; plain blocking sockets, 1 MiB buffers, so the tool is not the limit.

#include <serialserver/wire/block_decoder.hpp>
#include <serialserver/wire/block_encoder.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kChunk = 1 << 20;

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(2);
}

int connect_to(const char* host, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    die("socket");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    die("inet_pton");
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    die("connect");
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

void write_all(int fd, const std::uint8_t* data, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
    if (w <= 0) {
      die("send");
    }
    data += w;
    n -= static_cast<std::size_t>(w);
  }
}

/// Sends task code + BYTES of content as 255-byte blocks + end byte, from a 1 MiB template.
void send_request(int fd, std::uint8_t task, std::uint64_t bytes) {
  std::vector<std::uint8_t> blocks;
  blocks.reserve(kChunk + kChunk / 255 + 2);
  std::vector<std::uint8_t> content(std::size_t{255} * 4096);  // whole blocks per chunk
  for (std::size_t i = 0; i < content.size(); ++i) {
    content[i] = static_cast<std::uint8_t>(i);
  }
  write_all(fd, &task, 1);
  while (bytes > 0) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(bytes, content.size()));
    blocks.resize(serialserver::wire::encoded_size(n));
    std::size_t len = serialserver::wire::encode_message({content.data(), n}, blocks);
    --len;  // drop this piece's end byte: the message goes on
    write_all(fd, blocks.data(), len);
    bytes -= n;
  }
  const std::uint8_t end = 0;
  write_all(fd, &end, 1);
}

/// Reads a response: returns its content size; checks the pattern if asked.
std::uint64_t read_response(int fd, bool check_pattern, std::vector<std::uint8_t>* keep = nullptr) {
  std::vector<std::uint8_t> buf(kChunk);
  std::vector<std::uint8_t> out(kChunk);
  serialserver::wire::BlockDecoder decoder;
  bool have_code = false;
  std::uint64_t total = 0;
  for (;;) {
    const ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
    if (r <= 0) {
      die("recv (response ended early)");
    }
    std::span<const std::uint8_t> in(buf.data(), static_cast<std::size_t>(r));
    if (!have_code) {
      if (in[0] != 0) {
        std::fprintf(stderr, "response code %d\n", in[0]);
        std::exit(3);
      }
      have_code = true;
      in = in.subspan(1);
    }
    while (!in.empty()) {
      const auto step = decoder.next(in);
      in = in.subspan(step.consumed);
      if (check_pattern) {
        // Byte i of the response is i mod 256: compare against a table, 256 bytes at a time.
        static const auto kTable = [] {
          std::array<std::uint8_t, 512> t{};
          for (std::size_t i = 0; i < t.size(); ++i) {
            t[i] = static_cast<std::uint8_t>(i);
          }
          return t;
        }();
        std::size_t done = 0;
        while (done < step.content.size()) {
          const auto phase = static_cast<std::size_t>((total + done) & 255);
          const std::size_t n = std::min<std::size_t>(256, step.content.size() - done);
          if (std::memcmp(step.content.data() + done, kTable.data() + phase, n) != 0) {
            std::fprintf(stderr, "pattern mismatch near %llu\n",
                         static_cast<unsigned long long>(total) + done);
            std::exit(3);
          }
          done += n;
        }
      }
      if (keep != nullptr) {
        keep->insert(keep->end(), step.content.begin(), step.content.end());
      }
      total += step.content.size();
      if (step.end) {
        return total;
      }
    }
  }
}

void report(const char* mode, std::uint64_t bytes, Clock::time_point start) {
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("RESULT mode=%s bytes=%llu seconds=%.3f mbps=%.1f\n", mode,
              static_cast<unsigned long long>(bytes), seconds,
              static_cast<double>(bytes) / seconds / 1e6);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: see the comment at the top of stream_bench.cpp\n");
    return 64;
  }
  const std::string mode = argv[1];
  const char* host = argv[2];
  const int port = std::atoi(argv[3]);
  if (std::strcmp(host, "127.0.0.1") != 0) {
    std::fprintf(stderr, "loopback (127.0.0.1) only\n");
    return 64;
  }
  if (mode == "upload" && argc == 6) {
    const auto task = static_cast<std::uint8_t>(std::atoi(argv[4]));
    const std::uint64_t bytes = std::strtoull(argv[5], nullptr, 10);
    const int fd = connect_to(host, port);
    const auto start = Clock::now();
    send_request(fd, task, bytes);
    std::vector<std::uint8_t> answer;
    read_response(fd, false, &answer);
    report("upload", bytes, start);
    if (task == 6 && answer.size() == 8) {
      std::uint64_t n = 0;
      for (auto b : answer) {
        n = (n << 8) | b;
      }
      if (n != bytes) {
        std::fprintf(stderr, "count %llu != %llu\n", static_cast<unsigned long long>(n),
                     static_cast<unsigned long long>(bytes));
        return 3;
      }
    }
    return 0;
  }
  if (mode == "download" && argc == 5) {
    const std::uint64_t bytes = std::strtoull(argv[4], nullptr, 10);
    const int fd = connect_to(host, port);
    std::uint8_t req[11] = {4, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 8; ++i) {
      req[2 + i] = static_cast<std::uint8_t>(bytes >> (8 * (7 - i)));
    }
    const auto start = Clock::now();
    write_all(fd, req, sizeof req);
    const std::uint64_t got = read_response(fd, true);
    report("download", got, start);
    return got == bytes ? 0 : 3;
  }
  if (mode == "echo" && argc == 5) {
    const std::uint64_t bytes = std::strtoull(argv[4], nullptr, 10);
    const int fd = connect_to(host, port);
    const auto start = Clock::now();
    std::thread sender([&] { send_request(fd, 1, bytes); });
    const std::uint64_t got = read_response(fd, false);
    sender.join();
    report("echo", got, start);
    return got == bytes ? 0 : 3;
  }
  if (mode == "idle" && argc == 6) {
    const int n = std::atoi(argv[4]);
    const int seconds = std::atoi(argv[5]);
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    std::vector<int> fds;
    fds.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      fds.push_back(connect_to(host, port));
    }
    // One keep-alive on each so that every connection has been served once.
    for (int fd : fds) {
      const std::uint8_t ka[2] = {0xFA, 0x00};
      write_all(fd, ka, 2);
      std::uint8_t resp[2];
      if (::recv(fd, resp, 2, MSG_WAITALL) != 2) {
        die("keep-alive");
      }
    }
    std::printf("READY connections=%d\n", n);
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    for (int fd : fds) {
      ::close(fd);
    }
    return 0;
  }
  std::fprintf(stderr, "bad arguments\n");
  return 64;
}
