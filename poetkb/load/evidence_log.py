"""The load evidence log: an append-only JSON-lines record of plans made and results judged.

Each line is one JSON object: ``timestamp``, ``service``, ``profile`` (path and
fingerprint), ``scenarios``, ``interpretation`` (status, per-check verdicts and
obligations, or null for a plan) and ``outcome`` (``plan-generated``,
``plan-and-interpretation-generated``, ``issues-detected``).

Several processes may append at once (parallel CI jobs, a gate and a person):
each record is written with one ``write`` on a descriptor opened with
``O_APPEND``, under an exclusive ``flock``, so lines never interleave. The file
is never rewritten or truncated; a line left incomplete by a crash is closed
with a newline before the next record, so it cannot swallow it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from poetkb.errors import InputError, StoreError

if TYPE_CHECKING:
    from poetkb.load.interpret import Interpretation
    from poetkb.load.plan import LoadPlan

Outcome = Literal["plan-generated", "plan-and-interpretation-generated", "issues-detected"]
OUTCOMES: tuple[str, ...] = ("plan-generated", "plan-and-interpretation-generated", "issues-detected")
LOG_NAME = "load-evidence.jsonl"


def default_log_path() -> Path:
    """``$POET_HOME/evidence/load-evidence.jsonl`` (``.poet/`` in the current directory by default)."""
    from poetkb.paths import work_dir

    return work_dir() / "evidence" / LOG_NAME


def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plan_record(plan: LoadPlan, *, profile_path: str | None, scenarios: list[str] | None = None) -> dict[str, Any]:
    """The log record of a generated plan."""
    return {
        "timestamp": _timestamp(), "service": plan.service,
        "profile": {"path": profile_path, "fingerprint": plan.profile_fingerprint},
        "scenarios": scenarios or [s.name for s in plan.scenarios], "interpretation": None,
        "outcome": "plan-generated",
    }


def interpretation_record(result: Interpretation, *, profile_path: str | None) -> dict[str, Any]:
    """The log record of an interpretation; outcome ``issues-detected`` unless every gating check passed."""
    return {
        "timestamp": _timestamp(), "service": result.service,
        "profile": {"path": profile_path, "fingerprint": result.profile_fingerprint},
        "scenarios": [result.scenario],
        "interpretation": {
            "status": result.status, "metrics": result.metrics_source, "format": result.metrics_format,
            "obligations": result.obligations,
            "verdicts": [{"kind": v.kind, "obligation": v.obligation, "verdict": v.verdict, "gating": v.gating,
                          "narrative": v.narrative} for v in result.verdicts],
            "baseline": result.baseline.model_dump() if result.baseline else None,
            "baseline_recorded": result.baseline_recorded,
        },
        "outcome": "plan-and-interpretation-generated" if result.passed else "issues-detected",
    }


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as one line, atomically with respect to other appending processes."""
    if record.get("outcome") not in OUTCOMES:
        raise InputError(f"evidence log outcome must be one of {', '.join(OUTCOMES)}", field="outcome")
    target = Path(path)
    line = (json.dumps(record, sort_keys=True, separators=(",", ":"), default=str) + "\n").encode()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open the evidence log {target}: {exc.strerror}", path=target,
                         hint="pass --log FILE in a writable directory, or set POET_HOME") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # close a line a crashed writer left open
        view = memoryview(line)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError as exc:
        raise StoreError(f"cannot append to the evidence log {target}: {exc.strerror}", path=target) from exc
    finally:
        os.close(fd)  # closing releases the lock


def read_log(path: str | Path, *, strict: bool = True) -> Iterator[dict[str, Any]]:
    """The records of a log, streamed (a regular file, bounded lines); a damaged line is an error naming it
    (or skipped if not ``strict``)."""
    from poetkb import safefile
    from poetkb.load.metrics import stream_lines
    from poetkb.yamlfile import loads_json

    target = Path(path)
    fh = safefile.open_text(target, limit=1 << 34, display=str(target))
    with fh:
        try:
            for number, line in stream_lines(fh, str(target)):
                if not line.strip():
                    continue
                try:
                    record = loads_json(line, file=str(target), first_line=number)
                except InputError:
                    if strict:
                        raise InputError("damaged record (not complete JSON)", file=target, line=number) from None
                    continue
                yield record
        except UnicodeDecodeError:
            raise InputError("the evidence log is not UTF-8 text", file=target) from None
