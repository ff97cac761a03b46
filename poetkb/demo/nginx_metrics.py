"""Serve NGINX's stub_status as Prometheus text, for the demo edge's metrics listener.

NGINX open source has no Prometheus endpoint; its ``stub_status`` page is a few
lines of plain text. This converter fetches that page on every scrape and
answers in the Prometheus text format with the metric names of the official
nginx-prometheus-exporter (``nginx_up``, ``nginx_connections_*``,
``nginx_http_requests_total``), so dashboards and gates written for that
exporter work here. NGINX itself proxies ``/metrics`` on its metrics listener
to this process, so the metrics URL is NGINX's own (and disappears with it).

Run as ``python -m poetkb.demo.nginx_metrics --port P --status-url URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from urllib.parse import urlsplit

from poetkb.demo.httpserver import Request, Response, serve_until_signalled

_ACTIVE = re.compile(rb"Active connections:\s*(\d+)")
_TOTALS = re.compile(rb"server accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)")
_STATES = re.compile(rb"Reading:\s*(\d+)\s+Writing:\s*(\d+)\s+Waiting:\s*(\d+)")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def parse_stub_status(text: bytes) -> dict[str, int]:
    """The numbers of a stub_status page; ValueError when the page is not one."""
    active, totals, states = _ACTIVE.search(text), _TOTALS.search(text), _STATES.search(text)
    if not (active and totals and states):
        raise ValueError("not an nginx stub_status page")
    return {
        "active": int(active.group(1)), "accepted": int(totals.group(1)), "handled": int(totals.group(2)),
        "requests": int(totals.group(3)), "reading": int(states.group(1)), "writing": int(states.group(2)),
        "waiting": int(states.group(3)),
    }


def to_prometheus(values: dict[str, int] | None) -> str:
    """Prometheus text exposition of stub_status numbers (``nginx_up 0`` alone when there are none)."""
    lines = ["# HELP nginx_up Status of the last metric scrape", "# TYPE nginx_up gauge",
             f"nginx_up {0 if values is None else 1}"]
    if values is None:
        return "\n".join(lines) + "\n"
    for state, help_text in (("accepted", "Accepted client connections"),
                             ("handled", "Handled client connections")):
        lines += [f"# HELP nginx_connections_{state} {help_text}", f"# TYPE nginx_connections_{state} counter",
                  f"nginx_connections_{state} {values[state]}"]
    for state, help_text in (("active", "Active client connections"), ("reading", "Connections reading"),
                             ("writing", "Connections writing"), ("waiting", "Idle client connections")):
        lines += [f"# HELP nginx_connections_{state} {help_text}", f"# TYPE nginx_connections_{state} gauge",
                  f"nginx_connections_{state} {values[state]}"]
    lines += ["# HELP nginx_http_requests_total Total http requests", "# TYPE nginx_http_requests_total counter",
              f"nginx_http_requests_total {values['requests']}"]
    return "\n".join(lines) + "\n"


async def fetch(url: str, timeout: float = 2.0) -> bytes:
    """GET a plain-HTTP URL and return the body (the stub_status page is tiny and unchunked)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname, parts.port or 80), timeout)
    try:
        writer.write(f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {parts.hostname}\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    if not status_line.startswith(b"HTTP/1.") or b" 200" not in status_line:
        raise ValueError(f"stub_status answered {status_line!r}")
    return body


def make_handler(status_url: str):  # type: ignore[no-untyped-def]
    async def handle(req: Request) -> Response:
        if req.path != "/metrics":
            return Response(404, [("Content-Type", "text/plain")], b"metrics are at /metrics\n")
        try:
            values: dict[str, int] | None = parse_stub_status(await fetch(status_url))
        except (TimeoutError, OSError, ValueError):
            values = None
        return Response(200, [("Content-Type", CONTENT_TYPE)], to_prometheus(values).encode())

    return handle


async def run(port: int, status_url: str, host: str = "127.0.0.1") -> None:
    await serve_until_signalled(make_handler(status_url), host, port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="nginx stub_status to Prometheus text")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--status-url", required=True)
    parser.add_argument("--run-dir", default="", help="the demo run directory (marks the process as the demo's)")
    args = parser.parse_args(argv)
    asyncio.run(run(args.port, args.status_url))


if __name__ == "__main__":
    main()
