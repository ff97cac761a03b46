"""Hostile evidence: directories poetkb did not write (or that were changed after the run) never pass a gate.

Every case starts from the evidence of a real gate run against the small echo edge on loopback (captures,
access log, metrics snapshots) and changes one thing the way an attacker or a careless copy would. The
gate must answer with the right exit code, name the file or obligation, and never read, echo or store
anything outside the evidence directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from gates_edge import running_edge
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poetkb.cli import main
from poetkb.gates.schema import Edge

OBLIGATIONS = ["routing.backend.selection", "security.client.ip.preserved", "observability.request.id",
               "observability.metrics.exposed"]
METRICS_OB = "observability.metrics.exposed"
FOREIGN = Path(__file__).resolve().parent.parent / "fixtures" / "gates" / "foreign"
CANARY = "POET-CANARY-7f3a9c-outside-the-evidence-dir"


def poet(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def run(kb: Any, tmp_path: Path) -> Any:
    """A real, passing gate run (recorded in the test's knowledge base) with an access log and metrics."""
    log = tmp_path / "edge-access.log"
    with running_edge(access_log=log) as url:
        report = kb.gate(obligations=OBLIGATIONS, edge=Edge(target=url, access_log=log, metrics_url=f"{url}/metrics"))
    assert report.verdict == "pass", [(o.obligation_id, o.diagnosis) for o in report.obligations]
    return report


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside every evidence directory, holding a canary that must never show up anywhere."""
    secret = tmp_path / "outside" / "secret.prom"
    secret.parent.mkdir()
    secret.write_text(f"# HELP {CANARY} x\n# TYPE nginx_http_requests_total counter\n"
                      f"nginx_http_requests_total{{leak=\"{CANARY}\"}} 99999\n")
    return secret


def _copy(run: Any, tmp_path: Path, name: str = "copied") -> tuple[Path, dict[str, Any]]:
    """A copy of the run's evidence under a new run id (so this knowledge base has no record of it)."""
    dest = tmp_path / "crafted" / name
    shutil.copytree(run.evidence_dir, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["run_id"] = f"20260101T000000Z-{hashlib.sha256(name.encode()).hexdigest()[:6]}"
    return dest, manifest


def _save(dest: Path, manifest: dict[str, Any]) -> None:
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _metrics_record(manifest: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in manifest["checks"] if c["obligation_id"] == METRICS_OB)


def _evaluate(directory: Path) -> tuple[Any, dict[str, Any] | None]:
    result = poet("gate", "evaluate", "--evidence", str(directory), "--json")
    try:
        return result, json.loads(result.stdout)
    except ValueError:
        return result, None


def _verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {o["obligation_id"]: o["verdict"] for o in report["obligations"]}


def _everything_written(home: Path, kb_path: Path) -> str:
    """All text poetkb wrote: reports of every format, and the knowledge base file itself."""
    chunks = [p.read_bytes().decode("utf-8", "replace") for p in (home / "reports").glob("*")]
    for report in (home / "reports").glob("*.json"):
        run_id = report.stem
        for fmt in ("md", "html", "junit"):
            chunks.append(poet("gate", "report", run_id, "--format", fmt).output)
    chunks.append(kb_path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(chunks)


def test_a_recorded_run_is_judged_again_as_recorded(run: Any, kb_path: Path) -> None:
    """The untouched evidence of a recorded run passes again and says its manifest matched the record."""
    result, report = _evaluate(Path(run.evidence_dir))
    assert result.exit_code == 0, result.output
    assert report is not None and report["evidence_record"] == "recorded"
    assert report["manifest_sha256"] == run.manifest_sha256


def test_one_changed_byte_of_a_metrics_snapshot_is_an_error_never_a_fallback(run: Any, kb_path: Path) -> None:
    """A byte flipped in the 'after' snapshot makes the metrics check an error naming that file (exit 2)."""
    root = Path(run.evidence_dir)
    after = next(root.glob("metrics/*--after.prom"))
    data = bytearray(after.read_bytes())
    data[-2] = ord("7") if data[-2] != ord("7") else ord("8")
    after.write_bytes(bytes(data))
    result, report = _evaluate(root)
    assert result.exit_code == 2, result.output
    assert report is not None
    metrics = next(o for o in report["obligations"] if o["obligation_id"] == METRICS_OB)
    assert metrics["verdict"] == "error"
    assert after.relative_to(root).as_posix() in metrics["diagnosis"]
    assert "does not match its sha256" in metrics["diagnosis"]
    assert _verdicts(report)["routing.backend.selection"] == "pass"


def test_a_missing_listed_file_is_an_error_not_a_traceback(run: Any, kb_path: Path) -> None:
    """A deleted metrics snapshot is named as missing; the command exits 2 with a report, no traceback."""
    root = Path(run.evidence_dir)
    before = next(root.glob("metrics/*--before.prom"))
    before.unlink()
    result, report = _evaluate(root)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert report is not None
    metrics = next(o for o in report["obligations"] if o["obligation_id"] == METRICS_OB)
    assert metrics["verdict"] == "error" and "is missing" in metrics["diagnosis"]
    assert before.name in metrics["diagnosis"]


@pytest.mark.parametrize("how", ["dotdot", "symlink", "absolute"])
def test_files_outside_the_evidence_dir_are_never_read(run: Any, kb_path: Path, tmp_path: Path, outside: Path,
                                                       isolated_home: Path, how: str) -> None:
    """A listed path that climbs out, links out or is absolute is an error naming it; its content goes nowhere."""
    dest, manifest = _copy(run, tmp_path, f"outside-{how}")
    if how == "dotdot":
        rel = "metrics/" + os.path.relpath(outside, dest / "metrics")
    elif how == "symlink":
        rel = "metrics/innocent--after.prom"
        (dest / rel).symlink_to(outside)
    else:
        rel = str(outside)
    content = outside.read_bytes()
    manifest["files"].append({"path": rel, "kind": "metrics", "sha256": hashlib.sha256(content).hexdigest(),
                              "bytes": len(content)})
    record = _metrics_record(manifest)
    record["files"] = [f for f in record["files"] if not f.endswith("--after.prom")] + [rel]
    _save(dest, manifest)
    result, report = _evaluate(dest)
    assert result.exit_code == 2, result.output
    assert report is not None
    metrics = next(o for o in report["obligations"] if o["obligation_id"] == METRICS_OB)
    assert metrics["verdict"] == "error"
    assert rel in metrics["diagnosis"] and "outside the evidence directory" in metrics["diagnosis"]
    assert CANARY not in result.output
    assert CANARY not in _everything_written(isolated_home, kb_path)


def test_etc_passwd_through_a_metrics_path_is_refused(run: Any, kb_path: Path, tmp_path: Path,
                                                      isolated_home: Path) -> None:
    """The classic metrics/../../../../etc/passwd is refused by path; no line of the file appears anywhere."""
    dest, manifest = _copy(run, tmp_path, "passwd")
    rel = "metrics/" + "../" * 12 + "etc/passwd"
    manifest["files"].append({"path": rel, "kind": "metrics", "sha256": "0" * 64, "bytes": 1})
    _metrics_record(manifest)["files"].append(rel)
    _save(dest, manifest)
    result, report = _evaluate(dest)
    assert result.exit_code == 2 and report is not None
    assert "root:x:0:0" not in result.output
    assert "root:x:0:0" not in _everything_written(isolated_home, kb_path)


def test_a_file_a_check_names_but_the_manifest_does_not_list_is_not_read(run: Any, kb_path: Path,
                                                                         tmp_path: Path) -> None:
    """An extra snapshot a check record names without a manifest entry is an error saying it is not listed."""
    dest, manifest = _copy(run, tmp_path, "unlisted")
    extra = dest / "metrics" / "extra--after.prom"
    extra.write_text(f"nginx_http_requests_total{{leak=\"{CANARY}\"}} 1\n")
    _metrics_record(manifest)["files"].append("metrics/extra--after.prom")
    _save(dest, manifest)
    result, report = _evaluate(dest)
    assert result.exit_code == 2 and report is not None
    metrics = next(o for o in report["obligations"] if o["obligation_id"] == METRICS_OB)
    assert metrics["verdict"] == "error"
    assert "metrics/extra--after.prom" in metrics["diagnosis"] and "not listed in the manifest" in metrics["diagnosis"]
    assert CANARY not in result.output


def test_editing_params_in_the_manifest_changes_nothing(run: Any, kb_path: Path, tmp_path: Path) -> None:
    """params: {} in a manifest leaves every verdict, expectation and reported requirement as the catalog says."""
    plain, manifest = _copy(run, tmp_path, "plain")
    _save(plain, manifest)
    edited, manifest = _copy(run, tmp_path, "edited")
    for check in manifest["checks"]:
        check["params"] = {}
    manifest["run_id"] = json.loads((plain / "manifest.json").read_text())["run_id"]
    _save(edited, manifest)
    first, a = _evaluate(plain)
    second, b = _evaluate(edited)
    assert a is not None and b is not None, second.output
    assert first.exit_code == second.exit_code == 0
    checks_a = {c["check_id"]: (c["verdict"], c["expected"], c["params"]) for o in a["obligations"] for c in o["checks"]}
    checks_b = {c["check_id"]: (c["verdict"], c["expected"], c["params"]) for o in b["obligations"] for c in o["checks"]}
    assert checks_a == checks_b
    metrics = next(c for o in b["obligations"] for c in o["checks"] if c["obligation_id"] == METRICS_OB)
    assert metrics["params"]["request_counter"] and metrics["details"]["params_recorded"] == {}


def test_a_changed_manifest_of_a_recorded_run_is_an_error(run: Any, kb_path: Path) -> None:
    """Changing the recorded manifest (even only its params) no longer matches the knowledge base: exit 2."""
    path = Path(run.evidence_dir) / "manifest.json"
    manifest = json.loads(path.read_text())
    for check in manifest["checks"]:
        check["params"] = {}
    path.write_text(json.dumps(manifest))
    result, report = _evaluate(Path(run.evidence_dir))
    assert result.exit_code == 2 and report is not None
    assert report["evidence_record"] == "mismatch"
    assert all(o["verdict"] == "error" for o in report["obligations"])
    assert "does not match the digest" in report["obligations"][0]["diagnosis"]
    shown = poet("gate", "report", run.run_id)
    assert shown.exit_code == 2 and "does not match the digest" in shown.output


def test_a_changed_report_file_is_refused(run: Any, kb_path: Path, isolated_home: Path) -> None:
    """A stored report edited to say something else than the knowledge base recorded is refused (exit 2)."""
    report_file = isolated_home / "reports" / f"{run.run_id}.json"
    data = json.loads(report_file.read_text())
    data["verdict"], data["exit_code"] = "fail", 1
    report_file.write_text(json.dumps(data))
    shown = poet("gate", "report", run.run_id, "--format", "md")
    assert shown.exit_code == 2 and "the report file was changed after the run" in shown.output


def test_unrecorded_evidence_is_judged_and_said_to_be_unrecorded(run: Any, kb_path: Path, tmp_path: Path) -> None:
    """A copy this knowledge base has no record of is judged like foreign evidence, and every output says so."""
    dest, manifest = _copy(run, tmp_path, "unrecorded")
    _save(dest, manifest)
    result = poet("gate", "evaluate", "--evidence", str(dest))
    assert "(unrecorded evidence)" in result.output
    assert "unrecorded evidence: this knowledge base holds no manifest digest for run" in result.output
    _, report = _evaluate(dest)
    assert report is not None and report["evidence_record"] == "unrecorded"
    assert report["problems"][0].startswith("unrecorded evidence")
    assert result.exit_code == 0  # judged on its merits, like files from another tool


def test_a_manifest_naming_unknown_obligations_is_bad_input(run: Any, kb_path: Path, tmp_path: Path) -> None:
    """Obligation ids the catalog does not know are exit 2 with every id named and the close match suggested."""
    dest, manifest = _copy(run, tmp_path, "unknown")
    manifest["checks"][0]["obligation_id"] = "routing.backend.selektion"
    manifest["checks"][1]["obligation_id"] = "nothing.like.this"
    _save(dest, manifest)
    result = poet("gate", "evaluate", "--evidence", str(dest))
    assert result.exit_code == 2, result.output
    assert "routing.backend.selektion" in result.output and "nothing.like.this" in result.output
    assert "did you mean routing.backend.selection" in result.output
    assert "manifest.json" in result.output and "Traceback" not in result.output


def test_a_selection_naming_unknown_obligations_is_bad_input(run: Any, kb_path: Path) -> None:
    """Unknown ids in --obligation are all named (exit 2), never silently dropped into a verdict."""
    result = poet("gate", "evaluate", "--evidence", run.evidence_dir, "--obligation", "routing.backend.selection",
                  "--obligation", "routing.nope", "--obligation", "other.nope")
    assert result.exit_code == 2
    assert "routing.nope" in result.output and "other.nope" in result.output


def test_zero_obligations_is_never_a_pass(run: Any, kb_path: Path, tmp_path: Path) -> None:
    """A manifest recording no checks is bad input, and judging nothing is never exit 0."""
    from poetkb.gates.runner import summarize

    dest, manifest = _copy(run, tmp_path, "empty")
    manifest["checks"] = []
    _save(dest, manifest)
    result = poet("gate", "evaluate", "--evidence", str(dest))
    assert result.exit_code == 2 and "records no checks" in result.output
    summary, verdict, code = summarize([])
    assert summary.selected == 0 and verdict != "pass" and code != 0


def test_a_foreign_nginx_log_is_not_held_to_demo_calibration(kb_path: Path, tmp_path: Path) -> None:
    """Another NGINX's correct, fast log passes upstream timing; a log with upstream > request time still fails."""
    good = tmp_path / "other-nginx.log"
    lines = [{"time": "2026-01-01T00:00:00+00:00", "method": "GET", "uri": f"/api/{i}", "status": 200,
              "request_time": 0.004, "upstream_addr": "10.0.0.5:8080", "upstream_status": "200",
              "upstream_connect_time": "0.000", "upstream_header_time": "0.003",
              "upstream_response_time": "0.003"} for i in range(3)]
    good.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = poet("gate", "evaluate", "--evidence", str(good), "--obligation", "observability.upstream.timing",
                  "--json")
    assert result.exit_code == 0, result.output
    check = json.loads(result.stdout)["obligations"][0]["checks"][0]
    assert check["verdict"] == "pass" and check["details"]["calibration_not_applied"] == ["min_upstream_s"]
    bad = tmp_path / "inconsistent.log"
    lines[1]["upstream_response_time"] = lines[1]["upstream_header_time"] = "0.500"
    bad.write_text("".join(json.dumps(line) + "\n" for line in lines))
    failed = poet("gate", "evaluate", "--evidence", str(bad), "--obligation", "observability.upstream.timing")
    assert failed.exit_code == 1 and "more upstream time" in failed.output


def test_evidence_text_is_escaped_in_markdown_and_html(kb_path: Path, tmp_path: Path, isolated_home: Path) -> None:
    """HTML and Markdown in evidence stay inert in reports; a //host path never becomes a link."""
    hostile_uri = "/<img src=x onerror=alert(1)>|[click](https://evil.example/)"
    log = tmp_path / "access.log"
    log.write_text("".join(json.dumps({"uri": hostile_uri, "status": 200, "method": "GET",
                                       "upstream_addr": f"127.0.0.1:{9101 + i % 2}"}) + "\n" for i in range(4)))
    result = poet("gate", "evaluate", "--evidence", str(log), "--obligation", "routing.backend.selection", "--json")
    assert result.exit_code == 1
    run_id = json.loads(result.stdout)["run_id"]
    markdown = poet("gate", "report", run_id, "--format", "md").output
    assert "onerror" in markdown and "<img" not in markdown and "&lt;img" in markdown
    assert "[click](" not in markdown and "\\[click\\]" in markdown
    page = poet("gate", "report", run_id, "--format", "html").output
    assert "<img" not in page and "&lt;img" in page


def test_html_never_links_a_manifest_path_to_another_site(run: Any, kb_path: Path, tmp_path: Path) -> None:
    """Manifest paths like //evil.example/x, https://… or ../x are shown as text, never as links."""
    dest, manifest = _copy(run, tmp_path, "links")
    for rel in ("//evil.example/x", "https://evil.example/y", "../../z", "metrics/../../w"):
        manifest["files"].append({"path": rel, "kind": "other", "sha256": "0" * 64, "bytes": 0})
    _save(dest, manifest)
    result, report = _evaluate(dest)
    assert report is not None
    out = tmp_path / "page" / "report.html"
    out.parent.mkdir()
    written = poet("gate", "report", report["run_id"], "--format", "html", "-o", str(out))
    assert written.exit_code == 0, written.output
    page = out.read_text()
    assert "evil.example" in page  # shown, as text
    for href in __import__("re").findall(r'href="([^"]*)"', page):
        assert "evil" not in href and not href.startswith(("//", "http")) and ":" not in href, href
        assert (out.parent / href).resolve().is_relative_to(dest.resolve()), href


@pytest.mark.parametrize("how", ["fifo", "link-out", "dangling"])
def test_foreign_evidence_that_is_not_a_plain_file_is_named_never_read(kb_path: Path, tmp_path: Path,
                                                                       outside: Path, how: str) -> None:
    """A FIFO, a link out of the given directory or a dangling link among foreign files is exit 2, named."""
    given = tmp_path / "given"
    given.mkdir()
    shutil.copy(FOREIGN / "access.log", given / "access.log")
    odd = given / "zz-odd.log"
    if how == "fifo":
        os.mkfifo(odd)
    elif how == "link-out":
        odd.symlink_to(outside)
    else:
        odd.symlink_to(tmp_path / "nowhere")
    result = poet("gate", "evaluate", "--evidence", str(given), "--obligation", "routing.backend.selection")
    assert result.exit_code == 2, result.output
    assert "zz-odd.log" in result.output and "Traceback" not in result.output
    assert CANARY not in result.output


_JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                    max_size=4), max_leaves=20)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=600), _JSONISH.map(lambda v: json.dumps(v).encode())),
       suffix=st.sampled_from([".har", ".log", ".prom", ".json", ".xml", ""]))
def test_foreign_readers_give_a_result_or_a_poet_error(content: bytes, suffix: str) -> None:
    """Whatever bytes a foreign evidence file holds, reading it yields evidence or a PoetError, nothing else."""
    import tempfile

    from poetkb.errors import PoetError
    from poetkb.gates.foreign import load_foreign

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"evidence{suffix}"
        path.write_bytes(content)
        with contextlib.suppress(PoetError):
            load_foreign([path])


@settings(max_examples=60, deadline=None)
@given(manifest=_JSONISH, files=st.lists(st.tuples(st.text(max_size=40), st.integers(-5, 50)), max_size=4))
def test_load_run_gives_a_result_or_a_poet_error(manifest: Any, files: list[tuple[str, int]]) -> None:
    """A manifest of any shape, listing any paths, is read into problems or refused with a PoetError."""
    import tempfile

    from poetkb.errors import PoetError
    from poetkb.gates.evidence import load_run

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "run"
        root.mkdir()
        doc = {"run_id": "r", "created_at": "t", "target": {},
               "files": [{"path": p, "kind": "metrics", "sha256": "0" * 64, "bytes": n} for p, n in files],
               "checks": [{"check_id": "a#0", "obligation_id": "a", "kind": "k", "started_at": "t",
                           "finished_at": "t", "duration_ms": 1.0, "files": [p for p, _ in files]}]}
        if isinstance(manifest, dict):
            doc.update(manifest)
        (root / "manifest.json").write_text(json.dumps(doc))
        try:
            loaded = load_run(root)
        except PoetError:
            return
        for record in loaded.manifest.checks:
            loaded.evidence_for(record)


@pytest.mark.parametrize("name", ["deep.log", "deep.har", "manifest"])
def test_deeply_nested_json_evidence_is_a_named_problem(kb_path: Path, tmp_path: Path, name: str) -> None:
    """JSON nested a hundred thousand levels deep is bad input or a named line problem, never a crash (exit 3)."""
    deep = "[" * 100_000 + "]" * 100_000
    if name == "manifest":
        target = tmp_path / "run"
        target.mkdir()
        (target / "manifest.json").write_text('{"run_id": ' + deep + "}")
    elif name == "deep.har":
        target = tmp_path / name
        target.write_text('{"log": {"entries": ' + deep + "}}")
    else:
        target = tmp_path / name
        target.write_text('{"uri": "/a", "status": 200}\n{"uri": ' + deep + "}\n")
    result = poet("gate", "evaluate", "--evidence", str(target), "--obligation", "routing.backend.selection")
    assert result.exit_code in (1, 2), result.output
    assert "internal error" not in result.output and "Traceback" not in result.output
    if name == "deep.log":
        assert "line 2: not valid JSON (JSON nested deeper than 64 levels)" in result.output
