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

from poetkb import store
from poetkb.gates.schema import GateReport

if TYPE_CHECKING:
    import sqlite_utils

    from poetkb.knowledge import Knowledge


def rows(report: GateReport, *, report_path: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``gate_runs`` row and the ``gate_results`` rows that record one report."""
    target = report.target
    run = {
        "run_id": report.run_id, "mode": report.mode, "started_at": report.started_at,
        "finished_at": report.finished_at, "duration_s": report.duration_s,
        "target": target.base_url if target else None, "proxy": target.proxy if target else None,
        "variant": target.variant if target else None, "selection": report.selection.model_dump_json(),
        "verdict": report.verdict, "exit_code": report.exit_code, "coverage": report.summary.coverage,
        "counts": report.summary.model_dump_json(), "evidence_dir": report.evidence_dir, "report_path": report_path,
        "manifest_sha256": report.manifest_sha256,
    }
    results = [{"run_id": report.run_id, "obligation_id": ob.obligation_id, "verdict": ob.verdict,
                "diagnosis": ob.diagnosis,
                "checks": json.dumps([{"check_id": c.check_id, "kind": c.kind, "verdict": c.verdict}
                                      for c in ob.checks])}
               for ob in report.obligations]
    return run, results


def record_report(kb: Knowledge, report: GateReport, *, report_path: str | None = None) -> None:
    """Record one run and its obligation verdicts in ``kb``, in one transaction."""
    kb.record_gate_run(*rows(report, report_path=report_path))


def record(db: sqlite_utils.Database, report: GateReport, *, report_path: str | None = None) -> None:
    """Insert (or replace) one run and its obligation verdicts, in one transaction (on a bare connection)."""
    store.record_gate_run(db, *rows(report, report_path=report_path))


#: kept under their old names for callers holding a bare connection; ``Knowledge`` has each as a method
runs = store.gate_runs
last_verdicts = store.last_verdicts
recorded_digest = store.recorded_manifest_digest
recorded_run = store.gate_run
