"""Turn a service profile into a concrete load-test plan.

A plan has four scenarios, each a list of stages (how long, what arrival rate,
which phase of the test) plus the checks that judge it, the metrics to watch
while it runs and the safety notes to read before starting it:

- ``steady``: the baseline rate held for ten minutes after a warm-up; judged on
  the latency, error-rate and throughput SLOs;
- ``burst``: baseline, a ramp to peak x burst factor, a minute there, back to
  baseline; judged on recovery (SLOs met again within the recovery bound);
- ``soak``: hours near the baseline; judged on drift (late p95 and memory
  against the early hour);
- ``stress``: steps past the burst rate to find the breaking point; judged on the
  SLOs holding up to the burst rate (the headroom phase).

Rates are open-model arrival rates (requests started per second whatever the
service does), so a slow service cannot slow the test down and hide its tail.
Plans are deterministic: the same profile always gives the same plan.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from poetkb.errors import UnknownEntity
from poetkb.load.profile import SLO, ServiceProfile, Traffic
from poetkb.load.units import fmt_rate
from poetkb.models import PoetModel

ScenarioName = Literal["steady", "burst", "soak", "stress"]
SCENARIOS: tuple[str, ...] = ("steady", "burst", "soak", "stress")

#: critical endpoints get this many times the share their weight alone gives them
CRITICAL_BOOST = 2.0
#: regression thresholds (perf.regression.baseline)
REGRESSION_DEFAULTS: dict[str, float] = {
    "p95_increase_pct": 20.0,
    "throughput_drop_pct": 15.0,
    "error_rate_abs": 0.05,
    "alpha": 0.01,
    "min_effect": 0.64,
}
#: the obligation each check kind gives evidence for
CHECK_OBLIGATIONS: dict[str, str] = {
    "slo_latency": "perf.latency.slo",
    "slo_error_rate": "perf.error_rate.slo",
    "slo_throughput": "perf.throughput.slo",
    "baseline_regression": "perf.regression.baseline",
    "soak_drift": "perf.soak.stable",
    "burst_recovery": "perf.burst.recovery",
}

STEADY_WARMUP_S = 120
STEADY_HOLD_S = 600
BURST_BEFORE_S = 120
BURST_RAMP_S = 30
BURST_HOLD_S = 60
RECOVERY_S = 60
RECOVERED_HOLD_S = 120
SOAK_WARMUP_S = 300
SOAK_WINDOW_S = 3600
SOAK_MIDDLE_S = 7200
STRESS_RAMP_S = 30
STRESS_HOLD_S = 90
STRESS_BEYOND = (1.25, 1.5, 1.75, 2.0)


class Stage(PoetModel):
    """A stretch of the test: reach ``target_rps`` (linearly from the previous rate) over ``duration_s``."""

    duration_s: int = Field(gt=0)
    target_rps: float = Field(ge=0)
    phase: str = Field(description="Name of the test phase this stage belongs to (warmup, steady, burst, ...).")


class PlannedCheck(PoetModel):
    """A check that judges a scenario: an evaluator kind, its parameters and the obligation it serves."""

    kind: str
    obligation: str
    params: dict[str, Any] = Field(default_factory=dict)
    description: str = ""


class EndpointShare(PoetModel):
    """An endpoint and the share of the planned requests it gets."""

    method: str
    path: str
    critical: bool
    share: float = Field(ge=0, le=1)
    body: dict[str, Any] | list[Any] | str | None = None


class Phase(PoetModel):
    """A named window of a scenario, in seconds from its start."""

    name: str
    start_s: int
    end_s: int


class Scenario(PoetModel):
    """One load test to run: its stages, how it is judged, what to watch, what to take care of."""

    name: ScenarioName
    title: str
    purpose: str
    executor: Literal["constant-arrival-rate", "ramping-arrival-rate"]
    start_rps: float = Field(ge=0)
    stages: list[Stage] = Field(min_length=1)
    duration_s: int
    peak_rps: float
    checks: list[PlannedCheck]
    metrics_to_watch: list[str]
    safety_notes: list[str]

    def phases(self) -> list[Phase]:
        """Consecutive stages of one phase merged into windows, in order."""
        windows: list[Phase] = []
        start = 0
        for stage in self.stages:
            end = start + stage.duration_s
            if windows and windows[-1].name == stage.phase:
                windows[-1] = Phase(name=stage.phase, start_s=windows[-1].start_s, end_s=end)
            else:
                windows.append(Phase(name=stage.phase, start_s=start, end_s=end))
            start = end
        return windows


class LoadPlan(PoetModel):
    """The load-test plan of one service: endpoint mix, scenarios, and notes that apply to all of them."""

    service: str
    summary: str = ""
    profile_fingerprint: str
    traffic: Traffic
    slo: SLO
    endpoint_mix: list[EndpointShare]
    scenarios: list[Scenario]
    safety_notes: list[str]
    obligations: list[str]

    def scenario(self, name: str) -> Scenario:
        for scenario in self.scenarios:
            if scenario.name == name:
                return scenario
        raise UnknownEntity("scenario", name, known=[s.name for s in self.scenarios])


def _r(value: float) -> float:
    """Rates rounded for people and scripts (two decimals is below any generator's precision)."""
    return round(value, 2)


def endpoint_mix(profile: ServiceProfile) -> list[EndpointShare]:
    """Each endpoint's share: its weight (default 1), doubled for critical endpoints, normalised to 1."""
    raw = [(e.weight or 1.0) * (CRITICAL_BOOST if e.critical else 1.0) for e in profile.endpoints]
    total = sum(raw)
    return [
        EndpointShare(method=e.method, path=e.path, critical=e.critical, share=round(w / total, 4), body=e.body)
        for e, w in zip(profile.endpoints, raw, strict=True)
    ]


def _slo_checks(profile: ServiceProfile, phase: str | None, *, required: bool) -> list[PlannedCheck]:
    where = f"in the {phase} phase" if phase else "over the whole run"
    window: dict[str, Any] = {"phase": phase, "phase_required": required} if phase else {}
    checks = [
        PlannedCheck(
            kind="slo_latency", obligation=CHECK_OBLIGATIONS["slo_latency"],
            params={"percentile": pct, "max_ms": limit, **window},
            description=f"{pct} latency {where} is at or below {limit:g} ms",
        )
        for pct, limit in profile.slo.latency_ms.items()
    ]
    checks.append(PlannedCheck(
        kind="slo_error_rate", obligation=CHECK_OBLIGATIONS["slo_error_rate"],
        params={"max_rate": profile.slo.error_rate, **window},
        description=f"error rate {where} is at or below {fmt_rate(profile.slo.error_rate)}",
    ))
    return checks


def _regression_check() -> PlannedCheck:
    return PlannedCheck(
        kind="baseline_regression", obligation=CHECK_OBLIGATIONS["baseline_regression"],
        params=dict(REGRESSION_DEFAULTS),
        description="against the last passing run of this scenario: p95 up at most 20%, throughput down at most "
                    "15%, error rate up at most 5 points; with raw samples a Mann-Whitney U test decides",
    )


def _min_throughput(profile: ServiceProfile) -> float:
    if profile.slo.min_throughput_rps is not None:
        return profile.slo.min_throughput_rps
    return _r(profile.traffic.baseline_rps * 0.95)


def _scenario(name: ScenarioName, title: str, purpose: str, executor: str, start: float, stages: list[Stage],
              checks: list[PlannedCheck], watch: list[str], notes: list[str]) -> Scenario:
    return Scenario(
        name=name, title=title, purpose=purpose, executor=executor,  # type: ignore[arg-type]
        start_rps=_r(start), stages=stages, duration_s=sum(s.duration_s for s in stages),
        peak_rps=max(s.target_rps for s in stages), checks=checks, metrics_to_watch=watch, safety_notes=notes,
    )


_CORE_WATCH = [
    "latency p50/p95/p99 per endpoint at the load generator",
    "error rate by kind (5xx, timeouts, resets, refused connections)",
    "achieved vs offered request rate (dropped iterations mean the generator fell behind)",
    "service CPU and memory (cpu_percent, memory_percent)",
]


def _steady(profile: ServiceProfile) -> Scenario:
    rate = _r(profile.traffic.baseline_rps)
    checks = _slo_checks(profile, "steady", required=False)
    checks.append(PlannedCheck(
        kind="slo_throughput", obligation=CHECK_OBLIGATIONS["slo_throughput"],
        params={"min_rps": _min_throughput(profile), "phase": "steady", "phase_required": False},
        description=f"completed requests per second stay at or above {_min_throughput(profile):g}",
    ))
    checks.append(_regression_check())
    return _scenario(
        "steady", "Steady state at the baseline rate",
        "Show that the service meets its SLOs at its normal rate once warm, and give the run later releases "
        "are compared with.",
        "constant-arrival-rate", rate,
        [Stage(duration_s=STEADY_WARMUP_S, target_rps=rate, phase="warmup"),
         Stage(duration_s=STEADY_HOLD_S, target_rps=rate, phase="steady")],
        checks,
        [*_CORE_WATCH, "connection pool usage and queue depth of each dependency"],
        ["The first two minutes are warm-up (caches, JIT, connection pools); judge the steady phase."],
    )


def _burst(profile: ServiceProfile) -> Scenario:
    base, burst = _r(profile.traffic.baseline_rps), _r(profile.traffic.burst_rps)
    return _scenario(
        "burst", f"Burst to {burst:g} rps (peak x {profile.traffic.burst_factor:g}) and back",
        "Show that the service survives a short burst above its peak and returns within its SLOs by itself, "
        f"within {RECOVERY_S} s of the load dropping back, without a restart.",
        "ramping-arrival-rate", base,
        [Stage(duration_s=STEADY_WARMUP_S, target_rps=base, phase="warmup"),
         Stage(duration_s=BURST_BEFORE_S, target_rps=base, phase="before"),
         Stage(duration_s=BURST_RAMP_S, target_rps=burst, phase="ramp-up"),
         Stage(duration_s=BURST_HOLD_S, target_rps=burst, phase="burst"),
         Stage(duration_s=BURST_RAMP_S, target_rps=base, phase="ramp-down"),
         Stage(duration_s=RECOVERY_S, target_rps=base, phase="recovering"),
         Stage(duration_s=RECOVERED_HOLD_S, target_rps=base, phase="recovered")],
        [PlannedCheck(
            kind="burst_recovery", obligation=CHECK_OBLIGATIONS["burst_recovery"],
            params={"recovery_s": RECOVERY_S, "phase": "recovered"},
            description=f"p95 and error rate are back within SLO no later than {RECOVERY_S} s after the burst",
        ), _regression_check()],
        [*_CORE_WATCH, "in-flight requests and queue lengths (must fall back after the burst)",
         "429/503 responses during the burst (fast rejection is fine; slow queueing is not)",
         "client retries and autoscaler events"],
        ["The burst goes above the regular peak on purpose: warn the owners of every dependency first.",
         "Expect errors during the burst itself; what is judged is the return to normal afterwards."],
    )


def _soak(profile: ServiceProfile) -> Scenario:
    base = _r(profile.traffic.baseline_rps)
    checks = _slo_checks(profile, None, required=False)
    checks.append(PlannedCheck(
        kind="soak_drift", obligation=CHECK_OBLIGATIONS["soak_drift"],
        params={"max_p95_drift_pct": 10, "max_memory_growth_pct": 10, "early_phase": "early", "late_phase": "late"},
        description="late-hour p95 within 10% of the early hour; memory grows at most 10% after warm-up",
    ))
    checks.append(_regression_check())
    return _scenario(
        "soak", f"Soak at {base:g} rps for {(SOAK_WINDOW_S * 2 + SOAK_MIDDLE_S) // 3600} hours",
        "Find leaks and slow accumulation that a short test never shows: latency or memory that keeps "
        "climbing, connections or file descriptors that are not returned.",
        "ramping-arrival-rate", 0.0,
        [Stage(duration_s=SOAK_WARMUP_S, target_rps=base, phase="warmup"),
         Stage(duration_s=SOAK_WINDOW_S, target_rps=base, phase="early"),
         Stage(duration_s=SOAK_MIDDLE_S, target_rps=base, phase="middle"),
         Stage(duration_s=SOAK_WINDOW_S, target_rps=base, phase="late")],
        checks,
        [*_CORE_WATCH, "resident memory over time (a steady climb is a leak)",
         "open file descriptors, connections and threads (must level off)", "GC pause time",
         "disk usage of logs and temporary files"],
        ["Reserve the environment for the whole run; other tests running alongside make drift meaningless.",
         "Check log rotation and disk space first: hours of load write a lot of logs."],
    )


def _stress(profile: ServiceProfile) -> Scenario:
    traffic = profile.traffic
    headroom = sorted({_r(x) for x in (traffic.baseline_rps, traffic.peak_rps, traffic.burst_rps) if x > 0})
    stages: list[Stage] = []
    for level in headroom:
        stages += [Stage(duration_s=STRESS_RAMP_S, target_rps=level, phase="headroom"),
                   Stage(duration_s=STRESS_HOLD_S, target_rps=level, phase="headroom")]
    for index, factor in enumerate(STRESS_BEYOND, start=1):
        level = _r(traffic.burst_rps * factor)
        stages += [Stage(duration_s=STRESS_RAMP_S, target_rps=level, phase=f"break-{index}"),
                   Stage(duration_s=STRESS_HOLD_S, target_rps=level, phase=f"break-{index}")]
    return _scenario(
        "stress", f"Stress steps to {_r(traffic.burst_rps * STRESS_BEYOND[-1]):g} rps (breaking point)",
        f"Show the SLOs hold up to the burst rate ({_r(traffic.burst_rps):g} rps), then step beyond it to find "
        "the rate where they break (the knee) and how the service fails there.",
        "ramping-arrival-rate", 0.0, stages,
        _slo_checks(profile, "headroom", required=True),
        [*_CORE_WATCH, "the rate at which p95 or errors leave the SLO (the knee)",
         "saturation signals: CPU throttling, pool waits, queue lengths, GC",
         "how the service fails past the knee: fast rejections, timeouts, or crashes"],
        ["This scenario is meant to overload the service: run it only in an isolated environment, never "
         "against shared or production systems.",
         "Stop the test by hand if the service or a dependency stops answering; the k6 script aborts by itself "
         "when the error rate passes 50%."],
    )


def _global_notes(profile: ServiceProfile) -> list[str]:
    notes: list[str] = []
    if profile.data.uses_production_data:
        notes.append("The profile allows production data"
                     f"{': ' + profile.data.notes if profile.data.notes else ''}. Keep requests read-only or "
                     "idempotent where you can and agree the test window with the data owners.")
    else:
        notes.append("Use synthetic or staging data only: the profile does not allow production data"
                     f"{' (' + profile.data.notes + ')' if profile.data.notes else ''}.")
    notes.append("Point the test at a test or staging environment sized like production; never at production "
                 "unless its owners have agreed to the time and the rates.")
    writes = [f"{e.method} {e.path}" for e in profile.endpoints if e.method in {"POST", "PUT", "PATCH", "DELETE"}]
    if writes:
        notes.append(f"Endpoints that change data ({', '.join(writes)}) run thousands of times: use test "
                     "accounts and plan the clean-up.")
    for dep in profile.dependencies:
        kind = f" ({dep.kind})" if dep.kind else ""
        extra = f": {dep.notes}" if dep.notes else ""
        notes.append(f"Dependency {dep.name}{kind} takes load too: tell its owners, or stub it with "
                     f"production-like latency{extra}.")
    notes.append("Run the load generator on its own hosts and watch its CPU: a saturated generator reports "
                 "its own delay as service latency.")
    return notes


def build_plan(profile: ServiceProfile) -> LoadPlan:
    """The four-scenario load plan for a profile."""
    scenarios = [_steady(profile), _burst(profile), _soak(profile), _stress(profile)]
    obligations = sorted({c.obligation for s in scenarios for c in s.checks})
    return LoadPlan(
        service=profile.service, summary=profile.summary, profile_fingerprint=profile.fingerprint(),
        traffic=profile.traffic, slo=profile.slo, endpoint_mix=endpoint_mix(profile), scenarios=scenarios,
        safety_notes=_global_notes(profile), obligations=obligations,
    )
