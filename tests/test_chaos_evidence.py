"""A chaos journal is gate evidence: `poet gate evaluate` judges it again from its steps (one verdict per
obligation), refuses one changed after the run, and never copies a recorded status its steps contradict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from poetkb.chaos.evidence import judge, seal
from poetkb.chaos.journal import Journal
from poetkb.cli import main

OBLIGATION = "resilience.timeout.enforced"


def step(phase: str, name: str, status: str = "ok", type_: str = "http") -> dict[str, Any]:
    return {"phase": phase, "name": name, "type": type_, "status": status, "started_at": 1.0, "duration_ms": 2.0,
            "detail": "" if status == "ok" else f"{name} went {status}"}


def journal(status: str = "completed", steps: list[dict[str, Any]] | None = None, **extra: Any) -> Journal:
    return seal(Journal.model_validate({
        "run_id": "20260101T000000Z-abcd", "title": "timeout holds", "obligations": [OBLIGATION],
        "started_at": 1.0, "finished_at": 3.0, "phase": "done", "status": status, "exit_code": 0,
        "steps": steps if steps is not None else [
            step("before", "home"), step("method", "slow", type_="upstream_fault"), step("watch", "home"),
            step("rollback", "heal", type_="upstream_heal"), step("after", "home")], **extra}))


def evaluate(tmp_path: Path, *journals: Journal | str) -> tuple[int, dict[str, Any]]:
    paths = []
    for n, item in enumerate(journals):
        path = tmp_path / f"journal-{n}.json"
        path.write_text(item if isinstance(item, str) else json.dumps(item.model_dump(mode="json"), indent=2))
        paths += ["--evidence", str(path)]
    result = CliRunner().invoke(main, ["gate", "evaluate", *paths, "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout.startswith("{") else {"output": result.output}


def test_a_completed_run_passes_its_obligations(kb_path: Path, isolated_home: Path, tmp_path: Path) -> None:
    code, report = evaluate(tmp_path, journal())
    assert code == 0 and report["verdict"] == "pass"
    [verdict] = report["obligations"]
    assert verdict["obligation_id"] == OBLIGATION and verdict["checks"][0]["kind"] == "chaos_experiment"
    assert report["evidence_files"][0]["kind"] == "chaos_journal" and len(report["evidence_files"][0]["sha256"]) == 64


def test_deviations_fail_and_unfinished_runs_are_errors(kb_path: Path, isolated_home: Path, tmp_path: Path) -> None:
    deviated = journal("deviated", [step("before", "home"), step("method", "slow"), step("watch", "home", "deviated"),
                                    step("rollback", "heal"), step("after", "home")])
    code, report = evaluate(tmp_path, deviated)
    assert code == 1 and report["obligations"][0]["verdict"] == "fail"
    assert "watch probe home" in report["obligations"][0]["diagnosis"]
    broken_rollback = journal("rollback-failed", [step("before", "home"), step("rollback", "heal", "failed"),
                                                  step("after", "home")])
    assert judge(broken_rollback)[0] == "error" and "still be faulted" in judge(broken_rollback)[2]
    interrupted = journal("interrupted", [step("before", "home"), step("method", "slow", "skipped"),
                                          step("rollback", "heal"), step("after", "home")])
    assert judge(interrupted)[0] == "error"
    running = Journal.model_validate({**journal().model_dump(), "phase": "method", "status": "running",
                                      "digest": None})
    assert judge(running)[0] == "error"


def test_a_changed_journal_is_an_error_not_a_pass(kb_path: Path, isolated_home: Path, tmp_path: Path) -> None:
    """Turning a deviated run into "completed" by hand breaks the digest; without a digest, the recorded
    status contradicting the steps is an error too."""
    deviated = journal("deviated", [step("before", "home"), step("watch", "home", "deviated"), step("after", "home")])
    edited = deviated.model_copy(update={"status": "completed"})
    code, report = evaluate(tmp_path, edited)
    assert code == 2 and report["obligations"][0]["verdict"] == "error"
    assert "changed after the run" in report["obligations"][0]["diagnosis"]
    unsealed = edited.model_copy(update={"digest": None})
    verdict, _, diagnosis = judge(unsealed)
    assert verdict == "error" and "contradicts" in diagnosis


def test_bad_journals_are_bad_input(kb_path: Path, isolated_home: Path, tmp_path: Path) -> None:
    """A journal missing a field names the file and field (exit 2); mixing journals with other evidence too."""
    text = json.dumps({"schema_version": "poetkb.chaos-journal/1", "title": "x"}, indent=2)
    code, report = evaluate(tmp_path, text)
    assert code == 2 and "run_id" in report["output"] and "journal-0.json" in report["output"]
    other = tmp_path / "metrics.prom"
    other.write_text("# HELP x y\nx 1\n")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(journal().model_dump(mode="json"), indent=2))
    result = CliRunner().invoke(main, ["gate", "evaluate", "--evidence", str(good), "--evidence", str(other)])
    assert result.exit_code == 2 and "on their own" in result.output


def test_tolerated_watch_rounds_pass_and_a_streak_fails() -> None:
    """With watch.tolerance_rounds 3, a failed round between good ones is what the experiment allows (a completed
    run passes, as the watch decided); three failed rounds in a row (any probe of the round) fail the run."""
    def watch(round_: int, name: str, status: str = "ok") -> dict[str, Any]:
        return {**step("watch", name, status), "output": {"watch_round": round_}}

    def run(status: str, rounds: list[dict[str, Any]]) -> Journal:
        return journal(status, [step("before", "home"), step("method", "slow"), *rounds, step("rollback", "heal"),
                                step("after", "home")], watch_tolerance_rounds=3)

    blip = run("completed", [watch(1, "home"), watch(1, "db"), watch(2, "home", "deviated"), watch(2, "db"),
                             watch(3, "home"), watch(3, "db", "deviated"), watch(4, "home"), watch(4, "db")])
    assert judge(blip)[0] == "pass"
    streak = run("deviated", [watch(1, "home", "deviated"), watch(1, "db"), watch(2, "home"),
                              watch(2, "db", "deviated"), watch(3, "home", "deviated"), watch(3, "db")])
    verdict, _, diagnosis = judge(streak)
    assert verdict == "fail" and "watch probe home" in diagnosis
    # without the experiment's tolerance (older journals, CTK's own hypothesis runs) every failed round counts
    assert judge(journal("completed", [step("before", "home"), step("watch", "home", "deviated"),
                                       step("after", "home")]))[0] == "error"
