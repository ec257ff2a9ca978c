"""Link throughput and latency through a pty pair and loopback TCP.

For each path and message size, measured in this run:
- link: frames per second when one LinkDriver sends to another (send() returns on ACK),
  and the per-frame latency from send() to the peer's on_message;
- raw: the same bytes pushed through the same kind of pipe by plain reads and writes
  (frame out, one byte back), the floor the link's own work adds to;
- ack: time from a raw terminal's last frame byte to the agent's ACK (budget: 100 ms);
- wire: the time the frame and its ACK take on a 115200 baud line (10 bits a byte).

Ratios: link time per frame / wire time (below 1.0: the software is faster than the
wire it will run on), and link / raw.

    python3 benchmarks/link.py [--frames N]
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from firmware_bridge.driver import LinkDriver
from firmware_bridge.transports import (
    FdTransport,
    SerialTransport,
    TcpTransport,
    Transport,
    open_pty,
)
from protocols.framing import build_frame

SIZES = (64, 300, 2048)
WIRE_BAUD = 115200
Pair = tuple[Transport, Transport]


@contextmanager
def pty_pair() -> Iterator[Pair]:
    pair = open_pty()
    a = SerialTransport(pair.path)
    b = FdTransport(pair.master)
    try:
        yield a, b
    finally:
        pair.close()


@contextmanager
def tcp_pair() -> Iterator[Pair]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    server.close()
    yield TcpTransport(conn), TcpTransport(client)


@contextmanager
def raw_fds(
    kind: str,
) -> Iterator[
    tuple[
        Callable[[bytes], None],
        Callable[[int], bytes],
        Callable[[bytes], None],
        Callable[[int], bytes],
    ]
]:
    """Write/read-exactly functions for both ends of a bare pipe of the given kind."""
    if kind == "pty":
        pair = open_pty()
        ends = (pair.slave, pair.master)
        try:
            yield (*_fd_io(ends[0]), *_fd_io(ends[1]))
        finally:
            pair.close()
    else:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        server.close()
        for s in (client, conn):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            yield (*_fd_io(conn.fileno()), *_fd_io(client.fileno()))
        finally:
            conn.close()
            client.close()


def _fd_io(fd: int) -> tuple[Callable[[bytes], None], Callable[[int], bytes]]:
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def read(n: int) -> bytes:
        out = b""
        while len(out) < n:
            select.select([fd], [], [], 5)
            out += os.read(fd, n - len(out))
        return out

    return write, read


def bench_link(make: Callable[[], object], size: int, frames: int) -> tuple[float, list[float]]:
    """(seconds per frame, one-way latencies) for `frames` sends of `size` bytes."""
    message = b"\x5a" * size
    arrived: list[float] = []
    got = threading.Semaphore(0)

    def on_message(msg: bytes, driver: LinkDriver) -> None:
        arrived.append(time.perf_counter())
        got.release()

    with make() as (a, b):  # type: ignore[attr-defined]
        sender = LinkDriver(a, lambda m, d: None, name="bench-a").start()
        receiver = LinkDriver(b, on_message, name="bench-b").start()
        try:
            for _ in range(20):  # warm up
                sender.send(message)
                got.acquire(timeout=5)
            arrived.clear()
            latencies = []
            start = time.perf_counter()
            for _ in range(frames):
                t0 = time.perf_counter()
                sender.send(message)
                got.acquire(timeout=5)
                latencies.append(arrived[-1] - t0)
            elapsed = time.perf_counter() - start
        finally:
            sender.stop()
            receiver.stop()
    return elapsed / frames, latencies


def bench_raw(kind: str, size: int, frames: int) -> float:
    """Seconds per frame for the same bytes through a bare pipe: frame out, 1 byte back."""
    frame = build_frame(b"\x5a" * size)
    with raw_fds(kind) as (write_a, read_a, write_b, read_b):

        def echo() -> None:
            for _ in range(frames + 20):
                read_b(len(frame))
                write_b(b"\x06")

        t = threading.Thread(target=echo, daemon=True)
        t.start()
        for _ in range(20):
            write_a(frame)
            read_a(1)
        start = time.perf_counter()
        for _ in range(frames):
            write_a(frame)
            read_a(1)
        elapsed = time.perf_counter() - start
        t.join(5)
    return elapsed / frames


def bench_ack(size: int, frames: int) -> list[float]:
    """Raw terminal on a pty master: last frame byte written -> ACK read back."""
    pair = open_pty()
    driver = LinkDriver(SerialTransport(pair.path), lambda m, d: None, name="bench-ack").start()
    frame = build_frame(b"\x5a" * size)
    write, read = _fd_io(pair.master)
    out = []
    try:
        for i in range(frames + 20):
            t0 = time.perf_counter()
            write(frame)
            assert read(1) == b"\x06"
            if i >= 20:
                out.append(time.perf_counter() - t0)
    finally:
        driver.stop()
        pair.close()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    began = time.perf_counter()
    print(f"link benchmark: {args.frames} frames per row; wire = frame + ACK at {WIRE_BAUD} baud")
    header = (
        f"{'path':4} {'size':>5} {'frames/s':>9} {'wire f/s':>9} {'link/wire':>9} "
        f"{'raw f/s':>9} {'link/raw':>8} {'lat p50':>9} {'lat p99':>9} {'wire':>9}"
    )
    print(header)
    for kind, make in (("pty", pty_pair), ("tcp", tcp_pair)):
        for size in SIZES:
            per_frame, lat = bench_link(make, size, args.frames)
            raw = bench_raw(kind, size, args.frames)
            wire = (size + 5 + 1) * 10 / WIRE_BAUD
            print(
                f"{kind:4} {size:5d} {1 / per_frame:9.0f} {1 / wire:9.1f} "
                f"{per_frame / wire:9.3f} {1 / raw:9.0f} {per_frame / raw:8.2f} "
                f"{statistics.median(lat) * 1e3:7.3f}ms {pct(lat, 0.99) * 1e3:7.3f}ms "
                f"{wire * 1e3:7.2f}ms"
            )
    acks = bench_ack(300, args.frames)
    print(
        f"ACK after a 300-byte frame over a pty: p50 {statistics.median(acks) * 1e3:.3f} ms, "
        f"p99 {pct(acks, 0.99) * 1e3:.3f} ms, max {max(acks) * 1e3:.3f} ms (budget 100 ms; "
        f"ratio max/budget {max(acks) / 0.1:.4f})"
    )
    print(f"total {time.perf_counter() - began:.1f}s")


if __name__ == "__main__":
    main()
