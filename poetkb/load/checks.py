"""Evaluators of the perf check kinds: pure functions of a metrics summary, a profile and a baseline.

Gates and :mod:`poetkb.load.interpret` call :func:`evaluate_check`. Evidence
that is missing is reported as ``"no-evidence"`` with the reason (which file,
which field), never as a pass; a check that cannot be evaluated as configured
(an unknown kind, a threshold nobody gave) is ``"error"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from poetkb.load.metrics import MetricsSummary, PhaseMetrics
from poetkb.load.units import fmt_ms, fmt_pct, fmt_rate, fmt_rps

if TYPE_CHECKING:
    from poetkb.load.baselines import Baseline
    from poetkb.load.profile import SLO, ServiceProfile

Verdict = Literal["pass", "fail", "no-evidence", "error"]
Outcome = tuple[Verdict, dict[str, Any], dict[str, Any], str]
#: severity order used to combine verdicts: the worst wins
SEVERITY: dict[str, int] = {"pass": 0, "no-evidence": 1, "error": 2, "fail": 3}
CHECK_KINDS = ("slo_latency", "slo_error_rate", "slo_throughput", "baseline_regression", "soak_drift",
               "burst_recovery")


def worst(verdicts: list[Verdict]) -> Verdict:
    """The most severe verdict (fail > error > no-evidence > pass); no verdicts at all is no-evidence."""
    return max(verdicts, key=lambda v: SEVERITY[v]) if verdicts else "no-evidence"


# -- choosing the window a check looks at ----------------------------------------------------------
def _value(summary: MetricsSummary, params: dict[str, Any], field: str) -> tuple[float | None, str, str | None]:
    """(value, where it came from, reason it is missing) for ``field`` in the check's phase or the whole run."""
    phase = params.get("phase")
    required = bool(params.get("phase_required", False))
    window: PhaseMetrics | None = summary.phases.get(phase) if phase else None
    if window is not None and getattr(window, field) is not None:
        return getattr(window, field), f"{phase} phase", None
    if phase and required:
        have = ", ".join(sorted(summary.phases)) or "none"
        what = f"no {field} in its '{phase}' phase" if window is not None else f"no '{phase}' phase"
        return None, "", (f"{summary.source} has {what} (phases: {have}); run the scenario with the script "
                          "`poet plan load` exports, or give phases in a JSON summary")
    value = getattr(summary, field)
    if value is None:
        token = field.split("_")[0]
        forms = {token, f"p({token[1:]})"} if token[1:].isdigit() else {token.replace("error", "error rate")}
        hints = [n for n in summary.notes if any(form in n for form in forms)]
        reason = f"{summary.source} has no {field}" + (f" ({hints[0]})" if hints else "")
        return None, "", reason
    where = "whole run" + (f", no {phase} phase in the metrics" if phase else "")
    return value, where, None


def _slo(profile: ServiceProfile | None, summary: MetricsSummary) -> SLO | None:
    """The SLOs that give default thresholds: the profile's, else those recorded in the summary."""
    return profile.slo if profile is not None else summary.slo


def _limit(params: dict[str, Any], key: str, fallback: float | None) -> float | None:
    value = params.get(key)
    return float(value) if isinstance(value, int | float) else fallback


# -- the evaluators -------------------------------------------------------------------------------
def _latency(params: dict[str, Any], summary: MetricsSummary, profile: ServiceProfile | None,
             baseline: Any) -> Outcome:
    percentile = params.get("percentile")
    slos = _slo(profile, summary)
    if percentile is None:
        if slos is None:
            return "error", {}, {}, "slo_latency needs params.percentile and params.max_ms, or a service profile"
        results = [_latency({**params, "percentile": p}, summary, profile, baseline)
                   for p, _ in slos.latency_ms.items()]
        observed = {k: v for r in results for k, v in r[1].items()}
        expected = {k: v for r in results for k, v in r[2].items()}
        return worst([r[0] for r in results]), observed, expected, "; ".join(r[3] for r in results)
    if percentile not in ("p50", "p90", "p95", "p99"):
        return "error", {}, {}, f"slo_latency: unknown percentile {percentile!r} (use p50, p90, p95 or p99)"
    slo = getattr(slos.latency_ms, percentile, None) if slos and percentile != "p90" else None
    limit = _limit(params, "max_ms", slo)
    if limit is None:
        return ("error", {}, {}, f"no {percentile} threshold: give params.max_ms or a profile with "
                f"slo.latency_ms.{percentile}")
    field = f"{percentile}_ms"
    value, where, missing = _value(summary, params, field)
    expected = {f"{field}_max": limit}
    if value is None:
        return "no-evidence", {field: None}, expected, f"{percentile}: no data, not a pass: {missing}"
    observed = {field: value, "window": where}
    if value <= limit:
        headroom = (limit - value) / limit * 100
        return "pass", observed, expected, (f"{percentile} {fmt_ms(value)} is within the {fmt_ms(limit)} SLO "
                                            f"({fmt_pct(headroom)} headroom; {where})")
    over = (value - limit) / limit * 100
    return "fail", observed, expected, (f"{percentile} {fmt_ms(value)} exceeds the {fmt_ms(limit)} SLO by "
                                        f"{fmt_pct(over)} ({where})")


def _error_rate(params: dict[str, Any], summary: MetricsSummary, profile: ServiceProfile | None,
                baseline: Any) -> Outcome:
    slos = _slo(profile, summary)
    limit = _limit(params, "max_rate", slos.error_rate if slos else None)
    if limit is None:
        return "error", {}, {}, "no error-rate threshold: give params.max_rate or a profile with slo.error_rate"
    value, where, missing = _value(summary, params, "error_rate")
    expected = {"error_rate_max": limit}
    if value is None:
        return "no-evidence", {"error_rate": None}, expected, f"error rate: no data, not a pass: {missing}"
    observed = {"error_rate": value, "window": where}
    if value <= limit:
        return "pass", observed, expected, (f"error rate {fmt_rate(value)} is within the {fmt_rate(limit)} SLO "
                                            f"({where})")
    points = (value - limit) * 100
    return "fail", observed, expected, (f"error rate {fmt_rate(value)} exceeds the {fmt_rate(limit)} SLO by "
                                        f"{points:.2g} point{'s' if round(points, 2) != 1 else ''} ({where})")


def _throughput(params: dict[str, Any], summary: MetricsSummary, profile: ServiceProfile | None,
                baseline: Any) -> Outcome:
    fallback = summary.slo.min_throughput_rps if summary.slo else None
    if profile is not None:
        fallback = profile.slo.min_throughput_rps
        if fallback is None:
            fallback = round(profile.traffic.baseline_rps * 0.95, 2)
    limit = _limit(params, "min_rps", fallback)
    if limit is None:
        return "error", {}, {}, "no throughput threshold: give params.min_rps or a service profile"
    value, where, missing = _value(summary, params, "throughput_rps")
    expected = {"throughput_rps_min": limit}
    if value is None:
        return "no-evidence", {"throughput_rps": None}, expected, f"throughput: no data, not a pass: {missing}"
    observed = {"throughput_rps": value, "window": where}
    if value >= limit:
        return "pass", observed, expected, f"throughput {fmt_rps(value)} meets the {fmt_rps(limit)} minimum ({where})"
    short = (limit - value) / limit * 100 if limit else 0.0
    return "fail", observed, expected, (f"throughput {fmt_rps(value)} is below the {fmt_rps(limit)} minimum by "
                                        f"{fmt_pct(short)} ({where})")


def _regression(params: dict[str, Any], summary: MetricsSummary, profile: ServiceProfile | None,
                baseline: Any) -> Outcome:
    from poetkb.load.baselines import Baseline, compare

    thresholds = {k: v for k, v in params.items() if k in ("p95_increase_pct", "throughput_drop_pct",
                                                          "error_rate_abs", "alpha", "min_effect")}
    if baseline is None:
        return ("no-evidence", {}, thresholds, "no baseline to compare with, not a pass: record a passing run "
                "first (`poet interpret --baseline auto`) or pass --baseline FILE")
    reference = baseline.summary if isinstance(baseline, Baseline) else baseline
    if not isinstance(reference, MetricsSummary):
        return "error", {}, thresholds, f"baseline is a {type(baseline).__name__}, not a metrics summary"
    result = compare(summary, reference, thresholds)
    observed: dict[str, Any] = {c.metric: {"baseline": c.baseline, "current": c.current, "change": c.change,
                                           "status": c.status} for c in result.changes}
    if result.test is not None:
        observed["mann_whitney"] = result.test.model_dump()
    if isinstance(baseline, Baseline):
        observed["baseline_recorded_at"] = baseline.recorded_at
    observed["baseline_source"] = reference.source
    from poetkb.load.plan import REGRESSION_DEFAULTS

    return result.verdict, observed, {**REGRESSION_DEFAULTS, **thresholds}, result.narrative


def _drift(params: dict[str, Any], summary: MetricsSummary, profile: ServiceProfile | None,
           baseline: Any) -> Outcome:
    max_drift = _limit(params, "max_p95_drift_pct", 10.0) or 0.0
    max_growth = _limit(params, "max_memory_growth_pct", 10.0) or 0.0
    expected = {"max_p95_drift_pct": max_drift, "max_memory_growth_pct": max_growth}
    early_name, late_name = params.get("early_phase", "early"), params.get("late_phase", "late")
    early, late = summary.phases.get(early_name), summary.phases.get(late_name)
    source = "phases"
    if early is None or late is None or early.p95_ms is None or late.p95_ms is None:
        early, late = _series_windows(summary)
        source = "series"
    if early is None or late is None or not early.p95_ms or late.p95_ms is None:
        return ("no-evidence", {}, expected, f"soak drift: no data, not a pass: {summary.source} has neither "
                f"'{early_name}'/'{late_name}' phases with p95 nor a time series with p95_ms")
    drift = (late.p95_ms - early.p95_ms) / early.p95_ms * 100
    observed: dict[str, Any] = {"p95_early_ms": early.p95_ms, "p95_late_ms": late.p95_ms,
                                "p95_drift_pct": round(drift, 2), "from": source}
    problems, notes = [], [f"p95 {fmt_ms(early.p95_ms)} early, {fmt_ms(late.p95_ms)} late ({drift:+.1f}%, "
                           f"limit +{max_drift:g}%)"]
    if drift > max_drift:
        problems.append("latency drifts up")
    if early.memory_percent and late.memory_percent is not None:
        growth = (late.memory_percent - early.memory_percent) / early.memory_percent * 100
        observed["memory_growth_pct"] = round(growth, 2)
        notes.append(f"memory {early.memory_percent:g}% -> {late.memory_percent:g}% ({growth:+.1f}%, limit "
                     f"+{max_growth:g}%)")
        if growth > max_growth:
            problems.append("memory keeps growing (a leak?)")
    else:
        observed["memory_growth_pct"] = None
        notes.append("memory not measured, so leaks were not checked (add memory_percent to the metrics)")
    slos = _slo(profile, summary)
    if slos is not None and late.error_rate is not None and late.error_rate > slos.error_rate:
        problems.append(f"late error rate {fmt_rate(late.error_rate)} is above the SLO")
    text = "; ".join(notes)
    if problems:
        return "fail", observed, expected, f"soak drift: {', '.join(problems)}: {text}"
    return "pass", observed, expected, f"soak stable: {text}"


def _series_windows(summary: MetricsSummary) -> tuple[PhaseMetrics | None, PhaseMetrics | None]:
    """Mean p95 and memory over the first and the last fifth of a time series."""
    points = sorted((p for p in summary.series if p.p95_ms is not None), key=lambda p: p.t_s)
    if len(points) < 5:
        return None, None
    fifth = max(1, len(points) // 5)

    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    def window(part: list[Any]) -> PhaseMetrics:
        return PhaseMetrics(p95_ms=mean([p.p95_ms for p in part]),
                            memory_percent=mean([p.memory_percent for p in part]),
                            error_rate=mean([p.error_rate for p in part]))

    return window(points[:fifth]), window(points[-fifth:])


def _recovery(params: dict[str, Any], summary: MetricsSummary, profile: ServiceProfile | None,
              baseline: Any) -> Outcome:
    recovery_s = _limit(params, "recovery_s", 60.0)
    phase = params.get("phase", "recovered")
    slos = _slo(profile, summary)
    p95_limit = _limit(params, "max_p95_ms", slos.latency_ms.p95 if slos else None)
    err_limit = _limit(params, "max_rate", slos.error_rate if slos else None)
    expected = {"recovery_s": recovery_s, "p95_ms_max": p95_limit, "error_rate_max": err_limit}
    if p95_limit is None or err_limit is None:
        return "error", {}, expected, "burst_recovery needs the p95 and error-rate SLOs (a profile, or params)"
    window = summary.phases.get(phase)
    if window is None or window.p95_ms is None or window.error_rate is None:
        have = ", ".join(sorted(summary.phases)) or "none"
        return ("no-evidence", {}, expected, f"burst recovery: no data, not a pass: {summary.source} has no "
                f"'{phase}' phase with p95 and error rate (phases: {have}); a whole-run summary cannot show "
                "recovery: run the burst scenario with the exported k6 script or give phases")
    observed = {"p95_ms": window.p95_ms, "error_rate": window.error_rate, "phase": phase}
    burst = summary.phases.get("burst")
    if burst is not None:
        observed.update({"burst_p95_ms": burst.p95_ms, "burst_error_rate": burst.error_rate})
    late = []
    if window.p95_ms > p95_limit:
        late.append(f"p95 {fmt_ms(window.p95_ms)} is still above the {fmt_ms(p95_limit)} SLO")
    if window.error_rate > err_limit:
        late.append(f"error rate {fmt_rate(window.error_rate)} is still above the {fmt_rate(err_limit)} SLO")
    during = ""
    if burst is not None and burst.p95_ms is not None:
        errors = f", errors {fmt_rate(burst.error_rate)}" if burst.error_rate is not None else ""
        during = f" (during the burst: p95 {fmt_ms(burst.p95_ms)}{errors})"
    if late:
        return "fail", observed, expected, (f"no recovery: {recovery_s:g} s after the burst {' and '.join(late)}"
                                            f"{during}")
    return "pass", observed, expected, (f"recovered: from {recovery_s:g} s after the burst, p95 is "
                                        f"{fmt_ms(window.p95_ms)} and the error rate {fmt_rate(window.error_rate)}, "
                                        f"both within SLO{during}")


EVALUATORS: dict[str, Callable[..., Outcome]] = {
    "slo_latency": _latency,
    "slo_error_rate": _error_rate,
    "slo_throughput": _throughput,
    "baseline_regression": _regression,
    "soak_drift": _drift,
    "burst_recovery": _recovery,
}


def evaluate_check(kind: str, params: dict[str, Any] | None, summary: MetricsSummary,
                   profile: ServiceProfile | None = None, baseline: Baseline | MetricsSummary | None = None
                   ) -> Outcome:
    """Evaluate one perf check against a load-test result.

    Arguments:
        kind: ``slo_latency``, ``slo_error_rate``, ``slo_throughput``, ``baseline_regression``,
            ``soak_drift`` or ``burst_recovery``.
        params: the check's parameters (see below); thresholds given here win over the profile's.
        summary: the run's :class:`~poetkb.load.metrics.MetricsSummary` (from :func:`read_metrics`).
        profile: the :class:`~poetkb.load.profile.ServiceProfile` whose SLOs give default thresholds; without
            one, the SLOs recorded in the summary (the exported k6 and Locust scripts write them) are used.
        baseline: for ``baseline_regression``, a stored :class:`~poetkb.load.baselines.Baseline` or a
            summary of the reference run.

    Parameters by kind (all optional when a profile gives the threshold):
        - slo_latency: ``percentile`` (p50/p90/p95/p99; absent: every percentile the profile sets),
          ``max_ms``, ``phase``, ``phase_required``;
        - slo_error_rate: ``max_rate`` (fraction), ``phase``, ``phase_required``;
        - slo_throughput: ``min_rps`` (default: profile min_throughput_rps, else 95% of baseline_rps), ``phase``;
        - baseline_regression: ``p95_increase_pct`` (20), ``throughput_drop_pct`` (15), ``error_rate_abs``
          (0.05), ``alpha`` (0.01), ``min_effect`` (Vargha-Delaney A, 0.64);
        - soak_drift: ``max_p95_drift_pct`` (10), ``max_memory_growth_pct`` (10), ``early_phase``,
          ``late_phase`` (else the first and last fifth of ``summary.series``);
        - burst_recovery: ``recovery_s`` (60), ``phase`` ("recovered"), ``max_p95_ms``, ``max_rate``.

    With ``scenario`` (for example "burst") a summary of another scenario is no-evidence for the check.
    With ``phase`` the check reads that phase of the summary; without the phase in the data it falls back
    to the whole run, unless ``phase_required`` is true (then: no-evidence).

    Returns:
        ``(verdict, observed, expected, diagnosis)``: verdict is "pass", "fail", "no-evidence" (the
        metrics lack what the check needs: never a pass) or "error" (the check cannot run as configured);
        observed and expected are JSON-ready dicts; diagnosis is one plain sentence, such as
        "p95 412 ms exceeds the 400 ms SLO by 3% (steady phase)".
    """
    evaluator = EVALUATORS.get(kind)
    if evaluator is None:
        return "error", {}, {}, f"unknown load check kind {kind!r}; known: {', '.join(CHECK_KINDS)}"
    if not isinstance(summary, MetricsSummary):
        return "error", {}, {}, f"expected a MetricsSummary, got {type(summary).__name__}"
    for key, value in (params or {}).items():
        if isinstance(value, float) and not math.isfinite(value):
            return ("error", {}, {key: str(value)},
                    f"check parameter {key} is {value}; NaN and Infinity are not thresholds, write a finite number")
    wanted = (params or {}).get("scenario")
    if wanted and summary.scenario and summary.scenario != wanted:
        return ("no-evidence", {"scenario": summary.scenario}, {"scenario": wanted},
                f"{summary.source} is a {summary.scenario} run; this check needs a {wanted} run, not a pass")
    return evaluator(dict(params or {}), summary, profile, baseline)
