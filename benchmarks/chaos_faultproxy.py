"""What does the chaos fault proxy cost? Throughput and latency direct vs. through the proxy (no toxics),
and the latency it adds with a latency toxic.

Starts one real demo upstream process on a free port and a FaultProxy in front of it, then measures from raw
sockets (so the client does not measure itself): requests per second with keep-alive (one client), bulk
throughput of a 4 MB answer, and the median time of one request with a new connection. Bounded in time.

    .venv/bin/python benchmarks/chaos_faultproxy.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from poetkb.chaos.faultproxy import FaultProxy
from poetkb.chaos.models import Toxics
from poetkb.demo import procs
from poetkb.demo.layout import port_free

REQUEST = b"GET /echo HTTP/1.1\r\nHost: bench\r\n\r\n"


def _read_response(sock: socket.socket, buf: bytearray) -> int:
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end]).lower()
            length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
            if len(buf) >= end + 4 + length:
                del buf[: end + 4 + length]
                return length
        chunk = sock.recv(262144)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk


def keepalive_rps(port: int, seconds: float) -> float:
    done, deadline = 0, time.monotonic() + seconds
    with socket.create_connection(("127.0.0.1", port)) as sock:
        buf = bytearray()
        while time.monotonic() < deadline:
            sock.sendall(REQUEST)
            _read_response(sock, buf)
            done += 1
    return done / seconds


def bulk_mb_per_s(port: int, seconds: float, size: int = 4_000_000) -> float:
    total, t0 = 0, time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        buf = bytearray()
        while time.monotonic() - t0 < seconds:
            sock.sendall(f"GET /bytes/{size} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            total += _read_response(sock, buf)
    return total / (time.monotonic() - t0) / 1e6


def new_connection_ms(port: int, count: int = 30) -> float:
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(REQUEST)
            _read_response(sock, bytearray())
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    port = next(p for p in range(29_500, 29_900) if port_free(p))
    logs = Path(tempfile.mkdtemp(prefix="poet-bench-"))
    pid = procs.spawn([sys.executable, "-m", "poetkb.demo.upstream", "--name", "bench", "--port", str(port),
                       "--run-dir", f"{logs}/"], logs / "upstream.log")
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        proxy = FaultProxy(f"127.0.0.1:{port}").start()
        try:
            rows = []
            for label, target in (("direct", port), ("through the proxy", proxy.port)):
                rows.append((label, keepalive_rps(target, args.seconds), bulk_mb_per_s(target, args.seconds),
                             new_connection_ms(target)))
            proxy.update(Toxics(latency_ms=100))
            with_latency = new_connection_ms(proxy.port, count=10)
        finally:
            proxy.stop()
    finally:
        procs.stop(pid)
    print("| path | keep-alive req/s (1 client) | bulk MB/s (4 MB answers) | new connection + request, median ms |")
    print("|---|---|---|---|")
    for label, rps, mbs, ms in rows:
        print(f"| {label} | {rps:,.0f} | {mbs:,.0f} | {ms:.2f} |")
    print(f"\nlatency_ms 100 toxic: median {with_latency:.1f} ms per new-connection request "
          f"(added {with_latency - rows[1][3]:.1f} ms over the proxy without toxics)")


if __name__ == "__main__":
    main()
