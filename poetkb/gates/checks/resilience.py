"""Resilience checks: bounded latency under a hanging upstream, load shedding, reloads under traffic."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from poetkb.gates import params as p
from poetkb.gates.checks.base import (
    CollectContext,
    CollectError,
    Kind,
    Outcome,
    declare,
    listing,
    no_evidence,
    path_only,
    plural,
    precheck,
)
from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.probes import RequestSpec
from poetkb.gates.records import HttpExchange

#: the most requests one reload worker sends, whatever the duration
MAX_PER_WORKER = 2_000


def _outcomes(exchanges: list[HttpExchange]) -> Counter[str]:
    return Counter(str(e.status) if e.response else (e.error_type or "error") for e in exchanges)


def _ok(ex: HttpExchange) -> bool:
    return ex.response is not None and 200 <= ex.response.status < 400


# -- latency_bounded_under_fault ---------------------------------------------------------------------
def collect_latency(ctx: CollectContext, params: p.LatencyBoundedUnderFault) -> None:
    """Requests on every path through every vantage while the fault lasts; or, with ``pinned_to``, one URI the
    hash sends to that upstream (how a ten-second default timeout is waited out once, beside other checks).

    Not covered: a timeout of a location the catalog does not name (the check knows the demo's locations only
    through its parameters; on your own edge the plan points it at your routes).
    """
    timeout = min(30.0, max(2.0, params.max_latency_ms * 2 / 1000))
    ctx.notes["client_timeout_s"] = timeout
    paths = [params.path, *params.also_paths]
    fault = params.fault
    if not fault.paths:
        fault = fault.model_copy(update={"paths": [path_only(x) for x in paths]})
    if params.pinned_to:
        _latency_pinned(ctx, params, fault, timeout)
        return
    probers = [ctx.prober, *(ctx.vantage_prober(v) for v in params.also_via)]
    with ctx.fault(fault):
        # every path through every vantage gets requests: a timeout widened in one location only is seen there
        threads = []
        for k, prober in enumerate(probers):
            specs = [RequestSpec(path=ctx.url(paths[i % len(paths)], f"-{k}-{i}"), step=f"load:{k}.{i + 1}",
                                 timeout=timeout) for i in range(max(params.requests, len(paths)))]
            threads.append(threading.Thread(target=prober.send_many, args=(specs,),
                                            kwargs={"concurrency": params.concurrency}, daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout * (params.requests + len(paths)) + 5.0)


#: how many URIs are tried to find ones the pinned upstream serves (a hash spreads them about evenly)
PIN_TRIES = 24
#: how long the search for pinned URIs may wait for the upstream to come back: a check run just before may have
#: tripped passive health, and the proxy then sends the upstream's keys elsewhere until its quarantine ends
#: (NGINX's fail_timeout defaults to 10 s; HAProxy's checks bring a server back within seconds)
PIN_WAIT_S = 12.0


def _latency_pinned(ctx: CollectContext, params: p.LatencyBoundedUnderFault, fault: p.FaultSpec,
                    timeout: float) -> None:
    """Find URIs of ``params.path`` that the pinned upstream serves, then send them while it misbehaves."""
    chosen: list[str] = []
    deadline, rounds = time.monotonic() + PIN_WAIT_S, 0
    while not chosen:
        rounds += 1
        for i in range(PIN_TRIES):
            url = ctx.url(params.path, f"-pin{i}")
            body = ctx.send("GET", url, nonce=False, step=f"pin:{rounds}.{i + 1}").body_json or {}
            if body.get("upstream") == params.pinned_to:
                chosen.append(url)
                if len(chosen) >= params.requests:
                    break
        if not chosen and time.monotonic() + 1.0 > deadline:
            raise CollectError(f"none of {PIN_TRIES} URIs of {params.path} reached upstream {params.pinned_to} "
                               f"in {rounds} rounds over {PIN_WAIT_S:g} s (quarantined by passive health, or "
                               "not in this pool); the check cannot put its fault in their way")
        if not chosen:
            time.sleep(1.0)
    ctx.notes["pin_rounds"] = rounds
    ctx.notes["pinned"] = chosen
    with ctx.fault(fault):
        specs = [RequestSpec(path=url, step=f"load:{i + 1}", timeout=timeout) for i, url in enumerate(chosen)]
        ctx.send_many(specs, concurrency=len(specs))


def evaluate_latency(ev: CheckEvidence, params: p.LatencyBoundedUnderFault) -> Outcome:
    expected = (f"every request answers within {params.max_latency_ms:g} ms and at least "
                f"{params.min_success_ratio:.0%} succeed while an upstream misbehaves")
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    got = ev.steps("load")
    if not got:
        return no_evidence(expected, "no requests were captured for this check")
    times = sorted(e.elapsed_ms or 0.0 for e in got)
    slow = [e for e in got if (e.elapsed_ms or 0.0) > params.max_latency_ms]
    ok = sum(1 for e in got if _ok(e))
    outcomes = _outcomes(got)
    details = {"requests": len(got), "max_ms": times[-1], "median_ms": times[len(times) // 2], "succeeded": ok,
               "outcomes": dict(outcomes)}
    observed = (f"slowest {times[-1]:.0f} ms, median {times[len(times) // 2]:.0f} ms; "
                f"{listing(f'{k} x{v}' for k, v in outcomes.items())}")
    if slow:
        worst = max(slow, key=lambda e: e.elapsed_ms or 0)
        return Outcome("fail", expected, observed,
                       f"{len(slow)} of {len(got)} requests took longer than {params.max_latency_ms:g} ms "
                       f"(worst {worst.elapsed_ms or 0:.0f} ms, {worst.describe()}): the edge waits on the "
                       "misbehaving upstream instead of timing out and moving on", details, len(got))
    if ok / len(got) < params.min_success_ratio:
        return Outcome("fail", expected, observed,
                       f"only {ok} of {len(got)} requests succeeded although a healthy upstream was available",
                       details, len(got))
    return Outcome("pass", expected, observed, "", details, len(got))


# -- rate_limit_sheds / connection_limit_sheds --------------------------------------------------------
def _bursts(ctx: CollectContext, params: Any, count: int, concurrency: int, timeout: float | None = None,
            together: bool = True) -> None:
    """``count`` requests through the check's vantage and as many through each of ``also_via`` (step
    ``burst:N`` and ``burst:vK.N``): a limit kept per client but applied per virtual host must shed on each of
    them. ``together`` sends all bursts at the same moment (a rate); else one after the other (a connection
    limit, which a few slots shared by all vantages would otherwise fill from one of them only)."""
    vias = list(getattr(params, "also_via", []))
    probers = [ctx.prober, *(ctx.vantage_prober(v) for v in vias)]
    ctx.notes["vantages"] = [f"{v.listener}:{v.via_host or 'default host'}" for v in vias]
    threads = []
    for k, prober in enumerate(probers):
        tag = f"v{k}." if k else ""
        specs = [RequestSpec(path=ctx.url(params.path, f"-{k}-{i}"), step=f"burst:{tag}{i + 1}", timeout=timeout)
                 for i in range(count)]
        threads.append(threading.Thread(target=prober.send_many, args=(specs,), kwargs={"concurrency": concurrency},
                                        daemon=True))
    for thread in threads:
        thread.start()
        if not together:
            thread.join(60.0)
    for thread in threads:
        thread.join(60.0)


def collect_rate(ctx: CollectContext, params: p.RateLimitSheds) -> None:
    if params.settle_s:
        time.sleep(params.settle_s)
    _bursts(ctx, params, params.requests, params.concurrency)


def collect_connections(ctx: CollectContext, params: p.ConnectionLimitSheds) -> None:
    _bursts(ctx, params, params.connections, params.connections, timeout=params.timeout_s, together=False)


def _unshed_vantage(ev: CheckEvidence, got: list[HttpExchange], expect: list[int]) -> str | None:
    """The first vantage through which nothing was shed, when the burst went through several (``also_via``)."""
    names = list(ev.notes.get("vantages") or [])
    if not names:
        return None
    groups = [("the default virtual host", [e for e in got if not e.step.startswith("burst:v")])]
    groups += [(name, [e for e in got if e.step.startswith(f"burst:v{k}.")]) for k, name in enumerate(names, start=1)]
    for name, mine in groups:
        if mine and not any(e.status in expect for e in mine):
            return f"{name} ({len(mine)} requests, none shed)"
    return None


def _shed(ev: CheckEvidence, expect: list[int], min_shed: int, max_ms: float, min_served: int, what: str,
          expected: str) -> Outcome:
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    got = ev.steps("burst")
    if not got:
        return no_evidence(expected, "no requests were captured for this check")
    shed = [e for e in got if e.status in expect]
    served = [e for e in got if _ok(e)]
    other = [e for e in got if e not in shed and e not in served]
    slow_shed = [e for e in shed if (e.elapsed_ms or 0) > max_ms]
    outcomes = _outcomes(got)
    details = {"requests": len(got), "shed": len(shed), "served": len(served), "other": len(other),
               "outcomes": dict(outcomes),
               "max_shed_ms": max((e.elapsed_ms or 0) for e in shed) if shed else None}
    counts = listing(f"{k} x{v}" for k, v in outcomes.items())
    observed = f"{len(shed)} shed, {len(served)} served, {len(other)} other ({counts})"
    if len(shed) < min_shed:
        return Outcome("fail", expected, observed,
                       f"{len(shed)} of {len(got)} requests were shed with {listing(expect)} during {what}: no limit "
                       f"took effect ({listing(f'{k} x{v}' for k, v in outcomes.items())})", details, len(got))
    if slow_shed:
        worst = max(e.elapsed_ms or 0 for e in slow_shed)
        return Outcome("fail", expected, observed,
                       f"{len(slow_shed)} of {len(shed)} shed requests took longer than {max_ms:g} ms (worst "
                       f"{worst:.0f} ms): excess load is queued, not shed", details, len(got))
    if len(served) < min_served:
        return Outcome("fail", expected, observed,
                       f"only {len(served)} of {len(got)} requests were served; the limit sheds everything",
                       details, len(got))
    if other:
        return Outcome("fail", expected, observed,
                       f"{plural(len(other), 'request')} neither served nor shed with {listing(expect)}: "
                       f"{listing(e.describe() for e in other)}", details, len(got))
    unshed = _unshed_vantage(ev, got, expect)
    if unshed:
        return Outcome("fail", expected, observed,
                       f"nothing was shed through {unshed} during {what}: the limit is missing from that virtual "
                       "host or listener", details, len(got))
    return Outcome("pass", expected, observed, "", details, len(got))


def evaluate_rate(ev: CheckEvidence, params: p.RateLimitSheds) -> Outcome:
    expected = (f"a burst of {params.requests} requests ({params.concurrency} at a time) sheds at least "
                f"{params.min_shed} with {listing(params.expect_status)} within {params.max_shed_latency_ms:g} ms")
    return _shed(ev, params.expect_status, params.min_shed, params.max_shed_latency_ms, params.min_served,
                 "a burst", expected)


def evaluate_connections(ev: CheckEvidence, params: p.ConnectionLimitSheds) -> Outcome:
    expected = (f"{params.connections} concurrent slow requests: at least {params.min_shed} shed with "
                f"{listing(params.expect_status)} within {params.max_shed_latency_ms:g} ms")
    return _shed(ev, params.expect_status, params.min_shed, params.max_shed_latency_ms, 1,
                 f"{params.connections} concurrent connections", expected)


# -- reload_no_errors --------------------------------------------------------------------------------
def collect_reload(ctx: CollectContext, params: p.ReloadNoErrors) -> None:
    stop = threading.Event()
    deadline = time.monotonic() + params.duration_s

    def worker(index: int) -> None:
        for n in range(MAX_PER_WORKER):
            if stop.is_set() or time.monotonic() > deadline:
                return
            # a new connection per request: a reload may close idle keep-alive connections, and a client
            # racing that close is not a failed request (HTTP clients retry it); refused connections are
            ctx.prober.send(RequestSpec(path=ctx.url(params.path, f"-{index}-{n}"), step=f"traffic:{index}",
                                        timeout=5.0, headers={"Connection": "close"}))

    threads = [threading.Thread(target=worker, args=(i,), name=f"poet-reload-{i}", daemon=True)
               for i in range(params.concurrency)]
    for thread in threads:
        thread.start()
    reloads: list[dict[str, float | str]] = []
    try:
        for r in range(params.reloads):
            ctx.sleep_until(deadline - params.duration_s + params.duration_s * (r + 1) / (params.reloads + 1))
            t0 = time.time()
            ctx.reload()
            reloads.append({"at": t0, "took_s": round(time.time() - t0, 3)})
    finally:
        ctx.notes["reloads"] = reloads
        for thread in threads:
            thread.join(timeout=params.duration_s + 10)
        stop.set()


def evaluate_reload(ev: CheckEvidence, params: p.ReloadNoErrors) -> Outcome:
    expected = f"no request fails (at most {params.max_errors}) across {plural(params.reloads, 'reload')} under traffic"
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    got = ev.steps("traffic")
    reloads = ev.notes.get("reloads") or []
    if not got:
        return no_evidence(expected, "no requests were captured for this check")
    if len(reloads) < params.reloads:
        return Outcome("error", expected, f"{len(reloads)} reloads happened",
                       f"only {len(reloads)} of {params.reloads} reloads ran, so the check is incomplete")
    failed = [e for e in got if not _ok(e)]
    outcomes = _outcomes(got)
    details = {"requests": len(got), "failed": len(failed), "reloads": reloads, "outcomes": dict(outcomes)}
    counts = listing(f"{k} x{v}" for k, v in outcomes.items())
    observed = f"{len(got)} requests across {plural(len(reloads), 'reload')}: {counts}"
    if len(failed) > params.max_errors:
        first = min(failed, key=lambda e: e.started)
        near = min((abs(first.started - float(r["at"])) for r in reloads), default=None)
        when = f", {near:.2f} s from a reload" if near is not None else ""
        return Outcome("fail", expected, observed,
                       f"{len(failed)} of {len(got)} requests failed during the reloads (first: {first.describe()}"
                       f"{when}): the reload is not graceful", details, len(got))
    return Outcome("pass", expected, observed, "", details, len(got))


#: the check kinds this module implements, each declared once with its parameters, evidence, collector and
#: evaluator (:mod:`poetkb.gates.checks.registry` finds them; ``poet gate kinds`` lists them)
KINDS = declare(
    Kind("latency_bounded_under_fault", p.LatencyBoundedUnderFault, ("http_capture",),
         collect=collect_latency, evaluate=evaluate_latency),
    Kind("rate_limit_sheds", p.RateLimitSheds, ("http_capture",),
         collect=collect_rate, evaluate=evaluate_rate),
    Kind("connection_limit_sheds", p.ConnectionLimitSheds, ("http_capture",),
         collect=collect_connections, evaluate=evaluate_connections),
    Kind("reload_no_errors", p.ReloadNoErrors, ("http_capture",),
         collect=collect_reload, evaluate=evaluate_reload),
)
