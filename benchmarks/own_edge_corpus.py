"""Gate every configuration of the own-edge corpus with ``--config --all``, and each broken form with ``--all``.

For each configuration under tests/fixtures/edges/ (expected verdicts in expected.yaml, written by hand):
the correct form must give exactly the expected table (no false ``fail``, the rest ``not-applicable``), and
the broken form must fail the obligation its seeded mistake breaks. Prints one line per run (verdict counts,
bring-up and tear-down time, wall time) and a summary; exits 1 on any mismatch.

    .venv/bin/python benchmarks/own_edge_corpus.py [--only NAME ...] [--json]

Everything runs on loopback in a private POET_HOME; every bring-up is torn down before the next.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from poetkb.gates.schema import Edge

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def _gate(kb: Any, path: Path) -> tuple[Any, dict[str, float]]:
    timing: dict[str, float] = {}

    def seen(edge: Any) -> None:
        timing["up_s"] = edge.started_s
        timing["_edge"] = edge  # type: ignore[assignment]

    t0 = time.perf_counter()
    report = kb.gate(all=True, edge=Edge(config=path), on_edge=seen, record=False, write_reports=False)
    timing["wall_s"] = round(time.perf_counter() - t0, 2)
    edge = timing.pop("_edge", None)
    timing["down_s"] = getattr(edge, "stopped_s", 0.0)
    return report, timing


def run(only: list[str] | None) -> list[dict[str, Any]]:
    from own_edge_corpus import broken_copy, load_expected

    import poetkb

    rows = []
    kb = poetkb.open()
    scratch = Path(tempfile.mkdtemp(prefix="poet-own-edge-"))
    try:
        for name, spec in load_expected().items():
            if only and name not in only:
                continue
            report, timing = _gate(kb, spec["path"])
            verdicts = {o.obligation_id: o.verdict for o in report.obligations}
            wrong = {o: v for o, v in verdicts.items() if v != ("pass" if o in spec["pass"] else "not-applicable")}
            rows.append({"config": name, "form": "correct", **timing, "mismatches": wrong,
                         "counts": report.summary.model_dump()})
            print(_line(rows[-1]), file=sys.stderr)
            fails = spec["broken"]["fails"]
            report, timing = _gate(kb, broken_copy(name, spec, scratch))
            verdicts = {o.obligation_id: o.verdict for o in report.obligations}
            failed = sorted(o for o, v in verdicts.items() if v == "fail")
            rows.append({"config": name, "form": "broken", **timing, "caught": verdicts.get(fails) == "fail",
                         "expected_fail": fails, "failed": failed, "counts": report.summary.model_dump()})
            print(_line(rows[-1]), file=sys.stderr)
    finally:
        kb.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    c = row["counts"]
    head = (f"{row['config']:<22} {row['form']:<8} pass {c['passed']:>2} fail {c['failed']:>2} "
            f"error {c['errors']} no-ev {c['no_evidence']} n/a {c['not_applicable']:>2}  "
            f"up {row.get('up_s', 0):.2f}s down {row.get('down_s', 0):.2f}s gate {row['wall_s']:.1f}s")
    if row["form"] == "correct":
        return head + ("  OK" if not row["mismatches"] else f"  MISMATCH {row['mismatches']}")
    return head + (f"  caught {row['expected_fail']}" if row["caught"] else f"  MISSED (failed: {row['failed']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="one configuration by name (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="poet-home-")
    os.environ["POET_HOME"] = home
    os.environ.setdefault("POET_DB", str(Path(home) / "kb.sqlite"))
    try:
        rows = run(args.only)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    bad = [r for r in rows if r.get("mismatches") or r.get("caught") is False]
    ups = [r["up_s"] for r in rows if "up_s" in r]
    downs = [r["down_s"] for r in rows if "down_s" in r]
    print(f"{len(rows)} runs, {len(bad)} wrong; bring-up max {max(ups, default=0):.2f} s, tear-down max "
          f"{max(downs, default=0):.2f} s; gate time total {sum(r['wall_s'] for r in rows):.0f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
