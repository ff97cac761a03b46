"""The TCP fault proxy measured against a real demo upstream process: latency, jitter, bandwidth, reset,
cut after N bytes, timeout, slow close, probability, bounds, and its use from an experiment."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner
from demo_probes import free_base_port

from poetkb.chaos.faultproxy import FaultProxy
from poetkb.chaos.models import Toxics
from poetkb.cli import main
from poetkb.demo import procs
from poetkb.errors import InputError

pytestmark = pytest.mark.proxy


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real demo upstream process on loopback (host:port), stopped after the module."""
    port = free_base_port()
    logs = tmp_path_factory.mktemp("fp-upstream")
    pid = procs.spawn([sys.executable, "-m", "poetkb.demo.upstream", "--name", "u1", "--port", str(port),
                       "--run-dir", f"{logs}/"], logs / "upstream.log")
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/__poet/health", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    procs.stop(pid)
    assert not procs.alive(pid)


@pytest.fixture
def proxy(upstream: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of the upstream, with no toxics until a test sets them; stopped after."""
    running = FaultProxy(upstream).start()
    yield running
    running.stop()
    assert not running.running


def timed_get(url: str, **kw: object) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    response = httpx.get(url, timeout=10, headers={"Connection": "close"}, **kw)  # type: ignore[arg-type]
    return (time.perf_counter() - t0) * 1000, response


def test_passes_traffic_untouched_without_toxics(proxy: FaultProxy) -> None:
    """No toxics: the answer is the upstream's own, byte for byte, and counted."""
    _, response = timed_get(f"http://{proxy.listen}/bytes/100000")
    assert response.status_code == 200 and len(response.content) == 100_000
    assert proxy.stats.accepted == 1 and proxy.stats.faulted == 0 and proxy.stats.bytes_down > 100_000


def test_latency_is_added_and_measured(proxy: FaultProxy, upstream: str) -> None:
    """latency_ms 300 adds at least 300 ms to a request (median of 3) compared with going direct."""
    direct = sorted(timed_get(f"http://{upstream}/x")[0] for _ in range(3))[1]
    proxy.update(Toxics(latency_ms=300))
    slow = sorted(timed_get(f"http://{proxy.listen}/x")[0] for _ in range(3))[1]
    assert slow >= 300 and slow - direct >= 200, (direct, slow)  # 300 ms is a floor; the direct path is fast
    assert slow < direct + 1500


def test_jitter_varies_the_delay(proxy: FaultProxy) -> None:
    """jitter_ms spreads the delay: samples differ and stay within latency ± jitter (plus overhead)."""
    proxy.update(Toxics(latency_ms=200, jitter_ms=150, seed=7))
    samples = [timed_get(f"http://{proxy.listen}/x")[0] for _ in range(6)]
    assert max(samples) - min(samples) > 20
    assert all(s >= 50 for s in samples) and min(samples) < 400, samples


def test_bandwidth_is_limited(proxy: FaultProxy) -> None:
    """bandwidth_kbps 800 (100 kB/s) makes a 100 kB answer take about a second instead of milliseconds."""
    proxy.update(Toxics(bandwidth_kbps=800))
    elapsed, response = timed_get(f"http://{proxy.listen}/bytes/100000")
    assert len(response.content) == 100_000
    assert 800 <= elapsed <= 6000, elapsed


def test_reset_refuses_with_rst(proxy: FaultProxy) -> None:
    """reset: the client sees its connection reset (not an answer) and the proxy counts it."""
    proxy.update(Toxics(reset=True))
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{proxy.listen}/x", timeout=3)
    assert proxy.stats.reset >= 1


def test_cut_after_bytes(proxy: FaultProxy) -> None:
    """cut_after_bytes 500: exactly 500 bytes arrive, then the connection is reset."""
    proxy.update(Toxics(cut_after_bytes=500))
    got = b""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /bytes/50000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        try:
            while chunk := sock.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
    assert len(got) == 500 and got.startswith(b"HTTP/1.1 200")
    assert proxy.stats.cut == 1


def test_timeout_holds_then_closes(proxy: FaultProxy) -> None:
    """timeout_ms 400: nothing comes back; the connection is dropped after about 400 ms."""
    proxy.update(Toxics(timeout_ms=400))
    t0 = time.perf_counter()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{proxy.listen}/x", timeout=5)
    assert 0.35 <= time.perf_counter() - t0 <= 2.0


def test_slow_close_delays_the_end_of_the_stream(proxy: FaultProxy) -> None:
    """slow_close_ms 500: the answer arrives at once but the close reaches the client 500 ms later."""
    proxy.update(Toxics(slow_close_ms=500))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        t0 = time.perf_counter()
        first = sock.recv(65536)
        first_at = time.perf_counter() - t0
        while sock.recv(65536):
            pass
        closed_at = time.perf_counter() - t0
    assert first.startswith(b"HTTP/1.1 200") and first_at < 0.45
    assert closed_at - first_at >= 0.45


def test_probability_faults_a_share_of_connections(proxy: FaultProxy) -> None:
    """probability 0.5 with a seed resets some connections and lets the others through."""
    proxy.update(Toxics(reset=True, probability=0.5, seed=3))
    outcomes = []
    for _ in range(20):
        try:
            outcomes.append(httpx.get(f"http://{proxy.listen}/x", timeout=3).status_code)
        except httpx.TransportError:
            outcomes.append(0)
    assert 3 <= outcomes.count(0) <= 17 and 200 in outcomes


def test_connection_limit_and_stop_are_bounded(upstream: str) -> None:
    """Beyond max_connections new connections are refused; stop closes held connections within seconds."""
    proxy = FaultProxy(upstream, Toxics(timeout_ms=0), max_connections=2).start()
    socks = []
    for _ in range(3):
        with contextlib.suppress(ConnectionResetError):  # the refused third may be reset while connecting
            socks.append(socket.create_connection(("127.0.0.1", proxy.port), timeout=5))
    time.sleep(0.3)
    assert proxy.stats.refused == 1
    t0 = time.perf_counter()
    proxy.stop()
    assert time.perf_counter() - t0 < 5 and not proxy.running
    for sock in socks:
        sock.settimeout(2)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""
        sock.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1)


def test_bad_target_is_bad_input() -> None:
    """A target that is not host:port is an InputError naming the field."""
    with pytest.raises(InputError, match="not host:port"):
        FaultProxy("nowhere")


def test_experiment_uses_and_stops_the_proxy(upstream: str, tmp_path: Path, kb_path: Path) -> None:
    """An experiment starts a proxy, probes through it via ${proxy.url}, sees the added latency as a deviation
    of a method probe, and the proxy is stopped afterwards (its port refuses connections)."""
    data = {
        "title": "latency through the fault proxy", "obligations": ["resilience.timeout.enforced"],
        "steady_state": {"probes": [{"name": "direct", "type": "http", "url": f"http://{upstream}/x",
                                     "tolerance": {"status": [200]}}]},
        "method": [
            {"name": "fp", "type": "fault_proxy_start", "upstream": upstream, "toxics": {"latency_ms": 400}},
            {"name": "through", "type": "http", "url": "${fp.url}/y",
             "tolerance": {"status": [200], "max_latency_ms": 200}},
        ],
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    journal_path = tmp_path / "j.json"
    result = CliRunner().invoke(main, ["chaos", "run", str(path), "--journal", str(journal_path)])
    journal = json.loads(journal_path.read_text())
    assert result.exit_code == 1 and journal["status"] == "deviated"
    through = next(s for s in journal["steps"] if s["name"] == "through")
    assert through["status"] == "deviated" and through["output"]["elapsed_ms"] >= 390
    port = next(s for s in journal["steps"] if s["name"] == "fp")["output"]["port"]
    assert [s["status"] for s in journal["steps"] if s["phase"] == "cleanup"] == ["ok"]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
