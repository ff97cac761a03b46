"""Behaviour probes of the running demo edge, one per edge obligation, for the demo tests.

Each probe answers "does this obligation hold on the edge that runs now?" with
(holds, detail). They are deliberately small: enough to show that the good
configuration keeps every obligation and that each seeded-fault variant breaks
the obligations it declares. The gates of poetkb are the real checks.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from poetkb.demo.state import DemoState

Result = tuple[bool, str]
UPSTREAM_NAMES = ("healthy-a", "healthy-b", "faulty")


class Edge:
    """A running demo edge with helpers for requests, faults, counters and the access log."""

    def __init__(self, state: DemoState) -> None:
        self.state = state
        self.client = httpx.Client(base_url=state.base_url, timeout=10.0, headers={"Host": "edge.test"})

    def close(self) -> None:
        self.client.close()

    def nonce(self) -> str:
        return uuid.uuid4().hex[:10]

    def get(self, path: str, *, host: str = "edge.test", fresh: bool = False, **kw: Any) -> httpx.Response:
        headers = {"Host": host, **kw.pop("headers", {})}
        if fresh:
            headers["Connection"] = "close"
        return self.client.get(path, headers=headers, **kw)

    def admin(self, name: str, method: str, what: str, body: Any = None) -> httpx.Response:
        url = self.state.upstream(name).admin_url + "/" + what
        return httpx.request(method, url, json=body, timeout=5.0)

    def fault(self, body: dict[str, Any], names: tuple[str, ...] = UPSTREAM_NAMES) -> None:
        for name in names:
            assert self.admin(name, "PUT", "fault", body).status_code == 200

    def clear(self) -> None:
        for name in UPSTREAM_NAMES:
            self.admin(name, "DELETE", "fault")
            self.admin(name, "POST", "counters/reset")

    def total(self, names: tuple[str, ...] = UPSTREAM_NAMES) -> int:
        return sum(self.admin(n, "GET", "counters").json()["total"] for n in names)

    def log_offset(self) -> int:
        path = Path(self.state.access_log)
        return path.stat().st_size if path.exists() else 0

    def log_since(self, offset: int, wait_for: str | None = None) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 2.0
        while True:
            with open(self.state.access_log, "rb") as handle:
                handle.seek(offset)
                lines = [json.loads(line) for line in handle.read().splitlines() if line.strip()]
            if wait_for is None or any(wait_for in str(e.get("uri", "")) for e in lines):
                return lines
            if time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def raw(self, data: bytes, timeout: float = 3.0) -> bytes:
        with socket.create_connection(("127.0.0.1", self.state.ports["http"]), timeout=timeout) as sock:
            sock.sendall(data)
            out = b""
            try:
                while chunk := sock.recv(65536):
                    out += chunk
            except TimeoutError:
                pass
        return out


def _serial(resp: httpx.Response) -> Any:
    return resp.json().get("serial")


# -- routing --------------------------------------------------------------------------------------
def backend_selection(edge: Edge) -> Result:
    spread = {}
    for i in range(6):
        path = f"/api/select-{edge.nonce()}-{i}"
        seen = {edge.get(path, fresh=True).headers.get("x-upstream") for _ in range(3)}
        if len(seen) != 1:
            return False, f"{path} reached {sorted(map(str, seen))}"
        spread[path] = seen.pop()
    return True, f"each URI kept its backend ({sorted(set(spread.values()))} used)"


def fanout_bound(edge: Edge) -> Result:
    edge.clear()
    edge.fault({"action": "close"})
    with contextlib.suppress(httpx.TransportError):  # all upstreams closed without an answer: count anyway
        edge.get(f"/flaky/fanout-{edge.nonce()}")
    attempts = edge.total()
    edge.clear()
    return attempts <= 2, f"{attempts} upstream attempts for one request"


def retry_bounded(edge: Edge) -> Result:
    ok, detail = fanout_bound(edge)
    if not ok:
        return ok, detail
    edge.fault({"action": "close"}, names=("faulty",))
    with contextlib.suppress(httpx.TransportError):  # HAProxy may close the client connection instead
        edge.client.post(f"/flaky/post-{edge.nonce()}", content=b"order=1", headers={"Host": "edge.test"})
    posts = edge.total()
    edge.clear()
    return posts == 1, f"a failing POST reached the upstreams {posts} times"


def healthcheck_respect(edge: Edge) -> Result:
    edge.clear()
    edge.fault({"status": 503}, names=("faulty",))
    for i in range(12):
        edge.get(f"/flaky/hc-{i}")
    hits = edge.total(("faulty",))
    edge.clear()
    return hits <= 5, f"the failing server received {hits} of 12 requests"


def host_isolated(edge: Edge) -> Result:
    edge_vhost = edge.get("/echo").headers.get("x-vhost")
    other_vhost = edge.get("/echo", host="other.test").headers.get("x-vhost")
    if (edge_vhost, other_vhost) != ("edge", "other"):
        return False, f"X-Vhost edge.test={edge_vhost} other.test={other_vhost}"
    path = f"/cache/max-age/60?iso={edge.nonce()}"
    first = edge.get(path)
    other = edge.get(path, host="other.test")
    if _serial(first) == _serial(other):
        return False, "other.test was served edge.test's cache entry"
    return True, "vhosts answer separately and do not share cache entries"


# -- cache ----------------------------------------------------------------------------------------
def cache_key_stable(edge: Edge) -> Result:
    path = f"/cache/max-age/60?stable={edge.nonce()}"
    serials = {_serial(edge.get(path, fresh=True)) for _ in range(3)}
    return len(serials) == 1, f"3 equal requests on new connections gave serials {sorted(serials)}"


def vary_honored(edge: Edge) -> Result:
    path = f"/cache/vary/lang?v={edge.nonce()}"
    en = edge.get(path, headers={"Accept-Language": "en"})
    fr = edge.get(path, headers={"Accept-Language": "fr"})
    if fr.json().get("variant") != "fr":
        return False, f"Accept-Language fr got the {fr.json().get('variant')} variant"
    epath = f"/cache/vary/encoding?v={edge.nonce()}"
    edge.get(epath, headers={"Accept-Encoding": "gzip"})
    plain = edge.get(epath, headers={"Accept-Encoding": "identity"})
    if plain.headers.get("content-encoding"):
        return False, "a client accepting identity only got a gzip body"
    return en.json().get("variant") == "en", "each variant served to its own request"


def key_complete(edge: Edge) -> Result:
    n = edge.nonce()
    one = edge.get(f"/cache/max-age/60?k={n}&q=1")
    two = edge.get(f"/cache/max-age/60?k={n}&q=2")
    if _serial(one) == _serial(two) or "q=2" not in two.json().get("query", ""):
        return False, "requests differing only in the query shared a cache entry"
    path = f"/cache/max-age/60?h={n}"
    edge.get(path)
    other = edge.get(path, host="other.test")
    if other.json()["headers"].get("host", "").split(":")[0] != "other.test":
        return False, "other.test got an entry cached for edge.test"
    return True, "scheme, host and query are all in the key"


def private_bypassed(edge: Edge) -> Result:
    for kind in ("private", "no-store", "set-cookie"):
        path = f"/cache/{kind}?p={edge.nonce()}"
        first, second = edge.get(path), edge.get(path)
        if _serial(first) == _serial(second):
            return False, f"/cache/{kind} was served from cache"
    return True, "private, no-store and Set-Cookie responses were not cached"


def ttl_honored(edge: Edge) -> Result:
    path = f"/cache/max-age/1?ttl={edge.nonce()}"
    first = _serial(edge.get(path))
    second = _serial(edge.get(path))
    if first != second:
        return False, "a max-age=1 response was not cached at all"
    time.sleep(2.2)
    third = _serial(edge.get(path))
    return third != first, "expired after max-age" if third != first else "served from cache after its TTL"


def stale_bounded(edge: Edge) -> Result:
    path = f"/cache/stale-if-error/1/1?s={edge.nonce()}"
    first = _serial(edge.get(path))
    edge.fault({"status": 503}, names=("healthy-a", "healthy-b"))
    time.sleep(3.0)
    late = edge.get(path)
    edge.clear()
    stale = late.status_code == 200 and late.json().get("serial") == first
    return not stale, f"after max-age + stale-if-error the edge answered {late.status_code}" + (
        " with the stale entry" if stale else "")


# -- protocol -------------------------------------------------------------------------------------
def http_status(edge: Edge) -> Result:
    edge.fault({"status": 503}, names=("healthy-a", "healthy-b"))
    resp = edge.get(f"/api/status-{edge.nonce()}")
    edge.clear()
    return resp.status_code >= 500, f"an upstream failure was answered with {resp.status_code}"


def content_length(edge: Edge) -> Result:
    out = edge.raw(b"GET /api/bytes/100 HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    lengths = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
               if line.lower().startswith(b"content-length:")]
    ok = lengths == [b"100"] and len(body) == 100
    return ok, f"Content-Length {lengths}, body {len(body)} bytes"


def hop_by_hop(edge: Edge) -> Result:
    fixed = {"Connection": "keep-alive, te", "Keep-Alive": "timeout=5", "TE": "trailers", "Trailer": "X-T",
             "Upgrade": "example/1", "Proxy-Connection": "keep-alive"}
    resp = edge.get("/echo", headers=fixed)
    if resp.status_code != 200:
        return False, f"a request with ordinary hop-by-hop fields got {resp.status_code}"
    got = resp.json()["headers"]
    leaked = [h for h in ("keep-alive", "te", "trailer", "upgrade", "proxy-connection") if h in got]
    if "connection" in got and got["connection"].lower() not in ("keep-alive", "close"):
        leaked.append(f"connection: {got['connection']}")
    if leaked:
        return False, f"forwarded: {leaked}"
    listed = edge.get("/echo", headers={"Connection": "X-Hop", "X-Hop": "1"})
    if listed.status_code == 200 and "x-hop" in listed.json()["headers"]:
        return False, "a field named by Connection was forwarded"
    return True, f"stripped; Connection naming a field answered {listed.status_code}"


def framing_strict(edge: Edge) -> Result:
    dup = edge.raw(b"POST /echo HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
    both = edge.raw(b"POST /echo HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    dup_ok = dup.startswith(b"HTTP/1.1 400")
    # HAProxy 2.6 may forward CL+TE with the Content-Length removed and the connection closed (RFC 9112 6.3)
    both_ok = both.startswith(b"HTTP/1.1 400") or (
        edge.state.proxy == "haproxy" and b"connection: close" in both.lower())
    return dup_ok and both_ok, f"duplicate CL -> {dup[:12]!r}, CL+TE -> {both[:12]!r}"


# -- security -------------------------------------------------------------------------------------
def client_ip_preserved(edge: Edge) -> Result:
    xff = edge.get("/echo", headers={"X-Forwarded-For": "203.0.113.9"}).json()["headers"].get("x-forwarded-for", "")
    hops = [h.strip() for h in xff.split(",")]
    return hops[-1:] == ["127.0.0.1"], f"upstream saw X-Forwarded-For {xff!r}"


def mtls_verified(edge: Edge) -> Result:
    ctx = ssl.create_default_context(cafile=edge.state.ca_cert)
    try:
        resp = httpx.get(edge.state.mtls_url + "/echo", verify=ctx, timeout=5.0)
    except (httpx.TransportError, ssl.SSLError) as exc:
        return True, f"no client certificate: refused ({type(exc).__name__})"
    return resp.status_code >= 400, f"no client certificate: {resp.status_code}"


def tls_chain_valid(edge: Edge) -> Result:
    ctx = ssl.create_default_context(cafile=edge.state.ca_cert)
    try:
        resp = httpx.get(edge.state.tls_url + "/echo", verify=ctx, timeout=5.0, headers={"Host": "edge.test"})
    except (httpx.TransportError, ssl.SSLError) as exc:
        return False, f"a client trusting only the root CA failed: {exc}"
    return resp.status_code == 200, "chain verifies against the root CA alone"


# -- resilience -----------------------------------------------------------------------------------
def graceful_degradation(edge: Edge) -> Result:
    edge.fault({"status": 503}, names=("faulty",))
    codes = [edge.get(f"/flaky/degrade-{i}").status_code for i in range(6)]
    edge.clear()
    return all(c == 200 for c in codes[3:]), f"/flaky/ with its primary failing answered {codes}"


def timeout_enforced(edge: Edge) -> Result:
    start = time.monotonic()
    try:
        resp = edge.get("/slow/4000", timeout=3.5)
        code: int | str = resp.status_code
    except httpx.TimeoutException:
        code = "client timeout"
    took = time.monotonic() - start
    return code == 504 and took < 3.0, f"a 4 s upstream answered {code} after {took:.1f} s"


def overload_shed(edge: Edge) -> Result:
    results: list[tuple[int, float]] = []

    def one() -> None:
        start = time.monotonic()
        with httpx.Client(timeout=10.0) as client:
            code = client.get(edge.state.base_url + "/limited/slow/1500", headers={"Host": "edge.test"}).status_code
        results.append((code, time.monotonic() - start))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    shed = [took for code, took in results if code in (429, 503)]
    return bool(shed) and max(shed) < 1.0, f"8 concurrent slow requests: {sorted(c for c, _ in results)}"


def ratelimit_enforced(edge: Edge) -> Result:
    time.sleep(1.1)
    codes = [edge.get(f"/limited/rate-{i}").status_code for i in range(40)]
    limited = sum(c == 429 for c in codes)
    return limited > 0, f"{limited} of 40 rapid requests were limited"


# -- observability --------------------------------------------------------------------------------
def access_logged(edge: Edge) -> Result:
    n = edge.nonce()
    offset = edge.log_offset()
    edge.fault({"status": 503}, names=("healthy-a", "healthy-b"))
    edge.get(f"/api/logged-{n}")
    edge.clear()
    edge.get(f"/api/logged-ok-{n}")
    lines = edge.log_since(offset, wait_for=f"logged-ok-{n}")
    failed = [e for e in lines if f"logged-{n}" in str(e.get("uri"))]
    return bool(failed) and failed[0]["status"] >= 500, f"{len(failed)} log line(s) for the failing request"


def metrics_exposed(edge: Edge) -> Result:
    try:
        resp = httpx.get(edge.state.metrics_url, timeout=3.0)
    except httpx.TransportError as exc:
        return False, f"metrics endpoint unreachable: {type(exc).__name__}"
    ok = resp.status_code == 200 and "# TYPE" in resp.text
    return ok, f"metrics endpoint answered {resp.status_code}"


def request_id(edge: Edge) -> Result:
    resp = edge.get("/echo")
    rid = resp.headers.get("x-request-id")
    seen = resp.json()["headers"].get("x-request-id")
    if not rid or rid != seen:
        return False, f"returned {rid!r}, upstream saw {seen!r}"
    kept = edge.get("/echo", headers={"X-Request-ID": "client-id-123"})
    return kept.headers.get("x-request-id") == "client-id-123", "generated when missing, kept when sane"


def upstream_timing(edge: Edge) -> Result:
    n = edge.nonce()
    offset = edge.log_offset()
    edge.get(f"/api/timing-{n}")
    lines = [e for e in edge.log_since(offset, wait_for=n) if n in str(e.get("uri"))]
    if not lines:
        return False, "no log line"
    missing = [f for f in ("upstream_connect_time", "upstream_header_time") if f not in lines[0]]
    return not missing, f"missing {missing}" if missing else "connect and header times logged"


def reload_atomic(edge: Edge) -> Result:
    from poetkb.demo import reload

    failures: list[str] = []
    done = threading.Event()
    count = 0

    def hammer() -> None:
        nonlocal count
        request = b"GET /echo HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n"
        while not done.is_set():
            try:
                with socket.create_connection(("127.0.0.1", edge.state.ports["http"]), timeout=5) as sock:
                    sock.sendall(request)
                    head = sock.recv(64)
                if not head.startswith(b"HTTP/1.1 200"):
                    failures.append(head[:12].decode(errors="replace") or "empty reply")
            except OSError as exc:
                failures.append(type(exc).__name__)
            count += 1

    thread = threading.Thread(target=hammer)
    thread.start()
    time.sleep(0.2)
    new_state = reload(edge.state)
    time.sleep(0.3)
    done.set()
    thread.join(10)
    edge.state = new_state
    return not failures, f"{len(failures)} of {count} requests failed during the reload {failures[:3]}"


PROBES: dict[str, Callable[[Edge], Result]] = {
    "routing.backend.selection": backend_selection,
    "routing.fanout.bound": fanout_bound,
    "routing.healthcheck.respect": healthcheck_respect,
    "routing.host.isolated": host_isolated,
    "cache.key.stability": cache_key_stable,
    "cache.vary.honored": vary_honored,
    "cache.key.complete": key_complete,
    "cache.private.bypassed": private_bypassed,
    "cache.ttl.honored": ttl_honored,
    "cache.stale.bounded": stale_bounded,
    "protocol.http.status": http_status,
    "protocol.content.length": content_length,
    "protocol.hop_by_hop.stripped": hop_by_hop,
    "protocol.framing.strict": framing_strict,
    "security.client.ip.preserved": client_ip_preserved,
    "security.mtls.client.verified": mtls_verified,
    "security.tls.chain.valid": tls_chain_valid,
    "resilience.graceful.degradation": graceful_degradation,
    "resilience.retry.bounded": retry_bounded,
    "resilience.timeout.enforced": timeout_enforced,
    "resilience.overload.shed": overload_shed,
    "observability.access.logged": access_logged,
    "observability.metrics.exposed": metrics_exposed,
    "observability.request.id": request_id,
    "observability.upstream.timing": upstream_timing,
    "state.config.reload.atomic": reload_atomic,
    "state.ratelimit.enforced": ratelimit_enforced,
}


# -- fixtures' helpers ----------------------------------------------------------------------------
def free_base_port() -> int:
    """A base port whose whole demo range is free (below the ephemeral range, so clients never take it)."""
    import random

    from poetkb.demo.layout import PORT_SPAN, port_free

    rnd = random.Random()
    for _ in range(500):
        base = rnd.randrange(20000, 32000, PORT_SPAN)
        if all(port_free(base + i) for i in range(PORT_SPAN)):
            return base
    raise RuntimeError("no free port range found between 20000 and 32000")
