"""The evidence log: append-only JSON lines, intact under concurrent appends from several processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from poetkb.errors import InputError, StoreError
from poetkb.load.evidence_log import (
    append_record,
    default_log_path,
    interpretation_record,
    plan_record,
    read_log,
)
from poetkb.load.interpret import interpret
from poetkb.load.metrics import read_metrics
from poetkb.load.plan import build_plan
from poetkb.load.profile import load_profile

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "load"
PROFILE = FIXTURES / "profiles" / "small.yaml"

_WRITER = """
import sys
from poetkb.load.evidence_log import append_record
path, writer, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
padding = "x" * 20000  # records far larger than PIPE_BUF, so only the lock keeps them whole
for i in range(count):
    append_record(path, {"service": "svc", "writer": writer, "i": i, "padding": padding, "outcome": "plan-generated"})
"""


def test_concurrent_appends_from_processes_give_exactly_n_intact_lines(tmp_path: Path) -> None:
    """8 processes x 40 large records each: 320 lines, each complete JSON, each record exactly once."""
    log = tmp_path / "evidence.jsonl"
    writers, per_writer = 8, 40
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(log), str(w), str(per_writer)])
             for w in range(writers)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]
    assert len(records) == writers * per_writer
    assert sorted((r["writer"], r["i"]) for r in records) == [(w, i) for w in range(writers) for i in range(per_writer)]
    for writer in range(writers):
        mine = [r["i"] for r in records if r["writer"] == writer]
        assert mine == sorted(mine)


def test_appends_never_rewrite_what_is_there(tmp_path: Path) -> None:
    """Earlier bytes stay byte-for-byte the same and the file keeps its inode as records are added."""
    log = tmp_path / "evidence.jsonl"
    append_record(log, {"service": "a", "outcome": "plan-generated"})
    before, inode = log.read_bytes(), os.stat(log).st_ino
    append_record(log, {"service": "b", "outcome": "issues-detected"})
    after = log.read_bytes()
    assert after.startswith(before) and len(after) > len(before)
    assert os.stat(log).st_ino == inode
    assert [r["service"] for r in read_log(log)] == ["a", "b"]


def test_a_line_left_open_by_a_crash_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    """A partial last line gets a newline before the next record; strict reading names the damaged line."""
    log = tmp_path / "evidence.jsonl"
    append_record(log, {"service": "a", "outcome": "plan-generated"})
    with log.open("ab") as fh:
        fh.write(b'{"service": "crashed", "outc')
    append_record(log, {"service": "b", "outcome": "plan-generated"})
    with pytest.raises(InputError, match="damaged record") as caught:
        list(read_log(log))
    assert caught.value.line == 2
    assert [r["service"] for r in read_log(log, strict=False)] == ["a", "b"]


def test_records_of_plans_and_interpretations(tmp_path: Path) -> None:
    """Plan and interpretation records carry timestamp, service, profile, scenarios, interpretation, outcome."""
    profile = load_profile(PROFILE)
    log = tmp_path / "evidence.jsonl"
    append_record(log, plan_record(build_plan(profile), profile_path=str(PROFILE)))
    good = interpret(profile, read_metrics(FIXTURES / "metrics" / "summary-pass.json"))
    bad = interpret(profile, read_metrics(FIXTURES / "metrics" / "summary-slow.json"))
    append_record(log, interpretation_record(good, profile_path=str(PROFILE)))
    append_record(log, interpretation_record(bad, profile_path=str(PROFILE)))
    records = list(read_log(log))
    assert [r["outcome"] for r in records] == ["plan-generated", "plan-and-interpretation-generated",
                                               "issues-detected"]
    for record in records:
        assert set(record) == {"timestamp", "service", "profile", "scenarios", "interpretation", "outcome"}
        assert record["timestamp"].endswith("Z") and record["service"] == "small-api"
        assert record["profile"] == {"path": str(PROFILE), "fingerprint": profile.fingerprint()}
    assert records[0]["scenarios"] == ["steady", "burst", "soak", "stress"] and records[0]["interpretation"] is None
    assert records[2]["interpretation"]["status"] == "fail"
    assert records[2]["interpretation"]["obligations"]["perf.latency.slo"] == "fail"


def test_bad_outcome_and_unwritable_log(tmp_path: Path) -> None:
    """An unknown outcome is refused; a log that cannot be opened is a StoreError saying what to do."""
    with pytest.raises(InputError, match="outcome must be one of plan-generated"):
        append_record(tmp_path / "log.jsonl", {"outcome": "done"})
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open the evidence log") as caught:
        append_record(blocker / "log.jsonl", {"outcome": "plan-generated"})
    assert "--log FILE" in str(caught.value)


def test_default_log_lives_in_poet_home(isolated_home: Path) -> None:
    """Without --log the log is $POET_HOME/evidence/load-evidence.jsonl."""
    assert default_log_path() == isolated_home / "evidence" / "load-evidence.jsonl"
