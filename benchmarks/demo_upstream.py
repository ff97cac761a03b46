"""How fast is a demo upstream? Requests per second with keep-alive and with a new connection per request.

Starts one real upstream process on a free port and drives it from a few client
threads of raw sockets (a Python HTTP client would measure itself, not the
server). Bounded in time: each measurement runs for --seconds.

    .venv/bin/python benchmarks/demo_upstream.py [--seconds 3] [--clients 4]
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from poetkb.demo import procs
from poetkb.demo.layout import port_free

REQUEST = b"GET /echo HTTP/1.1\r\nHost: bench\r\nX-Request-ID: bench\r\n\r\n"
REQUEST_CLOSE = b"GET /echo HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def _read_response(sock: socket.socket, buf: bytearray) -> None:
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end]).lower()
            length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
            if len(buf) >= end + 4 + length:
                del buf[: end + 4 + length]
                return
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk


def _client(port: int, keep_alive: bool, deadline: float, counts: list[int]) -> None:
    done = 0
    if keep_alive:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            buf = bytearray()
            while time.monotonic() < deadline:
                sock.sendall(REQUEST)
                _read_response(sock, buf)
                done += 1
    else:
        while time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(REQUEST_CLOSE)
                _read_response(sock, bytearray())
            done += 1
    counts.append(done)


def measure(port: int, *, keep_alive: bool, clients: int, seconds: float) -> float:
    counts: list[int] = []
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=_client, args=(port, keep_alive, deadline, counts)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 10)
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    port = next(p for p in range(29500, 29900) if port_free(p))
    with tempfile.TemporaryDirectory() as tmp:
        pid = procs.spawn([sys.executable, "-m", "poetkb.demo.upstream", "--name", "bench", "--port", str(port),
                           "--run-dir", f"{tmp}/"], Path(tmp) / "upstream.log")
        try:
            for _ in range(200):
                if not port_free(port):
                    break
                time.sleep(0.05)
            time.sleep(0.2)
            keep = measure(port, keep_alive=True, clients=args.clients, seconds=args.seconds)
            fresh = measure(port, keep_alive=False, clients=args.clients, seconds=args.seconds)
        finally:
            procs.stop(pid)
    print(f"demo upstream, {args.clients} clients, {args.seconds:.0f} s each (one upstream process, one core):")
    print(f"  keep-alive:          {keep:8.0f} requests/s")
    print(f"  new connection each: {fresh:8.0f} requests/s")


if __name__ == "__main__":
    main()
