"""Service-tier migration checks: backward-compatible expand steps, re-runnable migrations, schema drift.

These drive the demo service's staged online migrations through its admin API
(``POST /__poet/migrate``, ``POST /__poet/migrate/down``) and read the schema
straight from PostgreSQL's catalog, so the service cannot vouch for itself.
Every check leaves the schema as it found it: the migration it applied is
reverted and a hand-made change is dropped, whatever happens. They share the
service checks' lock and plumbing (:mod:`poetkb.gates.checks.service`).
"""

from __future__ import annotations

import threading
from typing import Any

from poetkb.gates import params as p
from poetkb.gates.checks.base import CollectContext, Kind, Outcome, declare, listing, no_evidence, precheck
from poetkb.gates.checks.service import _CAPTURES, _Admin, _bearer, _db, _json, _new_account, _run, _statuses
from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.probes import Prober, RequestSpec


# -- backward compatibility: the running release against the migrated schema --------------------------------
def _smoke(ctx: CollectContext, token: str, accounts: list[int], step: str, rounds: int) -> list[RequestSpec]:
    """What the running release does: create and read accounts, increment, transfer, place an order."""
    specs: list[RequestSpec] = []
    auth = _bearer(token)
    for index in range(rounds):
        body, headers = _json({"owner": f"gate-{ctx.nonce}", "balance": 10})
        # one direction only: the smoke must not deadlock with itself (that is data.deadlock.retried's concern)
        transfer, _ = _json({"from": accounts[0], "to": accounts[1], "amount": 1})
        order, _ = _json({"account_id": accounts[0]})
        specs += [
            RequestSpec(method="POST", path=ctx.url("/api/accounts"), headers={**headers, **auth}, body=body,
                        step=f"{step}:create"),
            RequestSpec(path=ctx.url(f"/api/accounts/{accounts[index % 2]}"), headers=auth, step=f"{step}:read"),
            RequestSpec(method="POST", path=ctx.url(f"/api/accounts/{accounts[0]}/increment"), headers=auth,
                        step=f"{step}:increment"),
            RequestSpec(method="POST", path=ctx.url("/api/transfers"), headers={**headers, **auth}, body=transfer,
                        step=f"{step}:transfer"),
            RequestSpec(method="POST", path=ctx.url("/api/orders"), headers={**headers, **auth}, body=order,
                        step=f"{step}:order"),
        ]
    return specs


def collect_backward_compatible(ctx: CollectContext, params: p.MigrationBackwardCompatible) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token()
        accounts = [_new_account(prober, ctx, token, 1000, "setup") for _ in range(2)]
        rounds = max(1, params.requests // 5)
        ctx.notes["initial_revert"] = admin.service("POST", "/migrate/down", {"name": params.migration})
        try:
            prober.send_many(_smoke(ctx, token, accounts, "before", rounds), concurrency=params.concurrency)
            outcome: dict[str, Any] = {}

            def migrate() -> None:
                outcome.update(admin.service("POST", "/migrate", {"name": params.migration}))

            runner = threading.Thread(target=migrate, daemon=True)
            runner.start()
            prober.send_many(_smoke(ctx, token, accounts, "during", rounds), concurrency=params.concurrency)
            runner.join(timeout=30)
            ctx.notes["migration"] = outcome
            prober.send_many(_smoke(ctx, token, accounts, "after", rounds), concurrency=params.concurrency)
        finally:
            ctx.notes["reverted"] = admin.service("POST", "/migrate/down", {"name": params.migration})

    _run(ctx, body)


def evaluate_backward_compatible(ev: CheckEvidence, params: p.MigrationBackwardCompatible) -> Outcome:
    expected = (f"with migration {params.migration} applied under traffic, the running release's requests "
                "(create, read, increment, transfer, order) keep succeeding, during and after it")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    before, during, after = ev.steps("before"), ev.steps("during"), ev.steps("after")
    migration = ev.notes.get("migration")
    if not before or not after or not isinstance(migration, dict):
        return no_evidence(expected, "the traffic around the migration was not recorded whole")

    def failed(exchanges: list[Any]) -> list[Any]:
        return [e for e in exchanges if e.status is None or e.status >= 400]

    details = {"before": _statuses(before), "during": _statuses(during), "after": _statuses(after),
               "migration": migration}
    observed = (f"before: {_statuses(before)}; during: {_statuses(during)}; after: {_statuses(after)}; migration "
                f"{'applied' if migration.get('applied') else 'not applied: ' + str(migration.get('error', '?'))}")
    total = len(before) + len(during) + len(after)
    if failed(before):
        return Outcome("fail", expected, observed, "the release's requests failed even before the migration ("
                       f"{_statuses(failed(before))}), so the experiment proves nothing", details, total)
    if not migration.get("applied"):
        return Outcome("fail", expected, observed, f"the migration did not apply ({migration.get('error', '?')})",
                       details, total)
    broken = failed(during) + failed(after)
    if broken:
        kinds = sorted({e.step.split(":", 1)[1] for e in broken})
        return Outcome("fail", expected, observed, f"the running release broke on the migrated schema: "
                       f"{len(broken)} of {len(during) + len(after)} requests failed ({listing(kinds, 5)}), e.g. "
                       f"{broken[0].describe()}: the migration drops or renames what the release still uses",
                       details, total)
    return Outcome("pass", expected, observed, "", details, total)


# -- re-runnable: killed after each step, run again ------------------------------------------------------------
_SHAPE_SQL = {
    "columns": "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || "
               "coalesce(column_default, '') FROM information_schema.columns WHERE table_schema = 'public' "
               "ORDER BY 1",
    "indexes": "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
    "invalid_indexes": "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE NOT i.indisvalid ORDER BY 1",
}


def _shape(dsn: str, migration: str) -> dict[str, Any]:
    """The public schema as the catalog says, and whether the version table names ``migration``."""
    shape: dict[str, Any] = {key: [row[0] for row in _db(dsn, sql)] for key, sql in _SHAPE_SQL.items()}
    shape["recorded"] = bool(_db(dsn, "SELECT 1 FROM schema_migrations WHERE name = %s", (migration,)))
    return shape


def collect_idempotent(ctx: CollectContext, params: p.MigrationIdempotent) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        name = params.migration
        admin.service("POST", "/migrate/down", {"name": name})
        try:
            clean = admin.service("POST", "/migrate", {"name": name})
            ctx.notes["clean_run"] = clean
            ctx.notes["target"] = _shape(state.dsn, name)
            runs: list[dict[str, Any]] = []
            for step in range(1, int(clean.get("steps", 0)) + 1):
                admin.service("POST", "/migrate/down", {"name": name})
                killed = admin.service("POST", "/migrate", {"name": name, "interrupt_after": step})
                rerun = admin.service("POST", "/migrate", {"name": name})
                runs.append({"killed_after_step": step, "interrupted": killed, "rerun": rerun,
                             "shape": _shape(state.dsn, name)})
            ctx.notes["runs"] = runs
        finally:
            ctx.notes["reverted"] = admin.service("POST", "/migrate/down", {"name": name})

    _run(ctx, body)


def evaluate_idempotent(ev: CheckEvidence, params: p.MigrationIdempotent) -> Outcome:
    expected = (f"migration {params.migration}, killed after each of its steps and run again, reaches the schema "
                "of an uninterrupted run with its version recorded and no invalid index")
    if ev.collect_error:
        return precheck(ev, expected, []) or no_evidence(expected, "collection failed")
    clean, target, runs = ev.notes.get("clean_run"), ev.notes.get("target"), ev.notes.get("runs")
    if not isinstance(clean, dict) or not isinstance(target, dict) or not isinstance(runs, list) or not runs:
        return no_evidence(expected, "the interrupted runs were not recorded")
    details: dict[str, Any] = {"steps": clean.get("steps"), "runs": len(runs)}
    if not clean.get("applied") or not target.get("recorded"):
        return Outcome("fail", expected, f"the uninterrupted run: {clean}", "the migration did not apply even "
                       "uninterrupted", details, len(runs))
    problems = []
    for run in runs:
        step, rerun, shape = run["killed_after_step"], run.get("rerun") or {}, run.get("shape") or {}
        if run.get("interrupted", {}).get("applied"):
            problems.append(f"after step {step}: the kill did not interrupt the migration")
        elif not rerun.get("applied"):
            problems.append(f"killed after step {step}, the re-run failed ({rerun.get('error', '?')})")
        elif not shape.get("recorded"):
            problems.append(f"killed after step {step}, the re-run left no version record")
        elif shape.get("columns") != target.get("columns") or shape.get("indexes") != target.get("indexes"):
            extra = sorted(set(shape.get("columns", []) + shape.get("indexes", []))
                           ^ set(target.get("columns", []) + target.get("indexes", [])))
            problems.append(f"killed after step {step}, the re-run ended at another schema ({listing(extra, 2)})")
        elif shape.get("invalid_indexes"):
            problems.append(f"killed after step {step}, invalid indexes were left: "
                            f"{listing(shape['invalid_indexes'], 3)}")
    details["problems"] = problems
    observed = (f"{clean.get('steps')} steps; killed after each and re-run: "
                f"{sum(1 for r in runs if (r.get('rerun') or {}).get('applied'))} of {len(runs)} re-runs applied")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems[:3]) + (
            f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""), details, len(runs))
    return Outcome("pass", expected, observed, "", details, len(runs))


# -- drift: the live schema against the one the migrations make ----------------------------------------------
def _ddl(dsn: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SET lock_timeout = '5s'")
        conn.execute(sql)


def collect_drift(ctx: CollectContext, params: p.SchemaDriftDetected) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        column, index = f"poet_drift_{ctx.nonce}"[:60], f"poet_drift_{ctx.nonce}_idx"[:60]
        ctx.notes["clean"] = admin.service("GET", "/schema/drift")
        ctx.notes["hand_made"] = [f"column accounts.{column}", f"index {index} on orders"]
        try:
            _ddl(state.dsn, f'ALTER TABLE accounts ADD COLUMN "{column}" text')
            _ddl(state.dsn, f'CREATE INDEX "{index}" ON orders (created_at)')
            ctx.notes["changed"] = admin.service("GET", "/schema/drift")
        finally:
            _ddl(state.dsn, f'DROP INDEX IF EXISTS "{index}"')
            _ddl(state.dsn, f'ALTER TABLE accounts DROP COLUMN IF EXISTS "{column}"')
        ctx.notes["restored"] = admin.service("GET", "/schema/drift")
        ctx.notes["names"] = [column, index]

    _run(ctx, body)


def evaluate_drift(ev: CheckEvidence, params: p.SchemaDriftDetected) -> Outcome:
    expected = ("the drift report is empty on the migrated schema, names a column and an index added by hand, "
                "and is empty again once they are dropped")
    if ev.collect_error:
        return precheck(ev, expected, []) or no_evidence(expected, "collection failed")
    clean, changed, restored = ev.notes.get("clean"), ev.notes.get("changed"), ev.notes.get("restored")
    names = ev.notes.get("names")
    if not all(isinstance(x, dict) for x in (clean, changed, restored)) or not isinstance(names, list):
        return no_evidence(expected, "the three drift reports were not recorded")
    assert isinstance(clean, dict) and isinstance(changed, dict) and isinstance(restored, dict)
    found = [str(line) for line in changed.get("drift", [])]
    missed = [name for name in names if not any(name in line for line in found)]
    details = {"clean": clean.get("drift"), "changed": found, "restored": restored.get("drift"), "missed": missed}
    observed = (f"clean: {len(clean.get('drift', []))} differences; after the hand-made change: {len(found)} "
                f"({listing(found, 3)}); restored: {len(restored.get('drift', []))}")
    problems = []
    if clean.get("drift"):
        problems.append(f"drift reported on the migrated schema: {listing(clean['drift'], 3)}")
    if missed:
        problems.append(f"the hand-made change went unreported: {listing(missed, 2)} not in the report")
    if restored.get("drift"):
        problems.append(f"drift still reported after the change was dropped: {listing(restored['drift'], 3)}")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, 3)
    return Outcome("pass", expected, observed, "", details, 3)


#: the check kinds this module implements, each declared once with its parameters, evidence, collector and
#: evaluator (:mod:`poetkb.gates.checks.registry` finds them; ``poet gate kinds`` lists them)
KINDS = declare(
    Kind("migration_backward_compatible", p.MigrationBackwardCompatible, ("http_capture",),
         collect=collect_backward_compatible, evaluate=evaluate_backward_compatible, traffic=False, service=True),
    Kind("migration_idempotent", p.MigrationIdempotent, ("http_capture",),
         collect=collect_idempotent, evaluate=evaluate_idempotent, traffic=False, service=True),
    Kind("schema_drift_detected", p.SchemaDriftDetected, ("http_capture",),
         collect=collect_drift, evaluate=evaluate_drift, traffic=False, service=True),
)
