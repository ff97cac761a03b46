"""The pytest plugin: markers, JUnit properties, coverage reports, thresholds and the ratchet.

Each test runs a real pytest session in a subprocess on a small suite written to
``tmp_path``; the plugin is loaded through its ``pytest11`` entry point, as a user's
pytest would load it, against a private copy of the shipped knowledge base.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SUITE = '''
import pytest

@pytest.mark.obligation("cache.vary.honored")
def test_vary_one():
    assert True

@pytest.mark.obligation("cache.vary.honored", "cache.key.complete")
def test_vary_and_key():
    assert True

@pytest.mark.obligation("cache.ttl.honored")
def test_ttl_broken():
    assert False, "stale response served"

@pytest.mark.obligation("cache.private.bypassed")
def test_private_skipped():
    pytest.skip("needs a login")

@pytest.mark.obligation("auth.jwt.signature.verified")
def test_signature():
    assert True

def test_unlinked():
    assert True
'''


def run_pytest(suite_dir: Path, *args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POET_DB": str(db), "PYTEST_ADDOPTS": ""}
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(suite_dir), *args,
         str(suite_dir)],
        cwd=suite_dir, env=env, capture_output=True, text=True, timeout=180,
    )


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    root = tmp_path / "suite"
    root.mkdir()
    (root / "test_linked.py").write_text(SUITE, encoding="utf-8")
    return root


def junit_properties(path: Path) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        out[case.get("name", "")] = [(p.get("name", ""), p.get("value", "")) for p in case.iter("property")]
    return out


def test_junit_carries_requirements_and_obligation_properties(suite: Path, kb_path: Path, tmp_path: Path) -> None:
    """Linked tests get a `requirements` property and one `obligation` property per id, in the default family."""
    junit = tmp_path / "junit.xml"
    proc = run_pytest(suite, f"--junitxml={junit}", db=kb_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one linked test fails on purpose
    props = junit_properties(junit)
    assert props["test_vary_and_key"] == [("requirements", "cache.vary.honored,cache.key.complete"),
                                          ("obligation", "cache.vary.honored"), ("obligation", "cache.key.complete")]
    assert props["test_unlinked"] == []


def test_coverage_report_sorts_the_selection(suite: Path, kb_path: Path, tmp_path: Path) -> None:
    """--poet-report over --poet-domain cache: passing, failing, untested and outside-selection obligations."""
    report = tmp_path / "coverage.json"
    proc = run_pytest(suite, f"--poet-report={report}", "--poet-domain=cache", db=kb_path)
    assert proc.returncode == 1
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["selection"] == "domain=cache"
    assert data["passing"] == ["cache.key.complete", "cache.vary.honored"]
    assert data["failing"] == ["cache.ttl.honored"]
    assert "cache.private.bypassed" in data["untested"]  # a skipped test proves nothing
    assert data["total"] == len(data["passing"]) + len(data["failing"]) + len(data["untested"])
    assert data["coverage"] == pytest.approx(2 / data["total"])
    assert data["outside_selection"] == ["auth.jwt.signature.verified"]
    assert data["tests"]["cache.vary.honored"] == ["test_linked.py::test_vary_and_key", "test_linked.py::test_vary_one"]
    assert "poetkb obligation coverage" in proc.stdout


def test_markdown_report(suite: Path, kb_path: Path, tmp_path: Path) -> None:
    """A .md report is Markdown with the failing obligation listed under Failing."""
    report = tmp_path / "coverage.md"
    run_pytest(suite, f"--poet-report={report}", "--poet-domain=cache", db=kb_path)
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# Obligation coverage (domain=cache)")
    assert "## Failing (1)\n- `cache.ttl.honored`: `test_linked.py::test_ttl_broken`" in text


def test_min_coverage_fails_the_session_below_it(tmp_path: Path, kb_path: Path) -> None:
    """--poet-min-coverage turns a green session red when coverage is below the threshold, and only then."""
    root = tmp_path / "green"
    root.mkdir()
    (root / "test_ok.py").write_text(
        'import pytest\n\n@pytest.mark.obligation("cache.vary.honored")\ndef test_ok():\n    pass\n',
        encoding="utf-8")
    low = run_pytest(root, "--poet-domain=cache", "--poet-min-coverage=0.1", db=kb_path)
    assert low.returncode == 0, low.stdout + low.stderr
    high = run_pytest(root, "--poet-domain=cache", "--poet-min-coverage=50%", db=kb_path)
    assert high.returncode == 1
    assert "is below --poet-min-coverage 50.0%" in high.stdout
    bad = run_pytest(root, "--poet-min-coverage=2", db=kb_path)
    assert bad.returncode == 4
    assert "outside 0..1" in bad.stderr


def test_ratchet_fails_when_coverage_drops(tmp_path: Path, kb_path: Path) -> None:
    """The ratchet stores the best coverage in the knowledge base and fails a later session that covers less."""
    import poetkb

    root = tmp_path / "ratchet"
    root.mkdir()
    two = ('import pytest\n\n@pytest.mark.obligation("cache.vary.honored")\ndef test_a():\n    pass\n\n'
           '@pytest.mark.obligation("cache.key.complete")\ndef test_b():\n    pass\n')
    (root / "test_r.py").write_text(two, encoding="utf-8")
    first = run_pytest(root, "--poet-domain=cache", "--poet-ratchet", db=kb_path)
    assert first.returncode == 0, first.stdout + first.stderr
    with poetkb.open(kb_path) as kb:
        stored = kb.last_coverage("domain=cache")
    assert stored is not None and stored > 0
    (root / "test_r.py").write_text(two.split("\n\n@pytest.mark.obligation(\"cache.key")[0] + "\n", encoding="utf-8")
    second = run_pytest(root, "--poet-domain=cache", "--poet-ratchet", db=kb_path)
    assert second.returncode == 1
    assert "obligation coverage dropped from" in second.stdout
    with poetkb.open(kb_path) as kb:
        assert kb.last_coverage("domain=cache") == stored  # the best value is kept


def test_unknown_id_warns_or_fails_with_a_suggestion(tmp_path: Path, kb_path: Path) -> None:
    """An unknown id is a warning naming the test and a close match; --poet-strict makes it a collection error."""
    root = tmp_path / "typo"
    root.mkdir()
    (root / "test_typo.py").write_text(
        'import pytest\n\n@pytest.mark.obligation("cache.vary.honoured")\ndef test_t():\n    pass\n',
        encoding="utf-8")
    loose = run_pytest(root, db=kb_path)
    assert loose.returncode == 0
    assert "unknown obligation id 'cache.vary.honoured'" in loose.stdout
    assert "did you mean cache.vary.honored" in loose.stdout
    strict = run_pytest(root, "--poet-strict", db=kb_path)
    assert strict.returncode == 4
    assert "test_typo.py::test_t: unknown obligation id 'cache.vary.honoured'" in strict.stderr


def test_inert_without_markers_or_options(tmp_path: Path) -> None:
    """A suite that uses no marker and no option never opens (or builds) a knowledge base."""
    root = tmp_path / "plain"
    root.mkdir()
    (root / "test_plain.py").write_text("def test_plain():\n    pass\n", encoding="utf-8")
    db = tmp_path / "never.sqlite"
    proc = run_pytest(root, db=db)
    assert proc.returncode == 0
    assert not db.exists()


def test_xdist_keeps_properties_and_coverage(suite: Path, kb_path: Path, tmp_path: Path) -> None:
    """Under pytest-xdist the properties reach the JUnit file and the controller reports the same coverage."""
    serial, parallel = tmp_path / "serial.json", tmp_path / "parallel.json"
    junit = tmp_path / "xdist.xml"
    run_pytest(suite, f"--poet-report={serial}", "--poet-domain=cache", db=kb_path)
    proc = run_pytest(suite, "-n", "2", f"--junitxml={junit}", f"--poet-report={parallel}", "--poet-domain=cache",
                      db=kb_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert json.loads(serial.read_text()) == json.loads(parallel.read_text())
    assert ("obligation", "cache.key.complete") in junit_properties(junit)["test_vary_and_key"]


def test_gate_tests_pass_reads_the_plugins_junit(tmp_path: Path, kb_path: Path) -> None:
    """`poet gate evaluate` judges a tests_pass check from the plugin's JUnit: five linked passes pass, a failure fails."""
    root = tmp_path / "forged"
    root.mkdir()
    variants = ["alg_none", "stripped_signature", "tampered_payload", "hs256_with_public_key", "foreign_jku"]
    body = "import pytest\n" + "".join(
        f'\n@pytest.mark.obligation("auth.jwt.signature.verified")\ndef test_{v}():\n    assert True\n'
        for v in variants)
    (root / "test_forged.py").write_text(body, encoding="utf-8")
    env = {**os.environ, "POET_DB": str(kb_path)}

    def verdict() -> str:
        junit = tmp_path / "junit.xml"
        run_pytest(root, f"--junitxml={junit}", db=kb_path)
        proc = subprocess.run([sys.executable, "-m", "poetkb", "gate", "evaluate", "--evidence", str(junit),
                               "--obligation", "auth.jwt.signature.verified", "--json"],
                              env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        report = json.loads(proc.stdout)
        return {r["obligation_id"]: r["verdict"] for r in report["obligations"]}["auth.jwt.signature.verified"]

    assert verdict() == "pass"
    (root / "test_forged.py").write_text(body.replace("def test_alg_none():\n    assert True",
                                                      "def test_alg_none():\n    assert False"), encoding="utf-8")
    assert verdict() == "fail"


def test_tests_pass_reads_the_requirements_property(tmp_path: Path, kb_path: Path) -> None:
    """A JUnit file from another tool that links tests only through `requirements` is read by tests_pass."""
    cases = "".join(
        f'<testcase classname="suite" name="case_{i}"><properties>'
        f'<property name="requirements" value="cache.vary.honored,auth.jwt.signature.verified"/>'
        f"</properties></testcase>" for i in range(5))
    junit = tmp_path / "other-tool.xml"
    junit.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="s" tests="5">{cases}</testsuite>'
                     f"</testsuites>", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "poetkb", "gate", "evaluate", "--evidence", str(junit),
                           "--obligation", "auth.jwt.signature.verified", "--json"],
                          env={**os.environ, "POET_DB": str(kb_path)}, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    verdicts = {r["obligation_id"]: r["verdict"] for r in json.loads(proc.stdout)["obligations"]}
    assert verdicts["auth.jwt.signature.verified"] == "pass"
