"""Interpret a load-test result against the service profile: a verdict per check, in plain words.

The checks come from the plan's scenario (so a plan and its interpretation can
never disagree on what is judged); each is evaluated by
:func:`poetkb.load.checks.evaluate_check` and mapped to its perf.* obligation,
so a gate can use the result directly. A check without data is "no-evidence",
and the run's status is the worst verdict of its gating checks: missing
evidence never passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from poetkb.load.baselines import Baseline
from poetkb.load.checks import Verdict, evaluate_check, worst
from poetkb.load.metrics import MetricsSummary, merge, read_metrics
from poetkb.load.plan import SCENARIOS, LoadPlan, build_plan
from poetkb.load.profile import ServiceProfile, as_profile
from poetkb.load.units import fmt_ms, fmt_rate, fmt_rps
from poetkb.models import PoetModel

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge

BaselineMode = Literal["none", "file", "auto"]


class CheckVerdict(PoetModel):
    """The verdict of one check of the scenario, with what was seen, what was expected and why."""

    kind: str
    obligation: str
    verdict: Verdict
    gating: bool = True
    observed: dict[str, Any] = Field(default_factory=dict)
    expected: dict[str, Any] = Field(default_factory=dict)
    narrative: str
    description: str = ""


class BaselineInfo(PoetModel):
    """Which baseline a run was compared with."""

    source: str
    recorded_at: str | None = None
    mode: BaselineMode


class Interpretation(PoetModel):
    """The verdicts of one load-test run of one scenario, and what they mean for the perf obligations."""

    service: str
    scenario: str
    status: Verdict
    profile_fingerprint: str
    metrics_source: str
    metrics_format: str
    verdicts: list[CheckVerdict]
    obligations: dict[str, Verdict] = Field(description="perf.* obligation id -> the worst verdict of its checks.")
    narrative: list[str]
    notes: list[str] = Field(default_factory=list)
    baseline: BaselineInfo | None = None
    baseline_recorded: bool = False
    breaking_point: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def _breaking_point(plan: LoadPlan, summary: MetricsSummary, profile: ServiceProfile) -> str:
    scenario = plan.scenario("stress")
    rates = {s.phase: s.target_rps for s in scenario.stages}
    steps = [p.name for p in scenario.phases()]
    if not any(name in summary.phases for name in steps):
        return "breaking point unknown: the metrics have no per-step phases (run the exported k6 script)"
    p95 = profile.slo.latency_ms.p95 or profile.slo.latency_ms.p99 or profile.slo.latency_ms.p50
    held = None
    for name in steps:
        window = summary.phases.get(name)
        if window is None:
            continue
        latency = window.p95_ms if profile.slo.latency_ms.p95 else (window.p99_ms or window.p50_ms)
        broke = []
        if latency is not None and p95 is not None and latency > p95:
            broke.append(f"latency {fmt_ms(latency)} > {fmt_ms(p95)}")
        if window.error_rate is not None and window.error_rate > profile.slo.error_rate:
            broke.append(f"errors {fmt_rate(window.error_rate)} > {fmt_rate(profile.slo.error_rate)}")
        if broke:
            return (f"the SLOs first broke in the {name} step (up to {fmt_rps(rates[name])}): {', '.join(broke)}; "
                    f"they held up to {fmt_rps(held) if held is not None else 'no step'}")
        held = rates[name]
    return f"the SLOs held in every recorded step, up to {fmt_rps(held or 0)}: the breaking point is higher"


def interpret(profile: ServiceProfile | str | Path, summary: MetricsSummary, *, scenario: str | None = None,
              baseline: Baseline | MetricsSummary | None = None,
              baseline_mode: BaselineMode = "none") -> Interpretation:
    """Judge ``summary`` against the checks of ``scenario`` (default: the metrics' own, else steady).

    ``baseline_mode`` says whether a regression comparison was asked for: "none" leaves it out; "file" and
    "auto" include it ("auto" with no stored baseline yet reports it as not gating, since the first passing
    run becomes the baseline).
    """
    prof = as_profile(profile)
    plan = build_plan(prof)
    name = scenario or summary.scenario or "steady"
    planned = plan.scenario(name)
    notes = list(summary.notes)
    if scenario and summary.scenario and summary.scenario != scenario:
        notes.append(f"the metrics say scenario {summary.scenario!r} but {scenario!r} was asked for")
    verdicts: list[CheckVerdict] = []
    for check in planned.checks:
        gating = True
        if check.kind == "baseline_regression":
            if baseline_mode == "none":
                continue
            if baseline is None and baseline_mode == "auto":
                verdicts.append(CheckVerdict(
                    kind=check.kind, obligation=check.obligation, verdict="no-evidence", gating=False,
                    expected=check.params, description=check.description,
                    narrative=f"no baseline yet for {prof.service}/{name}: nothing to compare with; a passing run "
                              "becomes the baseline"))
                continue
        verdict, observed, expected, diagnosis = evaluate_check(check.kind, check.params, summary, prof, baseline)
        verdicts.append(CheckVerdict(kind=check.kind, obligation=check.obligation, verdict=verdict, gating=gating,
                                     observed=observed, expected=expected, narrative=diagnosis,
                                     description=check.description))
    obligations: dict[str, Verdict] = {}
    for v in verdicts:
        if v.gating:
            obligations[v.obligation] = worst([obligations.get(v.obligation, "pass"), v.verdict])
    status = worst([v.verdict for v in verdicts if v.gating])
    info = None
    if baseline is not None:
        source = baseline.summary.source if isinstance(baseline, Baseline) else baseline.source
        recorded = baseline.recorded_at if isinstance(baseline, Baseline) else None
        info = BaselineInfo(source=source, recorded_at=recorded, mode="file" if baseline_mode == "file" else "auto")
    breaking = _breaking_point(plan, summary, prof) if name == "stress" else None
    narrative = [f"{v.verdict.upper():<11} {v.narrative}" for v in verdicts]
    if breaking:
        narrative.append(f"{'INFO':<11} {breaking}")
    return Interpretation(
        service=prof.service, scenario=name, status=status, profile_fingerprint=prof.fingerprint(),
        metrics_source=summary.source, metrics_format=summary.format, verdicts=verdicts, obligations=obligations,
        narrative=narrative, notes=notes, baseline=info, breaking_point=breaking,
    )


def interpret_files(kb: Knowledge | None, profile: ServiceProfile | str | Path,
                    metrics: MetricsSummary | str | Path | Sequence[str | Path], *, scenario: str | None = None,
                    baseline: str | Path | MetricsSummary | Baseline | None = None) -> Interpretation:
    """Read the metrics file(s), pick the baseline (a file, a summary, or "auto" from the KB), interpret.

    With ``baseline="auto"`` the knowledge base's baseline of (service, scenario) is used, and a run that
    passes every gating check is recorded as the new baseline (the last passing result).
    """
    prof = as_profile(profile)
    if isinstance(metrics, MetricsSummary):
        summary = metrics
    elif not isinstance(metrics, str | Path):
        summary = merge(read_metrics(m) for m in metrics)
    else:
        summary = read_metrics(metrics)
    name = scenario or summary.scenario or "steady"
    if name not in SCENARIOS:
        build_plan(prof).scenario(name)  # raises UnknownEntity naming the scenarios
    mode: BaselineMode = "none"
    reference: Baseline | MetricsSummary | None = None
    if isinstance(baseline, Baseline | MetricsSummary):
        mode, reference = "file", baseline
    elif baseline is not None and str(baseline) == "auto":
        if kb is None:
            from poetkb.errors import InputError

            raise InputError("--baseline auto needs a knowledge base to keep baselines in", field="baseline")
        mode = "auto"
        from poetkb.load.baselines import get_baseline

        reference = get_baseline(kb, prof.service, name)
    elif baseline is not None:
        mode, reference = "file", read_metrics(baseline)
    result = interpret(prof, summary, scenario=name, baseline=reference, baseline_mode=mode)
    if mode == "auto" and result.passed and kb is not None:
        from poetkb.load.baselines import record_baseline

        record_baseline(kb, prof.service, name, summary, profile_fingerprint=prof.fingerprint())
        result = result.model_copy(update={"baseline_recorded": True})
    return result


def interpretation_text(result: Interpretation) -> str:
    """The interpretation as a person reads it."""
    lines = [f"{result.service} / {result.scenario}: {result.status.upper()}  (metrics: {result.metrics_source}, "
             f"{result.metrics_format})"]
    lines += [f"  {line}" for line in result.narrative]
    if result.obligations:
        lines.append("obligations:")
        lines += [f"  {oid:<28} {verdict}" for oid, verdict in sorted(result.obligations.items())]
    if result.baseline:
        when = f", recorded {result.baseline.recorded_at}" if result.baseline.recorded_at else ""
        lines.append(f"baseline: {result.baseline.source}{when}")
    if result.baseline_recorded:
        lines.append(f"baseline: this run is now the baseline of {result.service}/{result.scenario}")
    for note in result.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
