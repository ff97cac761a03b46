"""The service: a small JSON API over PostgreSQL, behind bearer-JWT auth, with a bounded worker pool.

Routes (every ``/api/`` route needs a valid bearer token; the edge forwards
``/svc/api/...`` here with the prefix kept, and it is stripped):

- ``GET /`` and ``GET /health``: the service and its database answer; ``GET /live``: the process answers.
- ``GET /api/ping``: authenticated, touches nothing else.
- ``GET /api/me``: who the token says you are (the handler counts its calls per ``poet`` marker, so a
  gate proves a refused token never reached it).
- ``POST /api/accounts`` ``{owner, balance}``, ``GET /api/accounts/ID``, ``POST /api/accounts/ID/increment``.
- ``POST /api/transfers`` ``{from, to, amount}``: atomic, retried on deadlock.
- ``POST /api/orders`` ``{account_id}``: a new order with a unique number.
- ``GET /api/dependency``: calls the slow dependency with a timeout (504 when it runs out).

Admin API under ``/__poet/`` (no auth, loopback only, like the upstreams'):
``GET counters[?marker=M]``, ``PUT fault`` ``{slow_query_ms, hold_lock_s, hold_read_s, drop_connections,
dependency_latency_ms, jwks_down}``, ``DELETE fault``, ``POST migrate`` ``{name}`` (an online migration),
``POST jwks/flush``, ``GET pool``, ``PUT db_via`` ``{via: "127.0.0.1:PORT"}`` (the pool reaches PostgreSQL
through that loopback address from now on, e.g. a chaos fault proxy; its open connections are replaced) and
``DELETE db_via`` (back to the database itself; healing the faults does that too).

Requests beyond ``workers`` running plus ``queue`` waiting are shed at once with
503, and a request that cannot get a database connection within
``pool_timeout_s`` gets 503: overload is answered quickly, never by hanging.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from poetkb.demo.service.auth import AuthError, JwksCache, Verifier
from poetkb.demo.service.partition import PartitionRelay
from poetkb.demo.service.settings import ServiceSettings, startup_problems
from poetkb.demo.service.store import (
    STAGED_MIGRATIONS,
    Faults,
    NotFound,
    Pool,
    PoolTimeout,
    Refused,
    Store,
    hold_lock,
    migrate,
    online_migration,
    relay_outbox,
    revert_staged,
    schema_drift,
    staged_migration,
)

MAX_BODY = 64 * 1024
#: the longest a request may hold a database connection before the connection is severed (a silent network)
QUERY_DEADLINE_S = 2.5
#: attempts in all per dependency call, and the capped exponential backoff between them (full jitter)
RETRY_ATTEMPTS = 3
RETRY_BASE_S = 0.05
RETRY_CAP_S = 0.4


class RetryBudget:
    """Retries may be at most a tenth of calls: each call earns 0.1 token, a retry spends 1 (3 to start, cap 10)."""

    def __init__(self, ratio: float = 0.1, start: float = 3.0, cap: float = 10.0) -> None:
        self.lock = threading.Lock()
        self.ratio, self.tokens, self.cap = ratio, start, cap

    def earn(self) -> None:
        with self.lock:
            self.tokens = min(self.cap, self.tokens + self.ratio)

    def spend(self) -> bool:
        with self.lock:
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True

MAX_MARKERS = 2000


class Counters:
    """Handler calls per marker and refusals per reason (bounded)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handled: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.total_handled = 0
        self.shed = 0

    def handle(self, marker: str) -> None:
        with self.lock:
            self.total_handled += 1
            if marker in self.handled or len(self.handled) < MAX_MARKERS:
                self.handled[marker] = self.handled.get(marker, 0) + 1

    def reject(self, reason: str) -> None:
        with self.lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1


class Service:
    """The running service's parts: settings, store, verifier, counters, faults."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.flaws = settings.flaws
        self.faults = Faults()
        # the pool reaches PostgreSQL through a relay the fault API can partition (migrations and faults do not)
        self.relay = PartitionRelay(_dsn_target(settings.dsn))
        pool_dsn = re.sub(r"\bport=\d+", f"port={self.relay.port}", settings.dsn)
        # the flaw (partition-hang): no deadline on a leased connection, so a query into a silent network waits
        deadline = None if self.flaws.no_query_deadline else QUERY_DEADLINE_S
        self.pool = Pool(pool_dsn, settings.pool_size, settings.pool_timeout_s,
                         unbounded_wait=self.flaws.pool_unbounded_wait, no_reconnect=self.flaws.no_reconnect,
                         deadline_s=deadline)
        self.store = Store(self.pool, self.flaws, self.faults, publish=self.publish)
        self.relay_stop = threading.Event()
        if not self.flaws.outbox_dual_write:
            threading.Thread(target=relay_outbox, args=(settings.dsn, self.publish, self.relay_stop),
                             name="poet-outbox-relay", daemon=True).start()
        self.cache = JwksCache(settings.jwks_url, ttl_s=settings.jwks_ttl_s,
                               min_refetch_s=settings.jwks_min_refetch_s, stale_max_s=settings.jwks_stale_max_s,
                               timeout_s=1.0, unbounded=self.flaws.jwks_refetch_unbounded)
        self.verifier = Verifier(self.cache, issuer=settings.issuer, audience=settings.audience, flaws=self.flaws)
        self.counters = Counters()
        self.retry_budget = RetryBudget()

    # -- auth -------------------------------------------------------------------------------------------
    def authenticate(self, headers: Any) -> dict[str, Any]:
        mock = headers.get("X-Mock-User")
        if mock and self.settings.mock_auth and (self.settings.environment != "production"
                                                 or self.flaws.mock_auth_in_production):
            return {"sub": mock, "mock": True}
        value = headers.get("Authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("no bearer token")
        return self.verifier.verify(token.strip())

    def publish(self, event: dict[str, Any]) -> bool:
        """Send one event to the broker (the dependency sidecar's /publish); True once it acknowledged."""
        request = urllib.request.Request(self.settings.dependency_url + "/publish", method="POST",
                                         data=json.dumps(event).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=1.0) as response:  # noqa: S310 - loopback broker
                return bool(response.status == 200)
        except (OSError, ValueError):
            return False

    # -- the slow dependency ------------------------------------------------------------------------------
    def call_dependency(self) -> tuple[int, dict[str, Any]]:
        """Call the dependency within one deadline; failed attempts are retried with capped, jittered backoff.

        At most RETRY_ATTEMPTS attempts in all, only while the retry budget has
        tokens (each call earns a tenth of a retry), never past the deadline,
        never after a timeout (the deadline is spent), and a Retry-After from the
        dependency is honoured. The seeded retry-storm variant retries at once,
        up to ten times, without a budget.
        """
        timeout = 60.0 if self.flaws.dependency_no_timeout else self.settings.dependency_timeout_s
        started = time.monotonic()
        deadline = started + timeout
        call_id = secrets.token_hex(6)
        self.retry_budget.earn()
        attempts, last = 0, ""
        storm = self.flaws.retry_storm
        while True:
            attempts += 1
            request = urllib.request.Request(self.settings.dependency_url + "/work", headers={"X-Call-Id": call_id})
            retry_after = None
            try:
                with urllib.request.urlopen(request, timeout=max(0.05, deadline - time.monotonic())) as response:  # noqa: S310
                    body = json.loads(response.read(MAX_BODY))
                return 200, {"dependency": body, "attempts": attempts,
                             "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}
            except urllib.error.HTTPError as exc:
                last, retry_after = f"HTTP {exc.code}", exc.headers.get("Retry-After")
                retryable = exc.code in (429, 502, 503, 504)
            except (TimeoutError, urllib.error.URLError, OSError) as exc:
                timed_out = isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)
                if timed_out:
                    return 504, {"error": f"the dependency did not answer in time: {type(exc).__name__}",
                                 "attempts": attempts, "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}
                last, retryable = type(exc).__name__, True
            if storm:
                # the flaw: retry at once, up to ten times, whatever the budget
                delay, allowed = 0.0, retryable and attempts < 10
            else:
                delay = random.uniform(0, min(RETRY_CAP_S, RETRY_BASE_S * 2 ** attempts))  # noqa: S311 - jitter
                with contextlib.suppress(TypeError, ValueError):
                    delay = max(delay, float(retry_after))  # type: ignore[arg-type]
                allowed = (retryable and attempts < RETRY_ATTEMPTS and time.monotonic() + delay < deadline
                           and self.retry_budget.spend())
            if not allowed:
                return 502, {"error": f"the dependency failed: {last}", "attempts": attempts,
                             "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}
            time.sleep(delay)

    # -- faults --------------------------------------------------------------------------------------------
    def set_fault(self, body: dict[str, Any]) -> dict[str, Any]:
        done: dict[str, Any] = {}
        self.faults.slow_query_ms = max(0, min(int(body.get("slow_query_ms", 0)), 30_000))
        done["slow_query_ms"] = self.faults.slow_query_ms
        if body.get("hold_lock_s"):
            hold_lock(self.settings.dsn, float(body["hold_lock_s"]))
            done["hold_lock_s"] = float(body["hold_lock_s"])
        if body.get("hold_read_s"):
            hold_lock(self.settings.dsn, float(body["hold_read_s"]), mode="ACCESS SHARE")
            done["hold_read_s"] = float(body["hold_read_s"])
        if body.get("drop_connections"):
            done["dropped"] = self.store.drop_connections()
        if "dependency_latency_ms" in body:
            done["dependency"] = _send(self.settings.dependency_url + "/__poet/fault", "PUT",
                                       {"latency_ms": int(body["dependency_latency_ms"])})
        if "partition_db" in body:
            if body["partition_db"]:
                self.relay.partitioned.set()
            else:
                self.relay.partitioned.clear()
            done["partition_db"] = self.relay.partitioned.is_set()
        if "jwks_down" in body:
            done["issuer"] = _send(self.settings.issuer_admin_url + "/fault", "PUT",
                                   {"jwks_down": bool(body["jwks_down"])})
        return done

    def db_via(self, via: Any) -> tuple[int, dict[str, Any]]:
        """Point the pool's relay at ``via`` (``host:port`` on loopback), or back at the database (None)."""
        if via is None:
            return 200, {"via": None, "closed": self.relay.restore(), "relay": self.relay.stats()}
        host, _, port = str(via).rpartition(":")
        host = host.strip("[]")
        if host not in ("127.0.0.1", "localhost", "::1") or not port.isdigit() or not 0 < int(port) < 65536:
            return 400, {"error": f"via {via!r} is not host:port on loopback (127.0.0.1:PORT)"}
        closed = self.relay.retarget((host, int(port)))
        return 200, {"via": f"{host}:{port}", "closed": closed, "relay": self.relay.stats()}

    def heal(self) -> dict[str, Any]:
        self.faults.slow_query_ms = 0
        self.relay.partitioned.clear()
        self.relay.restore()
        _send(self.settings.dependency_url + "/__poet/fault", "DELETE", None)
        _send(self.settings.issuer_admin_url + "/fault", "DELETE", None)
        return {"healed": True}


def _send(url: str, method: str, body: Any) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310 - loopback admin API
            return json.loads(response.read(MAX_BODY) or b"null")
    except (OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


#: what the memory-leak variant keeps from every request (128 KiB each, at most 2000)
_RETAINED: list[bytearray] = []


def _process_figures() -> dict[str, Any]:
    """The service process's resident memory, threads and open descriptors (Linux /proc), for soak checks."""
    figures: dict[str, Any] = {"threads": threading.active_count()}
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                figures["rss_bytes"] = int(line.split()[1]) * 1024
        figures["open_fds"] = len(list(Path("/proc/self/fd").iterdir()))
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                figures["mem_total_bytes"] = int(line.split()[1]) * 1024
    except OSError as exc:
        figures["error"] = f"{type(exc).__name__}: {exc}"
    return figures


def _dsn_target(dsn: str) -> tuple[str, int]:
    """The host and port of a libpq keyword DSN (the demo's: ``host=127.0.0.1 port=N ...``)."""
    host = re.search(r"\bhost=(\S+)", dsn)
    port = re.search(r"\bport=(\d+)", dsn)
    return (host.group(1) if host else "127.0.0.1"), int(port.group(1)) if port else 5432


_ACCOUNT = re.compile(r"^/api/accounts/(\d{1,18})(/increment)?$")


def make_handler(svc: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # one request per connection: a worker is held by a request, never by an idle keep-alive connection
        protocol_version = "HTTP/1.0"
        server_version = "poet-demo-service"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ValueError("body too large")
            data = json.loads(self.rfile.read(length) or b"{}") if length else {}
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            return data

        def _route(self, method: str) -> None:
            parts = urlsplit(self.path)
            path = parts.path[4:] if parts.path.startswith("/svc/") else parts.path
            query = parse_qs(parts.query)
            try:
                body = self._body() if method in ("POST", "PUT") else {}
            except ValueError as exc:
                self._reply(400, {"error": str(exc)})
                return
            try:
                if path.startswith("/__poet/"):
                    self._admin(method, path, query, body)
                elif getattr(self.server, "latched", lambda: False)():
                    # the flaw (overload-latch): the open breaker refuses everything but the admin API
                    self._reply(503, {"error": "overloaded (breaker open)"}, {"Retry-After": "4"})
                elif path == "/live":
                    self._reply(200, {"live": True})
                elif path in ("/", "/health"):
                    svc.store.ping()
                    self._reply(200, {"service": "poet-demo-service", "variant": svc.settings.variant})
                elif path.startswith("/api/"):
                    try:
                        claims = svc.authenticate(self.headers)
                    except AuthError as exc:
                        svc.counters.reject(str(exc))
                        self._reply(401, {"error": "unauthorized", "reason": str(exc)},
                                    {"WWW-Authenticate": 'Bearer error="invalid_token"'})
                        return
                    self._api(method, path, query, body, claims)
                else:
                    self._reply(404, {"error": "not found"})
            except PoolTimeout as exc:
                self._reply(503, {"error": str(exc)}, {"Retry-After": "1"})
            except NotFound as exc:
                self._reply(404, {"error": str(exc)})
            except Refused as exc:
                self._reply(409, {"error": str(exc)})
            except Exception as exc:  # noqa: BLE001 - a database error is a 503 with its class, never a crash
                self._reply(503, {"error": f"{type(exc).__name__}: {str(exc)[:200]}"})

        def _api(self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any],
                 claims: dict[str, Any]) -> None:
            marker = (query.get("poet") or [""])[0]
            svc.counters.handle(marker)
            if svc.flaws.memory_leak and len(_RETAINED) < 2000:
                # the flaw: a per-request buffer kept in a module-level list "for debugging", never freed
                _RETAINED.append(bytearray(128 * 1024))
            if path == "/api/me" and method == "GET":
                if svc.flaws.slow_handler:
                    time.sleep(0.3)  # the flaw: needless synchronous work on every call
                if svc.flaws.flaky_handler and svc.counters.total_handled % 20 == 0:
                    self._reply(500, {"error": "internal error (seeded fault)"})  # the flaw: one call in twenty
                    return
                self._reply(200, {"sub": claims.get("sub"), "mock": bool(claims.get("mock"))})
            elif path == "/api/ping" and method == "GET":
                self._reply(200, {"pong": True})
            elif path == "/api/accounts" and method == "POST":
                self._reply(201, svc.store.create_account(str(body.get("owner", "demo"))[:64],
                                                          int(body.get("balance", 0))))
            elif (match := _ACCOUNT.match(path)) is not None:
                account = int(match.group(1))
                if match.group(2) and method == "POST":
                    self._reply(200, {"id": account, "counter": svc.store.increment(account)})
                elif not match.group(2) and method == "GET":
                    self._reply(200, svc.store.account(account))
                else:
                    self._reply(405, {"error": "method not allowed"})
            elif path == "/api/transfers" and method == "POST":
                self._reply(200, svc.store.transfer(int(body["from"]), int(body["to"]), int(body["amount"])))
            elif path == "/api/orders" and method == "POST":
                self._reply(201, svc.store.create_order(int(body["account_id"])))
            elif path == "/api/dependency" and method == "GET":
                self._reply(*svc.call_dependency())
            else:
                self._reply(404, {"error": "not found"})

        def _admin(self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any]) -> None:
            if path == "/__poet/counters" and method == "GET":
                marker = (query.get("marker") or [""])[0] or None
                with svc.counters.lock:
                    data: dict[str, Any] = {"handled_total": svc.counters.total_handled,
                                            "rejected": dict(svc.counters.rejected), "shed": svc.counters.shed}
                    if marker is not None:
                        data["handled"] = svc.counters.handled.get(marker, 0)
                data["jwks_fetches"] = svc.cache.stats.fetches
                data["pool"] = svc.pool.stats()
                data["variant"] = svc.settings.variant
                data["threads"] = threading.active_count()
                self._reply(200, data)
            elif path == "/__poet/fault" and method == "PUT":
                self._reply(200, svc.set_fault(body))
            elif path == "/__poet/fault" and method == "DELETE":
                self._reply(200, svc.heal())
            elif path == "/__poet/migrate" and method == "POST":
                name = str(body.get("name", ""))
                if name in STAGED_MIGRATIONS:
                    self._reply(200, staged_migration(svc.settings.dsn, name, svc.flaws,
                                                      interrupt_after=int(body.get("interrupt_after", 0))))
                else:
                    self._reply(200, online_migration(svc.settings.dsn, name, svc.flaws))
            elif path == "/__poet/migrate/down" and method == "POST":
                self._reply(200, revert_staged(svc.settings.dsn, str(body.get("name", "")), svc.flaws))
            elif path == "/__poet/schema/drift" and method == "GET":
                self._reply(200, schema_drift(svc.settings.dsn, svc.flaws))
            elif path == "/__poet/process" and method == "GET":
                self._reply(200, _process_figures())
            elif path == "/__poet/jwks/flush" and method == "POST":
                svc.cache.flush()
                self._reply(200, {"flushed": True})
            elif path == "/__poet/pool" and method == "GET":
                self._reply(200, svc.pool.stats())
            elif path == "/__poet/db_via" and method in ("PUT", "DELETE"):
                self._reply(*svc.db_via(body.get("via") if method == "PUT" else None))
            elif path == "/__poet/db_via" and method == "GET":
                self._reply(200, svc.relay.stats())
            else:
                self._reply(404, {"error": "not found"})

        def do_GET(self) -> None:  # noqa: N802 - http.server's names
            self._route("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._route("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._route("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._route("DELETE")

    return Handler


class BoundedServer(ThreadingHTTPServer):
    """A threaded HTTP server that runs at most ``workers`` requests and lets ``queue`` more wait.

    A connection beyond that is answered 503 at once and closed, so a flood
    never turns into unbounded threads.
    """

    daemon_threads = True
    block_on_close = False
    #: the listen backlog: a burst of connections is accepted (then served or shed), not dropped by the kernel
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, workers: int,
                 queue: int, counters: Counters, unbounded: bool = False, latch_s: float = 0.0) -> None:
        super().__init__(address, handler)
        self.unbounded = unbounded
        self.latch_s = latch_s
        self.latched_until = 0.0
        self.overloads = 0
        self.slots = threading.BoundedSemaphore(workers + queue)
        self.running = threading.BoundedSemaphore(workers)
        self.counters = counters

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.unbounded:  # the flaw: a thread per connection, without limit
            threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True).start()
            return
        latched = self.latched()
        if not self.slots.acquire(blocking=False):
            with self.counters.lock:
                self.counters.shed += 1
                if self.latch_s and not latched:
                    self.overloads += 1
                    if self.overloads >= 10:
                        # the flaw: an overload breaker that opens on shedding and stays open for its whole
                        # cool-down, every request refused, with no half-open probe to notice the load is gone
                        self.latched_until = time.monotonic() + self.latch_s
                        self.overloads = 0
            body = b'{"error": "overloaded"}'
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
                                + str(len(body)).encode() + b"\r\n\r\n" + body)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def latched(self) -> bool:
        """True while the overload-latch variant's breaker is open (it refuses every API request)."""
        return bool(self.latch_s) and time.monotonic() < self.latched_until

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        if self.unbounded:
            super().process_request_thread(request, client_address)
            return
        try:
            with self.running:
                super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the demo service tier's HTTP service")
    parser.add_argument("--settings", required=True, help="the settings JSON file `poet demo up` wrote")
    parser.add_argument("--check-config", action="store_true", help="only check the settings, then exit")
    parser.add_argument("--run-dir", help="marks the process as the demo's (unused otherwise)")
    args = parser.parse_args(argv)
    try:
        settings = ServiceSettings.model_validate_json(Path(args.settings).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"refusing to start: cannot read settings {args.settings}: {exc}", file=sys.stderr)
        return 2
    problems = startup_problems(settings)
    if problems:
        for problem in problems:
            print(f"refusing to start: {problem}", file=sys.stderr)
        return 2
    if args.check_config:
        print("settings ok")
        return 0
    migrate(settings.dsn, settings.flaws)
    svc = Service(settings)
    server = BoundedServer((settings.host, settings.port), make_handler(svc), workers=settings.workers,
                           queue=settings.queue, counters=svc.counters, unbounded=settings.flaws.threads_unbounded,
                           latch_s=4.0 if settings.flaws.overload_latch else 0.0)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"serving on {settings.host}:{settings.port} (variant {settings.variant})", flush=True)
    server.serve_forever()
    server.server_close()
    svc.pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
