"""Health probes of the running demo: each upstream, each edge listener, the metrics endpoint.

Probes use the standard library's ``http.client`` (no import cost for the CLI)
with short timeouts. They check that the edge is *up*, not that it is
*correct*: checking the obligations is the gates' job, and a broken variant
must still pass these probes. TLS probes therefore skip chain verification
(a leaf-only variant must still count as running).
Probe requests go through the edge to the upstreams: gates that count requests
should reset the upstream counters and read the access log from its current end.
"""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from poetkb.demo.state import CheckStatus, DemoState

PROBE_PATH = "/echo?poet-health=1"
USER_AGENT = "poetkb-demo-health"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def http_request(
    url: str, *, method: str = "GET", host: str | None = None, body: bytes | None = None,
    headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None, timeout: float = 2.0,
) -> Reply:
    """One request; raises OSError (or http.client.HTTPException) when there is no answer."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname or "127.0.0.1", port, timeout=timeout,
                                           context=context or insecure_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", port, timeout=timeout)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
    if host:
        all_headers["Host"] = host
    try:
        conn.request(method, target, body=body, headers=all_headers)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def insecure_context(cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A TLS client context that does not verify the server (liveness only), with an optional client cert."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


def _check(name: str, url: str, probe: Callable[[], tuple[bool, str]]) -> CheckStatus:
    try:
        ok, detail = probe()
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return CheckStatus(name=name, url=url, ok=ok, detail=detail)


def _expect_upstream(reply: Reply) -> tuple[bool, str]:
    if reply.status == 200 and "x-upstream" in reply.headers:
        return True, f"200 from {reply.headers['x-upstream']}"
    return False, f"status {reply.status}, X-Upstream {'present' if 'x-upstream' in reply.headers else 'missing'}"


def check_upstreams(state: DemoState) -> list[CheckStatus]:
    checks = []
    for info in state.upstreams:
        url = info.admin_url + "/health"

        def probe(url: str = url) -> tuple[bool, str]:
            reply = http_request(url)
            return reply.status == 200, f"status {reply.status}"

        checks.append(_check(f"upstream {info.name}", url, probe))
    return checks


def check_edge(state: DemoState, *, metrics: bool = True) -> list[CheckStatus]:
    """Probe each edge listener once (and the metrics endpoint when the variant has one)."""
    host = state.hosts["default"]
    checks = [
        _check("edge http", state.base_url,
               lambda: _expect_upstream(http_request(state.base_url + PROBE_PATH, host=host))),
        _check("edge tls", state.tls_url,
               lambda: _expect_upstream(http_request(state.tls_url + PROBE_PATH, host=host))),
        _check("edge mtls", state.mtls_url, lambda: _expect_upstream(http_request(
            state.mtls_url + PROBE_PATH, host=host,
            context=insecure_context(state.client_cert, state.client_key)))),
    ]
    if metrics:
        def probe_metrics() -> tuple[bool, str]:
            reply = http_request(state.metrics_url)
            ok = reply.status == 200 and b"# TYPE" in reply.body
            return ok, f"status {reply.status}" + ("" if ok else ", no Prometheus text")

        checks.append(_check("metrics", state.metrics_url, probe_metrics))
    return checks


def wait_for(probe: Callable[[], Any], *, timeout: float, interval: float = 0.05,
             abort: Callable[[], str | None] | None = None) -> tuple[bool, Any]:
    """Call ``probe`` until it returns something truthy or ``timeout`` passes.

    ``abort`` is asked between tries and ends the wait early with its reason (a process died).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            last = exc
        else:
            if last and not isinstance(last, Exception):
                return True, last
        if abort is not None:
            reason = abort()
            if reason:
                return False, reason
        if time.monotonic() >= deadline:
            return False, last
        time.sleep(interval)
