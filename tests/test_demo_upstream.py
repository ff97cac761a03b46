"""The demo upstream as a real process: content paths, admin API, fault injection, counters."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from demo_probes import free_base_port

from poetkb.demo import procs
from poetkb.demo.nginx_metrics import parse_stub_status, to_prometheus

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "demo"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real upstream process on a free port, stopped after the module."""
    port = free_base_port()
    logs = tmp_path_factory.mktemp("upstream")
    pid = procs.spawn([sys.executable, "-m", "poetkb.demo.upstream", "--name", "u1", "--port", str(port),
                       "--run-dir", f"{logs}/"], logs / "upstream.log")
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url + "/__poet/health", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    yield url
    procs.stop(pid)
    assert not procs.alive(pid)


@pytest.fixture(autouse=True)
def healthy_again(upstream: str) -> Iterator[None]:
    """Every test starts with no fault and zero counters."""
    httpx.delete(upstream + "/__poet/fault")
    httpx.post(upstream + "/__poet/counters/reset")
    yield
    httpx.delete(upstream + "/__poet/fault")


def test_echo_names_upstream_and_echoes_request(upstream: str) -> None:
    """Every response says which upstream served it; the body echoes method, path, query and headers."""
    resp = httpx.get(upstream + "/anything/here?a=1", headers={"X-Request-ID": "r-1", "X-Forwarded-For": "1.2.3.4"})
    body = resp.json()
    assert resp.headers["x-upstream"] == "u1"
    assert (body["upstream"], body["method"], body["path"], body["query"]) == ("u1", "GET", "/anything/here", "a=1")
    assert body["headers"]["x-request-id"] == "r-1"
    assert ["X-Forwarded-For", "1.2.3.4"] in body["header_list"]


def test_bytes_and_route_prefixes(upstream: str) -> None:
    """/bytes/<n> sends n bytes with a matching Content-Length, also behind an edge prefix such as /flaky/."""
    for path in ("/bytes/1000", "/flaky/bytes/1000"):
        resp = httpx.get(upstream + path)
        assert len(resp.content) == 1000 and resp.headers["content-length"] == "1000"


@pytest.mark.parametrize(("path", "cache_control"), [
    ("/cache/max-age/30", "public, max-age=30"),
    ("/cache/s-maxage/30", "public, s-maxage=30, max-age=0"),
    ("/cache/private", "private, max-age=60"),
    ("/cache/no-store", "no-store"),
    ("/cache/stale-if-error", "public, max-age=1, stale-if-error=5"),
    ("/cache/stale-if-error/2/9", "public, max-age=2, stale-if-error=9"),
])
def test_cache_paths_set_cache_control(upstream: str, path: str, cache_control: str) -> None:
    """Each documented cache path answers with its Cache-Control and a fresh serial."""
    first, second = httpx.get(upstream + path), httpx.get(upstream + path)
    assert first.headers["cache-control"] == cache_control
    assert first.json()["serial"] != second.json()["serial"]


def test_vary_paths_name_their_variant(upstream: str) -> None:
    """Vary paths answer per Accept-Language / Accept-Encoding and say which variant they are."""
    fr = httpx.get(upstream + "/cache/vary/lang", headers={"Accept-Language": "fr"})
    assert fr.headers["vary"] == "Accept-Language" and fr.json()["variant"] == "fr"
    gz = httpx.get(upstream + "/cache/vary/encoding", headers={"Accept-Encoding": "gzip"})
    assert gz.headers["content-encoding"] == "gzip" and gz.json()["variant"] == "gzip"
    cookie = httpx.get(upstream + "/cache/set-cookie")
    assert "session=" in cookie.headers["set-cookie"] and "max-age=60" in cookie.headers["cache-control"]


def test_counters_count_requests_not_admin_calls(upstream: str) -> None:
    """Counters hold totals by path and method and recent requests with their request ids; reset zeroes them."""
    httpx.get(upstream + "/a", headers={"X-Request-ID": "abc"})
    httpx.post(upstream + "/b", content=b"x")
    counters = httpx.get(upstream + "/__poet/counters").json()
    assert counters["total"] == 2 and counters["by_path"] == {"/a": 1, "/b": 1}
    assert counters["by_method"] == {"GET": 1, "POST": 1}
    assert counters["recent"][0]["request_id"] == "abc"
    assert httpx.post(upstream + "/__poet/counters/reset").json()["total"] == 0


def test_status_fault_with_error_rate_and_paths(upstream: str) -> None:
    """A status fault fails exactly its share of matching requests and leaves other paths alone."""
    resp = httpx.put(upstream + "/__poet/fault", json={"status": 503, "error_rate": 0.5, "paths": ["/x"]})
    assert resp.status_code == 200 and httpx.get(upstream + "/__poet/fault").json()["status"] == 503
    codes = [httpx.get(upstream + "/x/1").status_code for _ in range(4)]
    assert sorted(codes) == [200, 200, 503, 503]
    assert httpx.get(upstream + "/y").status_code == 200
    httpx.delete(upstream + "/__poet/fault")
    assert httpx.get(upstream + "/x/1").status_code == 200


def test_latency_fault(upstream: str) -> None:
    """latency_ms delays the answer."""
    httpx.post(upstream + "/__poet/fault", json={"latency_ms": 300})
    start = time.monotonic()
    assert httpx.get(upstream + "/slowed").status_code == 200
    assert time.monotonic() - start >= 0.29


@pytest.mark.parametrize("action", ["reset", "close"])
def test_connection_faults(upstream: str, action: str) -> None:
    """reset and close end the connection without an answer."""
    httpx.put(upstream + "/__poet/fault", json={"action": action})
    with pytest.raises(httpx.TransportError):
        httpx.get(upstream + "/broken")


def test_hang_fault_holds_then_closes(upstream: str) -> None:
    """hang answers nothing for hang_s seconds."""
    httpx.put(upstream + "/__poet/fault", json={"action": "hang", "hang_s": 0.5})
    start = time.monotonic()
    with pytest.raises(httpx.TransportError):
        httpx.get(upstream + "/hung", timeout=5)
    assert 0.45 <= time.monotonic() - start < 4


@pytest.mark.parametrize(("body", "message"), [
    (b'{"status": 99}', "status: Input should be greater than or equal to 100"),
    (b'{"error_rate": 1.5}', "error_rate: Input should be less than or equal to 1"),
    (b'{"action": "explode"}', "action: Input should be 'none', 'reset', 'close' or 'hang'"),
    (b'{"paths": ["api"]}', "paths: 'api' must start with '/'"),
    (b'{"latency": 10}', "latency: Extra inputs are not permitted"),
    (b'{"status": ', "body is not JSON"),
    (b'[1, 2]', "body must be a JSON object"),
])
def test_bad_faults_are_refused_with_a_clear_400(upstream: str, body: bytes, message: str) -> None:
    """An invalid fault is a 400 naming the field and the problem; the fault in force does not change."""
    resp = httpx.put(upstream + "/__poet/fault", content=body)
    assert resp.status_code == 400
    assert message in resp.text
    assert httpx.get(upstream + "/__poet/fault").json()["action"] == "none"


def test_unknown_admin_path_and_bad_request(upstream: str) -> None:
    """Unknown admin paths are 404 listing the endpoints; malformed requests get 400."""
    resp = httpx.get(upstream + "/__poet/nope")
    assert resp.status_code == 404 and "GET /__poet/counters" in resp.text
    host, port = upstream.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=3) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")


def test_chunked_request_body_is_read(upstream: str) -> None:
    """A chunked request body is decoded (proxies may forward one)."""
    resp = httpx.post(upstream + "/echo", content=iter([b"hello ", b"world"]))
    assert resp.json()["body_length"] == 11


def test_stub_status_converts_to_prometheus_text() -> None:
    """An nginx stub_status page becomes Prometheus text with the official exporter's metric names."""
    values = parse_stub_status((FIXTURES / "stub_status.txt").read_bytes())
    assert values == {"active": 3, "accepted": 120, "handled": 119, "requests": 456, "reading": 0,
                      "writing": 1, "waiting": 2}
    text = to_prometheus(values)
    assert "nginx_up 1" in text and "nginx_http_requests_total 456" in text
    assert "# TYPE nginx_connections_accepted counter" in text
    assert to_prometheus(None).strip().endswith("nginx_up 0")
    with pytest.raises(ValueError, match="not an nginx stub_status page"):
        parse_stub_status(b"<html>502</html>")
