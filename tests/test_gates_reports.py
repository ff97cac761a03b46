"""Reports: a self-contained HTML page, JUnit that never shows unproven obligations as green, Markdown, schema."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from gates_edge import running_edge

from poetkb.gates.reports import load_report, render, render_junit, render_markdown, write_reports
from poetkb.gates.schema import CheckResult, Edge, GateReport, GateSummary, ObligationVerdict

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "gate_report.json"


@pytest.fixture
def failing(kb: Any) -> GateReport:
    """A real run against an edge that routes round robin: one obligation fails, one passes."""
    with running_edge(split=True) as url:
        return kb.gate(obligations=["routing.backend.selection", "security.client.ip.preserved"], edge=Edge(target=url))


def _verdicts_report() -> GateReport:
    """A report with one obligation of each verdict (as an evaluation of stored evidence would give)."""
    def ob(oid: str, verdict: str) -> ObligationVerdict:
        check = CheckResult(check_id=f"{oid}#0", obligation_id=oid, kind="tests_pass", verdict=verdict,  # type: ignore[arg-type]
                            diagnosis=f"{verdict} because", expected="e", observed="o")
        return ObligationVerdict(obligation_id=oid, title=oid, domain="data", risk="high", verdict=verdict,  # type: ignore[arg-type]
                                 diagnosis=f"{verdict} because", checks=[check])

    obligations = [ob("data.a.one", "pass"), ob("data.b.two", "fail"), ob("data.c.three", "error"),
                   ob("data.d.four", "no-evidence")]
    return GateReport(run_id="20260101T000000Z-000001", mode="evaluate", poetkb_version="0", started_at="t",
                      finished_at="t", duration_s=0.5, obligations=obligations, verdict="fail", exit_code=1,
                      summary=GateSummary(selected=4, passed=1, failed=1, errors=1, no_evidence=1, coverage=0.25))


def test_html_is_self_contained_and_shows_failures_first(failing: GateReport) -> None:
    """No external asset or script; the failing obligation comes first with its diagnosis and evidence links."""
    written = write_reports(failing, ("html",))
    page = written["html"].read_text()
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert page.index("routing.backend.selection") < page.index("security.client.ip.preserved")
    assert "reached a different backend than the first" in page
    links = re.findall(r'href="([^"]+)"', page)
    assert f"../evidence/{failing.run_id}/captures.jsonl" in links
    for link in links:
        assert (written["html"].parent / link).exists(), link


def test_junit_fails_closed() -> None:
    """fail and no-evidence are JUnit failures, error is an error, nothing is skipped."""
    root = ET.fromstring(render_junit(_verdicts_report()).split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("4", "2", "1", "0")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["data.a.one"].find("failure") is None and cases["data.a.one"].find("error") is None
    assert cases["data.b.two"].find("failure") is not None
    assert cases["data.c.three"].find("error") is not None
    failure = cases["data.d.four"].find("failure")
    assert failure is not None and failure.get("type") == "no-evidence"


def test_markdown_fits_a_pull_request_comment() -> None:
    """A headline, one table row per obligation that did not pass, passing ones folded away."""
    text = render_markdown(_verdicts_report())
    assert text.startswith("### poet gate: FAIL")
    assert "1 of 4 obligations pass (coverage 25%)" in text
    assert "| `data.b.two` | FAIL | fail because |" in text
    assert "| `data.d.four` | NO EVIDENCE | no-evidence because |" in text
    assert "<details><summary>Passing obligations</summary>" in text


def test_json_report_round_trips_and_loads_latest(failing: GateReport) -> None:
    """The JSON report validates against GateReport and is what `gate report` loads by default."""
    write_reports(failing, ("json",))
    assert load_report() == failing
    assert GateReport.model_validate_json(render(failing, "json")) == failing


def test_schema_is_published(kb_path: Path) -> None:
    """`poet schema gate-report` prints the JSON Schema with the stable schema tag."""
    from click.testing import CliRunner

    from poetkb.cli import main

    out = CliRunner().invoke(main, ["schema", "gate-report"])
    schema = json.loads(out.output)
    assert schema["properties"]["schema"]["const"] == "poetkb.gate-report/1"
    assert {"obligations", "summary", "verdict", "exit_code", "evidence_files"} <= set(schema["properties"])


def test_docs_example_report_still_validates() -> None:
    """docs/examples/gate_report.json, written by the tool on the demo, is a valid GateReport of a full gate."""
    report = GateReport.model_validate_json(EXAMPLE.read_text(encoding="utf-8"))
    assert report.mode == "run" and report.target is not None and report.target.source == "demo"
    assert report.summary.selected == 27 and report.verdict == "pass"
    assert all(f.sha256 for f in report.evidence_files)
