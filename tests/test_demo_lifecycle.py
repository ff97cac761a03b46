"""Demo lifecycle for real: up, down leaving no process, busy ports, stale pids, missing binaries, the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from demo_probes import free_base_port

from poetkb import demo
from poetkb.cli import main
from poetkb.demo import lifecycle, procs
from poetkb.errors import EnvironmentProblem, InputError

pytestmark = pytest.mark.proxy


@pytest.fixture
def base_port() -> int:
    return free_base_port()


def _family(state: demo.DemoState) -> list[int]:
    return [p for pid in state.pids.values() for p in (pid, *procs.children(pid))]


def test_cli_up_status_down_leaves_no_process(isolated_home: Path, base_port: int) -> None:
    """`poet demo up` prints ports and the access log, `status` says healthy, `down` leaves no process at all."""
    runner = CliRunner()
    up = runner.invoke(main, ["demo", "up", "--proxy", "nginx", "--base-port", str(base_port)])
    assert up.exit_code == 0, up.output
    assert "started: nginx edge, variant good" in up.output
    assert f"http://127.0.0.1:{base_port}" in up.output and "access log" in up.output
    state = demo.load_state()
    assert state is not None
    family = _family(state)
    assert len(family) > len(state.pids)  # nginx workers too
    again = runner.invoke(main, ["demo", "up", "--proxy", "nginx", "--base-port", str(base_port)])
    assert "already running" in again.output
    status = runner.invoke(main, ["demo", "status"])
    assert status.exit_code == 0 and status.output.startswith("healthy: nginx edge")
    down = runner.invoke(main, ["demo", "down", "--json"])
    assert down.exit_code == 0
    assert set(json.loads(down.output)["stopped"]) == {"nginx", "nginx-metrics", "healthy-a", "healthy-b", "faulty"}
    assert [p for p in family if procs.alive(p)] == []
    assert procs.find_by_marker(f"{state.run_dir}/") == []
    assert demo.load_state() is None
    gone = runner.invoke(main, ["demo", "status"])
    assert gone.exit_code == 1 and "not running" in gone.output
    assert runner.invoke(main, ["demo", "down"]).output.strip() == "the demo was not running"


def test_switching_proxy_restarts_cleanly_and_reload_is_graceful(isolated_home: Path, base_port: int) -> None:
    """up with other settings swaps the proxy (upstreams kept, faults reset); reload keeps the master, new workers."""
    first = demo.up(proxy="nginx", base_port=base_port)
    nginx_family = [first.pids["nginx"], *procs.children(first.pids["nginx"])]
    faulty = first.upstream("faulty").admin_url
    import httpx

    httpx.put(faulty + "/fault", json={"status": 500})
    second = demo.up(proxy="haproxy", base_port=base_port)
    try:
        assert second.proxy == "haproxy" and "nginx" not in second.pids
        assert [p for p in nginx_family if procs.alive(p)] == []
        assert second.pids["faulty"] == first.pids["faulty"]
        assert httpx.get(faulty + "/fault").json()["status"] is None
        workers = set(procs.children(second.pids["haproxy"]))
        reloaded = demo.reload(second)
        assert reloaded.pids["haproxy"] == second.pids["haproxy"]
        assert set(procs.children(second.pids["haproxy"])) - workers
        assert demo.status().healthy
    finally:
        demo.down()
    assert procs.find_by_marker(f"{second.run_dir}/") == []


def test_busy_port_is_named_with_what_to_do(isolated_home: Path, base_port: int) -> None:
    """When a demo port is taken, up refuses before starting anything and names the port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", base_port + 1))
        sock.listen()
        with pytest.raises(EnvironmentProblem) as caught:
            demo.up(proxy="haproxy", base_port=base_port)
    text = str(caught.value)
    assert f"port {base_port + 1} (tls) on 127.0.0.1 is already in use" in text
    assert "--base-port" in text and "POET_DEMO_BASE_PORT" in text
    assert demo.load_state() is None
    assert procs.find_by_marker(f"{demo.run_dir()}/") == []


def test_stale_state_after_a_crash_is_cleaned(isolated_home: Path, base_port: int) -> None:
    """If every demo process died, status reports it, removes the state and pid files, and up starts afresh."""
    state = demo.up(proxy="haproxy", base_port=base_port)
    for pid in _family(state):
        os.kill(pid, signal.SIGKILL)
    assert procs.wait_gone(_family(state) or list(state.pids.values()), 5) == []
    report = demo.status()
    assert not report.running and set(report.stale_pids_cleaned) >= {"faulty", "healthy-a", "healthy-b"}
    assert demo.load_state() is None
    assert list((Path(state.run_dir) / "pids").glob("*.pid")) == []
    fresh = demo.up(proxy="haproxy", base_port=base_port)
    try:
        assert fresh.started_at and demo.status().healthy
    finally:
        demo.down()


def test_missing_proxy_binary_says_how_to_install(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without nginx on the machine, up says so and gives the apt-get command."""
    monkeypatch.setattr(lifecycle, "find_binary", lambda name: None)
    with pytest.raises(EnvironmentProblem) as caught:
        demo.up(proxy="nginx")
    assert "nginx is not installed" in str(caught.value) and "apt-get install -y nginx" in str(caught.value)


@pytest.mark.parametrize(("env", "message"), [
    ("eighty", "POET_DEMO_BASE_PORT='eighty' is not a port number"),
    ("80", "base port 80 is out of range"),
])
def test_bad_base_port_is_refused(isolated_home: Path, monkeypatch: pytest.MonkeyPatch, env: str,
                                  message: str) -> None:
    """A base port that is not a number or not usable is refused with what to use instead."""
    monkeypatch.setenv("POET_DEMO_BASE_PORT", env)
    with pytest.raises(InputError, match=message):
        demo.up(proxy="nginx")


def test_reload_without_a_running_demo(isolated_home: Path) -> None:
    """reload on a stopped demo says how to start it (exit 2 from the CLI, no traceback)."""
    result = CliRunner().invoke(main, ["demo", "reload"])
    assert result.exit_code == 2 and "the demo is not running" in result.output


def test_reload_uses_the_configuration_on_disk(isolated_home: Path, base_port: int) -> None:
    """reload never re-renders: a hand edit takes effect, and a broken edit is refused while the edge keeps serving."""
    import httpx

    state = demo.up(proxy="nginx", base_port=base_port)
    config = Path(state.config_path)
    try:
        good = config.read_text()
        edited = good.replace("add_header X-Vhost $poet_vhost always;",
                              "add_header X-Vhost $poet_vhost always;\n            add_header X-Poet-Edited yes always;")
        assert edited != good
        config.write_text(edited)
        demo.reload(state)
        assert config.read_text() == edited  # the edit is what runs, not the template
        response = httpx.get(state.base_url + "/", headers={"Host": state.hosts["default"]}, timeout=5)
        assert response.headers.get("x-poet-edited") == "yes"
        config.write_text(edited + "\nthis is not nginx;\n")
        with pytest.raises(EnvironmentProblem, match="rejects"):
            demo.reload(state)
        response = httpx.get(state.base_url + "/", headers={"Host": state.hosts["default"]}, timeout=5)
        assert response.headers.get("x-poet-edited") == "yes"  # the old configuration still serves
    finally:
        demo.down()


def test_gate_run_tests_the_edited_file_and_never_rewrites_it(isolated_home: Path, kb: object,
                                                              base_port: int) -> None:
    """The gate reloads the edge (a reload check, clean state between fault experiments) with the file on disk.

    A hand edit that unbounds retries must be what the gate judges, after every reload it makes: a gate
    that re-rendered the good configuration would pass it. The file is byte for byte the edit afterwards.
    """
    state = demo.up(proxy="nginx", base_port=base_port)
    config = Path(state.config_path)
    try:
        good = config.read_bytes()
        edited = good.replace(b"proxy_next_upstream_tries 2;", b"proxy_next_upstream_tries 0;")
        assert edited != good
        config.write_bytes(edited)
        demo.reload(state)
        report = kb.gate(obligations=["state.config.reload.atomic", "routing.fanout.bound"])  # type: ignore[attr-defined]
        verdicts = {o.obligation_id: o.verdict for o in report.obligations}
        assert verdicts == {"state.config.reload.atomic": "pass", "routing.fanout.bound": "fail"}
        fanout = next(o for o in report.obligations if o.obligation_id == "routing.fanout.bound")
        # the second experiment runs after the gate reloaded the edge to clear the first one's fault
        assert [c.verdict for c in fanout.checks] == ["fail", "fail"]
        assert config.read_bytes() == edited
    finally:
        demo.down()
