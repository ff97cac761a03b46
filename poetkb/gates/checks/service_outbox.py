"""Service-tier outbox check: an order and its event are never separated, even through a broker outage.

The broker is the dependency sidecar's ``/publish`` endpoint, which records
every event it acknowledges; the committed orders are read from PostgreSQL.
So what reached the broker is compared with what the database committed,
neither as the service reports it. Shares the service checks' lock and
plumbing (:mod:`poetkb.gates.checks.service`).
"""

from __future__ import annotations

import time
from typing import Any

from poetkb.gates import params as p
from poetkb.gates.checks.base import CollectContext, Kind, Outcome, declare, listing, no_evidence, precheck
from poetkb.gates.checks.service import _CAPTURES, _Admin, _bearer, _db, _json, _new_account, _run, _statuses
from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.probes import Prober, RequestSpec


def collect_outbox(ctx: CollectContext, params: p.OutboxNoLoss) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token({"exp": int(time.time()) + 600})
        account = _new_account(prober, ctx, token, 0, "setup")
        ctx.notes["account"] = account
        fault = state.dependency_url + "/__poet/fault"
        admin.client.put(fault, json={"broker_down": True}).raise_for_status()
        try:
            good, headers = _json({"account_id": account})
            bad, _ = _json({"account_id": 0})  # no such account: the insert fails and rolls back
            specs = [RequestSpec(method="POST", path=ctx.url("/api/orders"), headers={**headers, **_bearer(token)},
                                 body=good, step="order") for _ in range(params.orders)]
            specs += [RequestSpec(method="POST", path=ctx.url("/api/orders"), headers={**headers, **_bearer(token)},
                                  body=bad, step="failed_order") for _ in range(params.failed_orders)]
            prober.send_many(specs, concurrency=4)
        finally:
            admin.client.delete(fault).raise_for_status()
        committed = [int(r[0]) for r in _db(state.dsn, "SELECT id FROM orders WHERE account_id = %s ORDER BY id",
                                            (account,))]
        ctx.notes["committed"] = committed
        wanted = {f"order-{order}" for order in committed}
        started, events = time.monotonic(), []
        while time.monotonic() - started < params.drain_s:
            response = admin.client.get(state.dependency_url + "/__poet/events")
            response.raise_for_status()
            events = [e for e in response.json().get("events", []) if e.get("account_id") in (account, 0)]
            if wanted <= {e.get("event_id") for e in events}:
                break
            time.sleep(0.25)
        ctx.notes["drained_after_s"] = round(time.monotonic() - started, 2)
        ctx.notes["events"] = events
        ctx.notes["unpublished"] = int(_db(state.dsn, "SELECT count(*) FROM outbox WHERE published_at IS NULL "
                                           "AND (payload->>'account_id')::bigint = %s", (account,))[0][0])

    _run(ctx, body)


def evaluate_outbox(ev: CheckEvidence, params: p.OutboxNoLoss) -> Outcome:
    expected = (f"{params.orders} orders taken while the broker is down each have their event at the broker within "
                f"{params.drain_s:g} s of its return; no event for the {params.failed_orders} orders that rolled "
                "back; no outbox row left unpublished")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    orders, failed = ev.steps("order"), ev.steps("failed_order")
    committed, events = ev.notes.get("committed"), ev.notes.get("events")
    if not orders or not isinstance(committed, list) or not isinstance(events, list):
        return no_evidence(expected, "the orders, the database rows and the broker's events were not all recorded")
    acked = [e.body_json.get("id") for e in orders if e.status == 201 and isinstance(e.body_json, dict)]
    received = {str(e.get("event_id")) for e in events}
    missing = [order for order in committed if f"order-{order}" not in received]
    phantom = sorted(received - {f"order-{order}" for order in committed})
    unacked_committed = [order for order in acked if order not in committed]
    details = {"orders": _statuses(orders), "failed_orders": _statuses(failed), "committed": len(committed),
               "events": len(events), "missing": missing[:20], "phantom": phantom[:20],
               "unpublished": ev.notes.get("unpublished"), "drained_after_s": ev.notes.get("drained_after_s")}
    observed = (f"orders {_statuses(orders)}, failing orders {_statuses(failed)}; {len(committed)} committed, "
                f"{len(received)} distinct events at the broker after {ev.notes.get('drained_after_s')} s, "
                f"{ev.notes.get('unpublished')} unpublished")
    count = len(orders) + len(failed)
    if not committed:
        return Outcome("fail", expected, observed, "no order was committed while the broker was down: the service "
                       "depends on the broker to take orders", details, count)
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {len(committed)} committed orders never had their event published "
                        f"({listing(missing, 4)}): events were lost during the broker outage")
    if phantom:
        problems.append(f"events for orders that were never committed: {listing(phantom, 4)}")
    if unacked_committed:
        problems.append(f"orders answered 201 are not in the database: {listing(unacked_committed, 4)}")
    if ev.notes.get("unpublished"):
        problems.append(f"{ev.notes['unpublished']} outbox rows were still unpublished after {params.drain_s:g} s")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, count)
    return Outcome("pass", expected, observed, "", details, count)


#: the check kinds this module implements, each declared once with its parameters, evidence, collector and
#: evaluator (:mod:`poetkb.gates.checks.registry` finds them; ``poet gate kinds`` lists them)
KINDS = declare(
    Kind("outbox_no_loss", p.OutboxNoLoss, ("http_capture",),
         collect=collect_outbox, evaluate=evaluate_outbox, traffic=False, service=True),
)
