"""The journal of a chaos run: every step with its phase, timing, status, output and detail.

It is the run's evidence: the experiment's sha256, the status and exit code, a verdict per obligation,
and each step in the order it ran (the watch loop's rounds included). It is written atomically (a
temporary file in the same directory, fsync, rename), after each phase as well as at the end, so an
interrupted or killed run still leaves a readable journal and never a half-written one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from poetkb.models import PoetModel

Phase = Literal["before", "method", "watch", "guardrail", "rollback", "cleanup", "after"]
RunStatus = Literal["running", "completed", "deviated", "aborted", "failed", "interrupted", "not-steady",
                    "rollback-failed"]

#: exit code of each final status (see docs/chaos.md)
EXIT_CODES: dict[str, int] = {"completed": 0, "deviated": 1, "not-steady": 1, "aborted": 1, "failed": 1,
                              "interrupted": 1, "rollback-failed": 3, "running": 3}


class StepRecord(PoetModel):
    """One step as it ran."""

    phase: Phase
    name: str
    type: str
    status: Literal["ok", "deviated", "failed", "error", "skipped"]
    started_at: float
    duration_ms: float
    detail: str = ""
    output: dict[str, Any] = Field(default_factory=dict)


class Journal(PoetModel):
    """A chaos run (``poet schema chaos-journal``)."""

    schema_version: Literal["poetkb.chaos-journal/1"] = "poetkb.chaos-journal/1"
    run_id: str
    title: str
    experiment_file: str | None = None
    experiment_sha256: str | None = None
    obligations: list[str]
    #: obligation id -> held | deviated | not-judged
    verdicts: dict[str, str] = Field(default_factory=dict)
    started_at: float
    finished_at: float | None = None
    #: the phase the run is in (before, method, rollback, after) or "done"
    phase: str = "start"
    status: RunStatus = "running"
    reason: str = ""
    exit_code: int = 3
    steps: list[StepRecord] = Field(default_factory=list)
    #: passing watch/guardrail probes not listed in ``steps`` once 500 were (failures are always listed)
    watch_ok_omitted: int = 0
    signals: list[str] = Field(default_factory=list)
    #: failed watch rounds in a row that make a deviation (the experiment's ``watch.tolerance_rounds``); each
    #: watch step's output names its round (``watch_round``), so a judge tells a tolerated round from a deviation
    watch_tolerance_rounds: int = Field(default=1, ge=1, le=1000)
    #: sha256 of the journal's canonical JSON without this field, set when the run ends
    #: (:func:`poetkb.chaos.evidence.digest`); ``poet gate evaluate`` refuses a journal that no longer matches
    digest: str | None = None
    #: set for a journal converted from another tool's (``format``, ``file``, ``sha256`` of the original)
    imported_from: dict[str, str] | None = None


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to ``path`` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_journal_path(run_id: str) -> Path:
    """``$POET_HOME/chaos/<run-id>/journal.json`` (``.poet/`` when POET_HOME is unset)."""
    from poetkb.paths import work_dir

    return work_dir() / "chaos" / run_id / "journal.json"
