"""The Toxiproxy-compatible API (`poet chaos toxiproxy`) as a real process, driven with the request shapes
Toxiproxy's documented HTTP API uses: proxies, toxics (measured), reset, errors, loopback only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from demo_probes import free_base_port

from poetkb.chaos.toxiproxy_api import toxics_of
from poetkb.demo import procs

pytestmark = pytest.mark.proxy


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real demo upstream process (host:port)."""
    port = free_base_port()
    logs = tmp_path_factory.mktemp("tp-upstream")
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


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`poet chaos toxiproxy` on a free port; SIGTERM at the end must stop it (exit 0) with its proxies."""
    port = free_base_port() + 7
    home = tmp_path_factory.mktemp("tp-home")
    env = {**os.environ, "POET_HOME": str(home), "POET_DB": str(home / "kb.sqlite")}
    proc = subprocess.Popen([sys.executable, "-m", "poetkb", "chaos", "toxiproxy", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url + "/version", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    yield url
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=15)
    assert proc.returncode == 0


@pytest.fixture
def clean(api: str) -> Iterator[str]:
    """Every proxy deleted after the test."""
    yield api
    for name in httpx.get(api + "/proxies").json():
        httpx.delete(f"{api}/proxies/{name}")


def timed(url: str) -> float:
    t0 = time.perf_counter()
    assert httpx.get(url, timeout=10, headers={"Connection": "close"}).status_code == 200
    return (time.perf_counter() - t0) * 1000


def test_version_and_proxy_lifecycle(clean: str, upstream: str) -> None:
    """Create a proxy as a Toxiproxy client does, list it, traffic flows, disable it, delete it."""
    listen = f"127.0.0.1:{free_base_port()}"
    created = httpx.post(clean + "/proxies", json={"name": "redis", "listen": listen, "upstream": upstream,
                                                   "enabled": True})
    assert created.status_code == 201
    assert created.json() == {"name": "redis", "listen": listen, "upstream": upstream, "enabled": True, "toxics": []}
    assert httpx.get(clean + "/version").text.startswith("2.")
    assert list(httpx.get(clean + "/proxies").json()) == ["redis"]
    assert httpx.get(f"http://{listen}/x").json()["upstream"] == "u1"
    assert httpx.post(clean + "/proxies", json={"name": "redis", "listen": listen,
                                                "upstream": upstream}).status_code == 409
    disabled = httpx.post(clean + "/proxies/redis", json={"enabled": False})
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{listen}/x", timeout=2)
    assert httpx.delete(clean + "/proxies/redis").status_code == 204
    assert httpx.get(clean + "/proxies/redis").status_code == 404


def test_latency_toxic_is_measured_and_removed(clean: str, upstream: str) -> None:
    """A latency toxic adds its delay (measured); deleting it, or POST /reset, takes it away."""
    proxy = httpx.post(clean + "/proxies", json={"name": "web", "listen": "127.0.0.1:0", "upstream": upstream}).json()
    url = f"http://{proxy['listen']}/x"
    assert min(timed(url) for _ in range(3)) < 200
    toxic = httpx.post(clean + "/proxies/web/toxics", json={"type": "latency", "stream": "downstream",
                                                           "toxicity": 1.0, "attributes": {"latency": 300}})
    assert toxic.status_code == 200 and toxic.json()["name"] == "latency_downstream"
    assert min(timed(url) for _ in range(2)) >= 295  # the delay is a floor, whatever the machine's load
    assert httpx.get(clean + "/proxies/web/toxics").json()[0]["attributes"] == {"latency": 300}
    assert httpx.delete(clean + "/proxies/web/toxics/latency_downstream").status_code == 204
    assert min(timed(url) for _ in range(3)) < 200
    httpx.post(clean + "/proxies/web/toxics", json={"type": "reset_peer", "attributes": {"timeout": 0}})
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=3)
    assert httpx.post(clean + "/reset").status_code == 204
    assert min(timed(url) for _ in range(3)) < 200


def test_populate_and_errors(clean: str, upstream: str) -> None:
    """populate creates several proxies; unsupported toxics, non-loopback addresses and bad JSON are 400s."""
    made = httpx.post(clean + "/populate", json=[{"name": "a", "listen": "127.0.0.1:0", "upstream": upstream},
                                                 {"name": "b", "listen": "localhost:0", "upstream": upstream}])
    assert made.status_code == 201 and [p["name"] for p in made.json()["proxies"]] == ["a", "b"]
    slicer = httpx.post(clean + "/proxies/a/toxics", json={"type": "slicer", "attributes": {"average_size": 10}})
    assert slicer.status_code == 400 and "latency" in slicer.json()["error"]
    remote = httpx.post(clean + "/proxies", json={"name": "c", "listen": "0.0.0.0:0", "upstream": upstream})
    assert remote.status_code == 400 and "loopback" in remote.json()["error"]
    far = httpx.post(clean + "/proxies", json={"name": "d", "listen": "127.0.0.1:0", "upstream": "192.0.2.1:80"})
    assert far.status_code == 400 and "--allow-remote" in far.json()["error"]
    assert httpx.post(clean + "/proxies", content=b"{nope").status_code == 400
    assert httpx.get(clean + "/nothing").status_code == 404


def test_toxic_mapping() -> None:
    """Toxiproxy toxics map onto poetkb toxics: units converted, streams merged, the smallest toxicity kept."""
    toxics = toxics_of({
        "l": {"type": "latency", "stream": "downstream", "toxicity": 0.5, "attributes": {"latency": 100, "jitter": 5}},
        "u": {"type": "latency", "stream": "upstream", "toxicity": 1.0, "attributes": {"latency": 100}},
        "b": {"type": "bandwidth", "stream": "downstream", "toxicity": 1.0, "attributes": {"rate": 100}},
        "c": {"type": "limit_data", "stream": "downstream", "toxicity": 1.0, "attributes": {"bytes": 10}},
    })
    assert (toxics.latency_ms, toxics.direction, toxics.bandwidth_kbps, toxics.cut_after_bytes,
            toxics.probability) == (100, "both", 800, 10, 0.5)

