"""`poet chaos run` against the real demo edge: rollbacks always run, deviations are seen during the method,
guardrails abort, signals stop safely, probe outputs feed later steps, exit codes are those documented."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from poetkb import demo
from poetkb.cli import main

pytestmark = pytest.mark.proxy

STEADY = {
    "probes": [{"name": "home", "type": "http", "url": "${demo.base_url}/api/steady",
                "headers": {"Host": "edge.test"}, "tolerance": {"status": [200], "max_latency_ms": 1500}}],
    "watch": {"interval_s": 0.1},
}


@pytest.fixture(scope="module")
def started(shared_home: Path, base_port: int) -> str:
    """The good NGINX edge, started once for the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POET_HOME", str(shared_home))
        return demo.up(proxy="nginx", variant="good", base_port=base_port).base_url


@pytest.fixture
def edge(started: str, home: Path, kb_path: Path) -> Iterator[Any]:
    """The running demo state, every upstream fault cleared before and after the test."""
    state = demo.load_state()
    assert state is not None

    def heal() -> None:
        for up in state.upstreams:
            httpx.delete(up.admin_url + "/fault", timeout=5)

    heal()
    yield state
    heal()


def faults(state: Any) -> dict[str, bool]:
    """Upstream name -> whether a fault is active on it now."""
    found = {}
    for up in state.upstreams:
        body = httpx.get(up.admin_url + "/fault", timeout=5).json()
        found[up.name] = bool(body["latency_ms"] or body["status"] or body["action"] != "none")
    return found


def write(tmp_path: Path, method: list[dict[str, Any]], *, rollbacks: list[dict[str, Any]] | None = None,
          guardrails: dict[str, Any] | None = None, **extra: Any) -> Path:
    data: dict[str, Any] = {"title": "test experiment", "obligations": ["resilience.timeout.enforced"],
                            "steady_state": STEADY, "method": method,
                            "rollbacks": rollbacks if rollbacks is not None else [{"name": "heal",
                                                                                    "type": "upstream_heal"}]}
    if guardrails:
        data["guardrails"] = guardrails
    data.update(extra)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def run(path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    journal = path.parent / "journal.json"
    result = CliRunner().invoke(main, ["chaos", "run", str(path), "--journal", str(journal), *args])
    data = json.loads(journal.read_text()) if journal.exists() else {}
    return result.exit_code, data, result.output


def steps(journal: dict[str, Any], phase: str) -> list[dict[str, Any]]:
    return [s for s in journal["steps"] if s["phase"] == phase]


FAULT_POOL = [{"name": f"break_{n}", "type": "upstream_fault", "upstream": n, "fault": {"status": 500}}
              for n in ("healthy-a", "healthy-b")]


def test_hypothesis_held_and_output_feeds_later_step(edge: Any, tmp_path: Path) -> None:
    """A probe's output (which upstream answered) is used in a later step's URL; the run exits 0."""
    path = write(tmp_path, [
        {"name": "first", "type": "http", "url": "${demo.base_url}/api/first", "headers": {"Host": "edge.test"}},
        {"name": "slow_faulty", "type": "upstream_fault", "upstream": "faulty", "fault": {"latency_ms": 50}},
        {"name": "again", "type": "http", "url": "${demo.base_url}/api/from/${first.json.upstream}",
         "headers": {"Host": "edge.test"}},
    ])
    code, journal, _ = run(path)
    assert code == 0 and journal["status"] == "completed"
    method = {s["name"]: s for s in steps(journal, "method")}
    upstream = method["first"]["output"]["json"]["upstream"]
    assert upstream in ("healthy-a", "healthy-b")
    assert method["again"]["output"]["json"]["path"] == f"/api/from/{upstream}"
    assert journal["verdicts"] == {"resilience.timeout.enforced": "held"}
    assert not any(faults(edge).values())


def test_deviation_during_method_is_detected_and_rolled_back(edge: Any, tmp_path: Path) -> None:
    """Breaking the pool makes the watch loop see the deviation mid-pause; the pause ends early, exit 1."""
    path = write(tmp_path, [*FAULT_POOL, {"name": "hold", "type": "pause", "seconds": 8}])
    t0 = time.monotonic()
    code, journal, output = run(path)
    assert time.monotonic() - t0 < 6, "the pause was not interrupted by the deviation"
    assert code == 1 and journal["status"] == "deviated", output
    assert "during the method" in journal["reason"]
    assert any(s["status"] == "deviated" for s in steps(journal, "watch"))
    assert [s["name"] for s in steps(journal, "rollback")] == ["heal"]
    assert steps(journal, "after")[0]["status"] == "ok"
    assert journal["verdicts"] == {"resilience.timeout.enforced": "deviated"}
    assert not any(faults(edge).values())


def test_rollback_runs_after_a_failing_action(edge: Any, tmp_path: Path) -> None:
    """An action that fails stops the method; the explicit rollback and the automatic heal both run."""
    path = write(tmp_path, [
        {"name": "slow_faulty", "type": "upstream_fault", "upstream": "faulty", "fault": {"latency_ms": 10}},
        {"name": "bad_call", "type": "http_call", "url": "${demo.upstreams.faulty.admin_url}/nowhere",
         "method": "POST", "expect_status": [200]},
        {"name": "never", "type": "pause", "seconds": 5},
    ])
    assert faults(edge)["faulty"] is False
    code, journal, _ = run(path)
    assert code == 1 and journal["status"] == "failed"
    assert "bad_call" in journal["reason"] and "404" in journal["reason"]
    method = {s["name"]: s["status"] for s in steps(journal, "method")}
    assert method == {"slow_faulty": "ok", "bad_call": "failed", "never": "skipped"}
    assert steps(journal, "rollback")[0]["status"] == "ok"
    assert [s["status"] for s in steps(journal, "cleanup")] == ["ok"]
    assert not any(faults(edge).values())


def test_guardrail_abort_stops_at_once_and_rolls_back(edge: Any, tmp_path: Path) -> None:
    """A guardrail probe that fails aborts the method (the long pause is cut short) and rollbacks run."""
    guard = {"name": "pool_alive", "type": "http", "url": "${demo.base_url}/api/guard",
             "headers": {"Host": "edge.test"}, "tolerance": {"status": [200]}}
    path = write(tmp_path, [*FAULT_POOL, {"name": "hold", "type": "pause", "seconds": 8}],
                 guardrails={"probes": [guard], "interval_s": 0.1},
                 steady_state={**STEADY, "watch": {"enabled": False}})
    t0 = time.monotonic()
    code, journal, _ = run(path)
    assert time.monotonic() - t0 < 6
    assert code == 1 and journal["status"] == "aborted"
    assert journal["reason"].startswith("guardrail pool_alive")
    assert steps(journal, "rollback")[0]["status"] == "ok"
    assert not any(faults(edge).values())


def test_max_duration_guardrail_aborts(edge: Any, tmp_path: Path) -> None:
    """The duration limit is a guardrail too: a pause longer than it is cut and the run is aborted."""
    path = write(tmp_path, [{"name": "slow_faulty", "type": "upstream_fault", "upstream": "faulty",
                             "fault": {"latency_ms": 10}}, {"name": "hold", "type": "pause", "seconds": 30}],
                 guardrails={"max_duration_s": 1.0})
    t0 = time.monotonic()
    code, journal, _ = run(path)
    assert time.monotonic() - t0 < 5
    assert code == 1 and journal["status"] == "aborted" and "max_duration_s" in journal["reason"]
    assert not any(faults(edge).values())


def test_blast_radius_refused_before_anything_runs(edge: Any, tmp_path: Path) -> None:
    """Faulting 2 of 3 upstreams with max_faulted_share 0.5 is bad input (exit 2) and nothing is faulted."""
    path = write(tmp_path, FAULT_POOL, guardrails={"max_faulted_share": 0.5})
    code, journal, output = run(path)
    assert code == 2 and "max_faulted_share" in output
    assert journal == {} and not any(faults(edge).values())


def test_production_experiment_refuses_unsafe_actions(edge: Any, tmp_path: Path) -> None:
    """production: true needs --confirm-production, and then refuses actions not marked safe_in_prod."""
    path = write(tmp_path, FAULT_POOL[:1], production=True)
    code, _, output = run(path)
    assert code == 2 and "--confirm-production" in output
    code, _, output = run(path, "--confirm-production")
    assert code == 2 and "break_healthy-a (upstream_fault)" in output
    assert not any(faults(edge).values())


def test_remote_target_refused(edge: Any, tmp_path: Path) -> None:
    """A probe aimed off loopback is refused before the run (exit 2); with --allow-remote the preflight accepts it
    (checked with --dry-run, which sends nothing)."""
    path = write(tmp_path, [{"name": "out", "type": "http", "url": "http://192.0.2.10/"}])
    code, journal, output = run(path)
    assert code == 2 and "not on this machine" in output and journal == {}
    code, journal, output = run(path, "--dry-run", "--allow-remote")
    assert code == 0 and "[method] out (http)" in output and journal == {}


def test_production_experiment_with_safe_actions_passes_preflight(edge: Any, tmp_path: Path) -> None:
    """A production experiment whose actions are all safe_in_prod passes the preflight once confirmed."""
    safe = {**FAULT_POOL[0], "safe_in_prod": True}
    path = write(tmp_path, [safe], production=True)
    code, _, output = run(path, "--dry-run", "--confirm-production")
    assert code == 0, output


def test_sigterm_and_second_signal_still_roll_back(edge: Any, tmp_path: Path, home: Path, kb_path: Path) -> None:
    """SIGTERM stops the method of a real `poet chaos run` process; a SIGINT during the (slow) rollback is
    recorded and ignored, every rollback runs, the fault is healed and the exit code is 1."""
    slow = {"name": "slow_rollback", "type": "http_call", "url": "${demo.upstreams.healthy-b.url}/slow/1200",
            "method": "GET", "expect_status": [200]}
    path = write(tmp_path, [*FAULT_POOL[:1], {"name": "hold", "type": "pause", "seconds": 30}],
                 rollbacks=[slow, {"name": "heal", "type": "upstream_heal"}])
    journal_path = tmp_path / "journal.json"
    env = {**os.environ, "POET_HOME": str(home), "POET_DB": str(kb_path)}
    proc = subprocess.Popen([sys.executable, "-m", "poetkb", "chaos", "run", str(path), "--journal",
                             str(journal_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if journal_path.exists() and any(s["name"] == "break_healthy-a" and s["status"] == "ok"
                                             for s in json.loads(journal_path.read_text())["steps"]):
                break
            time.sleep(0.05)
        assert faults(edge)["healthy-a"] is True
        proc.send_signal(signal.SIGTERM)
        for _ in range(200):
            if json.loads(journal_path.read_text())["phase"] == "rollback":
                break
            time.sleep(0.02)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    journal = json.loads(journal_path.read_text())
    assert proc.returncode == 1, err.decode()
    if journal["status"] == "deviated":  # on a loaded machine the watcher may see the fault before SIGTERM lands
        assert any("SIGTERM" in s for s in journal["signals"]), journal["signals"]
    else:
        assert journal["status"] == "interrupted" and "SIGTERM" in journal["reason"]
    assert [s["name"] for s in steps(journal, "rollback")] == ["slow_rollback", "heal"]
    assert all(s["status"] == "ok" for s in steps(journal, "rollback"))
    assert any("SIGINT" in s and "ignored" in s for s in journal["signals"]), journal["signals"]
    assert not any(faults(edge).values())


def test_bad_reference_names_file_and_line(kb_path: Path, tmp_path: Path) -> None:
    """A step using the output of a step that runs later is bad input naming the file and its line."""
    path = tmp_path / "exp.yaml"
    path.write_text("""title: refs
obligations: [resilience.timeout.enforced]
steady_state:
  probes:
    - {name: home, type: http, url: "http://127.0.0.1:9/"}
method:
  - name: early
    type: http
    url: "http://127.0.0.1:9/${late.status}"
  - {name: late, type: http, url: "http://127.0.0.1:9/"}
""", encoding="utf-8")
    result = CliRunner().invoke(main, ["chaos", "validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:7: [method[0]] references ${{late...}}, which runs later" in result.output


def test_unknown_obligation_is_bad_input(kb_path: Path, tmp_path: Path) -> None:
    """An obligation id the catalog does not know is exit 2, with close matches suggested."""
    path = write(tmp_path, [{"name": "p", "type": "pause", "seconds": 0}],
                 obligations=["resilience.timeout.enforcd"])
    result = CliRunner().invoke(main, ["chaos", "validate", str(path)])
    assert result.exit_code == 2 and "resilience.timeout.enforcd" in result.output
    hint = result.output.split("did you mean", 1)[1]
    assert "resilience.timeout.enforced" in hint.split("?")[0]


@pytest.mark.parametrize(("patch", "message"), [
    ({"method": [{"name": "x", "type": "explode"}]}, "[method.0]"),
    ({"method": [{"name": "p", "type": "pause", "seconds": 5000}]}, "less than or equal to 600"),
    ({"steady_state": {"probes": []}}, "[steady_state.probes]"),
    ({"method": [{"name": "home", "type": "pause", "seconds": 1}]}, "used twice"),
])
def test_invalid_experiments_name_the_field(kb_path: Path, tmp_path: Path, patch: dict[str, Any],
                                            message: str) -> None:
    """Schema problems are exit 2 with the field (and the line) named."""
    method = patch.pop("method", [{"name": "p", "type": "pause", "seconds": 0}])
    path = write(tmp_path, method, **patch)
    result = CliRunner().invoke(main, ["chaos", "validate", str(path)])
    assert result.exit_code == 2 and message in result.output, result.output


def test_fault_proxy_interposed_between_edge_and_upstreams(edge: Any, tmp_path: Path) -> None:
    """edge_interpose puts the fault proxy between NGINX and its pool: requests through the edge get the added
    latency (measured); afterwards the configuration file is byte-identical and requests are fast again."""
    config = Path(edge.config_path)
    before = config.read_bytes()
    interpose = [{"name": f"fp_{n.replace('-', '_')}", "type": "edge_interpose", "upstream": n,
                  "toxics": {"latency_ms": 300}} for n in ("healthy-a", "healthy-b")]
    path = write(tmp_path, [*interpose, {"name": "through", "type": "http", "url": "${demo.base_url}/api/through",
                                         "headers": {"Host": "edge.test"}}],
                 steady_state={**STEADY, "watch": {"enabled": False}})
    code, journal, output = run(path)
    assert code == 0, output
    through = next(s for s in journal["steps"] if s["name"] == "through")
    assert through["output"]["status"] == 200 and through["output"]["elapsed_ms"] >= 290
    assert [s["status"] for s in steps(journal, "cleanup")] == ["ok"] * 4
    assert config.read_bytes() == before
    elapsed = min(httpx.get(edge.base_url + "/api/after", headers={"Host": "edge.test"}).elapsed.total_seconds()
                  for _ in range(3))
    assert elapsed < 0.2


def test_documented_example_runs_and_restores(edge: Any, tmp_path: Path) -> None:
    """docs/examples/chaos/slow-pool.yaml runs green on the demo (exit 0); dry-run lists the plan and runs nothing."""
    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "chaos" / "slow-pool.yaml"
    config = Path(edge.config_path)
    before = config.read_bytes()
    dry = CliRunner().invoke(main, ["chaos", "run", str(example), "--dry-run"])
    assert dry.exit_code == 0 and "[method] slow_a (edge_interpose)" in dry.output
    assert config.read_bytes() == before
    journal_path = tmp_path / "j.json"
    result = CliRunner().invoke(main, ["chaos", "run", str(example), "--journal", str(journal_path)])
    journal = json.loads(journal_path.read_text())
    assert result.exit_code == 0, result.output
    assert journal["status"] == "completed" and journal["phase"] == "done"
    assert any(s["phase"] == "watch" for s in journal["steps"])
    after = next(s for s in journal["steps"] if s["name"] == "after_fault")
    which = next(s for s in journal["steps"] if s["name"] == "which")
    assert after["output"]["json"]["path"] == f"/api/seen-on/{which['output']['json']['upstream']}"
    assert after["output"]["elapsed_ms"] >= 95  # 150 ms ± 50 ms of latency through the fault proxy
    assert config.read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["before", "rollback", "after"])  # "method": see the SIGTERM test
def test_interrupt_at_each_stage_rolls_back_and_leaves_the_demo_healthy(edge: Any, tmp_path: Path, home: Path,
                                                                        kb_path: Path, stage: str) -> None:
    """Ctrl-C (SIGINT) to a real `poet chaos run` process in each phase: before or during the method it stops the
    run (interrupted, exit 1); during rollbacks or the final check it is recorded and ignored (the run finishes).
    In every case every rollback runs and no fault is left on the demo."""
    slow_probe = {"name": "slow_home", "type": "http", "url": "${demo.upstreams.healthy-b.url}/slow/700",
                  "tolerance": {"status": [200]}}
    slow_call = {"name": "slow_rollback", "type": "http_call", "url": "${demo.upstreams.healthy-b.url}/slow/700",
                 "method": "GET", "expect_status": [200]}
    path = write(tmp_path, [*FAULT_POOL[:1], {"name": "hold", "type": "pause", "seconds": 1.0}],
                 rollbacks=[slow_call, {"name": "heal", "type": "upstream_heal"}],
                 steady_state={"probes": [slow_probe], "watch": {"enabled": False}})
    journal_path = tmp_path / "journal.json"
    env = {**os.environ, "POET_HOME": str(home), "POET_DB": str(kb_path)}
    proc = subprocess.Popen([sys.executable, "-m", "poetkb", "chaos", "run", str(path), "--journal",
                             str(journal_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(400):
            if journal_path.exists() and json.loads(journal_path.read_text()).get("phase") == stage:
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"the run never reached {stage}")
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    journal = json.loads(journal_path.read_text())
    assert journal["phase"] == "done" and len(journal["signals"]) == 1, err.decode()
    if stage in ("before", "method"):
        assert proc.returncode == 1 and journal["status"] == "interrupted", err.decode()
        assert "ignored" not in journal["signals"][0]
    else:
        assert proc.returncode == 0 and journal["status"] == "completed", err.decode()
        assert "ignored" in journal["signals"][0]
    if stage == "before":
        assert steps(journal, "method") == []
    assert [(s["name"], s["status"]) for s in steps(journal, "rollback")] == [("slow_rollback", "ok"), ("heal", "ok")]
    assert not any(faults(edge).values())
    assert httpx.get(edge.base_url + "/api/healthy", headers={"Host": "edge.test"}).status_code == 200


def test_not_steady_before_skips_the_method_but_rolls_back(edge: Any, tmp_path: Path) -> None:
    """When the hypothesis does not hold before, no method step runs (exit 1, not-steady); rollbacks still run."""
    steady = {"probes": [{"name": "teapot", "type": "http", "url": "${demo.base_url}/api/x",
                          "headers": {"Host": "edge.test"}, "tolerance": {"status": [418]}}]}
    path = write(tmp_path, FAULT_POOL, steady_state=steady)
    code, journal, _ = run(path)
    assert code == 1 and journal["status"] == "not-steady"
    assert steps(journal, "method") == [] and steps(journal, "rollback")[0]["status"] == "ok"
    assert journal["verdicts"] == {"resilience.timeout.enforced": "not-judged"}
    assert not any(faults(edge).values())


@pytest.mark.slow
def test_planned_experiment_runs_on_the_edge(edge: Any, tmp_path: Path) -> None:
    """`poet chaos plan` derives a valid experiment for a change (edge scenarios and service-tier templates alike;
    the obligations it has none for are listed in tests/test_chaos_plan.py) and it completes on the good edge
    (exit 0), recording the faulted route's answer as evidence."""
    out = tmp_path / "plan"
    planned = CliRunner().invoke(main, ["chaos", "plan", "--change", "raise the proxy read timeout on /flaky/",
                                        "--top", "4", "--out-dir", str(out)])
    assert planned.exit_code == 0, planned.output
    assert "resilience.timeout.enforced (" in planned.output and "service-tier fault templates" in planned.output
    code, journal, output = run(out / "resilience.timeout.enforced.yaml")
    assert code == 0 and journal["status"] == "completed", output
    assert [s["name"] for s in steps(journal, "before")] == ["obligation_holds", "pool_answers"]
    route = next(s for s in journal["steps"] if s["name"] == "route_0")
    # the 1 s read timeout bounds the 4 s fault (about 1 s), or passive health, tripped by the hypothesis gate's own
    # hang experiments just before, already skips the faulty server (a few ms); unbounded, it would take 4 s
    assert route["output"]["status"] == 200 and route["output"]["elapsed_ms"] < 3000
    assert not any(faults(edge).values())


def test_journal_bounds_passing_watch_records(tmp_path: Path) -> None:
    """Past the cap, passing watch rounds are counted, not listed; failing ones are always listed."""
    from poetkb.chaos.providers import Outcome
    from poetkb.chaos.runner import MAX_OK_WATCH_RECORDS, Recorder

    journal: dict[str, Any] = {"run_id": "r", "title": "t", "obligations": ["a.b"], "started_at": 0.0, "steps": [],
                               "signals": []}
    recorder = Recorder(journal, tmp_path / "j.json", lambda line: None)

    class Probe:
        name, type = "p", "http"

    for _ in range(MAX_OK_WATCH_RECORDS + 7):
        recorder.add("watch", Probe, Outcome("ok"), time.time())
    recorder.add("watch", Probe, Outcome("deviated", {}, "bad"), time.time())
    written = recorder.write()
    assert len(written.steps) == MAX_OK_WATCH_RECORDS + 1 and written.watch_ok_omitted == 7
    assert written.steps[-1].status == "deviated"
    assert json.loads((tmp_path / "j.json").read_text())["watch_ok_omitted"] == 7


def test_demo_signal_freezes_and_kills_then_the_demo_is_restored(edge: Any, tmp_path: Path) -> None:
    """SIGSTOP freezes a demo upstream (a request to it times out, measured) and SIGKILL kills another; after the
    run the frozen one was continued and the killed one restarted, so both answer again."""
    path = write(tmp_path, [
        {"name": "freeze", "type": "demo_signal", "process": "faulty", "signal": "SIGSTOP"},
        {"name": "frozen", "type": "http", "url": "${demo.upstreams.faulty.url}/x", "timeout_s": 0.5},
        {"name": "kill", "type": "demo_signal", "process": "healthy-b", "signal": "SIGKILL"},
    ], rollbacks=[], steady_state={**STEADY, "watch": {"enabled": False}})
    old_pid = edge.pids["healthy-b"]
    code, journal, output = run(path)
    assert code == 0, output
    frozen = next(s for s in journal["steps"] if s["name"] == "frozen")
    assert "Timeout" in frozen["output"]["error"] and frozen["output"]["elapsed_ms"] >= 450
    assert [s["status"] for s in steps(journal, "cleanup")] == ["ok", "ok"]
    state = demo.load_state()
    assert state.pids["healthy-b"] != old_pid
    for name in ("faulty", "healthy-b"):
        assert httpx.get(state.upstream(name).url + "/x", timeout=3).status_code == 200


def test_demo_signal_refuses_unknown_process(edge: Any, tmp_path: Path) -> None:
    """A process the demo does not have fails the action (exit 1) naming the known ones."""
    path = write(tmp_path, [{"name": "nope", "type": "demo_signal", "process": "redis", "signal": "SIGHUP"}])
    code, journal, _ = run(path)
    assert code == 1 and journal["status"] == "failed"
    assert "the demo has no process 'redis'" in journal["reason"]
