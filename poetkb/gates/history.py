"""Gate runs recorded in the knowledge base (state tables ``gate_runs`` and ``gate_results``, migrations 003, 006).

The report files under ``.poet/reports/`` are the full record; the tables keep
the summary of every run and each obligation's verdict so other features (plans,
ranking, dashboards) can ask "when did this obligation last pass?" with SQL.
They are state tables: rebuilding the knowledge base keeps them.

``gate_runs.manifest_sha256`` (migration 006) is the digest of a run's
``manifest.json`` as the run left it; re-evaluating the evidence compares the
manifest with it (see :func:`recorded_digest`), so editing the manifest, which
covers every other file by its sha256, does not go unnoticed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from poetkb.gates.models import GateReport

if TYPE_CHECKING:
    import sqlite_utils


def record(db: sqlite_utils.Database, report: GateReport, *, report_path: str | None = None) -> None:
    """Insert (or replace) one run and its obligation verdicts, in one transaction."""
    target = report.target
    row = {
        "run_id": report.run_id, "mode": report.mode, "started_at": report.started_at,
        "finished_at": report.finished_at, "duration_s": report.duration_s,
        "target": target.base_url if target else None, "proxy": target.proxy if target else None,
        "variant": target.variant if target else None, "selection": report.selection.model_dump_json(),
        "verdict": report.verdict, "exit_code": report.exit_code, "coverage": report.summary.coverage,
        "counts": report.summary.model_dump_json(), "evidence_dir": report.evidence_dir, "report_path": report_path,
        "manifest_sha256": report.manifest_sha256,
    }
    with db.conn:
        db.table("gate_runs").upsert(row, pk="run_id")
        db.table("gate_results").upsert_all(
            ({"run_id": report.run_id, "obligation_id": ob.obligation_id, "verdict": ob.verdict,
              "diagnosis": ob.diagnosis,
              "checks": json.dumps([{"check_id": c.check_id, "kind": c.kind, "verdict": c.verdict} for c in ob.checks])}
             for ob in report.obligations),
            pk=("run_id", "obligation_id"),
        )


def runs(db: sqlite_utils.Database, *, limit: int = 20) -> list[dict[str, Any]]:
    """The latest runs, newest first."""
    if "gate_runs" not in db.table_names():
        return []
    return list(db.query("select * from gate_runs order by started_at desc, run_id desc limit ?", [limit]))


def last_verdicts(db: sqlite_utils.Database, obligation_id: str, *, limit: int = 10) -> list[dict[str, Any]]:
    """An obligation's verdicts in the latest runs, newest first."""
    if "gate_results" not in db.table_names():
        return []
    return list(db.query(
        "select r.run_id, r.started_at, r.proxy, r.variant, g.verdict, g.diagnosis from gate_results g "
        "join gate_runs r using (run_id) where g.obligation_id = ? order by r.started_at desc limit ?",
        [obligation_id, limit]))


def recorded_digest(db: sqlite_utils.Database, run_id: str) -> str | None:
    """The manifest digest recorded when gate run ``run_id`` collected its evidence; None when there is none
    (an unknown run, an evaluation rather than a run, or a run recorded before digests were kept)."""
    if "gate_runs" not in db.table_names():
        return None
    if "manifest_sha256" not in {c.name for c in db.table("gate_runs").columns}:
        return None
    row = next(iter(db.query("select manifest_sha256 from gate_runs where run_id = ? and mode = 'run'", [run_id])),
               None)
    return row["manifest_sha256"] if row and row["manifest_sha256"] else None


def recorded_run(db: sqlite_utils.Database, run_id: str) -> dict[str, Any] | None:
    """The recorded row of one run (gate run or evaluation), or None."""
    if "gate_runs" not in db.table_names():
        return None
    return next(iter(db.query("select * from gate_runs where run_id = ?", [run_id])), None)
