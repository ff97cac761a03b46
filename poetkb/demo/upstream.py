"""A demo upstream: echoes what it received, serves cacheable paths, counts requests, takes faults.

Run as ``python -m poetkb.demo.upstream --name healthy-a --port 18090``. Every
response carries ``X-Upstream: <name>``. The admin API lives under ``/__poet/``
on the upstream's own port (the edge never forwards that prefix):

- ``GET /__poet/counters``, ``POST /__poet/counters/reset``
- ``GET|PUT|POST|DELETE /__poet/fault`` (a :class:`~poetkb.demo.state.Fault` as JSON)
- ``GET /__poet/health``

Edge route prefixes (``/api/``, ``/flaky/``, ``/limited/``) are ignored when
choosing what to serve, so ``/flaky/slow/2000`` is a slow response too.

Behind a user's own configuration (``poet gate run --config``) the routes are the
user's, so a request may say what to serve and under which path to count it:
``X-Poet-Serve: /cache/max-age/60`` selects the behaviour whatever the path, and
``X-Poet-Path`` names the path the client asked for (a proxy may rewrite it).
``--serve NAME=PORT`` (repeatable) runs several upstreams in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import json
import re
import time
from collections import Counter, deque
from typing import Any

from pydantic import ValidationError

from poetkb.demo.httpserver import Request, Response, serve, serve_until_signalled
from poetkb.demo.state import Fault

ADMIN_PREFIX = "/__poet/"
ROUTE_PREFIXES = ("/api/", "/flaky/", "/limited/")
MAX_BYTES = 64 * 1024 * 1024
MAX_SLOW_MS = 120_000
_NUM = re.compile(r"^\d{1,9}$")


class Upstream:
    """State and request handling of one upstream."""

    def __init__(self, name: str, role: str = "healthy") -> None:
        self.name = name
        self.role = role
        self.serial = itertools.count(1)
        self.total = 0
        self.by_path: Counter[str] = Counter()
        self.by_method: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=1000)
        self.fault = Fault()
        self._fault_credit = 0.0

    # -- dispatch ----------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response | Any:
        path = req.path
        if path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/"):
            return self.admin(req, path)
        counted = req.header("x-poet-path") or path
        self.count(req, counted)
        fault = self.fault
        if fault.active and self._matches(fault, counted):
            return self._faulted(req, path, fault)
        return self.content(req, path)

    def count(self, req: Request, path: str) -> None:
        self.total += 1
        self.by_path[path] += 1
        self.by_method[req.method] += 1
        self.recent.append(
            {"method": req.method, "path": path, "request_id": req.header("x-request-id") or None, "ts": time.time()}
        )

    @staticmethod
    def _matches(fault: Fault, path: str) -> bool:
        return not fault.paths or any(path.startswith(p) for p in fault.paths)

    def _should_fail(self, fault: Fault) -> bool:
        if fault.status is None and fault.action == "none":
            return False
        self._fault_credit += fault.error_rate
        if self._fault_credit >= 1.0 - 1e-9:
            self._fault_credit -= 1.0
            return True
        return False

    async def _faulted(self, req: Request, path: str, fault: Fault) -> Response:
        fail = self._should_fail(fault)
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if not fail:
            return self.content(req, path)
        if fault.action != "none":
            return Response(action=fault.action, hang_s=fault.hang_s)
        status = fault.status or 500
        body = {"upstream": self.name, "injected": True, "status": status, "path": path}
        return self._json(status, body)

    # -- content -----------------------------------------------------------------------------------
    def content(self, req: Request, path: str) -> Response | Any:
        serve = req.header("x-poet-serve")
        logical = serve if serve.startswith("/") else path
        for prefix in ROUTE_PREFIXES:
            if logical.startswith(prefix):
                logical = "/" + logical[len(prefix) :]
                break
        parts = [p for p in logical.split("/") if p]
        if len(parts) == 2 and parts[0] == "bytes" and _NUM.match(parts[1]):
            size = min(int(parts[1]), MAX_BYTES)
            headers = self._base_headers("application/octet-stream")
            return Response(200, headers, b"x" * size)
        if len(parts) == 2 and parts[0] == "slow" and _NUM.match(parts[1]):
            return self._slow(req, path, min(int(parts[1]), MAX_SLOW_MS))
        if parts and parts[0] == "cache":
            return self._cache(req, path, parts[1:])
        return self.echo(req, path)

    async def _slow(self, req: Request, path: str, ms: int) -> Response:
        await asyncio.sleep(ms / 1000)
        return self.echo(req, path, extra={"slept_ms": ms})

    def _cache(self, req: Request, path: str, rest: list[str]) -> Response:
        cc: str | None = None
        extra: dict[str, Any] = {}
        headers: list[tuple[str, str]] = []
        kind = "/".join(rest)
        if len(rest) == 2 and rest[0] in ("max-age", "s-maxage") and _NUM.match(rest[1]):
            cc = f"public, max-age={rest[1]}" if rest[0] == "max-age" else f"public, s-maxage={rest[1]}, max-age=0"
        elif kind == "private":
            cc = "private, max-age=60"
        elif kind == "no-store":
            cc = "no-store"
        elif kind == "set-cookie":
            cc = "public, max-age=60"
            headers.append(("Set-Cookie", f"session={next(self.serial)}; Path=/; HttpOnly"))
        elif kind == "vary/lang":
            cc = "public, max-age=60"
            variant = req.header("accept-language") or "default"
            headers += [("Vary", "Accept-Language"), ("Content-Language", variant)]
            extra["variant"] = variant
        elif kind == "vary/encoding":
            return self._vary_encoding(req, path)
        elif rest and rest[0] == "stale-if-error":
            nums = [int(n) for n in rest[1:3] if _NUM.match(n)]
            max_age = nums[0] if nums else 1
            stale = nums[1] if len(nums) > 1 else 5
            cc = f"public, max-age={max_age}, stale-if-error={stale}"
        if cc is not None:
            headers.append(("Cache-Control", cc))
        return self.echo(req, path, extra=extra, headers=headers)

    def _vary_encoding(self, req: Request, path: str) -> Response:
        accepts_gzip = "gzip" in req.header("accept-encoding").lower()
        variant = "gzip" if accepts_gzip else "identity"
        resp = self.echo(req, path, extra={"variant": variant},
                         headers=[("Cache-Control", "public, max-age=60"), ("Vary", "Accept-Encoding")])
        if accepts_gzip:
            resp.body = gzip.compress(resp.body, compresslevel=1)
            resp.headers.append(("Content-Encoding", "gzip"))
        return resp

    def echo(
        self, req: Request, path: str, *, extra: dict[str, Any] | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        merged: dict[str, str] = {}
        for name, value in req.headers:
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        body: dict[str, Any] = {
            "upstream": self.name,
            "role": self.role,
            "serial": next(self.serial),
            "time": time.time(),
            "method": req.method,
            "path": path,
            "query": req.query,
            "headers": merged,
            "header_list": [[n, v] for n, v in req.headers],
            "body_length": len(req.body),
        }
        if extra:
            body.update(extra)
        resp = self._json(200, body)
        resp.headers.extend(headers or [])
        return resp

    # -- admin API ---------------------------------------------------------------------------------
    def admin(self, req: Request, path: str) -> Response:
        what = path[len(ADMIN_PREFIX) :].rstrip("/")
        if what == "health" and req.method in ("GET", "HEAD"):
            return self._json(200, {"upstream": self.name, "ok": True})
        if what == "counters" and req.method in ("GET", "HEAD"):
            return self._json(200, self.counters())
        if what == "counters/reset" and req.method == "POST":
            self.reset_counters()
            return self._json(200, self.counters())
        if what == "fault":
            if req.method in ("GET", "HEAD"):
                return self._json(200, self.fault.model_dump())
            if req.method == "DELETE":
                self.fault = Fault()
                self._fault_credit = 0.0
                return self._json(200, self.fault.model_dump())
            if req.method in ("PUT", "POST"):
                return self._set_fault(req)
            return self._json(405, {"error": "use GET, PUT, POST or DELETE on /__poet/fault"})
        return self._json(404, {"error": f"no admin endpoint {path}", "endpoints": [
            "GET /__poet/health", "GET /__poet/counters", "POST /__poet/counters/reset",
            "GET|PUT|POST|DELETE /__poet/fault"]})

    def _set_fault(self, req: Request) -> Response:
        try:
            data = json.loads(req.body or b"{}")
        except ValueError as exc:
            return self._json(400, {"error": f"body is not JSON: {exc}"})
        if not isinstance(data, dict):
            return self._json(400, {"error": "body must be a JSON object, e.g. {\"status\": 503}"})
        try:
            fault = Fault.model_validate(data)
        except ValidationError as exc:
            problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]
            return self._json(400, {"error": "invalid fault", "problems": problems,
                                    "fields": sorted(Fault.model_fields)})
        self.fault = fault
        self._fault_credit = 0.0
        return self._json(200, fault.model_dump())

    def counters(self) -> dict[str, Any]:
        return {"name": self.name, "total": self.total, "by_path": dict(self.by_path),
                "by_method": dict(self.by_method), "recent": list(self.recent)}

    def reset_counters(self) -> None:
        self.total = 0
        self.by_path.clear()
        self.by_method.clear()
        self.recent.clear()

    # -- helpers -----------------------------------------------------------------------------------
    def _base_headers(self, content_type: str) -> list[tuple[str, str]]:
        return [("Content-Type", content_type), ("X-Upstream", self.name)]

    def _json(self, status: int, body: dict[str, Any]) -> Response:
        data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
        return Response(status, self._base_headers("application/json"), data)


async def run(name: str, role: str, host: str, port: int) -> None:
    """Serve one upstream until SIGTERM or SIGINT."""
    await serve_until_signalled(Upstream(name, role).handle, host, port)


async def run_many(specs: list[tuple[str, int]], host: str) -> None:
    """Serve several upstreams (name, port) in one process until SIGTERM or SIGINT."""
    import signal

    servers = [await serve(Upstream(name).handle, host, port) for name, port in specs]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="poetkb demo upstream")
    parser.add_argument("--name")
    parser.add_argument("--serve", action="append", default=[], metavar="NAME=PORT",
                        help="one upstream of several in this process (repeatable)")
    parser.add_argument("--role", choices=["healthy", "faulty"], default="healthy")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--run-dir", default="", help="the demo run directory (marks the process as the demo's)")
    args = parser.parse_args(argv)
    if args.serve:
        specs = [(item.rsplit("=", 1)[0], int(item.rsplit("=", 1)[1])) for item in args.serve]
        asyncio.run(run_many(specs, args.host))
        return
    if not args.name or not args.port:
        parser.error("--name and --port are required (or --serve NAME=PORT)")
    asyncio.run(run(args.name, args.role, args.host, args.port))


if __name__ == "__main__":
    main()
