"""Service-tier resilience checks beyond the edge: how the service retries a failing dependency.

The dependency records every attempt it receives with the caller's call id and
its arrival time, so attempts per call, the delays between them and the retry
ratio are read from the dependency's side, not from what the service says it
did. These share the service checks' lock and plumbing
(:mod:`poetkb.gates.checks.service`).
"""

from __future__ import annotations

import time
from typing import Any

from poetkb.gates import params as p
from poetkb.gates.checks.base import CollectContext, Outcome, no_evidence, precheck
from poetkb.gates.checks.service import _CAPTURES, _Admin, _bearer, _run, _statuses
from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.probes import Prober, RequestSpec


def collect_retry(ctx: CollectContext, params: p.RetryBackoffBounded) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token({"exp": int(time.time()) + 600})
        fault = state.dependency_url + "/__poet/fault"
        admin.client.delete(fault).raise_for_status()  # a clean attempt log
        admin.client.put(fault, json={"fail_status": params.fail_status}).raise_for_status()
        try:
            specs = [RequestSpec(path=ctx.url("/api/dependency"), headers=_bearer(token), step="call", timeout=5)
                     for _ in range(params.calls)]
            prober.send_many(specs, concurrency=params.concurrency)
            response = admin.client.get(state.dependency_url + "/__poet/attempts")
            response.raise_for_status()
            ctx.notes["attempts"] = response.json().get("attempts", [])[-5000:]
        finally:
            admin.client.delete(fault).raise_for_status()

    _run(ctx, body)


def evaluate_retry(ev: CheckEvidence, params: p.RetryBackoffBounded) -> Outcome:
    expected = (f"with the dependency answering {params.fail_status}, {params.calls} calls make at most "
                f"{params.max_attempts} attempts each, retries at most {params.max_retry_ratio:.0%} of calls (plus "
                f"{params.retry_allowance}), with delays spread by jitter")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    calls, attempts = ev.steps("call"), ev.notes.get("attempts")
    if not calls or not isinstance(attempts, list):
        return no_evidence(expected, "the calls and the dependency's attempt log were not recorded")
    by_call: dict[str, list[float]] = {}
    for attempt in attempts:
        by_call.setdefault(str(attempt.get("call")), []).append(float(attempt.get("t", 0)))
    if not by_call:
        return no_evidence(expected, "the dependency received no attempt: the failure was never exercised")
    retries = sum(len(times) - 1 for times in by_call.values())
    most = max(len(times) for times in by_call.values())
    ordered = [sorted(times) for times in by_call.values()]
    delays = [round((t[i + 1] - t[i]) * 1000, 1) for t in ordered for i in range(len(t) - 1)]
    first = [round((t[1] - t[0]) * 1000, 1) for t in ordered if len(t) > 1]
    allowed = params.max_retry_ratio * len(by_call) + params.retry_allowance
    spread = max(first) - min(first) if len(first) > 1 else None
    details = {"calls_at_dependency": len(by_call), "attempts": len(attempts), "retries": retries,
               "most_attempts": most, "delays_ms": delays[:40], "first_retry_spread_ms": spread,
               "responses": _statuses(calls)}
    observed = (f"{len(by_call)} calls reached the dependency with {len(attempts)} attempts ({retries} retries, "
                f"at most {most} for one call); delays {min(delays, default=0):.0f}-{max(delays, default=0):.0f} ms; "
                f"responses {_statuses(calls)}")
    problems = []
    if most > params.max_attempts:
        problems.append(f"one call made {most} attempts (at most {params.max_attempts})")
    if retries > allowed:
        problems.append(f"{retries} retries for {len(by_call)} calls (budget {allowed:g}): retries are not "
                        "budgeted, so a failing dependency gets more load, not less")
    if spread is not None and spread < params.min_spread_ms:
        problems.append(f"the first-retry delays all fell within {spread:.1f} ms of each other: no jitter")
    if delays and max(delays) < 1.0:
        problems.append("retries came at once, with no backoff")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, len(calls))
    return Outcome("pass", expected, observed, "", details, len(calls))


COLLECTORS: dict[str, Any] = {"retry_backoff_bounded": collect_retry}
EVALUATORS: dict[str, Any] = {"retry_backoff_bounded": evaluate_retry}
