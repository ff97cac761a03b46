"""The good demo edge for real, on NGINX and on HAProxy: every edge obligation holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_probes import PROBES, Edge

from poetkb import demo
from poetkb.demo import procs

pytestmark = pytest.mark.proxy








@pytest.fixture(scope="module", params=["nginx", "haproxy"])
def started(request: pytest.FixtureRequest, shared_home: Path, base_port: int) -> str:
    """Start the good edge of one proxy once for all the tests of that proxy."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POET_HOME", str(shared_home))
        return demo.up(proxy=request.param, variant="good", base_port=base_port).proxy


@pytest.fixture
def edge(started: str, home: Path) -> Iterator[Edge]:
    """The running good edge, with faults and counters cleared."""
    state = demo.load_state()
    assert state is not None and state.proxy == started
    running = Edge(state)
    running.clear()
    yield running
    running.clear()
    running.close()


@pytest.mark.parametrize("obligation", sorted(PROBES))
def test_good_edge_keeps_every_obligation(edge: Edge, obligation: str) -> None:
    """The good configuration keeps each edge obligation on both proxies."""
    holds, detail = PROBES[obligation](edge)
    assert holds, f"{edge.state.proxy}: {obligation}: {detail}"


def test_state_describes_the_running_edge(edge: Edge) -> None:
    """load_state() returns what runs: proxy, variant, URLs, upstreams with roles, live pids, the access log."""
    state = demo.load_state()
    assert state is not None and state.proxy == edge.state.proxy and state.variant == "good"
    assert state.base_url == f"http://127.0.0.1:{state.ports['http']}"
    assert [(u.name, u.role) for u in state.upstreams] == [
        ("healthy-a", "healthy"), ("healthy-b", "healthy"), ("faulty", "faulty")]
    assert all(procs.alive(pid) for pid in state.pids.values())
    assert Path(state.access_log).is_file() and Path(state.ca_cert).is_file()
    assert Path(state.client_cert).is_file() and Path(state.client_key).is_file()


def test_up_again_is_a_no_op(edge: Edge) -> None:
    """up with the same settings returns the running edge without restarting it."""
    again = demo.up(proxy=edge.state.proxy, base_port=edge.state.base_port)
    assert again.started_at == edge.state.started_at and again.pids == edge.state.pids


def test_status_reports_healthy(edge: Edge) -> None:
    """status() sees every process alive and every listener and upstream answering."""
    report = demo.status()
    assert report.running and report.healthy, [c for c in report.checks if not c.ok]
    assert {c.name for c in report.checks} >= {"edge http", "edge tls", "edge mtls", "metrics", "upstream faulty"}


def test_edge_never_proxies_the_admin_api(edge: Edge) -> None:
    """/__poet/ answers 404 at the edge, on both virtual hosts."""
    for host in ("edge.test", "other.test"):
        assert edge.get("/__poet/counters", host=host).status_code == 404


def test_access_log_lines_are_json_with_the_documented_fields(edge: Edge) -> None:
    """Each access log line is one JSON object with the fields demo/README.md documents."""
    offset = edge.log_offset()
    edge.get("/api/fields-check", headers={"X-Forwarded-For": "198.51.100.7"})
    lines = [e for e in edge.log_since(offset, wait_for="fields-check") if "fields-check" in e["uri"]]
    assert lines
    entry = lines[0]
    for field in ("time", "request_id", "host", "method", "uri", "status", "request_time", "upstream_addr",
                  "upstream_connect_time", "upstream_header_time", "cache_status", "bytes_sent", "client",
                  "x_forwarded_for"):
        assert field in entry, field
    assert entry["x_forwarded_for"] == "198.51.100.7" and entry["client"] == "127.0.0.1"
