#include "worker.hpp"

#include <serialserver/protocol.hpp>
#include "clock.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <utility>

#include <openssl/ssl.h>

namespace serialbench {

Worker::Worker(const Config& config, const std::atomic<Phase>& phase)
    : config_(config), phase_(phase), retry_seeds_(std::random_device{}()) {
  if (config.rps > 0) {
    // Each connection carries its share of the rate: one request every connections/rps seconds.
    interval_ns_ = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(static_cast<double>(config.connections) * 1e9 / config.rps));
  }
}

void Worker::start_connections(std::uint64_t now) {
  for (auto& c : conns_) {
    if (paced()) {
      // The connections' schedules are staggered so that the requests are evenly spread.
      c->pace_start_ns = now + c->id * interval_ns_ / config_.connections;
    } else {
      send(*c, config_.pipeline, now);
    }
  }
}

std::uint64_t Worker::pace_all(std::uint64_t now) {
  std::uint64_t wait = kMaxWaitNs;
  for (auto& conn : conns_) {
    Conn& c = *conn;
    if (!c.alive) {
      continue;
    }
    pace(c, now);
    if (!c.alive || c.quota == 0 || c.inflight + c.owed >= config_.pipeline) {
      continue;  // nothing more to send, or a response must free room first
    }
    const std::uint64_t next = c.pace_start_ns + (c.next_seq + c.owed) * interval_ns_;
    wait = std::min(wait, next > now ? next - now : 0);
  }
  return wait;
}

void Worker::pace(Conn& c, std::uint64_t now) {
  if (now < c.pace_start_ns) {
    return;
  }
  const std::uint64_t due = (now - c.pace_start_ns) / interval_ns_ + 1;
  const std::uint64_t issued = c.next_seq + c.owed;
  const std::uint64_t room =
      config_.pipeline - std::min<std::uint64_t>(config_.pipeline, c.inflight + c.owed);
  if (due > issued && room != 0) {
    send(c, std::min(due - issued, room), now);
  }
}

std::uint64_t Worker::run_timers(std::uint64_t now) {
  std::uint64_t wait = paced() ? pace_all(now) : kMaxWaitNs;
  if (config_.retry) {
    wait = std::min(wait, resend_due(now));
    if (!down_.empty()) {
      wait = std::min(wait, reconnect_due(now));
    }
  }
  return wait;
}

bool Worker::keep_going(Phase& seen_phase) {
  const Phase phase = phase_.load(std::memory_order_acquire);
  if (phase != seen_phase) {
    if (phase == Phase::measure) {
      // Warm-up is over: what came before does not count.
      stats_.reset();
    }
    seen_phase = phase;
  }
  if (seen_phase == Phase::stop) {
    return false;  // responses still in flight are not counted: the window has closed
  }
  // In requests mode, 0 once every quota is done (or every connection is lost).
  return active_ != 0;
}

void Worker::publish() {
  stats_.live_completed.store(stats_.completed, std::memory_order_relaxed);
  stats_.live_errors.store(stats_.errors, std::memory_order_relaxed);
}

void Worker::finish() {
  stats_.end_ns = now_ns();
  publish();
  stats_.done.store(true, std::memory_order_release);
}

void Worker::close_all() {
  for (auto& c : conns_) {
    if (c->ssl != nullptr) {
      ::SSL_free(c->ssl);
      c->ssl = nullptr;
    }
    if (c->fd >= 0) {
      ::close(c->fd);
    }
  }
}

void Worker::lose(Conn& c) {
  if (!c.alive) {
    return;
  }
  if (config_.retry) {
    drop(c, false);
    return;
  }
  ++stats_.errors;
  ++stats_.answers.lost;
  retire(c);
}

void Worker::goodbye(Conn& c) {
  if (config_.retry) {
    drop(c, true);
    return;
  }
  ++stats_.errors;
  ++stats_.answers.goodbye;
  retire(c);
}

void Worker::retire(Conn& c) {
  c.alive = false;
  --active_;
}

bool Worker::consume(Conn& c, std::span<const std::uint8_t> data) {
  const std::uint64_t now = now_ns();
  const std::uint64_t freed = parse(c, data, now);
  if (!c.alive) {
    return false;
  }
  if (c.quota == 0 && c.inflight == 0 && c.owed == 0 && c.waiting.empty()) {
    retire(c);
    return false;
  }
  if (phase_.load(std::memory_order_relaxed) != Phase::stop) {
    if (paced()) {
      pace(c, now);
    } else {
      send(c, freed, now);
    }
  }
  return c.alive;
}

void Worker::send(Conn& c, std::uint64_t k, std::uint64_t now) {
  k = std::min(k, c.quota);
  if (k == 0 || !c.alive) {
    return;
  }
  c.quota -= k;
  c.owed += k;
  if (c.write_pos == c.write_end) {
    emit(c, now);
  }
}

void Worker::emit(Conn& c, std::uint64_t now) {
  const std::uint64_t k = c.owed;
  c.owed = 0;
  const std::size_t request_size = c.batch.size() / config_.pipeline;
  const std::size_t stamp_bytes = std::min(kStampBytes, config_.size);
  for (std::uint64_t i = 0; i < k; ++i) {
    const std::uint64_t seq = c.next_seq++;
    // Paced, a request's latency runs from when it was due, not from when room was found for
    // it: a slow answer delays the requests behind it, and that wait is part of their latency.
    const std::size_t slot = seq % config_.pipeline;
    c.sent_at[slot] = paced() ? c.pace_start_ns + seq * interval_ns_ : now;
    if (config_.retry) {
      // A request sent again carries its call: the first send's time and its back-off.
      c.retry_of[slot].reset();
      if (!c.resending.empty()) {
        c.sent_at[slot] = c.resending.front().started_ns;
        c.retry_of[slot] = c.resending.front();
        c.resending.pop_front();
      }
    }
    if (stamp_bytes != 0) {
      stamp(&c.batch[i * request_size + 2], stamp_bytes, c.id, seq);
    }
  }
  c.inflight += k;
  c.write_pos = 0;
  c.write_end = k * request_size;
  flush(c);
}

std::uint64_t Worker::parse(Conn& c, std::span<const std::uint8_t> data, std::uint64_t now) {
  std::uint64_t completed = 0;
  std::size_t pos = 0;
  while (pos < data.size()) {
    switch (c.state) {
      case Conn::State::code: {
        if (c.inflight == 0) {
          if (config_.retry &&
              data[pos] == static_cast<std::uint8_t>(serialserver::ResponseCode::goodbye)) {
            goodbye(c);  // unprompted: the server is going away
            return completed;
          }
          lose(c);  // bytes nobody asked for
          return completed;
        }
        const auto code = static_cast<serialserver::ResponseCode>(data[pos++]);
        if (code == serialserver::ResponseCode::ok) {
          c.state = Conn::State::content;
          c.decoder.reset();
          c.content_offset = 0;
          c.content_bad = false;
          if (config_.expect == Expect::echo) {
            stamp(c.expected.data(), std::min(kStampBytes, config_.size), c.id, c.expect_seq);
          }
        } else if (code == serialserver::ResponseCode::error) {
          c.state = Conn::State::error_code;
        } else if (code == serialserver::ResponseCode::goodbye) {
          goodbye(c);  // the task was not run, and the connection ends
          return completed;
        } else {
          lose(c);  // not a response code: the stream cannot go on
          return completed;
        }
        break;
      }
      case Conn::State::error_code: {
        const std::uint8_t error_code = data[pos++];
        if (retry_later(c, error_code, now)) {
          c.state = Conn::State::code;
          break;
        }
        ++stats_.answers.error_by_code[error_code];
        const bool valid = config_.expect == Expect::error || config_.expect == Expect::any;
        if (!valid) {
          ++stats_.answers.wrong_error_by_code[error_code];
        }
        complete(c, valid, now);
        ++completed;
        c.state = Conn::State::code;
        break;
      }
      case Conn::State::content: {
        const auto chunk = c.decoder.next(data.subspan(pos));
        pos += chunk.consumed;
        if (!chunk.content.empty()) {
          check_content(c, chunk.content);
        }
        if (chunk.end) {
          bool valid = !c.content_bad;
          if (config_.expect == Expect::echo) {
            valid = valid && c.content_offset == config_.size;
          } else if (config_.expect == Expect::empty) {
            valid = valid && c.content_offset == 0;
          } else if (config_.expect == Expect::error) {
            valid = false;
          }
          ++stats_.answers.ok;
          if (!valid) {
            ++stats_.answers.wrong_ok;
          }
          complete(c, valid, now);
          ++completed;
          c.state = Conn::State::code;
        }
        break;
      }
    }
  }
  return completed;
}

void Worker::check_content(Conn& c, std::span<const std::uint8_t> content) {
  if (config_.expect == Expect::echo) {
    const std::size_t offset = c.content_offset;
    if (offset + content.size() > config_.size ||
        std::memcmp(c.expected.data() + offset, content.data(), content.size()) != 0) {
      c.content_bad = true;
    }
  }
  c.content_offset += content.size();
}

void Worker::complete(Conn& c, bool valid, std::uint64_t now) {
  const std::uint64_t sent = c.sent_at[c.expect_seq % config_.pipeline];
  ++c.expect_seq;
  --c.inflight;
  stats_.histogram.record(now - sent);
  ++stats_.completed;
  if (!valid) {
    ++stats_.errors;
  }
}

}  // namespace serialbench
