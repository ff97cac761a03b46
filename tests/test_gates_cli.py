"""`poet gate`: exit codes, clear messages for bad input, JSON and JUnit output, stored reports."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from gates_edge import running_edge

from poetkb.cli import main

OBLIGATIONS = ["--obligation", "routing.backend.selection", "--obligation", "security.client.ip.preserved"]


def poet(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.mark.parametrize(("args", "says"), [
    (["gate", "run", "--all"], "no --target given and no demo edge is running"),
    (["gate", "run", "--all", "--target", "http://10.1.2.3:8080"], "is not on this machine (loopback)"),
    (["gate", "run", "--all", "--target", "ftp://127.0.0.1"], "is not an http:// or https:// URL"),
    (["gate", "run", "--target", "http://127.0.0.1:1"], "nothing selected to gate"),
    (["gate", "run", "--obligation", "routing.nope", "--target", "http://127.0.0.1:1"],
     "unknown obligation id 'routing.nope'"),
    (["gate", "run", "--domain", "nodomain", "--target", "http://127.0.0.1:1"], "no obligation in domain 'nodomain'"),
    (["gate", "run", "--all", "--target", "http://127.0.0.1:1", "--access-log", "/nonexistent/access.log"],
     "access log not found"),
    (["gate", "run", "--all", "--target", "http://127.0.0.1:1", "--upstream-admin", "a:boss=http://127.0.0.1:2"],
     "upstream role 'boss'"),
    (["gate", "evaluate", "--evidence", "/nonexistent/run"], "evidence path does not exist"),
    (["gate", "report"], "no gate report in"),
    (["gate", "report", "20990101T000000Z-abcdef"], "no gate report for run '20990101T000000Z-abcdef'"),
])
def test_bad_input_exits_2_with_a_clear_message(kb_path: Path, args: list[str], says: str) -> None:
    """Bad input is a one-paragraph message and exit code 2, never a traceback."""
    result = poet(*args)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output


def test_unreachable_target_exits_2(kb_path: Path) -> None:
    """A target nobody listens on is reported as unreachable before any check runs."""
    result = poet("gate", "run", *OBLIGATIONS, "--target", f"http://127.0.0.1:{closed_port()}")
    assert result.exit_code == 2
    assert "is unreachable" in result.output and "poet demo status" in result.output


def test_wrong_proxy_kind_exits_2(kb_path: Path) -> None:
    """--proxy must match what the target says it is."""
    with running_edge(server_header="nginx/1.22.1") as url:
        result = poet("gate", "run", *OBLIGATIONS, "--target", url, "--proxy", "haproxy")
    assert result.exit_code == 2
    assert "--proxy haproxy was given, but" in result.output and "answers as nginx" in result.output


def test_passing_gate_exits_0_and_prints_the_summary(kb_path: Path) -> None:
    """Every selected obligation passes: exit 0, one line per obligation, the report's path."""
    with running_edge() as url:
        result = poet("gate", "run", *OBLIGATIONS, "--target", url)
    assert result.exit_code == 0, result.output
    assert "PASS         routing.backend.selection" in result.output
    assert "2 of 2 obligations pass (coverage 100%)" in result.output
    assert "report: " in result.output


def test_failing_gate_exits_1_with_json_and_junit(kb_path: Path, tmp_path: Path) -> None:
    """A broken edge: exit 1, the JSON report on stdout with the diagnosis, and JUnit XML CI can read."""
    junit = tmp_path / "gate.xml"
    with running_edge(split=True) as url:
        result = CliRunner().invoke(main, ["gate", "run", *OBLIGATIONS, "--target", url, "--json",
                                           "--junit", str(junit)])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    verdicts = {o["obligation_id"]: o["verdict"] for o in report["obligations"]}
    assert verdicts == {"routing.backend.selection": "fail", "security.client.ip.preserved": "pass"}
    failed = next(o for o in report["obligations"] if o["verdict"] == "fail")
    assert "reached a different backend than the first" in failed["diagnosis"]
    assert report["schema"] == "poetkb.gate-report/1" and report["exit_code"] == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"


def test_stored_reports_in_every_format(kb_path: Path, tmp_path: Path) -> None:
    """`gate report` shows the latest run as text, JSON, Markdown, HTML or JUnit, and writes files with -o."""
    with running_edge(split=True) as url:
        poet("gate", "run", *OBLIGATIONS, "--target", url)
    text = poet("gate", "report")
    assert text.exit_code == 0 and "FAIL         routing.backend.selection" in text.output
    md = poet("gate", "report", "--format", "md")
    assert "| `routing.backend.selection` | FAIL |" in md.output
    as_json = json.loads(poet("gate", "report", "--format", "json").output)
    html_file = tmp_path / "out" / "report.html"
    html_file.parent.mkdir()
    written = poet("gate", "report", as_json["run_id"], "--format", "html", "-o", str(html_file))
    assert written.exit_code == 0 and html_file.is_file()
    assert "<!DOCTYPE html>" in html_file.read_text()


def test_evaluate_exit_codes_follow_the_verdicts(kb_path: Path) -> None:
    """`gate evaluate` re-judges a run directory with the run's exit code, and names no-evidence checks."""
    with running_edge(split=True) as url:
        run = json.loads(poet("gate", "run", *OBLIGATIONS, "--target", url, "--json").stdout)
    again = poet("gate", "evaluate", "--evidence", run["evidence_dir"])
    assert again.exit_code == 1 and "FAIL         routing.backend.selection" in again.output
    foreign = Path(__file__).resolve().parent / "fixtures" / "gates" / "foreign" / "metrics.prom"
    judged = poet("gate", "evaluate", "--evidence", str(foreign), "--obligation", "data.outbox.no_loss")
    assert judged.exit_code == 1
    assert "NO-EVIDENCE" in judged.output and "no JUnit test results were given" in judged.output


def test_kinds_lists_the_vocabulary(kb_path: Path) -> None:
    """`gate kinds` lists each kind with how it is judged; --json is machine-readable."""
    text = poet("gate", "kinds")
    assert "same_key_same_backend" in text.output and "drives traffic" in text.output
    kinds = json.loads(poet("gate", "kinds", "--json").output)
    assert any(k["kind"] == "manual" and not k["traffic"] for k in kinds)


def test_evaluate_refuses_the_evidence_root(kb_path: Path, tmp_path: Path) -> None:
    """Pointing --evidence at the folder of all runs asks for one run's directory instead."""
    run = tmp_path / "evidence" / "20260101T000000Z-000001"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text("{}")
    result = poet("gate", "evaluate", "--evidence", str(tmp_path / "evidence"))
    assert result.exit_code == 2
    assert "holds evidence runs; pass one run's directory" in result.output


def test_run_takes_evidence_from_other_tools_for_checks_it_cannot_drive(kb_path: Path) -> None:
    """--evidence files judge the checks a run cannot collect itself (here a metric threshold), with their hash."""
    metrics = Path(__file__).resolve().parent / "fixtures" / "gates" / "foreign" / "metrics.prom"
    with running_edge() as url:
        result = poet("gate", "run", "--obligation", "data.outbox.no_loss", "--target", url,
                      "--evidence", str(metrics), "--json")
    report = json.loads(result.stdout)
    checks = {c["kind"]: c["verdict"] for c in report["obligations"][0]["checks"]}
    # outbox_no_loss drives the service tier, which is not running here: an error, never a pass
    assert checks == {"tests_pass": "no-evidence", "metric_threshold": "pass", "outbox_no_loss": "error"}
    assert result.exit_code == 1
    assert any(f["path"] == str(metrics) and f["kind"] == "metrics" for f in report["evidence_files"])


def test_the_edge_is_one_typed_object_whose_bad_fields_are_named(kb: Any, tmp_path: Path) -> None:
    """CLI and library build the same Edge; a bad value is bad input naming its field."""
    from poetkb import Edge, InputError

    with pytest.raises(InputError) as bad:
        Edge.from_options(proxy="squid")
    assert bad.value.field == "proxy" and bad.value.exit_code == 2
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\n", encoding="utf-8")
    with pytest.raises(InputError) as both:
        kb.gate(all=True, edge=Edge(config=conf, target="http://127.0.0.1:9", metrics_url="http://127.0.0.1:9/m"))
    assert both.value.field == "config" and "--target, --metrics-url" in both.value.message
    with pytest.raises(InputError) as typo:
        Edge.from_options(targte="http://127.0.0.1:9")
    assert typo.value.field == "targte"
    result = poet("gate", "run", "--all", "--config", str(conf), "--access-log", str(conf))
    assert result.exit_code == 2 and "--access-log" in result.output
