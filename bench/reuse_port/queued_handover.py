#!/usr/bin/env python3
"""What the kernel does with connections queued on a closing SO_REUSEPORT socket.

Two sockets listen on one 127.0.0.1 port with SO_REUSEPORT. CONNECTIONS clients connect and
each sends a keep-alive task (FA 00) while nobody accepts, so every connection waits in one of
the two accept queues. The first socket then closes, as an old server's listener does at a
hand-over, and the second accepts what reaches it. With net.ipv4.tcp_migrate_req=0 the
connections queued on the first socket are reset; with 1 (Linux 5.14 and later) they are moved
to the second, bytes included.

    bench/reuse_port/queued_handover.py [CONNECTIONS] [PORT]
"""

import socket
import sys


def listener(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1024)
    return s


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 17390
    try:
        with open("/proc/sys/net/ipv4/tcp_migrate_req") as f:
            setting = f.read().strip()
    except OSError:
        setting = "unreadable"
    closing, staying = listener(port), listener(port)
    clients = []
    for _ in range(count):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"\xfa\x00")
        clients.append(c)
    closing.close()
    staying.settimeout(0.5)
    accepted, with_bytes = [], 0
    try:
        while True:
            conn, _ = staying.accept()
            conn.settimeout(1)
            accepted.append(conn)
            if conn.recv(2) == b"\xfa\x00":
                with_bytes += 1
    except socket.timeout:
        pass
    print(f"tcp_migrate_req={setting} connections={count} "
          f"reached_the_staying_socket={len(accepted)} with_their_bytes={with_bytes} "
          f"lost={count - len(accepted)}")
    for s in accepted + clients:
        s.close()
    staying.close()


if __name__ == "__main__":
    main()
