// --retry: what the client library's retry policy (serialclient/retry.hpp) says, applied to the
// benchmark's own connections. A call answered busy waits out its back-off and goes out again on
// its connection; a lost connection is closed, opened again (at once, then after a back-off
// while connects are refused), and the calls that it carried and that did not run go out on the
// new one. This code runs only on those events: the loop of a run without losses is unchanged.

#include "clock.hpp"
#include "connection.hpp"
#include "tls.hpp"
#include "worker.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include <openssl/ssl.h>

namespace serialbench {

namespace {

/// The record of a call first sent at `started_ns`, retried for the first time.
Conn::Retry new_call(const Config& config, std::uint64_t started_ns, std::uint32_t seed) {
  return Conn::Retry{0, started_ns, serialclient::RetryBackoff(config.retry_policy, seed)};
}

}  // namespace

bool Worker::retry_later(Conn& c, std::uint8_t error_code, std::uint64_t now) {
  if (!config_.retry ||
      !serialclient::is_retryable_answer(serialclient::Result::make_error(error_code))) {
    return false;
  }
  const std::size_t slot = c.expect_seq % config_.pipeline;
  std::optional<Conn::Retry> retry = std::exchange(c.retry_of[slot], std::nullopt);
  if (!retry) {
    retry.emplace(new_call(config_, c.sent_at[slot], static_cast<std::uint32_t>(retry_seeds_())));
  }
  const auto delay = static_cast<std::uint64_t>(retry->backoff.next().count());
  const auto budget = static_cast<std::uint64_t>(config_.retry_policy.budget.count());
  if (now - retry->started_ns + delay > budget) {
    return false;  // the budget is spent: this answer is final
  }
  retry->due_ns = now + delay;
  c.waiting.push_back(*retry);
  ++c.expect_seq;
  --c.inflight;  // its pipeline slot stays taken: the retry goes out in it
  ++stats_.retries;
  return true;
}

std::uint64_t Worker::resend_due(std::uint64_t now) {
  std::uint64_t wait = kMaxWaitNs;
  for (auto& conn : conns_) {
    Conn& c = *conn;
    if (!c.alive || c.waiting.empty()) {
      continue;
    }
    std::size_t due = 0;
    for (auto it = c.waiting.begin(); it != c.waiting.end();) {
      if (it->due_ns <= now) {
        c.resending.push_back(*it);
        it = c.waiting.erase(it);
        ++due;
      } else {
        wait = std::min(wait, it->due_ns - now);
        ++it;
      }
    }
    if (due != 0) {
      c.owed += due;  // not from the quota: these requests were counted when first sent
      if (c.write_pos == c.write_end) {
        emit(c, now);
      }
    }
  }
  return wait;
}

void Worker::drop(Conn& c, bool goodbye) {
  const std::uint64_t now = now_ns();
  const auto budget = static_cast<std::uint64_t>(config_.retry_policy.budget.count());
  // The requests of the batch being written ([0, write_end) of `batch`) are the last ones
  // emitted; a request of which no byte has left cannot have run. A send still in the ring
  // (io_uring) may have written anything: its batch counts as written.
  const std::size_t request_size = c.batch.size() / config_.pipeline;
  const std::uint64_t batch_requests = c.write_end / request_size;
  const std::uint64_t first_of_batch = c.next_seq - batch_requests;
  std::size_t resent = 0;
  for (std::uint64_t seq = c.expect_seq; seq != c.next_seq; ++seq) {
    const std::size_t slot = seq % config_.pipeline;
    bool written = true;
    if (seq >= first_of_batch && !c.send_queued) {
      written = c.write_pos > (seq - first_of_batch) * request_size;
    }
    // Answered Goodbye (it and every request after it were not run), or never sent: safe.
    // Sent and unanswered: it may have run, so only an idempotent call goes out again.
    const bool may_resend = goodbye || !written || config_.idempotent;
    Conn::Retry call = c.retry_of[slot] ? *c.retry_of[slot]
                                        : new_call(config_, c.sent_at[slot],
                                                   static_cast<std::uint32_t>(retry_seeds_()));
    if (!may_resend || now - call.started_ns > budget) {
      ++stats_.errors;
      ++(goodbye ? stats_.answers.goodbye : stats_.answers.lost);
      continue;
    }
    c.resending.push_back(call);
    ++resent;
  }
  // Calls sent again go first on the new connection, before requests not yet sent.
  std::rotate(c.resending.begin(), c.resending.end() - static_cast<std::ptrdiff_t>(resent),
              c.resending.end());
  c.owed += resent;
  stats_.retries += resent;
  c.inflight = 0;
  // An answer since the connection was (re)opened: a server was up and serving.
  const bool answered = c.expect_seq != c.opened_seq;
  c.expect_seq = c.next_seq;
  c.write_pos = c.write_end = 0;
  c.state = Conn::State::code;

  detach(c);
  if (c.ssl != nullptr) {
    ::SSL_free(c.ssl);
    c.ssl = nullptr;
  }
  ::close(c.fd);
  c.fd = -1;
  c.alive = false;
  if (c.quota == 0 && c.owed == 0 && c.waiting.empty()) {
    --active_;  // nothing left to send: the connection is done
    return;
  }
  if (answered || !c.reconnect_backoff) {
    // The first connect goes at once: a balancer in front sends it to a server still up.
    c.lost_ns = now;
    c.reconnect_due_ns = now;
    c.reconnect_backoff.emplace(config_.retry_policy, static_cast<std::uint32_t>(retry_seeds_()));
  } else {
    // Lost again before any answer (a server that accepts and says Goodbye): back off, within
    // the budget counted from the first loss.
    const auto delay = static_cast<std::uint64_t>(c.reconnect_backoff->next().count());
    if (now - c.lost_ns + delay > budget) {
      give_up(c);
      return;
    }
    c.reconnect_due_ns = now + delay;
  }
  down_.push_back(&c);
}

std::uint64_t Worker::reconnect_due(std::uint64_t now) {
  std::uint64_t wait = kMaxWaitNs;
  const auto budget = static_cast<std::uint64_t>(config_.retry_policy.budget.count());
  // reconnect() may lose the connection again at once (drop() puts it back on down_).
  std::vector<Conn*> due = std::exchange(down_, {});
  for (Conn* conn : due) {
    Conn& c = *conn;
    if (!settled(c)) {
      down_.push_back(&c);
      wait = std::min<std::uint64_t>(wait, 1'000'000);
      continue;
    }
    if (c.reconnect_due_ns > now) {
      down_.push_back(&c);
      wait = std::min(wait, c.reconnect_due_ns - now);
      continue;
    }
    if (reconnect(c, now)) {
      continue;
    }
    const auto delay = static_cast<std::uint64_t>(c.reconnect_backoff->next().count());
    if (now - c.lost_ns + delay > budget) {
      give_up(c);
      continue;
    }
    // Calls whose budget runs out before the next connect are final: they fail.
    const auto before = c.resending.size();
    std::erase_if(c.resending,
                  [&](const Conn::Retry& call) { return now - call.started_ns + delay > budget; });
    const auto expired = before - c.resending.size();
    c.owed -= expired;
    stats_.errors += expired;
    stats_.answers.lost += expired;
    if (c.quota == 0 && c.owed == 0 && c.waiting.empty()) {
      give_up(c);  // nothing left to send
      continue;
    }
    c.reconnect_due_ns = now + delay;
    down_.push_back(&c);
    wait = std::min(wait, delay);
  }
  return wait;
}

bool Worker::reconnect(Conn& c, std::uint64_t now) {
  // Blocking sockets for io_uring, as when the run started; a blocking TLS handshake.
  const bool uring = config_.engine == Engine::io_uring;
  const int fd = connect_socket(config_.address, !config_.tls && !uring);
  if (fd < 0) {
    return false;
  }
  if (config_.tls) {
    c.ssl = tls_handshake(tls_context_, fd, config_);
    if (c.ssl == nullptr) {
      ::close(fd);
      return false;
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  c.fd = fd;
  c.alive = true;
  c.opened_seq = c.expect_seq;  // the back-off goes on until the new connection answers
  ++stats_.reconnects;
  attach(c);
  // The calls to send again, then new requests up to a full pipeline (busy calls still
  // waiting out their back-off keep their slots).
  const std::uint64_t taken = c.owed + c.waiting.size();
  const std::uint64_t room =
      std::min(c.quota, config_.pipeline - std::min<std::uint64_t>(config_.pipeline, taken));
  c.quota -= room;
  c.owed += room;
  if (c.owed != 0) {
    emit(c, now);
  }
  return true;
}

void Worker::give_up(Conn& c) {
  const std::uint64_t failed = c.owed + c.waiting.size();
  stats_.errors += failed;
  stats_.answers.lost += failed;
  c.owed = 0;
  c.resending.clear();
  c.waiting.clear();
  --active_;
}

}  // namespace serialbench
