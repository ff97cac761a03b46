"""Plans where they are read: a pull-request comment, a JSON model, JUnit cases awaiting evidence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner

import poetkb
from poetkb import store
from poetkb.catalog import load_catalog
from poetkb.cli import main
from poetkb.kb import KnowledgeBase
from poetkb.models import Check
from poetkb.plans.proving import proof_routes
from poetkb.plans.testplan import TestPlan

CATALOG = Path(__file__).resolve().parent / "fixtures" / "rank" / "catalog"
CHANGE = "retry POST requests on the next upstream and drop the host from the cache key"


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("formats") / "kb.sqlite"
    store.build(load_catalog(CATALOG), path, source=str(CATALOG))
    return path


@pytest.fixture
def small(small_file: Path) -> Iterator[KnowledgeBase]:
    base = poetkb.open(small_file)
    yield base
    base.close()


def test_markdown_is_a_pull_request_comment(small: KnowledgeBase) -> None:
    """Summary and gate command come first, then the checklist, then one collapsed <details> per obligation."""
    plan = small.test_plan(CHANGE, top=3)
    text = plan.to_markdown()
    lines = text.splitlines()
    assert lines[2].startswith(f"**{len(plan.items)} obligations to prove**")
    assert f"Gate: `{plan.gate_command}`" in lines[2]
    assert text.index(lines[2]) < text.index("What poetkb understood") < text.index("## Release checklist")
    assert text.count("<details>") == len(plan.items) == text.count("</details>")
    first = plan.items[0]
    assert f"<summary><b>1. {first.id}</b>: {first.title} ({first.risk} risk, score" in text
    assert text.index("## Release checklist") < text.index("<details>")


def test_json_is_the_test_plan_model(small_file: Path) -> None:
    """--format json prints the TestPlan model, which validates back, with proof routes per item."""
    result = CliRunner().invoke(main, ["--db", str(small_file), "plan", "test", "--change", CHANGE, "--top", "2",
                                       "--format", "json"])
    assert result.exit_code == 0, result.output
    plan = TestPlan.model_validate_json(result.output)
    assert len(plan.items) == 2 and plan.gate_command.startswith("poet gate run --obligation ")
    assert all("proof" in item for item in json.loads(result.output)["items"])


def test_junit_lists_each_obligation_as_a_case_awaiting_evidence(small_file: Path, tmp_path: Path) -> None:
    """--format junit: one skipped test case per obligation, with the gate command that would prove it."""
    out = tmp_path / "plan.xml"
    result = CliRunner().invoke(main, ["--db", str(small_file), "plan", "test", "--change", CHANGE, "--top", "3",
                                       "--format", "junit", "--out", str(out)])
    assert result.exit_code == 0, result.output
    suite = ET.fromstring(out.read_text(encoding="utf-8"))
    cases = suite.findall("testcase")
    assert suite.tag == "testsuite" and suite.get("tests") == suite.get("skipped") == str(len(cases)) == "3"
    for case in cases:
        skipped = case.find("skipped")
        assert skipped is not None
        assert skipped.get("message") == f"awaiting evidence: run poet gate run --obligation {case.get('name')}"
        assert "Coverage: " in (skipped.text or "")


def test_junit_of_a_change_that_matches_nothing_is_an_empty_suite(small: KnowledgeBase) -> None:
    """No obligation: zero test cases and the message, still valid XML."""
    suite = ET.fromstring(small.test_plan("rename the marketing banner colour").to_junit())
    assert suite.get("tests") == "0" and suite.findall("testcase") == []
    assert (suite.findtext("system-out") or "").startswith("no obligation matched")


def test_proof_routes_say_where_each_check_kind_can_run() -> None:
    """Traffic kinds run on the demo and on your edge (with what they need); offline and manual kinds say so."""
    routes = {r.kind: r for r in proof_routes(
        [Check(kind="cache_key_complete"), Check(kind="upstream_attempts_bounded"), Check(kind="slo_latency"),
         Check(kind="manual"), Check(kind="cache_key_complete")], ["haproxy"])}
    assert list(routes) == ["cache_key_complete", "upstream_attempts_bounded", "slo_latency", "manual"]
    cache = routes["cache_key_complete"]
    assert cache.demo and cache.edge and cache.edge_needs == ["--target URL"]
    assert "poet demo up --proxy haproxy" in cache.how
    assert any(n.startswith("--upstream-admin URL") for n in routes["upstream_attempts_bounded"].edge_needs)
    slo = routes["slo_latency"]
    assert not slo.demo and slo.edge and "load test summary" in slo.edge_needs[0]
    assert not routes["manual"].demo and not routes["manual"].edge and "a person" in routes["manual"].how
