"""Every training scenario end to end, on the real demo: start, check (unhealthy), the documented fix, check
(healthy), stop. Prints one row per scenario with the verdicts and the time each step took.

The normal test run covers every edge scenario (tests/test_chaos_training.py) and one service scenario
(tests/test_chaos_service.py); this script runs the whole library, edge and service tier, in one
go, which takes minutes on a 2-core machine. The edge runs NGINX (or ``--proxy haproxy``) and the service
tier real PostgreSQL, both on loopback in a private POET_HOME and POET_DB, brought down at the end.

    .venv/bin/python benchmarks/chaos_scenarios.py [--base-port 22000] [--scenario ID ...] [--proxy nginx] [--plan]

``--plan`` also runs the experiments ``poet chaos plan`` derives for a service-tier change (a migration and a
connection-pool change), then the experiment of every other service-tier fault template (``SERVICE_TEMPLATES``
in poetkb/chaos/plan.py: what the plan derives for that obligation whatever the change), against the good
service tier, and prints their status.

Exit 0 when every scenario behaved as its guide says (unhealthy when started, healthy after the fix, the demo
back in its good configuration after stop), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run_one(kb: Any, scenario: Any, base_port: int, proxy: str) -> dict[str, Any]:
    from poetkb import demo
    from poetkb.chaos import training
    from poetkb.demo.service import tier

    row: dict[str, Any] = {"scenario": scenario.id, "tier": scenario.tier, "ok": False, "times": {}}
    t0 = time.monotonic()
    training.start(scenario.id)
    row["times"]["start"] = time.monotonic() - t0
    t0 = time.monotonic()
    first = training.check(kb)
    row["times"]["check"] = time.monotonic() - t0
    row["unhealthy"] = [d for d in first.details if not d.endswith(": pass")]
    t0 = time.monotonic()
    if scenario.tier == "service":
        tier.up(variant="good", base_port=base_port)  # the documented fix
    else:
        demo.up(proxy=proxy, variant="good", base_port=base_port)
    row["times"]["fix"] = time.monotonic() - t0
    t0 = time.monotonic()
    second = training.check(kb)
    row["times"]["recheck"] = time.monotonic() - t0
    t0 = time.monotonic()
    training.stop()
    row["times"]["stop"] = time.monotonic() - t0
    if scenario.tier == "service":
        state = tier.load_service_state()
        restored = state is not None and state.variant == "good"
    else:
        edge = demo.load_state()
        restored = edge is not None and edge.variant == "good"
    row.update(first_healthy=first.healthy, second_healthy=second.healthy, restored=restored)
    row["ok"] = (not first.healthy) and second.healthy and restored
    return row


PLANNED_CHANGES = ["add lock_timeout to the online migration",
                   "shorten the database connection pool checkout timeout"]


def run_plans(kb: Any, base_port: int) -> list[dict[str, Any]]:
    """Run every service-tier experiment `poet chaos plan` derives for PLANNED_CHANGES, then one per remaining
    service fault template; one row each."""
    from poetkb.chaos.plan import SERVICE_TEMPLATES, plan_experiments, service_experiment_for
    from poetkb.chaos.runner import RunOptions, run_experiment
    from poetkb.demo.service import tier

    tier.up(variant="good", base_port=base_port)
    rows = []
    seen: set[str] = set()
    planned = [(item.obligation_id, item.experiment) for change in PLANNED_CHANGES
               for item in plan_experiments(kb, change, top=3).items]
    for oid, (failure, actions, *health) in SERVICE_TEMPLATES.items():
        planned.append((oid, service_experiment_for(oid, oid, failure, actions, "the benchmark",
                                                    health[0] if health else None)))
    for oid, exp in planned:
        if exp is None or oid in seen or "${service." not in exp.model_dump_json():
            continue
        seen.add(oid)
        t0 = time.monotonic()
        journal = run_experiment(exp, kb=kb, options=RunOptions(install_signals=False))
        row = {"scenario": f"plan:{oid}", "tier": "service", "ok": journal.status == "completed",
               "unhealthy": [] if journal.status == "completed" else [f"{journal.status}: {journal.reason}"],
               "times": {"run": time.monotonic() - t0}}
        rows.append(row)
        print(f"{row['scenario']:<40} {'ok' if row['ok'] else 'NOT OK':<7} {journal.status} "
              f"{row['times']['run']:.1f}s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-port", type=int, default=22000)
    parser.add_argument("--proxy", choices=["nginx", "haproxy"], default="nginx")
    parser.add_argument("--scenario", action="append", help="run only this scenario (repeatable)")
    parser.add_argument("--plan", action="store_true", help="also run planned service-tier experiments")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="poet-chaos-scenarios-"))
    os.environ["POET_HOME"] = str(home / "home")
    os.environ["POET_DB"] = str(home / "kb.sqlite")

    import poetkb
    from poetkb import demo
    from poetkb.chaos.training import load_scenarios
    from poetkb.demo.service import tier

    scenarios = [s for s in load_scenarios().values()
                 if (not args.scenario or s.id in args.scenario) and args.proxy in s.proxies]
    rows = []
    kb = poetkb.open()
    started = time.monotonic()
    try:
        if any(s.tier == "edge" for s in scenarios):
            demo.up(proxy=args.proxy, variant="good", base_port=args.base_port)
        if any(s.tier == "service" for s in scenarios):
            tier.up(variant="good", base_port=args.base_port)
        for scenario in scenarios:
            try:
                row = run_one(kb, scenario, args.base_port, args.proxy)
            except Exception as exc:  # noqa: BLE001 - one broken scenario is a row, not the end of the run
                row = {"scenario": scenario.id, "tier": scenario.tier, "ok": False, "error": str(exc), "times": {}}
                from poetkb.chaos import training

                if training.active() is not None:
                    training.stop()
            rows.append(row)
            times = " ".join(f"{k} {v:.1f}s" for k, v in row["times"].items())
            print(f"{row['scenario']:<24} {row['tier']:<8} {'ok' if row['ok'] else 'NOT OK':<7} "
                  f"unhealthy at start: {', '.join(row.get('unhealthy', [])) or row.get('error', '-')}; {times}",
                  flush=True)
        if args.plan:
            rows.extend(run_plans(kb, args.base_port))
    finally:
        kb.close()
        demo.down()
    good = sum(1 for r in rows if r["ok"])
    print(f"\n{good} of {len(rows)} scenarios: unhealthy when started, healthy after the documented fix, restored "
          f"by stop ({time.monotonic() - started:.0f} s in all, {os.cpu_count()} cores, {args.proxy})")
    return 0 if good == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
