"""Service-tier perf checks with phases: recovery after a burst, and a short soak.

Both run our own bounded closed-loop load (the prober, every request recorded)
in named phases, turn each phase into the load module's metrics, and judge them
with its interpretation (:func:`poetkb.load.checks.evaluate_check`, kinds
``burst_recovery`` and ``soak_drift``), the same code that judges k6 and
Locust summaries. The soak reads the service process's resident memory, threads
and descriptors through its admin API between phases. They share the service
checks' lock and plumbing (:mod:`poetkb.gates.checks.service`).
"""

from __future__ import annotations

import time
from typing import Any

from poetkb.gates import params as p
from poetkb.gates.checks.base import CollectContext, Kind, Outcome, declare, no_evidence, precheck
from poetkb.gates.checks.service import _CAPTURES, _Admin, _bearer, _percentile, _run, _statuses
from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.probes import Prober, RequestSpec


def _phase(ctx: CollectContext, prober: Prober, token: str, name: str, path: str, count: int, concurrency: int,
           timeout: float = 5.0) -> None:
    specs = [RequestSpec(path=ctx.url(path), headers=_bearer(token), step=name, timeout=timeout)
             for _ in range(count)]
    started = time.monotonic()
    prober.send_many(specs, concurrency=concurrency)
    ctx.notes.setdefault("durations_s", {})[name] = round(time.monotonic() - started, 3)


def _metrics(exchanges: list[Any], duration: float, memory_percent: float | None = None, floor_ms: float = 0.0
             ) -> Any:
    from poetkb.load.metrics import PhaseMetrics

    latencies = [max(e.elapsed_ms, floor_ms) for e in exchanges if e.elapsed_ms is not None] or [floor_ms]
    errors = sum(1 for e in exchanges if e.status is None or e.status >= 400)
    return PhaseMetrics(p50_ms=_percentile(latencies, 50), p90_ms=_percentile(latencies, 90),
                        p95_ms=_percentile(latencies, 95), p99_ms=_percentile(latencies, 99),
                        error_rate=errors / len(exchanges), requests=len(exchanges), duration_s=duration,
                        throughput_rps=round((len(exchanges) - errors) / max(duration, 1e-3), 2),
                        memory_percent=memory_percent)


def _summary(phases: dict[str, Any], source: str) -> Any:
    from poetkb.load.metrics import MetricsSummary

    last = list(phases.values())[-1]
    return MetricsSummary(source=source, format="samples", phases=phases, **last.model_dump())


# -- burst, then back to normal ---------------------------------------------------------------------------------
def collect_burst(ctx: CollectContext, params: p.ServiceBurstRecovery) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token({"exp": int(time.time()) + 600})
        _phase(ctx, prober, token, "steady", "/api/ping", params.steady_requests, params.concurrency)
        # the dependency is slowed and healed through its own admin API: an overloaded service may refuse
        # its admin API too, and the heal must land whatever state the burst left the service in
        fault = state.dependency_url + "/__poet/fault"
        if params.dependency_latency_ms:
            admin.client.put(fault, json={"latency_ms": params.dependency_latency_ms}).raise_for_status()
        try:
            _phase(ctx, prober, token, "burst", "/api/dependency", params.burst_requests, params.burst_concurrency)
        finally:
            admin.client.delete(fault).raise_for_status()
        time.sleep(params.recovery_s)
        _phase(ctx, prober, token, "recovered", "/api/ping", params.steady_requests, params.concurrency)
        # leave the service serving for the next check (bounded: 15 s), whatever this one found
        started = time.monotonic()
        while time.monotonic() - started < 15:
            if prober.send(RequestSpec(path=ctx.url("/live"), step="settle", timeout=2)).status == 200:
                break
            time.sleep(0.25)
        ctx.notes["settled_after_s"] = round(time.monotonic() - started, 2)

    _run(ctx, body)


def evaluate_burst(ev: CheckEvidence, params: p.ServiceBurstRecovery) -> Outcome:
    from poetkb.load.checks import evaluate_check

    expected = (f"{params.recovery_s:g} s after a burst of {params.burst_requests} requests "
                f"{params.burst_concurrency} at a time, p95 at most {params.max_p95_ms:g} ms and errors at most "
                f"{params.max_rate:.0%}; requests refused during the burst refused fast")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    durations = ev.notes.get("durations_s") or {}
    found = {name: ev.steps(name) for name in ("steady", "burst", "recovered")}
    if not all(found.values()) or not all(durations.get(name) for name in found):
        return no_evidence(expected, "the three load phases were not recorded")
    phases = {name: _metrics(found[name], float(durations[name])) for name in found}
    summary = _summary(phases, "the gate's burst on the demo service")
    verdict, observed_fig, _, diagnosis = evaluate_check(
        "burst_recovery", {"recovery_s": params.recovery_s, "phase": "recovered", "max_p95_ms": params.max_p95_ms,
                           "max_rate": params.max_rate}, summary)
    refused = [e for e in found["burst"] if e.status in (429, 503)]
    slow_refusals = [e for e in refused if (e.elapsed_ms or 0) > 1000]
    details = {**observed_fig, "burst": _statuses(found["burst"]), "recovered": _statuses(found["recovered"]),
               "slow_refusals": len(slow_refusals), "settled_after_s": ev.notes.get("settled_after_s")}
    rec = phases["recovered"]
    observed = (f"steady p95 {phases['steady'].p95_ms:.0f} ms; burst {_statuses(found['burst'])}; recovered p95 "
                f"{rec.p95_ms:.0f} ms, errors {rec.error_rate:.1%} ({_statuses(found['recovered'])})")
    count = sum(len(v) for v in found.values())
    if verdict != "pass":
        return Outcome(verdict, expected, observed, diagnosis, details, count)
    if slow_refusals:
        return Outcome("fail", expected, observed, f"{len(slow_refusals)} requests refused during the burst waited "
                       "over 1 s for their refusal", details, count)
    return Outcome("pass", expected, observed, "", details, count)


# -- a short soak ------------------------------------------------------------------------------------------------
def collect_soak(ctx: CollectContext, params: p.ServiceSoakStable) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token({"exp": int(time.time()) + 600})
        figures: dict[str, Any] = {}
        _phase(ctx, prober, token, "warmup", "/api/ping", max(10, params.phase_requests // 2), params.concurrency)
        figures["early_start"] = admin.service("GET", "/process")
        _phase(ctx, prober, token, "early", "/api/ping", params.phase_requests, params.concurrency)
        figures["early_end"] = admin.service("GET", "/process")
        if params.middle_requests:
            _phase(ctx, prober, token, "middle", "/api/ping", params.middle_requests, params.concurrency)
        figures["late_start"] = admin.service("GET", "/process")
        _phase(ctx, prober, token, "late", "/api/ping", params.phase_requests, params.concurrency)
        figures["late_end"] = admin.service("GET", "/process")
        ctx.notes["process"] = figures

    _run(ctx, body)


def _memory_percent(figures: dict[str, Any], *names: str) -> float | None:
    values = []
    for name in names:
        got = figures.get(name) or {}
        if not got.get("rss_bytes") or not got.get("mem_total_bytes"):
            return None
        values.append(got["rss_bytes"] / got["mem_total_bytes"] * 100)
    return sum(values) / len(values)


def evaluate_soak(ev: CheckEvidence, params: p.ServiceSoakStable) -> Outcome:
    from poetkb.load.checks import evaluate_check

    expected = (f"over a short soak ({params.phase_requests} requests early, {params.middle_requests} between, "
                f"{params.phase_requests} late) late p95 at most {params.max_p95_drift_pct:g}% above early, the "
                f"service's memory at most {params.max_memory_growth_pct:g}% higher, descriptors level")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    durations, figures = ev.notes.get("durations_s") or {}, ev.notes.get("process")
    early, late = ev.steps("early"), ev.steps("late")
    if not early or not late or not isinstance(figures, dict) or not durations.get("early"):
        return no_evidence(expected, "the soak phases and the process figures were not recorded")
    memory_early = _memory_percent(figures, "early_start", "early_end")
    memory_late = _memory_percent(figures, "late_start", "late_end")
    if memory_early is None or memory_late is None:
        return no_evidence(expected, "the service's resident memory was not measured")
    # below the floor, latency differences are scheduling noise, not drift
    phases = {"early": _metrics(early, float(durations["early"]), memory_early, params.p95_floor_ms),
              "late": _metrics(late, float(durations["late"]), memory_late, params.p95_floor_ms)}
    verdict, observed_fig, _, diagnosis = evaluate_check(
        "soak_drift", {"max_p95_drift_pct": params.max_p95_drift_pct,
                       "max_memory_growth_pct": params.max_memory_growth_pct, "early_phase": "early",
                       "late_phase": "late"}, _summary(phases, "the gate's soak on the demo service"))
    rss = {name: round((figures.get(name) or {}).get("rss_bytes", 0) / 2**20, 1) for name in figures}
    fds = [(figures.get(name) or {}).get("open_fds") for name in ("early_end", "late_end")]
    details = {**observed_fig, "rss_mib": rss, "open_fds": fds, "early": _statuses(early), "late": _statuses(late)}
    observed = (f"p95 {phases['early'].p95_ms:.1f} ms early, {phases['late'].p95_ms:.1f} ms late (floor "
                f"{params.p95_floor_ms:g} ms); resident memory "
                f"{rss.get('early_end')} MiB early, {rss.get('late_end')} MiB late; descriptors {fds[0]} -> {fds[1]}")
    count = len(early) + len(late)
    if verdict != "pass":
        return Outcome(verdict, expected, observed, diagnosis, details, count)
    first, last = fds
    if first is not None and last is not None and last - first > 20:
        return Outcome("fail", expected, observed, f"open descriptors climbed from {fds[0]} to {fds[1]}: a "
                       "descriptor leak", details, count)
    return Outcome("pass", expected, observed, "", details, count)


#: the check kinds this module implements, each declared once with its parameters, evidence, collector and
#: evaluator (:mod:`poetkb.gates.checks.registry` finds them; ``poet gate kinds`` lists them)
KINDS = declare(
    Kind("service_burst_recovery", p.ServiceBurstRecovery, ("http_capture",),
         collect=collect_burst, evaluate=evaluate_burst, traffic=False, service=True),
    Kind("service_soak_stable", p.ServiceSoakStable, ("http_capture",),
         collect=collect_soak, evaluate=evaluate_soak, traffic=False, service=True),
)
