"""Collectors and evaluators of the check kinds, one module per area.

Each module declares its kinds once (``KINDS = declare(Kind(...), ...)``, see
:class:`~poetkb.gates.checks.base.Kind`). :func:`collect` and :func:`evaluate`
find a kind's collector and evaluator through :mod:`poetkb.gates.checks.registry`,
which imports a module only when one of its kinds is used, and turn every way a
check can go wrong into a verdict: an unknown kind,
bad parameters, a missing prerequisite or a bug in an evaluator become an
``error`` naming the cause; a manual check or absent evidence is
``no-evidence``; nothing is ever a pass without evidence.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from poetkb.gates.checks.base import CollectContext, CollectError, Outcome
from poetkb.gates.checks.registry import implementation
from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.kinds import KINDS
from poetkb.gates.params import without_calibration
from poetkb.gates.schema import CheckResult
from poetkb.models import Check


def has_collector(kind: str) -> bool:
    """True when a gate run can collect evidence for ``kind`` itself."""
    return kind in KINDS and implementation(kind).collect is not None


def collect(check: Check, ctx: CollectContext) -> None:
    """Run the collector of ``check``; raises CollectError when a prerequisite is missing."""
    spec = KINDS.get(check.kind)
    if spec is None:
        raise CollectError(f"unknown check kind {check.kind!r}")
    collector = implementation(check.kind).collect
    if collector is None:
        raise CollectError(f"check kind {check.kind} is judged from evidence other tools produce; "
                           "pass it to `poet gate evaluate --evidence`")
    try:
        params = spec.params.model_validate(check.params)
    except ValidationError as exc:
        raise CollectError(f"bad params for {check.kind}: {exc.errors()[0]['msg']}") from exc
    ctx.use_vantage(params)
    collector(ctx, params)


def evaluate(check: Check, *, check_id: str, obligation_id: str, ev: CheckEvidence | None) -> CheckResult:
    """Judge one check from its evidence bundle (None when nothing was collected for it).

    ``check`` comes from the catalog: its parameters are what the obligation requires, whatever the evidence
    says it was collected with. A problem with a file the check's own record names (a tampered metrics
    snapshot, an unlisted file) makes it an error before its evaluator runs. Evidence from other tools
    (``ev.foreign``) is judged without the kind's demo-calibration parameters (:data:`params.CALIBRATION`).
    """
    base: dict[str, Any] = {"check_id": check_id, "obligation_id": obligation_id, "kind": check.kind,
                            "description": check.description, "params": dict(check.params)}
    if check.kind == "manual":
        return CheckResult(**base, verdict="no-evidence", expected="a person performs and records this check",
                           observed="no record of it", diagnosis="manual check: a gate never passes it on its own"
                           + (f" ({check.description})" if check.description else ""))
    spec = KINDS.get(check.kind)
    if spec is None:
        return CheckResult(**base, verdict="error", diagnosis=f"unknown check kind {check.kind!r}; "
                           f"known kinds: {', '.join(sorted(KINDS))}")
    try:
        params = spec.params.model_validate(check.params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        return CheckResult(**base, verdict="error",
                           diagnosis=f"bad params for {check.kind}: {where + ': ' if where else ''}{first['msg']}")
    if ev is None:
        return CheckResult(**base, verdict="no-evidence", expected=spec.summary, observed="nothing collected",
                           diagnosis=f"no evidence for this check (it needs {', '.join(spec.evidence)})")
    unusable = [name for name in ev.required if name in ev.problems]
    if unusable:
        return CheckResult(**base, verdict="error", expected=spec.summary, observed="the evidence is unusable",
                           diagnosis="; ".join(ev.problems[name] for name in unusable), evidence=list(unusable),
                           duration_ms=ev.duration_ms)
    neutralised: list[str] = []
    if ev.foreign:
        params, neutralised = without_calibration(check.kind, params)
    evaluator = implementation(check.kind).evaluate
    try:
        if evaluator is None:
            raise TypeError(f"check kind {check.kind} has no evaluator")
        outcome: Outcome = evaluator(ev, params)
    except Exception as exc:  # noqa: BLE001 - an evaluator bug must not pass, nor crash the gate
        outcome = Outcome("error", spec.summary, "the evaluator failed",
                          f"evaluating {check.kind} failed: {type(exc).__name__}: {exc}")
    if neutralised:
        outcome.details = {**outcome.details, "calibration_not_applied": neutralised}
    return CheckResult(**base, verdict=outcome.verdict, expected=outcome.expected, observed=outcome.observed,
                       diagnosis=outcome.diagnosis, details=outcome.details, evidence=list(ev.files),
                       samples=outcome.samples, duration_ms=ev.duration_ms)


__all__ = ["CollectContext", "CollectError", "Outcome", "collect", "evaluate", "has_collector"]
