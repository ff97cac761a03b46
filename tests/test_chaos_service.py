"""Chaos on the service tier: SQL probes and PostgreSQL actions (terminate backends, hold a lock, slow
statements, restart) against the real PostgreSQL of the demo service, each undone after the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from poetkb.cli import main
from poetkb.demo.service import tier

pytestmark = pytest.mark.proxy

HEALTH = {"name": "health", "type": "http", "url": "${service.url}/health",
          "tolerance": {"status": [200], "max_latency_ms": 3000}}


@pytest.fixture(scope="module")
def started(shared_home: Path, base_port: int) -> Any:
    """The good service tier, started once for the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POET_HOME", str(shared_home))
        return tier.up(variant="good", base_port=base_port)


@pytest.fixture
def service(started: Any, home: Path, kb_path: Path) -> Any:
    """The good service tier (switched back when a test left another variant; at once when it runs already)."""
    return tier.up(variant="good", base_port=started.base_port)


def write(tmp_path: Path, method: list[dict[str, Any]], *, steady: list[dict[str, Any]] | None = None,
          watch: bool = True, **extra: Any) -> Path:
    data: dict[str, Any] = {
        "title": "database experiment", "obligations": ["resilience.dependency.restart"],
        "steady_state": {"probes": steady or [HEALTH], "watch": {"enabled": watch, "interval_s": 0.2}},
        "method": method, **extra}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def run(path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    journal = path.parent / "journal.json"
    result = CliRunner().invoke(main, ["chaos", "run", str(path), "--journal", str(journal), *args])
    data = json.loads(journal.read_text()) if journal.exists() else {}
    return result.exit_code, data, result.output


def method_steps(journal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in journal["steps"] if s["phase"] == "method"}


def locks_on_accounts(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                           "WHERE c.relname = 'accounts' AND l.mode = 'AccessExclusiveLock'").fetchone()
    return int(row[0]) if row else 0


def chaos_sessions(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'poet-chaos' "
                           "AND pid <> pg_backend_pid()").fetchone()
    return int(row[0]) if row else 0


def test_held_lock_and_slow_statements_are_seen_by_sql_probes_and_released(service: Any, tmp_path: Path) -> None:
    """A held ACCESS EXCLUSIVE lock and four slow statements are visible to SQL probes during the method (the
    probes' outputs are in the journal); after the run no lock and no chaos session is left."""
    path = write(tmp_path, [
        {"name": "lock", "type": "pg_hold_lock", "table": "accounts", "hold_s": 60},
        {"name": "slow", "type": "pg_slow_statements", "sessions": 4, "seconds": 60},
        {"name": "locked", "type": "sql", "expect": {"op": ">=", "value": 1},
         "query": "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                  "WHERE c.relname = 'accounts' AND l.mode = 'AccessExclusiveLock' AND l.granted"},
        {"name": "sleeping", "type": "sql", "expect": {"op": ">=", "value": 4},
         "query": "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'"},
    ])
    code, journal, output = run(path)
    assert code == 0 and journal["status"] == "completed", output
    steps = method_steps(journal)
    assert steps["locked"]["output"]["value"] >= 1 and steps["sleeping"]["output"]["value"] >= 4
    assert len(steps["slow"]["output"]["pids"]) == 4
    cleanups = [s["detail"] for s in journal["steps"] if s["phase"] == "cleanup"]
    assert any("release lock" in c for c in cleanups) and any("release slow" in c for c in cleanups)
    assert locks_on_accounts(service.dsn) == 0 and chaos_sessions(service.dsn) == 0
    # the journal is evidence: recorded as a gate run, and judged again (pass) from its steps
    assert "resilience.dependency.restart: pass" in output and "recorded as gate run" in output
    again = CliRunner().invoke(main, ["gate", "evaluate", "--evidence", str(path.parent / "journal.json")])
    assert again.exit_code == 0, again.output


def test_terminated_backends_and_restart_are_survived(service: Any, tmp_path: Path) -> None:
    """Terminating the service's backends and restarting PostgreSQL: the service serves again by itself
    (the hypothesis holds after the method), and PostgreSQL runs under a new pid."""
    before = tier.load_service_state()
    with psycopg.connect(service.dsn, autocommit=True) as conn:
        old_pid = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    path = write(tmp_path, [
        {"name": "warm", "type": "http", "url": "${service.url}/health"},
        {"name": "kill", "type": "pg_terminate_backends"},
        {"name": "restart", "type": "pg_restart"},
        {"name": "settle", "type": "pause", "seconds": 1.5},
    ], watch=False)
    code, journal, output = run(path)
    assert code == 0 and journal["status"] == "completed", output
    steps = method_steps(journal)
    assert steps["kill"]["status"] == "ok" and steps["restart"]["status"] == "ok"
    after = [s for s in journal["steps"] if s["phase"] == "after"]
    assert after and all(s["status"] == "ok" for s in after)
    with psycopg.connect(service.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT pg_postmaster_start_time()").fetchone() != old_pid
    assert before is not None


def test_sql_probe_outside_expectation_is_a_deviation(service: Any, tmp_path: Path) -> None:
    """A hypothesis SQL probe that does not hold makes the run not-steady (exit 1); a read-only probe cannot
    write (the write is an error, not a change)."""
    path = write(tmp_path, [{"name": "nothing", "type": "pause", "seconds": 0.1}], steady=[
        {"name": "accounts", "type": "sql", "query": "SELECT count(*) FROM accounts", "expect": {"op": "<", "value": 0}}])
    code, journal, _ = run(path)
    assert code == 1 and journal["status"] == "not-steady"
    assert "does not hold" in journal["steps"][0]["detail"]
    write_path = write(tmp_path, [{"name": "w", "type": "sql", "query": "DELETE FROM accounts",
                                   "expect": {"max_rows": 0}}])
    code, journal, _ = run(write_path)
    assert code == 1 and "read-only" in method_steps(journal)["w"]["detail"]


def test_remote_dsn_refused_before_anything_runs(service: Any, tmp_path: Path) -> None:
    """A DSN off loopback is bad input (exit 2) naming the step's field, unless --allow-remote."""
    path = write(tmp_path, [{"name": "far", "type": "pg_terminate_backends",
                             "dsn": "host=192.0.2.1 port=5432 user=poet dbname=poet"}])
    code, journal, output = run(path)
    assert code == 2 and "far.dsn" in output and journal == {}


def test_chaos_toolkit_journal_imported_becomes_evidence(service: Any, tmp_path: Path) -> None:
    """chaostoolkit-lib runs an exported experiment with a SQL probe and a held lock on the real database; its
    journal, imported with `poet chaos import`, is judged by `poet gate evaluate` (pass); a CTK run whose
    hypothesis does not hold is judged fail from the imported journal alone."""
    from chaoslib.experiment import run_experiment

    from poetkb.chaos.ctk import export_ctk
    from poetkb.chaos.loader import load

    def ctk_run(expect: dict[str, Any], name: str) -> Path:
        path = write(tmp_path, [
            {"name": "lock", "type": "pg_hold_lock", "table": "orders", "mode": "SHARE", "hold_s": 2},
            {"name": "held", "type": "sql", "query": "SELECT count(*) FROM pg_locks WHERE mode = 'ShareLock'",
             "expect": {"op": ">=", "value": 1}},
        ], steady=[{"name": "accounts", "type": "sql", "query": "SELECT count(*) FROM accounts", "expect": expect}])
        journal = run_experiment(export_ctk(load(path)))
        out = tmp_path / f"{name}.ctk.json"
        out.write_text(json.dumps(journal, default=str), encoding="utf-8")
        return out

    held = ctk_run({"op": ">=", "value": 0}, "held")
    imported = tmp_path / "held.poet.json"
    result = CliRunner().invoke(main, ["chaos", "import", str(held), "--obligation", "data.migration.lock_bounded",
                                       "--out", str(imported)])
    assert result.exit_code == 0, result.output
    journal = json.loads(imported.read_text())
    assert journal["imported_from"]["format"] == "chaostoolkit-journal" and journal["status"] == "completed"
    assert {s["phase"] for s in journal["steps"]} >= {"before", "method", "after"}
    judged = CliRunner().invoke(main, ["gate", "evaluate", "--evidence", str(imported), "--json"])
    assert judged.exit_code == 0, judged.output
    report = json.loads(judged.stdout)
    assert report["obligations"][0]["obligation_id"] == "data.migration.lock_bounded"
    assert report["obligations"][0]["verdict"] == "pass"

    broken = ctk_run({"op": "<", "value": 0}, "broken")
    imported = tmp_path / "broken.poet.json"
    assert CliRunner().invoke(main, ["chaos", "import", str(broken), "--obligation", "data.migration.lock_bounded",
                                     "--out", str(imported)]).exit_code == 0
    judged = CliRunner().invoke(main, ["gate", "evaluate", "--evidence", str(imported), "--json"])
    assert judged.exit_code == 1, judged.output
    assert json.loads(judged.stdout)["obligations"][0]["verdict"] == "fail"


def test_planned_service_experiment_is_valid(service: Any, tmp_path: Path) -> None:
    """`poet chaos plan` derives a service-tier experiment for a migration change (a long read held on the real
    database, the gate before and after, the service's faults healed by the rollback); it validates and its
    dry run resolves every reference against the running tier. (benchmarks/chaos_scenarios.py --plan runs it.)"""
    out = tmp_path / "plan"
    planned = CliRunner().invoke(main, ["chaos", "plan", "--change", "add lock_timeout to the online migration",
                                        "--top", "3", "--out-dir", str(out)])
    assert planned.exit_code == 0, planned.output
    assert "data.migration.lock_bounded (" in planned.output and "service-tier fault templates" in planned.output
    path = out / "data.migration.lock_bounded.yaml"
    assert CliRunner().invoke(main, ["chaos", "validate", str(path)]).exit_code == 0
    dry = CliRunner().invoke(main, ["chaos", "run", str(path), "--dry-run"])
    assert dry.exit_code == 0 and "[method] long_read (pg_slow_statements)" in dry.output
    assert "[rollback] heal_service (http_call)" in dry.output


SERVICE_SCENARIOS = ("pool-exhaustion", "slow-database-query", "thread-exhaustion")


@pytest.mark.parametrize("scenario_id", SERVICE_SCENARIOS)
def test_service_scenario_breaks_then_its_fix_makes_it_healthy(service: Any, scenario_id: str) -> None:
    """start switches the service to the scenario's flawed variant and injects its failure (pool-exhaustion also
    restarts PostgreSQL under it: the symptom is a database that is up and a service that is not); check exits 1
    naming the obligation; the documented fix makes check exit 0 with the solved message; stop restores the
    good service."""
    import httpx

    from poetkb.chaos.training import load_scenarios

    scenario = load_scenarios()[scenario_id]
    try:
        started = CliRunner().invoke(main, ["train", "start", scenario.id])
        assert started.exit_code == 0, started.output
        assert scenario.symptom in started.output
        state = tier.load_service_state()
        assert state is not None and state.variant == scenario.variant
        if scenario_id == "pool-exhaustion":
            assert httpx.get(state.service_url + "/health", timeout=5).status_code != 200
        unhealthy = CliRunner().invoke(main, ["train", "check"])
        assert unhealthy.exit_code == 1, unhealthy.output
        # a service that cannot serve when the gate begins fails or errs, never passes
        assert "not yet" in unhealthy.output
        assert any(f"{scenario.obligations[0]}: {v}" in unhealthy.output for v in ("fail", "error"))
        tier.up(variant="good", base_port=state.base_port)  # the documented fix
        healthy = CliRunner().invoke(main, ["train", "check"])
        assert healthy.exit_code == 0, healthy.output
        assert f"solved: {scenario.solved}" in healthy.output
        stopped = CliRunner().invoke(main, ["train", "stop"])
        assert stopped.exit_code == 0 and "'good'" in stopped.output
        after = tier.load_service_state()
        assert after is not None and after.variant == "good"
        assert httpx.get(after.service_url + "/health", timeout=5).status_code == 200
    finally:
        CliRunner().invoke(main, ["train", "stop"])
        state = tier.load_service_state()
        if state is not None and state.variant != "good":
            tier.up(variant="good", base_port=state.base_port)


def test_service_scenario_needs_the_service_tier(kb_path: Path, isolated_home: Path) -> None:
    """Without the service tier running, start is exit 2 saying how to start it."""
    result = CliRunner().invoke(main, ["train", "start", "slow-database-query"])
    assert result.exit_code == 2 and "--tier service" in result.output


def test_ctrl_c_during_the_method_releases_the_database(service: Any, tmp_path: Path, home: Path,
                                                         kb_path: Path) -> None:
    """Ctrl-C to a real `poet chaos run` while it holds an exclusive lock and runs slow statements: the run stops
    (interrupted, exit 1), the undo releases the lock and ends the sessions, and the service answers."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx

    path = write(tmp_path, [
        {"name": "lock", "type": "pg_hold_lock", "table": "accounts", "hold_s": 120},
        {"name": "slow", "type": "pg_slow_statements", "sessions": 2, "seconds": 120},
        {"name": "hold", "type": "pause", "seconds": 60},
    ], watch=False)
    journal_path = tmp_path / "journal.json"
    env = {**os.environ, "POET_HOME": str(home), "POET_DB": str(kb_path)}
    proc = subprocess.Popen([sys.executable, "-m", "poetkb", "chaos", "run", str(path), "--journal",
                             str(journal_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if journal_path.exists() and any(s["name"] == "slow" for s in
                                              json.loads(journal_path.read_text()).get("steps", [])):
                break
            time.sleep(0.05)
        assert locks_on_accounts(service.dsn) == 1 and chaos_sessions(service.dsn) == 3
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    journal = json.loads(journal_path.read_text())
    assert proc.returncode == 1 and journal["status"] == "interrupted", err.decode()
    assert all(s["status"] == "ok" for s in journal["steps"] if s["phase"] == "cleanup")
    assert locks_on_accounts(service.dsn) == 0 and chaos_sessions(service.dsn) == 0
    assert httpx.get(service.service_url + "/health", timeout=5).status_code == 200


def test_error_rate_guardrail_aborts_and_rolls_back(service: Any, tmp_path: Path) -> None:
    """While an exclusive lock holds accounts, the reads counted by the error-rate guardrail run into their 1 s
    statement timeout: over max_error_rate the method's long pause is cut, the run is aborted (exit 1) and the
    lock is released. max_error_rate without error-rate probes is bad input."""
    import time

    guard = {"name": "read_accounts", "type": "sql", "query": "SELECT count(*) FROM accounts", "timeout_s": 1.0,
             "expect": {"max_latency_ms": 800}}
    path = write(tmp_path, [
        {"name": "lock", "type": "pg_hold_lock", "table": "accounts", "hold_s": 120},
        {"name": "hold", "type": "pause", "seconds": 60},
    ], watch=False, guardrails={"max_error_rate": 0.3, "error_rate_probes": [guard], "interval_s": 0.1})
    t0 = time.monotonic()
    code, journal, output = run(path)
    assert time.monotonic() - t0 < 40, "the pause was not cut by the guardrail"
    assert code == 1 and journal["status"] == "aborted" and "error rate" in journal["reason"], output
    assert all(s["status"] == "ok" for s in journal["steps"] if s["phase"] == "cleanup")
    assert locks_on_accounts(service.dsn) == 0
    bad = write(tmp_path, [{"name": "p", "type": "pause", "seconds": 0.1}], guardrails={"max_error_rate": 0.1})
    assert CliRunner().invoke(main, ["chaos", "validate", str(bad)]).exit_code == 2


def test_signals_to_the_service_tier_are_undone(service: Any, tmp_path: Path) -> None:
    """SIGSTOP freezes the service (a request to it times out) and SIGKILL kills the PostgreSQL postmaster; after
    the run the service was continued and PostgreSQL started again, so the hypothesis holds after (exit 0)."""
    path = write(tmp_path, [
        {"name": "freeze", "type": "demo_signal", "process": "service", "signal": "SIGSTOP"},
        {"name": "frozen", "type": "http", "url": "${service.url}/live", "timeout_s": 0.5},
        {"name": "kill_db", "type": "demo_signal", "process": "postgres", "signal": "SIGKILL"},
    ], watch=False)
    with psycopg.connect(service.dsn, autocommit=True) as conn:
        started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    code, journal, output = run(path)
    assert code == 0 and journal["status"] == "completed", output
    steps = method_steps(journal)
    assert "ReadTimeout" in steps["frozen"]["detail"]
    assert [s["status"] for s in journal["steps"] if s["phase"] == "cleanup"] == ["ok", "ok"]
    with psycopg.connect(service.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT pg_postmaster_start_time()").fetchone() != started
    unknown = write(tmp_path, [{"name": "x", "type": "demo_signal", "process": "redis", "signal": "SIGHUP"}])
    assert run(unknown)[0] != 0


def test_fault_proxy_in_front_of_the_database(service: Any, tmp_path: Path) -> None:
    """The fault proxy in front of PostgreSQL (${service.postgres}): a SQL probe through it with 150 ms of latency
    per chunk answers, slower than the same query direct, and the proxy is stopped after the run."""
    proxied = "host=127.0.0.1 port=${db_proxy.port} user=poet dbname=poet"
    path = write(tmp_path, [
        {"name": "direct", "type": "sql", "query": "SELECT count(*) FROM accounts"},
        {"name": "db_proxy", "type": "fault_proxy_start", "upstream": "${service.postgres}",
         "toxics": {"latency_ms": 150}},
        {"name": "through", "type": "sql", "query": "SELECT count(*) FROM accounts", "dsn": proxied,
         "expect": {"min_rows": 1}},
    ], watch=False)
    code, journal, output = run(path)
    assert code == 0 and journal["status"] == "completed", output
    steps = method_steps(journal)
    assert steps["through"]["output"]["value"] == steps["direct"]["output"]["value"]
    assert steps["through"]["output"]["elapsed_ms"] >= steps["direct"]["output"]["elapsed_ms"] + 300
    assert any("stop fault proxy db_proxy" in s["detail"] for s in journal["steps"] if s["phase"] == "cleanup")


def test_fault_proxy_on_the_services_own_database_path(service: Any, tmp_path: Path) -> None:
    """docs/examples/chaos/service-db-path.yaml: the pool's relay is pointed at a fault proxy, so its latency slows
    the service's own /health (slower than before), a silent proxy makes it answer 503 within the bound; the
    rollback and undo point the pool back at PostgreSQL: healthy after, the relay direct again, the proxies gone."""
    import httpx

    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "chaos" / "service-db-path.yaml"
    path = tmp_path / "exp.yaml"
    path.write_text(example.read_text(encoding="utf-8"), encoding="utf-8")
    code, journal, output = run(path)
    assert code == 0 and journal["status"] == "completed", output
    steps = method_steps(journal)
    before = next(s for s in journal["steps"] if s["phase"] == "before")["output"]["elapsed_ms"]
    assert steps["slow_path"]["output"]["replaced"] >= 1
    assert steps["served_slower"]["output"]["status"] == 200
    assert steps["served_slower"]["output"]["elapsed_ms"] >= before + 300  # 150 ms a chunk, several round trips
    assert steps["refused_quickly"]["output"]["status"] == 503
    cleanup = [s for s in journal["steps"] if s["phase"] == "cleanup"]
    assert len(cleanup) == 4 and all(s["status"] == "ok" for s in cleanup)
    assert all(s["status"] == "ok" for s in journal["steps"] if s["phase"] == "after")
    relay = httpx.get(service.admin_url + "/db_via", timeout=5).json()
    assert relay["direct"] is True
    assert httpx.get(service.service_url + "/health", timeout=5).status_code == 200
    refused = httpx.put(service.admin_url + "/db_via", json={"via": "192.0.2.1:5432"}, timeout=5)
    assert refused.status_code == 400 and "loopback" in refused.json()["error"]


def test_migration_lock_check_is_not_fooled_by_an_applied_migration(service: Any, kb: Any) -> None:
    """With the migration already applied (as an earlier gate run or chaos hypothesis leaves it), the flawed
    variant still fails: the check undoes the migration first, so its lock wait is tested every time."""
    import httpx

    # last in the module: a test after it would get the good service back from its fixture
    state = tier.up(variant="migration-no-lock-timeout", base_port=service.base_port)
    applied = httpx.post(state.admin_url + "/migrate", json={"name": "003_accounts_note"}, timeout=10).json()
    assert applied["applied"] is True
    report = kb.gate(obligations=["data.migration.lock_bounded"], record=False, write_reports=False)
    assert report.obligations[0].verdict == "fail", report.obligations[0].diagnosis
    assert "no bounded lock wait" in report.obligations[0].diagnosis


def test_chaos_toolkit_cli_run_gets_the_watch_and_is_rolled_back(service: Any, tmp_path: Path) -> None:
    """`chaos run` (Chaos Toolkit's own CLI) on an export: poetkb's control watches the hypothesis during the
    method; the silent database path makes /health fail, so the control stops a 30 s pause within seconds, runs
    the rollback CTK skips after an interruption, checks the hypothesis after it, and `chaos run` exits 1; the
    imported journal is judged fail (the watch round that failed), and the service is direct and healthy."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    path = write(tmp_path, [
        {"name": "silent_path", "type": "service_db_interpose", "toxics": {"timeout_ms": 0}},
        {"name": "long_soak", "type": "pause", "seconds": 30},
    ], steady=[HEALTH], watch=True,
        rollbacks=[{"name": "heal_service", "type": "http_call", "method": "DELETE",
                    "url": "${service.admin_url}/fault", "expect_status": [200]}])
    exported = tmp_path / "ctk.json"
    assert CliRunner().invoke(main, ["chaos", "export", str(path), "--out", str(exported)]).exit_code == 0
    journal_path = tmp_path / "ctk-journal.json"
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).parent / "chaos"), "run", str(exported), "--journal-path",
                           str(journal_path)], cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True,
                          timeout=90)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    assert took < 25, f"the 30 s pause was not cut short ({took:.1f} s)"
    journal = json.loads(journal_path.read_text())
    assert journal["status"] == "aborted" and journal["deviated"] is True
    ours = journal["poetkb"]
    assert ours["stopped"]["kind"] == "deviated" and ours["rolled_back_by_control"] is True
    assert [r["status"] for r in journal["rollbacks"]] == ["succeeded"]
    assert [r["tolerance_met"] for r in ours["after_rollbacks"]] == [True]
    assert any(not d["steady_state_met"] for d in journal["steady_states"]["during"])
    assert httpx.get(service.admin_url + "/db_via", timeout=5).json()["direct"] is True
    assert httpx.get(service.service_url + "/health", timeout=5).status_code == 200
    imported = tmp_path / "poet-journal.json"
    assert CliRunner().invoke(main, ["chaos", "import", str(journal_path), "--out", str(imported)]).exit_code == 0
    poet = json.loads(imported.read_text())
    assert poet["status"] == "deviated" and {"watch", "after", "rollback"} <= {s["phase"] for s in poet["steps"]}
    judged = CliRunner().invoke(main, ["gate", "evaluate", "--evidence", str(imported), "--json"])
    assert judged.exit_code == 1 and json.loads(judged.stdout)["obligations"][0]["verdict"] == "fail"


def test_chaos_toolkit_run_gets_the_guardrails(service: Any, tmp_path: Path) -> None:
    """Under chaoslib's runner, poetkb's control enforces the guardrails: a failing guardrail probe aborts the
    method and the control rolls back; a production experiment without confirmation is refused before anything
    runs (no method activity, no rollback)."""
    from chaoslib.experiment import run_experiment

    from poetkb.chaos.ctk import export_ctk
    from poetkb.chaos.loader import load

    rollback = [{"name": "heal_service", "type": "http_call", "method": "DELETE", "url": "${service.admin_url}/fault",
                 "expect_status": [200]}]
    guard = {"max_duration_s": 60, "interval_s": 0.3, "probes": [
        {"name": "pool_fine", "type": "http", "url": "${service.url}/health", "tolerance": {"status": [200]}}]}
    path = write(tmp_path, [
        {"name": "silent_path", "type": "service_db_interpose", "toxics": {"reset": True}},
        {"name": "long_soak", "type": "pause", "seconds": 30},
    ], steady=[{"name": "alive", "type": "http", "url": "${service.url}/live", "tolerance": {"status": [200]}}],
        rollbacks=rollback, guardrails=guard)
    journal = run_experiment(export_ctk(load(path)))
    ours = journal["poetkb"]
    assert journal["status"] == "aborted" and ours["stopped"]["kind"] == "aborted", ours.get("stopped")
    assert "guardrail pool_fine" in ours["stopped"]["reason"] and ours["guardrails"]
    assert journal["duration"] < 25 and [r["status"] for r in journal["rollbacks"]] == ["succeeded"]
    import httpx

    assert httpx.get(service.admin_url + "/db_via", timeout=5).json()["direct"] is True

    production = write(tmp_path, [{"name": "restart", "type": "pg_restart"}], production=True, rollbacks=rollback)
    journal = run_experiment(export_ctk(load(production)))
    assert journal["status"] == "interrupted" and journal["run"] == [] and not journal.get("rollbacks")
    assert "confirm" in journal["poetkb"]["refused"]


def test_chaos_toolkit_ctrl_c_rolls_back_and_a_second_one_is_ignored(service: Any, tmp_path: Path) -> None:
    """Ctrl-C during a `chaos run` method: chaoslib skips the rollbacks of an interrupted run, so poetkb's control
    runs them; a second Ctrl-C while they run is recorded and ignored; the service is direct and healthy after."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx

    path = write(tmp_path, [
        {"name": "slow_path", "type": "service_db_interpose", "toxics": {"latency_ms": 100}},
        {"name": "long_soak", "type": "pause", "seconds": 30},
    ], watch=False, rollbacks=[{"name": "heal_service", "type": "http_call", "method": "DELETE",
                                "url": "${service.admin_url}/fault", "expect_status": [200],
                                "pause_before_s": 2}])
    exported = tmp_path / "ctk.json"
    assert CliRunner().invoke(main, ["chaos", "export", str(path), "--out", str(exported)]).exit_code == 0
    journal_path = tmp_path / "ctk-journal.json"
    log = tmp_path / "chaos.log"
    with log.open("w") as out:
        child = subprocess.Popen(  # noqa: S603 - the venv's own chaos command
            [str(Path(sys.executable).parent / "chaos"), "run", str(exported), "--journal-path", str(journal_path)],
            cwd=tmp_path, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
        try:
            deadline = time.monotonic() + 30
            while "Action: long_soak" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            child.send_signal(signal.SIGINT)
            while "running them now" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # inside the rollback's 2 s pause
            child.send_signal(signal.SIGINT)
            assert child.wait(30) == 1, log.read_text()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(5)
    journal = json.loads(journal_path.read_text())
    assert journal["status"] == "interrupted" and journal["poetkb"]["rolled_back_by_control"] is True
    assert [r["status"] for r in journal["rollbacks"]] == ["succeeded"], log.read_text()
    assert len(journal["poetkb"]["signals_ignored"]) == 1
    assert [r["tolerance_met"] for r in journal["poetkb"]["after_rollbacks"]] == [True]
    assert httpx.get(service.admin_url + "/db_via", timeout=5).json()["direct"] is True
