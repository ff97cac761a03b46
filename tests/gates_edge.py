"""A small real HTTP edge on 127.0.0.1 for gate tests that do not need NGINX or HAProxy.

It answers every path like the demo edge's good configuration does for routing and headers: a JSON echo
naming one of two upstreams chosen by a hash of the URI, X-Forwarded-For with the client appended, a request
id generated, passed on and returned, (optionally) one JSON access-log line per request, and Prometheus
counters at ``/metrics``. ``split`` makes it route round robin instead, the way a broken edge would.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        return

    def version_string(self) -> str:
        return self.server.server_header

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer()

    def do_POST(self) -> None:  # noqa: N802
        self._answer()

    def _metrics(self) -> None:
        """Prometheus text with the connection and request counters the exporter names (requests so far)."""
        served = next(self.server.serial) - 1
        body = (f"# TYPE nginx_connections_active gauge\nnginx_connections_active 1\n"
                f"# TYPE nginx_connections_accepted counter\nnginx_connections_accepted {served}\n"
                f"# TYPE nginx_http_requests_total counter\nnginx_http_requests_total {served}\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _answer(self) -> None:
        server = self.server
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.split("?", 1)[0] == "/metrics":
            self._metrics()
            return
        serial = next(server.serial)
        names = ("healthy-a", "healthy-b")
        upstream = names[serial % 2] if server.split else names[zlib.crc32(self.path.encode()) % 2]
        received = {k.lower(): v for k, v in self.headers.items()}
        xff = received.get("x-forwarded-for")
        received["x-forwarded-for"] = f"{xff}, 127.0.0.1" if xff else "127.0.0.1"
        rid = received.get("x-request-id") or f"rid-{serial}"
        received["x-request-id"] = rid
        query = self.path.split("?", 1)[1] if "?" in self.path else ""
        body = json.dumps({"upstream": upstream, "serial": serial, "path": self.path.split("?", 1)[0],
                           "query": query, "headers": received}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Upstream", upstream)
        self.send_header("X-Request-ID", rid)
        self.end_headers()
        self.wfile.write(body)
        if server.access_log is not None:
            line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), "request_id": rid,
                    "host": received.get("host", ""), "method": self.command, "uri": self.path, "status": 200,
                    "request_time": 0.001, "upstream_addr": f"127.0.0.1:{9101 + names.index(upstream)}"}
            with server.lock, server.access_log.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, split: bool, access_log: Path | None, server_header: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.split = split
        self.server_header = server_header
        self.access_log = access_log
        self.serial = itertools.count(1)
        self.lock = threading.Lock()


@contextmanager
def running_edge(*, split: bool = False, access_log: Path | None = None,
                 server_header: str = "poet-test-edge") -> Iterator[str]:
    """Serve in a thread; yield the base URL; stop when the block ends."""
    if access_log is not None:
        access_log.touch()
    server = _Server(split=split, access_log=access_log, server_header=server_header)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
