"""Gate runs recorded in the knowledge base (state tables ``gate_runs`` and ``gate_results``, migration 003).

The report files under ``.poet/reports/`` are the full record; the tables keep
the summary of every run and each obligation's verdict so other features (plans,
ranking, dashboards) can ask "when did this obligation last pass?" with SQL.
They are state tables: rebuilding the knowledge base keeps them.
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
