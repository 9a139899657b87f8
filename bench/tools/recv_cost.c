// bench/tools/recv_cost.c: what one receive of a small request costs on loopback TCP, by the
// syscall that does it: read(), recv(), or recvmsg() with the TCP_INQ control message (the read
// the server uses on TCP, see src/short_read_drains.hpp), with one iovec or two (the idle read's
// spill). Both ends are in this process; the client writes 20 bytes, then only the receive is
// timed. Every variant also pays for the ACK that the receive sends, so the differences between
// them, not the figures themselves, are what the syscall variant costs.
//
// usage: recv_cost MODE [N]   MODE 0 read, 1 recv, 2 recvmsg + TCP_INQ, 3 recvmsg + TCP_INQ with
//                             two iovecs; N receives (default 300000). Run by bench/recv_cost.sh.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static const char* mode_name(int mode) {
  switch (mode) {
    case 0:
      return "read";
    case 1:
      return "recv";
    case 2:
      return "recvmsg+TCP_INQ";
    default:
      return "recvmsg+TCP_INQ,2iov";
  }
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: recv_cost MODE [N]\n");
    return 2;
  }
  const int mode = atoi(argv[1]);
  const long n = argc > 2 ? atol(argv[2]) : 300000;
  const int one = 1;
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0 || bind(listener, (struct sockaddr*)&addr, sizeof addr) != 0 ||
      getsockname(listener, (struct sockaddr*)&addr, &len) != 0 || listen(listener, 1) != 0) {
    perror("listen");
    return 1;
  }
  const int client = socket(AF_INET, SOCK_STREAM, 0);
  if (client < 0 || connect(client, (struct sockaddr*)&addr, sizeof addr) != 0) {
    perror("connect");
    return 1;
  }
  const int server = accept(listener, NULL, NULL);
  if (server < 0) {
    perror("accept");
    return 1;
  }
  setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (mode >= 2 && setsockopt(server, IPPROTO_TCP, TCP_INQ, &one, sizeof one) != 0) {
    perror("TCP_INQ");
    return 1;
  }
  static char spill[16384];
  const char request[20] = {2, 0};
  char buffer[128];
  double total = 0;
  long bytes = 0;
  for (long i = 0; i < n; i++) {
    if (write(client, request, sizeof request) != (ssize_t)sizeof request) {
      perror("write");
      return 1;
    }
    const double t0 = now_ns();
    ssize_t got;
    if (mode == 0) {
      got = read(server, buffer, sizeof buffer);
    } else if (mode == 1) {
      got = recv(server, buffer, sizeof buffer, 0);
    } else {
      struct iovec iov[2] = {{buffer, sizeof buffer}, {spill, sizeof spill}};
      char control[CMSG_SPACE(sizeof(int))];
      struct msghdr msg = {0};
      msg.msg_iov = iov;
      msg.msg_iovlen = mode == 3 ? 2 : 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      got = recvmsg(server, &msg, 0);
    }
    total += now_ns() - t0;
    if (got != (ssize_t)sizeof request) {
      fprintf(stderr, "short receive: %zd\n", got);
      return 1;
    }
    bytes += got;
  }
  printf("%-22s %6.0f ns per receive (%ld receives, %ld bytes)\n", mode_name(mode),
         total / (double)n, n, bytes);
  return 0;
}
