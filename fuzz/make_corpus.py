#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

The seeds are the worked bytes of docs/protocol.md section 8 and edge cases (empty input, full
255-byte blocks, cut-off messages, reserved codes 250..255, oversized requests...). Each target
takes its parameters from the end of its input the way FuzzedDataProvider reads them, so every
seed is "wire bytes + a tail of parameters"; `Tail` builds such tails. Run it again after
changing the seeds; libFuzzer's own findings are not kept here.
"""
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


class Tail:
    """Parameters in the order a target consumes them with FuzzedDataProvider (from the end)."""

    def __init__(self):
        self.consumed = []  # bytes in consumption order

    def integral(self, value, nbytes):
        # ConsumeIntegralInRange reads nbytes from the end, most significant first.
        self.consumed += [(value >> (8 * (nbytes - 1 - i))) & 0xFF for i in range(nbytes)]
        return self

    def byte(self, value):
        return self.integral(value, 1)

    def bytes(self):
        return bytes(reversed(self.consumed))


def blocks(content, sizes=None):
    """content as blocks (full 255-byte blocks, then the rest, unless sizes says), then 00."""
    out = bytearray()
    i = 0
    while i < len(content):
        n = min(255, len(content) - i) if not sizes else min(sizes[0], len(content) - i)
        if sizes:
            sizes = sizes[1:] or sizes
        out.append(n)
        out += content[i:i + n]
        i += n
    out.append(0)
    return bytes(out)


def pattern(n, salt=0):
    return bytes(((i * 7 + salt) & 0xFF) for i in range(n))


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def block_decoder():
    # Tail: seed (u64), max chunk (1..300, 2 bytes), output size (1..600, 2 bytes).
    def tail(seed=1, max_chunk=300, out=600):
        return Tail().integral(seed, 8).integral(max_chunk - 1, 2).integral(out - 1, 2).bytes()

    seeds = {
        "empty": b"",
        "end-only": b"\x00",
        "worked-task7-content": bytes.fromhex("04 01 02 03 04 00"),
        "worked-split": bytes.fromhex("03 01 02 03 01 04 00"),
        "worked-hi": bytes.fromhex("02 68 69 00"),
        "worked-300": blocks(pattern(300)),
        "full-blocks-3": blocks(pattern(765)),
        "max-block-255": blocks(pattern(255)),
        "one-byte-blocks": blocks(pattern(40), [1]),
        "cut-in-block": bytes([255]) + pattern(100),
        "cut-after-block": bytes([5]) + pattern(5),
        "three-messages": blocks(b"ab") + b"\x00" + blocks(pattern(260)),
        "all-ff": b"\xff" * 300,
    }
    for name, data in seeds.items():
        write("block_decoder", name, data + tail())
    write("block_decoder", "worked-300-bytewise", blocks(pattern(300)) + tail(7, 1, 1))
    write("block_decoder", "three-messages-small-out", blocks(b"ab") + b"\x00" +
          blocks(pattern(260)) + tail(99, 3, 17))


def binary_reader():
    # Layout: order (1 byte from the end), content length (ranged over what is left), the
    # content from the front, then the script of reads (one byte per op, plus lengths).
    ops = {"u8": 0, "u16": 1, "u32": 2, "u64": 3, "i8": 4, "i16": 5, "i32": 6, "i64": 7,
           "f32": 8, "f64": 9, "bytes": 10, "string": 11}

    def seed(content, script, little):
        t = Tail().byte(1 if little else 0)
        script_bytes = []
        for op in script:
            if isinstance(op, tuple):
                # read_bytes: its length (one byte while the content is short), then 1 (not one
                # of the absurd lengths).
                script_bytes += [ops[op[0]], op[1], 1]
            else:
                script_bytes.append(ops[op])
        # The content length is ConsumeIntegralInRange(0, remaining), read before the content:
        # remaining counts the content, the script and the length's own bytes.
        width = 1
        while ((len(content) + len(script_bytes) + width).bit_length() + 7) // 8 != width:
            width += 1
        t.integral(len(content), width)
        for b in script_bytes:
            t.byte(b)
        return content + t.bytes()

    numbers = bytes.fromhex("01 0203 04050607 08090a0b0c0d0e0f 3f800000 400921fb54442d18")
    script = ["u8", "u16", "u32", "u64", "f32", "f64", "u8"]
    write("binary_reader", "numbers-big", seed(numbers, script, False))
    write("binary_reader", "numbers-little", seed(numbers, script, True))
    signed = bytes.fromhex("ff fffe fffffffd fffffffffffffffc")
    write("binary_reader", "signed", seed(signed, ["i8", "i16", "i32", "i64", "i8"], False))
    string_be = bytes.fromhex("00000002") + b"hi" + bytes.fromhex("00000000")
    write("binary_reader", "strings-big", seed(string_be, ["string", "string", "string"], False))
    string_le = bytes.fromhex("02000000") + b"hi" + bytes.fromhex("ffffffff") + b"x"
    write("binary_reader", "strings-little-cut", seed(string_le, ["string", "string", "u8"], True))
    write("binary_reader", "bytes", seed(pattern(20), [("bytes", 7), ("bytes", 30), "u64", "u32"],
                                         False))
    write("binary_reader", "nan", seed(bytes.fromhex("7fc00001 fff8000000000001"),
                                       ["f32", "f64", "f32"], True))
    write("binary_reader", "empty", b"")


def connection():
    # Tail, in consumption order: bytes per read (<128: unlimited, else 1..64), bytes per write
    # (likewise), flags (bit 0: the server limits requests to 256 bytes; bits 1 and 2 both set:
    # fail one stream operation, bit 3 chooses the error), which operation fails, a call on the
    # Client handle (<192: none; else by its value mod 4: 0 cancel, 1 close, 2 disconnect(0),
    # 3 disconnect(10s)), and after how many handlers it is made.
    def tail(read=0, write=0, flags=0, fail=0, handle=0, step=0):
        return (Tail().byte(read).byte(write).byte(flags).byte(fail).byte(handle).byte(step)
                .bytes())

    worked = b"".join([
        bytes.fromhex("07 04 01 02 03 04 00"),     # task 7 with content 01 02 03 04 -> "hi"
        bytes.fromhex("07 03 01 02 03 01 04 00"),  # the same content, split
        bytes.fromhex("02 00"),                    # OK with no content
        bytes.fromhex("03 01 03 00"),              # Error, code 3
        bytes.fromhex("09 00"),                    # unknown task 9
        bytes.fromhex("FB 00 FC 00 FD 00 FE 00"),  # unassigned reserved codes
        bytes.fromhex("FA 00"),                    # keep-alive
        b"\x01" + blocks(pattern(300)),            # echo of 300 bytes: FF + 255, 2D + 45, 00
        bytes.fromhex("FF 00"),                    # goodbye
        bytes.fromhex("01 00"),                    # after goodbye: never read
    ])
    write("connection", "worked-bytes", worked + tail())
    write("connection", "worked-bytes-bytewise", worked + tail(128, 128))
    write("connection", "worked-bytes-chunks", worked + tail(128 + 6, 128 + 2))
    write("connection", "empty", tail())
    write("connection", "goodbye-first", bytes.fromhex("FF 01 02 00") + tail())
    mix = b"".join([
        b"\x04" + blocks(bytes.fromhex("0B B8")),  # producer, 3000 bytes
        b"\x05" + blocks(pattern(10)),             # partial reader
        b"\x08" + blocks(pattern(3)),              # reads 4 bytes of 3: Error 4
        b"\x08" + blocks(pattern(9)),              # reads 4 bytes of 9
        b"\x0B" + blocks(pattern(700), [100]),     # counts 700 bytes
        b"\x01" + blocks(b""),                     # echo of nothing
    ])
    write("connection", "tasks-mix", mix + tail())
    write("connection", "tasks-mix-small-io", mix + tail(128 + 2, 128 + 4))
    write("connection", "throws", b"\x01" + blocks(b"x") + b"\x06\x00\x01" + blocks(b"y") + tail())
    write("connection", "read-then-throw", b"\x0A" + blocks(b"xyz") + tail())
    write("connection", "cut-off", b"\x01" + bytes([255]) + pattern(50) + tail())
    write("connection", "cut-after-code", b"\x02\x00\x01" + tail())
    big = pattern(600)
    write("connection", "limit-over", b"\x01" + blocks(big) + b"\x02" + blocks(big) +
          b"\xFA" + blocks(big) + b"\x01" + blocks(b"ok") + tail(flags=1))
    # Found by fuzzing: a task that reads little or nothing of an over-the-limit request must
    # still answer Error 254.
    write("connection", "limit-unread", b"\x02" + blocks(pattern(300)) + b"\x05" +
          blocks(pattern(300)) + b"\x02\x00" + tail(flags=1))
    write("connection", "limit-drain-close", b"\x02" + blocks(pattern(1000)) + b"\x01\x00" +
          tail(flags=1))
    write("connection", "fail-write", worked + tail(flags=6, fail=3))
    write("connection", "reset-read", worked + tail(128 + 3, 0, 6 | 8, 2))

    # Inline tasks (12 echo, 14 Error, 16 throws) and blocking ones (13 echo, 15 Error,
    # 17 throws after reading), among coroutine tasks.
    kinds = b"".join([
        b"\x0C" + blocks(b"abc"),               # inline echo, run in the read's completion
        b"\x0D" + blocks(pattern(300)),         # blocking echo of 300 bytes
        b"\x0E" + blocks(b"\x07"),              # inline Error 7
        b"\x0F" + blocks(b""),                  # blocking Error 3
        b"\x01" + blocks(b"co"),                # coroutine echo
        b"\x0C" + blocks(pattern(600, 1)),      # inline echo not all buffered: as a coroutine
        b"\x0D" + blocks(b""),                  # blocking echo of nothing
        b"\xFA" + blocks(b""),                  # keep-alive
        b"\x0F" + blocks(pattern(20), [3]),     # blocking Error, content in 3-byte blocks
        b"\x0C" + blocks(b"end"),               # inline echo, last
    ])
    write("connection", "kinds-mix", kinds + tail())
    write("connection", "kinds-mix-bytewise", kinds + tail(128, 128))
    write("connection", "kinds-mix-small-io", kinds + tail(128 + 6, 128 + 2))
    write("connection", "kinds-mix-fail", kinds + tail(128 + 9, 0, 6, 7))
    write("connection", "inline-throws", b"\x0C" + blocks(b"x") + b"\x10" + blocks(b"zz") +
          b"\x01" + blocks(b"y") + tail())
    write("connection", "blocking-throws", b"\x0D" + blocks(b"x") + b"\x11" + blocks(b"zz") +
          b"\x01" + blocks(b"y") + tail())
    write("connection", "blocking-cut-off", b"\x0D" + bytes([255]) + pattern(50) + tail())
    write("connection", "blocking-goodbye", b"\x0D" + blocks(b"x") + b"\xFF" + b"\x0D" +
          blocks(b"never") + tail())
    # The Client handle called part-way: cancel, close, disconnect now and with a grace.
    for value, name in [(192, "cancel"), (193, "close"), (194, "disconnect-now"),
                        (195, "disconnect-later")]:
        write("connection", "handle-" + name, kinds + tail(128 + 9, 0, handle=value, step=12))
        write("connection", "handle-" + name + "-mix", mix + tail(handle=value, step=5))
    # Past the limit every kind answers Error 254, the throwing ones that read included.
    write("connection", "limit-kinds", b"\x0C" + blocks(big) + b"\x0D" + blocks(big) +
          b"\x0F" + blocks(pattern(300)) + b"\x11" + blocks(pattern(300)) + b"\x10" +
          blocks(pattern(300)) + b"\x0C" + blocks(b"ok") + b"\x0D" + blocks(pattern(1000)) +
          tail(flags=1))
    # An inline request whose encoding passes the limit while its content does not: run as a
    # coroutine, answered as usual.
    write("connection", "limit-inline-encoding", b"\x0C" + blocks(pattern(200), [1]) + b"\x10" +
          blocks(pattern(200), [1]) + tail(flags=1))


def client_response():
    # Tail, in consumption order: number of calls (1..8), then per call its kind (0 call,
    # 1 streaming, 2 batch, 3 keep-alive, 4 goodbye), task code, request size (0..600),
    # batch size (1..4), bytes per read (1..300), read limit (0..1000); then the seed of the
    # chunking (u64). The front is what the server sends.
    def tail(calls, seed=5):
        t = Tail().byte(len(calls) - 1)
        for kind, code, req, batch, piece, limit in calls:
            t.byte(kind).byte(code).integral(req, 2).byte(batch - 1).integral(piece - 1, 2)
            t.integral(limit, 2)
        return t.integral(seed, 8).bytes()

    call = (0, 7, 4, 1, 1, 0)
    wire = b"".join([
        bytes.fromhex("00 02 68 69 00"),  # OK "hi"
        bytes.fromhex("00 00"),           # OK, no content
        bytes.fromhex("01 03"),           # Error 3
        bytes.fromhex("01 FF"),           # unknown task
        b"\x00" + blocks(pattern(300)),   # 300 bytes: FF + 255, 2D + 45, 00
        bytes.fromhex("02"),              # Goodbye
    ])
    write("client_response", "worked-calls", wire + tail([call] * 6 + [call]))
    write("client_response", "worked-batch", wire + tail([(2, 7, 4, 4, 1, 0), (2, 7, 0, 3, 1, 0)]))
    write("client_response", "worked-streaming",
          wire + tail([(1, 7, 10, 1, 1, 1000), (1, 7, 0, 1, 3, 1), (1, 1, 300, 1, 7, 1000),
                       (1, 1, 0, 1, 300, 2), (1, 1, 0, 1, 100, 150), (0, 1, 0, 1, 1, 0)]))
    write("client_response", "keep-alive-goodbye",
          bytes.fromhex("00 00 02") + tail([(3, 0, 0, 1, 1, 0), (4, 0, 0, 1, 1, 0), call]))
    write("client_response", "protocol-error", bytes.fromhex("03 00 00") + tail([call, call]))
    write("client_response", "cut-in-content", b"\x00\xff" + pattern(100) + tail([call, call]))
    write("client_response", "cut-after-error", b"\x01" + tail([call]))
    write("client_response", "empty", tail([call]))
    write("client_response", "reserved-codes", bytes.fromhex("00 00") +
          tail([(0, 250, 0, 1, 1, 0), (0, 255, 0, 1, 1, 0), (2, 251, 0, 2, 1, 0), call]))
    write("client_response", "full-blocks", b"\x00" + blocks(pattern(255 * 3)) +
          tail([(1, 1, 0, 1, 255, 1000)], seed=11))


def main():
    targets = {"block_decoder": block_decoder, "binary_reader": binary_reader,
               "connection": connection, "client_response": client_response}
    for name in sys.argv[1:] or targets:
        targets[name]()


if __name__ == "__main__":
    main()
