"""HTTP traffic for gates: bounded, recorded, loopback-only unless the user allows otherwise.

Every request goes through a :class:`Prober`, which wraps an injectable
``httpx.Client`` (tests pass one built on ``httpx.MockTransport``), never
raises on a network error (the error becomes part of the recorded exchange) and
hands each :class:`~poetkb.gates.records.HttpExchange` to a sink that writes it
to the evidence directory. Batches run on a small thread pool; every batch is
bounded in count, and every request in time. Requests whose framing httpx will
not produce (ambiguous Content-Length / Transfer-Encoding) go through
:func:`raw_exchange` on a plain socket.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from poetkb.errors import InputError
from poetkb.gates.records import BODY_LIMIT, HttpExchange, HttpRequestRecord, HttpResponseRecord

if TYPE_CHECKING:
    import httpx

#: the most requests one batch may send, whatever a catalog entry asks
MAX_BATCH = 2_000
DEFAULT_TIMEOUT_S = 5.0

Sink = Callable[[HttpExchange], None]


#: host name -> the one address it was resolved to when the target was checked; every connection a gate
#: makes to that name goes to this address (see :func:`connect_address`), so a name cannot resolve to
#: loopback for the check and elsewhere for the traffic
_PINS: dict[str, str] = {}
_PINS_LOCK = threading.Lock()


def _literal(host: str) -> str | None:
    """The address when ``host`` is an IP literal (brackets and zone stripped), else None."""
    try:
        return str(ipaddress.ip_address(host.strip("[]").split("%")[0]))
    except ValueError:
        return None


def resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to now (an IP literal is itself); empty when it does not resolve."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%")[0]
        if address not in seen:
            seen.append(address)
    return seen


def pin_host(host: str, *, allow_remote: bool) -> str | None:
    """Resolve ``host`` once and remember the address connections will use; None when it is not allowed.

    Without ``allow_remote`` every address the name resolves to must be loopback. ``localhost`` and names
    under ``.localhost`` mean loopback by definition: when they do not resolve there, they are pinned to
    127.0.0.1 rather than followed elsewhere.
    """
    name = host.strip("[]").lower()
    addresses = resolve_host(name)
    loopback = bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)
    if not loopback and (name == "localhost" or name.endswith(".localhost")):
        addresses, loopback = ["127.0.0.1"], True
    if not addresses or not (loopback or allow_remote):
        return None
    if _literal(name) is None:
        with _PINS_LOCK:
            _PINS[name] = addresses[0]
    return addresses[0]


def connect_address(host: str) -> str:
    """The address to connect to for ``host``: its pinned address, the literal itself, or (for a name no
    target check pinned) the address it resolves to now, once, for this connection."""
    name = host.strip("[]").lower()
    literal = _literal(name)
    if literal is not None:
        return literal
    with _PINS_LOCK:
        pinned = _PINS.get(name)
    if pinned is not None:
        return pinned
    found = resolve_host(name)
    return found[0] if found else name


def is_loopback_host(host: str) -> bool:
    """True when ``host`` is (or resolves only to) a loopback address; the address is pinned for traffic."""
    return pin_host(host, allow_remote=False) is not None


def ensure_allowed(url: str, *, allow_remote: bool, what: str = "target") -> None:
    """Refuse a non-loopback URL unless the user passed the explicit allow option; pin the address it
    resolved to, so the traffic goes exactly where the check looked."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{what} {url!r} is not an http:// or https:// URL with a host",
                         field=what, hint="pass a URL like http://127.0.0.1:8080")
    if pin_host(parts.hostname, allow_remote=allow_remote) is None:
        if allow_remote:
            raise InputError(f"{what} {url}: host {parts.hostname!r} does not resolve", field=what,
                             hint="check the name, or pass an address")
        raise InputError(
            f"{what} {url} is not on this machine (loopback); gates send test traffic and faults only to "
            "loopback addresses by default",
            field=what, hint="pass --allow-remote if you really mean to probe that host",
        )


def _pinned_backend() -> Any:
    """An httpcore network backend that connects to :func:`connect_address` of the URL's host; the URL (so
    the Host header and the TLS server name) keeps the name."""
    import httpcore

    class PinnedBackend(httpcore.SyncBackend):
        def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                        local_address: str | None = None, socket_options: Any = None) -> Any:
            return super().connect_tcp(connect_address(host), port, timeout=timeout, local_address=local_address,
                                       socket_options=socket_options)

    return PinnedBackend()


def headers_dict(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased header names; repeated headers joined with ', ' (Set-Cookie with '\\n')."""
    out: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key in out:
            out[key] = f"{out[key]}{chr(10) if key == 'set-cookie' else ', '}{value}"
        else:
            out[key] = value
    return out


def body_record(data: bytes) -> tuple[str, int, bool]:
    """Text of a body (cut at BODY_LIMIT), its full size, and whether it was cut."""
    text = data[:BODY_LIMIT].decode("utf-8", errors="replace")
    return text, len(data), len(data) > BODY_LIMIT


@dataclass
class RequestSpec:
    """One request to send: path relative to the prober's base URL, or an absolute URL."""

    method: str = "GET"
    path: str = "/"
    host: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str | bytes | None = None
    step: str = ""
    timeout: float | None = None
    extensions: dict[str, Any] | None = None


#: Dresses a probe request for the route of the edge it falls under (Host, behaviour headers): see
#: :func:`poetkb.ownedge.plan.router` and :func:`poetkb.gates.profile.router`.
Router = Callable[[RequestSpec], RequestSpec]


class Prober:
    """Sends requests through one httpx client and records every exchange."""

    def __init__(self, client: httpx.Client, sink: Sink, *, check_id: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, fresh_connections: bool = False,
                 router: Callable[[RequestSpec], RequestSpec] | None = None) -> None:
        self.client = client
        #: dresses each request for the route of the edge's own configuration it falls under (Host, the
        #: instrumented upstream's behaviour headers); None on the demo and on --target edges
        self.router = router
        self.sink = sink
        self.check_id = check_id
        self.timeout = timeout
        #: the Host and connection extensions (TLS server name) of every request that names none: a check
        #: probing another virtual host or listener sets them once (see CollectContext.use_vantage)
        self.default_host: str | None = None
        self.default_extensions: dict[str, Any] | None = None
        #: ask for a new connection per request (``Connection: close``): while faults are injected an edge
        #: may close a client connection after an error answer, and a request raced onto that closing
        #: connection would be a failure of the probe, not of the edge
        self.fresh_connections = fresh_connections
        self._seq = 0
        self._lock = threading.Lock()

    def _next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def send(self, spec: RequestSpec) -> HttpExchange:
        """Send one request; a network error is recorded in the exchange, never raised."""
        import httpx

        if self.router is not None:
            spec = self.router(spec)
        headers = dict(spec.headers)
        host = spec.host or self.default_host
        if host:
            headers["Host"] = host
        if self.fresh_connections and not any(k.lower() == "connection" for k in headers):
            headers["Connection"] = "close"
        body = spec.body.encode() if isinstance(spec.body, str) else spec.body
        seq = self._next_seq()
        started = time.time()
        t0 = time.perf_counter()
        request = self.client.build_request(spec.method, spec.path, headers=headers, content=body,
                                            timeout=spec.timeout or self.timeout,
                                            extensions=spec.extensions or self.default_extensions)
        record = HttpRequestRecord(method=spec.method, url=str(request.url),
                                   headers=headers_dict(request.headers.multi_items()),
                                   body=body.decode("utf-8", "replace")[:BODY_LIMIT] if body else None)
        exchange = HttpExchange(check=self.check_id, step=spec.step, seq=seq, started=started, request=record)
        try:
            response = self.client.send(request)
            try:
                data = response.read()
            finally:
                response.close()
            text, size, cut = body_record(data)
            exchange.response = HttpResponseRecord(
                status=response.status_code, http_version=response.http_version,
                headers=headers_dict(response.headers.multi_items()), body=text, body_size=size,
                body_truncated=cut)
        except httpx.HTTPError as exc:
            exchange.error = str(exc) or type(exc).__name__
            exchange.error_type = type(exc).__name__
        except OSError as exc:  # ssl and socket errors below httpx
            exchange.error = str(exc) or type(exc).__name__
            exchange.error_type = type(exc).__name__
        exchange.elapsed_ms = round((time.perf_counter() - t0) * 1000, 3)
        self.sink(exchange)
        return exchange

    def get(self, path: str, *, step: str = "", **kwargs: Any) -> HttpExchange:
        return self.send(RequestSpec(method="GET", path=path, step=step, **kwargs))

    def send_many(self, specs: list[RequestSpec], *, concurrency: int = 1) -> list[HttpExchange]:
        """Send a bounded batch, ``concurrency`` at a time; results in the order of ``specs``."""
        if len(specs) > MAX_BATCH:
            raise InputError(f"a batch of {len(specs)} requests is over the limit of {MAX_BATCH}",
                             hint="lower the request count in the check's params")
        if concurrency <= 1 or len(specs) <= 1:
            return [self.send(spec) for spec in specs]
        with ThreadPoolExecutor(max_workers=min(concurrency, len(specs)), thread_name_prefix="poet-probe") as pool:
            return list(pool.map(self.send, specs))


def make_client(base_url: str, *, timeout: float = DEFAULT_TIMEOUT_S, verify: Any = False,
                transport: Any = None, max_connections: int = 64) -> httpx.Client:
    """An httpx client for probing: no proxies from the environment, no redirects, bounded pool, and every
    connection made to the address its host name was pinned to (unless a transport is injected)."""
    import httpx

    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=16)
    if transport is None:
        import httpcore

        ssl_context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        transport = httpx.HTTPTransport(verify=ssl_context, limits=limits, trust_env=False)
        transport._pool = httpcore.ConnectionPool(  # the public options, plus where connections go
            ssl_context=ssl_context, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=_pinned_backend())
    return httpx.Client(
        base_url=base_url, timeout=timeout, verify=verify, trust_env=False, follow_redirects=False,
        transport=transport, limits=limits,
    )


def raw_exchange(url: str, payload: bytes, *, timeout: float = 3.0, check_id: str | None = None,
                 step: str = "", seq: int = 0, read_limit: int = 65_536) -> HttpExchange:
    """Send raw bytes on a new TCP connection and record what comes back, until close or timeout."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    started = time.time()
    t0 = time.perf_counter()
    chunks: list[bytes] = []
    error = error_type = None
    closed = False
    try:
        with socket.create_connection((connect_address(host), port), timeout=timeout) as sock:
            sock.sendall(payload)
            deadline = time.monotonic() + timeout
            received = 0
            while time.monotonic() < deadline and received < read_limit:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    data = sock.recv(8192)
                except TimeoutError:
                    break
                if not data:
                    closed = True
                    break
                chunks.append(data)
                received += len(data)
                if _complete_response(b"".join(chunks)):
                    break
    except ConnectionResetError as exc:
        closed, error, error_type = True, str(exc) or "connection reset", "ConnectionResetError"
    except OSError as exc:
        error, error_type = str(exc) or type(exc).__name__, type(exc).__name__
    raw = b"".join(chunks)
    first = payload.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    record = HttpRequestRecord(method=first[0] if first else "?", url=f"{parts.scheme}://{parts.netloc}"
                               + (first[1] if len(first) > 1 else "/"), raw=payload.decode("latin-1"))
    exchange = HttpExchange(check=check_id, step=step, seq=seq, started=started, request=record,
                            error=error, error_type=error_type, closed=closed)
    response = parse_raw_response(raw)
    if response is not None:
        exchange.response = response
    elif error is None and not raw:
        exchange.error, exchange.error_type = "no response before the connection ended or timed out", "NoResponse"
    exchange.elapsed_ms = round((time.perf_counter() - t0) * 1000, 3)
    return exchange


def _complete_response(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return len(body) >= int(value.strip())
            except ValueError:
                return False
    return False


def parse_raw_response(raw: bytes) -> HttpResponseRecord | None:
    """The first HTTP response in raw bytes (status, headers, body), or None when there is none."""
    if not raw.startswith(b"HTTP/"):
        return None
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    try:
        status = int(status_line[1])
    except (IndexError, ValueError):
        return None
    headers = headers_dict((n.strip(), v.strip()) for n, _, v in (line.partition(":") for line in lines[1:]) if n)
    text, size, cut = body_record(body)
    return HttpResponseRecord(status=status, http_version=status_line[0], headers=headers, body=text,
                              body_size=size, body_truncated=cut,
                              raw=raw[:BODY_LIMIT].decode("latin-1"))
