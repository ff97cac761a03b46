"""Probing: recorded exchanges through an injectable transport, loopback only, bounded batches, raw framing."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from poetkb.errors import InputError
from poetkb.gates.probes import MAX_BATCH, Prober, RequestSpec, ensure_allowed, make_client, raw_exchange
from poetkb.gates.records import HttpExchange


def _client(handler: object) -> httpx.Client:
    return make_client("http://127.0.0.1:8080", transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_exchange_records_request_and_response() -> None:
    """Method, URL, sent headers (with the Host override), status, headers and body are all recorded."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"X-Upstream": "healthy-a"},
                              json={"upstream": "healthy-a", "serial": 4, "headers": dict(request.headers)})

    seen: list[HttpExchange] = []
    with _client(handler) as client:
        ex = Prober(client, seen.append, check_id="c#0").send(
            RequestSpec(path="/echo?x=1", host="other.test", headers={"X-Test": "1"}, step="s"))
    assert seen == [ex]
    assert ex.check == "c#0" and ex.step == "s" and ex.status == 200 and ex.upstream == "healthy-a"
    assert ex.request.url == "http://127.0.0.1:8080/echo?x=1"
    assert ex.request.headers["host"] == "other.test" and ex.request.headers["x-test"] == "1"
    assert (ex.received_headers() or {})["x-test"] == "1"
    assert ex.describe() == "GET /echo?x=1 -> 200" and ex.elapsed_ms is not None


def test_network_errors_are_recorded_not_raised() -> None:
    """A transport error becomes the exchange's error; the probe keeps going."""
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with _client(handler) as client:
        ex = Prober(client, lambda e: None).send(RequestSpec(path="/slow"))
    assert ex.response is None and ex.error_type == "ReadTimeout" and ex.describe() == "GET /slow -> ReadTimeout"


def test_fresh_connections_ask_the_edge_to_close() -> None:
    """During fault experiments every request asks for a new connection; an explicit Connection header wins."""
    sent: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("connection"))
        return httpx.Response(204)

    with _client(handler) as client:
        prober = Prober(client, lambda e: None, fresh_connections=True)
        prober.send(RequestSpec(path="/a"))
        prober.send(RequestSpec(path="/b", headers={"Connection": "keep-alive, X-Other"}))
    assert sent == ["close", "keep-alive, X-Other"]


def test_batches_keep_order_and_are_bounded() -> None:
    """Concurrent batches return results in request order; an oversized batch is refused."""
    with _client(lambda request: httpx.Response(200, text=request.url.path)) as client:
        prober = Prober(client, lambda e: None)
        got = prober.send_many([RequestSpec(path=f"/{i}") for i in range(20)], concurrency=6)
        assert [e.response.body for e in got if e.response] == [f"/{i}" for i in range(20)]
        with pytest.raises(InputError, match=f"over the limit of {MAX_BATCH}"):
            prober.send_many([RequestSpec(path="/")] * (MAX_BATCH + 1))


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1", "https://[::1]:8443",
                                 "http://127.9.9.9"])
def test_loopback_targets_are_allowed(url: str) -> None:
    """Loopback addresses and localhost need no allow option."""
    ensure_allowed(url, allow_remote=False)


@pytest.mark.parametrize(("url", "says"), [
    ("http://10.1.2.3:8080", "is not on this machine (loopback)"),
    ("http://192.0.2.10", "is not on this machine (loopback)"),
    ("ftp://127.0.0.1", "is not an http:// or https:// URL"),
    ("127.0.0.1:8080", "is not an http:// or https:// URL"),
])
def test_remote_or_malformed_targets_are_refused(url: str, says: str) -> None:
    """Anything off loopback is refused unless allowed explicitly; malformed URLs say what to pass."""
    with pytest.raises(InputError) as info:
        ensure_allowed(url, allow_remote=False)
    assert says in str(info.value)


def test_remote_target_allowed_explicitly() -> None:
    """--allow-remote lets a non-loopback target through the check (no traffic is sent by it)."""
    ensure_allowed("http://192.0.2.10", allow_remote=True)


@pytest.fixture
def raw_server() -> Iterator[tuple[str, list[bytes]]]:
    """A real TCP server on 127.0.0.1 that answers 400 and closes, recording what it received."""
    received: list[bytes] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.settimeout(5)

    def serve() -> None:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2)
            received.append(conn.recv(65536))
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", received
    thread.join(timeout=5)
    sock.close()


def test_raw_exchange_sends_exact_bytes_and_parses_the_answer(raw_server: tuple[str, list[bytes]]) -> None:
    """Ambiguous framing goes out byte for byte; the answer's status, headers and close are recorded."""
    url, received = raw_server
    payload = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    ex = raw_exchange(url, payload, timeout=3, check_id="c#0", step="case:duplicate_content_length")
    assert received == [payload]
    assert ex.status == 400 and ex.response is not None and ex.response.body == "bad"
    assert ex.request.method == "POST" and ex.request.raw is not None and "Content-Length: 6" in ex.request.raw


def test_raw_exchange_to_a_closed_port_is_an_error() -> None:
    """Nothing listening: the exchange records the connection error, no response."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    ex = raw_exchange(f"http://127.0.0.1:{port}", b"GET / HTTP/1.1\r\n\r\n", timeout=1)
    assert ex.response is None and ex.error_type == "ConnectionRefusedError"


def _rebinding_resolver(monkeypatch: pytest.MonkeyPatch, name: str, answers: list[str]) -> list[str]:
    """Make ``name`` resolve to the next of ``answers`` on each lookup (the last one repeats), like a DNS
    server that rebinds; other names resolve normally. Returns the log of lookups of ``name``."""
    from poetkb.gates import probes

    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host == name:
            address = answers[min(len(asked), len(answers) - 1)]
            asked.append(address)
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, 0))]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(probes, "_PINS", {})
    return asked


def test_a_name_is_resolved_once_and_traffic_goes_where_the_check_looked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that resolves to loopback for the check and elsewhere later still sends every request to loopback,
    with the Host header keeping the name."""
    from gates_edge import running_edge

    asked = _rebinding_resolver(monkeypatch, "rebind.test", ["127.0.0.1", "192.0.2.1"])
    with running_edge() as url:
        port = url.rsplit(":", 1)[1]
        target = f"http://rebind.test:{port}"
        ensure_allowed(target, allow_remote=False)
        with make_client(target, timeout=3.0) as client:
            answers = [client.get(f"/echo?n={i}", headers={"connection": "close"}) for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].json()["headers"]["host"] == f"rebind.test:{port}"
    assert asked == ["127.0.0.1"]  # looked up once, by the check; the traffic never asked again


@pytest.mark.parametrize(("answers", "host"), [(["192.0.2.1"], "sneaky.test"), (["127.0.0.1", "10.0.0.1"], "mixed.test")])
def test_a_name_that_resolves_off_loopback_is_refused(monkeypatch: pytest.MonkeyPatch, answers: list[str],
                                                      host: str) -> None:
    """A name resolving (even partly, or on a second lookup) off loopback is refused at the check."""
    from poetkb.gates import probes

    real = socket.getaddrinfo

    def getaddrinfo(name: object, *args: object, **kwargs: object) -> object:
        if name == host:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in answers]
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(probes, "_PINS", {})
    with pytest.raises(InputError, match="is not on this machine"):
        ensure_allowed(f"http://{host}:8080", allow_remote=False)
    assert host not in probes._PINS


def test_localhost_means_loopback_even_when_it_resolves_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """localhost pointed elsewhere by a resolver is pinned to 127.0.0.1: traffic stays on this machine."""
    from poetkb.gates import probes

    _rebinding_resolver(monkeypatch, "localhost", ["192.0.2.7"])
    ensure_allowed("http://localhost:8080", allow_remote=False)
    assert probes.connect_address("localhost") == "127.0.0.1"
