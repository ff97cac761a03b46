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
from poetkb.gates.checks.base import CollectContext, CollectError, Kind, Outcome, declare, no_evidence, precheck
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


# -- a partition between the service and its database ------------------------------------------------------------
def collect_partition(ctx: CollectContext, params: p.PartitionRecovered) -> None:
    import threading

    from poetkb.gates.checks.service import _new_account

    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token({"exp": int(time.time()) + 600})
        try:
            account = _new_account(prober, ctx, token, 100, "setup")
        except CollectError as exc:  # the service is not serving even before the partition: that is the finding
            ctx.notes["setup_error"] = str(exc)
            return
        read = RequestSpec(path=ctx.url(f"/api/accounts/{account}"), headers=_bearer(token), step="before")
        prober.send_many([read] * 4, concurrency=4)
        client_timeout = params.partition_max_s + 3
        admin.service("PUT", "/fault", {"partition_db": True})
        healed = threading.Event()

        def heal() -> None:
            if not healed.is_set():
                healed.set()
                admin.service("PUT", "/fault", {"partition_db": False})
                ctx.notes["healed_at_s"] = round(time.monotonic() - started, 3)

        started = time.monotonic()
        timer = threading.Timer(params.partition_max_s, heal)  # a flawed service must not hold the check forever
        timer.start()
        try:
            during = [RequestSpec(path=ctx.url(f"/api/accounts/{account}"), headers=_bearer(token), step="during",
                                  timeout=client_timeout) for _ in range(params.requests)]
            others = [RequestSpec(path=ctx.url("/api/ping"), headers=_bearer(token), step="independent",
                                  timeout=client_timeout),
                      RequestSpec(path=ctx.url("/live"), step="independent", timeout=client_timeout)]
            prober.send_many(during + others, concurrency=len(during) + len(others))
        finally:
            timer.cancel()
            heal()
        recovered_after = None
        healed_at = time.monotonic()
        for attempt in range(int(params.recovery_s / 0.25) + 1):
            probe = prober.send(RequestSpec(path=ctx.url(f"/api/accounts/{account}"), headers=_bearer(token),
                                            step=f"recovering:{attempt}", timeout=params.recovery_s))
            if probe.status == 200:
                recovered_after = round(time.monotonic() - healed_at, 3)
                break
            if time.monotonic() - healed_at > params.recovery_s:
                break
            time.sleep(0.25)
        ctx.notes["recovered_after_s"] = recovered_after
        after = RequestSpec(path=ctx.url(f"/api/accounts/{account}"), headers=_bearer(token), step="after")
        prober.send_many([after] * params.after, concurrency=4)

    _run(ctx, body, timeout=params.partition_max_s + 3)


def evaluate_partition(ev: CheckEvidence, params: p.PartitionRecovered) -> Outcome:
    expected = (f"with the database partitioned, requests that need it fail within {params.max_latency_ms:g} ms and "
                f"requests that do not are served; after the heal the service serves again within "
                f"{params.recovery_s:g} s, without a restart")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    if ev.notes.get("setup_error"):
        setup = ev.steps("setup")
        return Outcome("fail", expected, f"before the partition: {_statuses(setup)}", "the service was not serving "
                       f"even before the partition ({ev.notes['setup_error']})", {"setup": _statuses(setup)},
                       len(setup))
    before, during, others, after = ev.steps("before"), ev.steps("during"), ev.steps("independent"), ev.steps("after")
    recovered = ev.notes.get("recovered_after_s")
    if not before or not during or not others or "recovered_after_s" not in ev.notes:
        return no_evidence(expected, "the partition experiment was not recorded whole")
    worst = max((e.elapsed_ms or 1e9) for e in during)
    details = {"before": _statuses(before), "during": _statuses(during), "worst_during_ms": round(worst, 1),
               "independent": _statuses(others), "recovered_after_s": recovered, "after": _statuses(after),
               "healed_at_s": ev.notes.get("healed_at_s")}
    observed = (f"during: {_statuses(during)}, worst {worst:.0f} ms; others: {_statuses(others)}; recovered "
                f"{'after ' + str(recovered) + ' s' if recovered is not None else 'never'}; after: {_statuses(after)}")
    count = len(before) + len(during) + len(others) + len(after)
    if any(e.status != 200 for e in before):
        return Outcome("fail", expected, observed, f"the service failed before the partition ({_statuses(before)})",
                       details, count)
    problems = []
    hung = [e for e in during if e.status is None or (e.elapsed_ms or 1e9) > params.max_latency_ms]
    if hung:
        problems.append(f"{len(hung)} of {len(during)} requests needing the database hung (worst {worst:.0f} ms, "
                        f"limit {params.max_latency_ms:g}): no deadline on a query into a silent network")
    bad_others = [e for e in others if e.status != 200 or (e.elapsed_ms or 1e9) > params.max_latency_ms]
    if bad_others:
        problems.append(f"requests that do not need the database suffered ({_statuses(others)})")
    if recovered is None:
        problems.append(f"the service did not serve again within {params.recovery_s:g} s of the heal")
    elif any(e.status != 200 for e in after):
        problems.append(f"after recovery {_statuses(after)}: broken connections were not all replaced")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, count)
    return Outcome("pass", expected, observed, "", details, count)


#: the check kinds this module implements, each declared once with its parameters, evidence, collector and
#: evaluator (:mod:`poetkb.gates.checks.registry` finds them; ``poet gate kinds`` lists them)
KINDS = declare(
    Kind("retry_backoff_bounded", p.RetryBackoffBounded, ("http_capture",),
         collect=collect_retry, evaluate=evaluate_retry, traffic=False, service=True),
    Kind("partition_recovered", p.PartitionRecovered, ("http_capture",),
         collect=collect_partition, evaluate=evaluate_partition, traffic=False, service=True),
)
