#include "epoll_engine.hpp"

#include "clock.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include <openssl/ssl.h>

namespace serialbench {

void EpollWorker::run() {
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  for (std::size_t i = 0; i < conns_.size(); ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, conns_[i]->fd, &ev);
  }
  Phase seen_phase = phase_.load(std::memory_order_acquire);
  const std::uint64_t start = now_ns();
  start_connections(start);
  std::vector<epoll_event> events(512);
  Spinner spinner(config_.spin);
  while (keep_going(seen_phase)) {
    const std::uint64_t pace_wait_ns = run_timers(now_ns());
    const std::uint64_t wait_ns = spinner.spinning() ? 0 : pace_wait_ns;
    const int n = wait(events, wait_ns);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      std::perror("serialbench: epoll_wait");
      break;
    }
    spinner.turn(n > 0);
    for (int i = 0; i < n; ++i) {
      Conn& c = *conns_[events[static_cast<std::size_t>(i)].data.u64];
      if (!c.alive) {
        continue;
      }
      if (events[static_cast<std::size_t>(i)].events & EPOLLOUT) {
        flush(c);
      }
      if (events[static_cast<std::size_t>(i)].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        on_readable(c);
      }
    }
    publish();
  }
  finish();
  close_all();
  ::close(epoll_);
  epoll_ = -1;
}

int EpollWorker::wait(std::vector<epoll_event>& events, std::uint64_t timeout_ns) {
  const auto size = static_cast<int>(events.size());
  if (have_pwait2_) {
    // Nanoseconds: a paced run waits until the next request is due, not to the next millisecond.
    const timespec timeout{static_cast<time_t>(timeout_ns / 1'000'000'000ULL),
                           static_cast<long>(timeout_ns % 1'000'000'000ULL)};
    const int n = ::epoll_pwait2(epoll_, events.data(), size, &timeout, nullptr);
    if (n >= 0 || errno != ENOSYS) {
      return n;
    }
    have_pwait2_ = false;  // a kernel before 5.11
  }
  return ::epoll_wait(epoll_, events.data(), size,
                      static_cast<int>((timeout_ns + 999'999ULL) / 1'000'000ULL));
}

void EpollWorker::retire(Conn& c) {
  if (epoll_ >= 0) {
    ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
  }
  Worker::retire(c);
}

void EpollWorker::detach(Conn& c) {
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
  c.want_out = false;
}

void EpollWorker::attach(Conn& c) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = c.index;
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev);
}

void EpollWorker::flush(Conn& c) {
  while (c.write_pos < c.write_end) {
    if (c.ssl != nullptr) {
      // A retry after WANT_WRITE passes the same bytes, as SSL_write requires.
      const int n = ::SSL_write(c.ssl, c.batch.data() + c.write_pos,
                                static_cast<int>(c.write_end - c.write_pos));
      if (n <= 0) {
        const int err = ::SSL_get_error(c.ssl, n);
        if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
          break;
        }
        lose(c);
        return;
      }
      c.write_pos += static_cast<std::size_t>(n);
      continue;
    }
    // send()/recv() rather than write()/read(): the socket calls skip the VFS layer, and
    // MSG_NOSIGNAL keeps a reset peer from raising SIGPIPE even where it is not ignored.
    const ssize_t n =
        ::send(c.fd, c.batch.data() + c.write_pos, c.write_end - c.write_pos, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN) {
        break;
      }
      lose(c);
      return;
    }
    c.write_pos += static_cast<std::size_t>(n);
  }
  const bool pending = c.write_pos < c.write_end;
  if (pending != c.want_out) {
    epoll_event ev{};
    ev.events = EPOLLIN | (pending ? EPOLLOUT : 0U);
    ev.data.u64 = c.index;
    ::epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
    c.want_out = pending;
  }
  if (!pending) {
    c.write_pos = c.write_end = 0;
    if (c.owed != 0 && c.alive) {
      emit(c, now_ns());
    }
  }
}

void EpollWorker::on_readable(Conn& c) {
  if (c.ssl != nullptr) {
    on_readable_tls(c);
    return;
  }
  const ssize_t n = ::recv(c.fd, read_buffer_.data(), read_buffer_.size(), 0);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      return;
    }
    lose(c);  // the server closed (or reset) the connection
    return;
  }
  consume(c, std::span(read_buffer_).first(static_cast<std::size_t>(n)));
}

// As on_readable, through OpenSSL: SSL_read returns about one record per call, so it reads
// until the socket is drained (WANT_READ) and OpenSSL holds nothing back, since epoll cannot
// report bytes that sit decrypted in OpenSSL's buffer.
void EpollWorker::on_readable_tls(Conn& c) {
  for (;;) {
    std::size_t total = 0;
    bool drained = false;
    while (total < read_buffer_.size()) {
      const int n = ::SSL_read(c.ssl, read_buffer_.data() + total,
                               static_cast<int>(read_buffer_.size() - total));
      if (n > 0) {
        total += static_cast<std::size_t>(n);
        continue;
      }
      const int err = ::SSL_get_error(c.ssl, n);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        drained = true;
        break;
      }
      lose(c);  // closed (close_notify or not) or a TLS error
      return;
    }
    if (total == 0) {
      return;
    }
    if (!consume(c, std::span(read_buffer_).first(total))) {
      return;
    }
    if (drained && ::SSL_pending(c.ssl) == 0) {
      return;
    }
  }
}

}  // namespace serialbench
