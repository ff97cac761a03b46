"""`poet plan load` and `poet interpret`: formats, exit codes (0 pass, 1 fail or no evidence, 2 bad input), log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from poetkb import store
from poetkb.catalog import load_catalog
from poetkb.cli import main
from poetkb.load.evidence_log import read_log

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "load"
PROFILE = str(FIXTURES / "profiles" / "small.yaml")
METRICS = FIXTURES / "metrics"
MINI_CATALOG = Path(__file__).resolve().parent / "fixtures" / "catalog" / "mini"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def mini_kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """POET_DB pointing at a real knowledge base built from a small catalog."""
    path = tmp_path / "mini.sqlite"
    store.build(load_catalog(MINI_CATALOG), path, source=str(MINI_CATALOG))
    monkeypatch.setenv("POET_DB", str(path))
    return path


def test_plan_load_markdown_by_default_and_logged(isolated_home: Path) -> None:
    """The default output is the Markdown plan, and a plan-generated record lands in $POET_HOME's log."""
    code, out, err = invoke("plan", "load", "--profile", PROFILE)
    assert code == 0
    assert out.startswith("# Load-test plan: small-api")
    log = isolated_home / "evidence" / "load-evidence.jsonl"
    assert f"evidence log: {log}" in err
    [record] = list(read_log(log))
    assert record["outcome"] == "plan-generated" and record["service"] == "small-api"


@pytest.mark.parametrize(("fmt", "marker"), [("json", '"scenarios"'), ("k6", "ramping-arrival-rate"),
                                             ("locust", "class PlanShape(LoadTestShape)")])
def test_plan_load_formats_to_a_file(tmp_path: Path, fmt: str, marker: str) -> None:
    """--format json|k6|locust with --out writes the file; --no-log writes no log."""
    out_file = tmp_path / "out" / f"plan.{fmt}"
    code, out, err = invoke("plan", "load", "--profile", PROFILE, "--format", fmt, "--out", str(out_file),
                            "--no-log")
    assert code == 0 and out == ""
    assert f"wrote {out_file}" in err and "evidence log" not in err
    assert marker in out_file.read_text()
    if fmt == "json":
        assert [s["name"] for s in json.loads(out_file.read_text())["scenarios"]] == ["steady", "burst", "soak",
                                                                                    "stress"]


def test_plan_load_bad_profile_is_exit_2_with_file_and_line() -> None:
    """A bad profile exits 2 with the file, line, field and reason, and no traceback."""
    bad = FIXTURES / "bad" / "p99-below-p95.yaml"
    code, _, err = invoke("plan", "load", "--profile", str(bad), "--no-log")
    assert code == 2
    assert f"{bad}:6: [slo.latency_ms.p99] p99 (300 ms) is below p95 (400 ms)" in err
    assert "Traceback" not in err


def test_interpret_passing_run_exits_0(tmp_path: Path) -> None:
    """All checks pass: exit 0, the verdicts in words, and a plan-and-interpretation-generated record."""
    log = tmp_path / "log.jsonl"
    code, out, _ = invoke("interpret", "--profile", PROFILE, "--metrics", str(METRICS / "summary-pass.json"),
                          "--log", str(log))
    assert code == 0
    assert "small-api / steady: PASS" in out
    assert "p95 350 ms is within the 400 ms SLO" in out
    assert [r["outcome"] for r in read_log(log)] == ["plan-and-interpretation-generated"]


def test_interpret_failed_slo_exits_1(tmp_path: Path) -> None:
    """An SLO missed: exit 1, the narrative says by how much, the log records issues-detected."""
    log = tmp_path / "log.jsonl"
    code, out, err = invoke("interpret", "--profile", PROFILE, "--metrics", str(METRICS / "summary-slow.json"),
                            "--log", str(log))
    assert code == 1
    assert "p95 412 ms exceeds the 400 ms SLO by 3%" in out
    assert "small-api/steady did not pass: 1 fail, 1 no-evidence" in err
    assert [r["outcome"] for r in read_log(log)] == ["issues-detected"]


def test_interpret_json_and_missing_evidence_exits_1() -> None:
    """--json prints the interpretation; a metric the SLO needs but the file lacks is no-evidence and exit 1."""
    code, out, _ = invoke("interpret", "--profile", PROFILE, "--metrics", str(METRICS / "k6-summary-export.json"),
                          "--json", "--no-log")
    assert code == 1
    data = json.loads(out)
    assert data["status"] == "no-evidence"
    assert data["obligations"]["perf.latency.slo"] == "no-evidence"


def test_interpret_combines_metrics_files() -> None:
    """Two --metrics files of one run are merged: the CSV supplies the p99 the k6 summary lacks."""
    code, out, _ = invoke("interpret", "--profile", PROFILE, "--metrics", str(METRICS / "k6-summary-export.json"),
                          "--metrics", str(METRICS / "summary.csv"), "--no-log")
    assert code == 0, out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", str(FIXTURES / "bad" / "truncated.json")], "truncated.json:3: the JSON ends before it is "
                                                                 "complete"),
        (["--metrics", str(FIXTURES / "bad" / "empty.json")], "empty.json: file is empty"),
        (["--metrics", str(METRICS / "summary-pass.json"), "--scenario", "spike"], "Invalid value for '--scenario'"),
        (["--metrics", str(METRICS / "summary-pass.json"), "--baseline", "/nonexistent/base.json"],
         "/nonexistent/base.json: no such metrics file"),
    ],
)
def test_interpret_bad_input_exits_2(args: list[str], message: str) -> None:
    """Unusable metrics, an unknown scenario or a missing baseline file: exit 2 with the reason."""
    code, _, err = invoke("interpret", "--profile", PROFILE, "--no-log", *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_interpret_auto_baseline_across_runs(mini_kb: Path, tmp_path: Path) -> None:
    """--baseline auto: the first passing run is stored; a later run 30% slower is a regression (exit 1)."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"p50_ms": 30, "p95_ms": 300, "p99_ms": 600, "error_rate": 0.001,
                                "throughput_rps": 10}))
    code, out, _ = invoke("interpret", "--profile", PROFILE, "--metrics", str(good), "--baseline", "auto",
                          "--no-log")
    assert code == 0
    assert "this run is now the baseline of small-api/steady" in out
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps({"p50_ms": 40, "p95_ms": 390, "p99_ms": 700, "error_rate": 0.001,
                                "throughput_rps": 10}))
    code, out, err = invoke("interpret", "--profile", PROFILE, "--metrics", str(slow), "--baseline", "auto",
                            "--no-log")
    assert code == 1
    assert "p95_ms +30.0% vs baseline (regressed, limit +20%)" in out
    assert f"baseline: {good}" in out


def test_real_cli_process_and_schema_names(tmp_path: Path) -> None:
    """The installed `poet` runs interpret as a process; `poet schema` knows the load models."""
    poet = Path(sys.executable).with_name("poet")
    result = subprocess.run([str(poet), "interpret", "--profile", PROFILE, "--metrics",
                             str(METRICS / "summary-slow.json"), "--log", str(tmp_path / "log.jsonl")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "exceeds the 400 ms SLO by 3%" in result.stdout
    code, out, _ = invoke("schema")
    assert {"service-profile", "load-plan", "interpretation", "metrics-summary"} <= set(out.split())
    for name, field in (("service-profile", "traffic"), ("load-plan", "scenarios"), ("interpretation", "verdicts"),
                        ("metrics-summary", "phases")):
        code, out, _ = invoke("schema", name)
        assert code == 0 and field in json.loads(out)["properties"], name
