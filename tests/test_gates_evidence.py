"""Evidence on disk: a gate run re-evaluated without traffic, altered or missing files, access-log slices."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from gates_edge import running_edge

from poetkb.errors import InputError
from poetkb.gates import accesslog
from poetkb.gates.evidence import LogTail, load_run
from poetkb.gates.schema import Edge

OBLIGATIONS = ["routing.backend.selection", "security.client.ip.preserved", "observability.request.id"]


@pytest.fixture
def run(kb: Any, tmp_path: Path) -> Any:
    """One real gate run against the small echo edge, with its access log; returns the report."""
    log = tmp_path / "edge-access.log"
    with running_edge(access_log=log) as url:
        return kb.gate(obligations=OBLIGATIONS, edge=Edge(target=url, access_log=log))


def test_run_passes_and_records_everything(run: Any, kb: Any) -> None:
    """The run passes, lists every evidence file with its sha256, writes its reports and records itself."""
    assert run.verdict == "pass" and run.exit_code == 0
    assert run.summary.coverage == 1.0
    names = {f.path for f in run.evidence_files}
    assert {"captures.jsonl", "counters.jsonl", "tls.jsonl", "access.log"} <= names
    assert all(len(f.sha256) == 64 for f in run.evidence_files)
    root = Path(run.evidence_dir)
    assert (root / "manifest.json").is_file()
    reports = root.parent.parent / "reports"
    assert (reports / f"{run.run_id}.json").is_file() and (reports / f"{run.run_id}.html").is_file()
    rows = kb.gate_runs()
    assert rows[0]["run_id"] == run.run_id and rows[0]["verdict"] == "pass"
    results = list(kb.db.query("select obligation_id, verdict from gate_results where run_id = ?", [run.run_id]))
    assert sorted(r["obligation_id"] for r in results) == sorted(OBLIGATIONS)


def test_stored_evidence_is_judged_the_same_without_traffic(run: Any, kb: Any) -> None:
    """`gate evaluate` on the run's directory gives the same verdict for every obligation."""
    again = kb.gate_evaluate(run.evidence_dir)
    assert again.mode == "evaluate"
    assert {o.obligation_id: o.verdict for o in again.obligations} == {
        o.obligation_id: o.verdict for o in run.obligations}


@pytest.mark.parametrize(("damage", "says"), [
    ("edit", "does not match its sha256 in the manifest"),
    ("delete", "is missing from"),
])
def test_damaged_evidence_is_an_error_that_names_the_file(run: Any, kb: Any, damage: str, says: str) -> None:
    """An altered or missing captures file turns every check that reads it into an error naming it, never a pass."""
    captures = Path(run.evidence_dir) / "captures.jsonl"
    if damage == "edit":
        captures.write_text(captures.read_text().replace("healthy-b", "healthy-a"))
    else:
        captures.unlink()
    report = kb.gate_evaluate(run.evidence_dir)
    assert report.verdict == "error" and report.exit_code == 2
    for ob in report.obligations:
        assert ob.verdict == "error"
        assert "captures.jsonl" in ob.diagnosis and says in ob.diagnosis


def test_altered_access_log_only_hits_checks_that_read_it(run: Any, kb: Any) -> None:
    """A changed access.log makes the log-reading check an error; checks of captures alone still pass."""
    log = Path(run.evidence_dir) / "access.log"
    log.write_bytes(log.read_bytes() + b'{"uri": "/forged"}\n')
    report = kb.gate_evaluate(run.evidence_dir)
    verdicts = {o.obligation_id: o.verdict for o in report.obligations}
    assert verdicts == {"routing.backend.selection": "pass", "security.client.ip.preserved": "pass",
                        "observability.request.id": "error"}


@pytest.mark.parametrize(("setup", "says"), [
    ("empty", "no manifest.json in evidence directory"),
    ("garbage", "is not a valid evidence manifest"),
])
def test_unusable_evidence_directory_is_bad_input(kb: Any, tmp_path: Path, setup: str, says: str) -> None:
    """A directory without a valid manifest is refused with a message saying what to pass."""
    if setup == "garbage":
        (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match=says):
        load_run(tmp_path)


def test_log_tail_slices_by_byte_offset(tmp_path: Path) -> None:
    """Only the bytes appended after the run started are in the slice."""
    log = tmp_path / "access.log"
    log.write_text('{"uri": "/before"}\n')
    tail = LogTail(log)
    with log.open("a") as fh:
        fh.write('{"uri": "/during"}\n')
    data = tail.read_slice(tail.position())
    assert data == b'{"uri": "/during"}\n' and tail.problems == []


@pytest.mark.parametrize(("change", "says"), [
    ("rotate", "was rotated during the run"),
    ("truncate", "was truncated during the run"),
    ("delete", "disappeared during the run"),
])
def test_log_tail_notices_rotation(tmp_path: Path, change: str, says: str) -> None:
    """A log replaced, truncated or removed during the run is a named problem and yields no slice."""
    log = tmp_path / "access.log"
    log.write_text('{"uri": "/before"}\n' * 3)
    tail = LogTail(log)
    if change == "rotate":
        os.rename(log, tmp_path / "access.log.1")
        log.write_text('{"uri": "/new"}\n' * 5)
    elif change == "truncate":
        log.write_text("")
    else:
        log.unlink()
    end = tail.position()
    assert any(says in p for p in tail.problems)
    assert tail.read_slice(end) == b""


def test_missing_access_log_is_bad_input(tmp_path: Path) -> None:
    """Following an access log that does not exist names the file and the option to fix."""
    with pytest.raises(InputError, match="cannot read the access log") as info:
        LogTail(tmp_path / "nope.log")
    assert "--access-log" in str(info.value)


def test_access_log_parsing() -> None:
    """NGINX per-attempt fields are split, proxy notices skipped, bad and truncated lines named."""
    data = (b'{"uri": "/a", "status": 502, "upstream_addr": "127.0.0.1:9103, 127.0.0.1:9101", '
            b'"upstream_status": "504, 502", "upstream_response_time": "1.001, 1.002"}\n'
            b"Proxy fe_edge stopped (cumulated conns: FE: 4, BE: 0).\n"
            b'{"uri": "/b", "status": \n'
            b'[1, 2]\n'
            b'{"uri": "/c", "status": 200, "upstream_attempts": [{"addr": "127.0.0.1:9101", "status": 200}]}\n'
            b'{"uri": "/d"')
    parsed = accesslog.parse(data)
    first = parsed.records[0]
    assert [(a.addr, a.status, a.response_time) for a in first.attempts] == [
        ("127.0.0.1:9103", 504, 1.001), ("127.0.0.1:9101", 502, 1.002)]
    assert parsed.records[1].upstream_addrs == ["127.0.0.1:9101"]
    assert parsed.other == 1
    assert [str(p) for p in parsed.problems] == [
        "line 3: not valid JSON (Expecting value at column 24)",
        "line 4: expected a JSON object, got list",
        "line 6: truncated: the last line has no newline (cut off mid-write?)",
    ]


def test_foreign_access_log_and_har_are_judged(kb: Any) -> None:
    """An access log and a HAR file written by other tools are judged by the checks that read them."""
    foreign = Path(__file__).resolve().parent / "fixtures" / "gates" / "foreign"
    from poetkb.gates.schema import Selection

    by_log = kb.gate_evaluate(foreign / "access.log", selection=Selection(obligations=["routing.backend.selection"]))
    assert by_log.verdict == "fail"
    assert "1 of 3 requests got no answer from a backend" in by_log.obligations[0].diagnosis
    by_har = kb.gate_evaluate(foreign / "split.har", selection=Selection(obligations=["routing.backend.selection"]))
    assert by_har.verdict == "fail"
    assert "1 of 3 requests for /a reached a different backend than the first" in by_har.obligations[0].diagnosis
    metrics = kb.gate_evaluate(foreign / "metrics.prom", selection=Selection(obligations=["data.outbox.no_loss"]))
    checks = {c.kind: c.verdict for c in metrics.obligations[0].checks}
    # outbox_no_loss drives the service tier; a metrics file is no evidence for it
    assert checks == {"tests_pass": "no-evidence", "metric_threshold": "pass", "outbox_no_loss": "no-evidence"}


def test_foreign_files_without_a_selection_pick_the_checks_that_read_them(kb: Any) -> None:
    """Without a selection, a metrics snapshot selects the obligations whose checks read metrics."""
    foreign = Path(__file__).resolve().parent / "fixtures" / "gates" / "foreign"
    report = kb.gate_evaluate(foreign / "metrics.prom")
    ids = {o.obligation_id for o in report.obligations}
    assert "data.outbox.no_loss" in ids and "observability.metrics.exposed" in ids
    assert report.target is not None and report.target.source == "evidence"
    assert all(f.kind == "metrics" for f in report.evidence_files)
    json.loads(report.model_dump_json())


def test_packet_capture_is_kept_with_its_hash(kb: Any) -> None:
    """--capture records the run's loopback packets with tcpdump into capture.pcap, hashed in the manifest."""
    with running_edge() as url:
        report = kb.gate(obligations=["security.client.ip.preserved"], edge=Edge(target=url), capture=True)
    assert report.verdict == "pass", report.problems
    pcap = next(f for f in report.evidence_files if f.path == "capture.pcap")
    data = (Path(report.evidence_dir) / "capture.pcap").read_bytes()
    assert pcap.bytes == len(data) > 24  # a pcap header and at least one packet
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")


def test_a_catalog_changed_since_the_run_is_an_error(run: Any, kb: Any) -> None:
    """A recorded check whose kind no longer matches the catalog's is an error that says to run again."""
    row = next(iter(kb.db.query("select data from obligations where id = ?", ["security.client.ip.preserved"])))
    data = json.loads(row["data"])
    data["checks"][0]["kind"] = "tls_chain_valid"
    data["checks"][0]["params"] = {}
    with kb.db.conn:
        kb.db.execute("update obligations set data = ? where id = ?",
                      [json.dumps(data), "security.client.ip.preserved"])
    report = kb.gate_evaluate(run.evidence_dir)
    assert report.evidence_record == "recorded"
    verdicts = {o.obligation_id: (o.verdict, o.diagnosis) for o in report.obligations}
    verdict, diagnosis = verdicts["security.client.ip.preserved"]
    assert verdict == "error" and "the catalog changed since the run" in diagnosis
    assert verdicts["routing.backend.selection"][0] == "pass"


def test_an_edited_manifest_is_an_error_for_every_check(run: Any, kb: Any) -> None:
    """Editing the manifest after the run no longer matches the digest the knowledge base recorded: all errors."""
    manifest = Path(run.evidence_dir) / "manifest.json"
    data = json.loads(manifest.read_text())
    data["checks"][0]["notes"]["edited"] = True
    manifest.write_text(json.dumps(data))
    report = kb.gate_evaluate(run.evidence_dir)
    assert report.evidence_record == "mismatch" and report.verdict == "error" and report.exit_code == 2
    assert all(o.verdict == "error" and "does not match the digest" in o.diagnosis for o in report.obligations)
