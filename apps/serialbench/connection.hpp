#pragma once

// One benchmark connection: its socket, its request template, its place in the sequence of
// requests, and the state of the response being parsed.

#include <serialserver/wire/block_decoder.hpp>
#include "options.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include <openssl/ssl.h>
#include <serialclient/address.hpp>
#include <serialclient/retry.hpp>

namespace serialbench {

/// The largest read of one socket in one loop turn.
inline constexpr std::size_t kReadBufferSize = std::size_t{256} * 1024;
/// The per-request sequence stamp: connection number in the top 24 bits, sequence below.
inline constexpr unsigned kSeqBits = 40;
inline constexpr std::size_t kStampBytes = 8;

/// One connection. Thread-safety: owned by one worker thread. Lifetime: the socket and the SSL
/// object are closed by the worker that owns it.
struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;  // --tls only
  std::uint64_t id = 0;
  std::size_t index = 0;  // in its worker's list: the epoll key
  bool alive = true;
  bool want_out = false;     // EPOLLOUT registered: a write is pending (epoll engine)
  bool send_queued = false;  // a send is in the ring (io_uring engine)
  // The io_uring engine's receive buffer: a recv in the ring needs memory of its own.
  std::unique_ptr<std::uint8_t[]> recv_buffer;
  std::size_t recv_size = 0;
  // Requests: `batch` holds `pipeline` copies of the encoded request; a batch of k requests is
  // the first k copies with their stamps rewritten, sent with one write().
  std::vector<std::uint8_t> batch;
  std::size_t write_pos = 0;  // a partly written batch: [write_pos, write_end) is pending
  std::size_t write_end = 0;
  std::size_t owed = 0;         // requests that may go out once the pending write is done
  std::uint64_t quota = ~0ULL;  // requests still to send (requests mode)
  std::uint64_t next_seq = 0;
  std::uint64_t expect_seq = 0;
  std::size_t inflight = 0;
  std::vector<std::uint64_t> sent_at;  // by seq % pipeline
  std::uint64_t pace_start_ns = 0;     // --rps: when request 0 was due
  // Response parsing.
  enum class State : std::uint8_t { code, error_code, content } state = State::code;
  serialserver::wire::BlockDecoder decoder;
  std::size_t content_offset = 0;
  bool content_bad = false;
  bool response_ok = false;
  std::vector<std::uint8_t> expected;  // the content of the request being answered
  // --retry: a request answered busy waits out its back-off in `waiting`, then in `resending`
  // until it is emitted again; `retry_of` (by seq % pipeline) is the call a request retries.
  struct Retry {
    std::uint64_t due_ns = 0;
    std::uint64_t started_ns = 0;  // the call's first send: its latency runs from there
    serialclient::RetryBackoff backoff;
  };
  std::vector<Retry> waiting;
  std::deque<Retry> resending;
  std::vector<std::optional<Retry>> retry_of;
  // --retry: a lost connection is down (fd -1, not alive) until it is opened again; its calls
  // wait in `resending`. Connects are tried from `reconnect_due_ns`, with a back-off between
  // refused ones (and between connections lost before any answer), for at most the policy's
  // budget from `lost_ns`.
  bool stale_recv = false;  // io_uring engine: a recv of the lost socket is still in the ring
  std::uint64_t lost_ns = 0;
  std::uint64_t reconnect_due_ns = 0;
  std::uint64_t opened_seq = 0;  // expect_seq when the connection was last opened
  std::optional<serialclient::RetryBackoff> reconnect_backoff;
};

/// Writes the stamp of request `seq` on connection `id` into the first `n` bytes at `at`.
void stamp(std::uint8_t* at, std::size_t n, std::uint64_t id, std::uint64_t seq);

/// Connects one blocking socket, then (if `non_blocking`) makes it non-blocking. Returns -1 with
/// errno set.
int connect_socket(const serialclient::Address& address, bool non_blocking);

/// Builds connection `id` over `fd`: its request template, repeated `pipeline` times.
std::unique_ptr<Conn> make_conn(const Config& config, int fd, std::uint64_t id);

/// The receive buffer of a connection on the io_uring engine: room for the responses to a full
/// pipeline of requests (an echo is as long as its request; other answers may take more reads),
/// at least 16 KiB and at most the epoll engine's 256 KiB.
std::size_t recv_buffer_size(const Conn& c, std::size_t pipeline);

}  // namespace serialbench
