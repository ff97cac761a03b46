"""Baselines: the last passing result per service and scenario, and regressions judged against it.

A baseline is stored in the knowledge base (state table ``baselines``, migration
004, kept across rebuilds) with a bounded reservoir of raw latencies, so a later
run can be compared sample by sample. :func:`compare` judges a run against a
baseline with thresholds (defaults: p95 +20%, throughput -15%, error rate up
more than 5 points) and, when both runs have raw samples, a one-sided
Mann-Whitney U test: a p95 jump that the test calls noise does not fail, and a
significant shift with a clear effect size fails even below the threshold. The
effect size is reported as Vargha-Delaney A (the probability that a request of
the new run is slower than one of the baseline; 0.5 = no shift) and the
rank-biserial correlation (2A - 1).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from poetkb import store
from poetkb.load.metrics import MetricsSummary
from poetkb.load.plan import REGRESSION_DEFAULTS
from poetkb.models import PoetModel

if TYPE_CHECKING:
    import sqlite_utils

    from poetkb.knowledge import Knowledge

#: fewer raw samples than this in either run and the test is not run (percentiles decide alone)
MIN_SAMPLES = 20
TABLE = "baselines"


class Baseline(PoetModel):
    """The last passing result of one scenario of one service."""

    service: str
    scenario: str
    recorded_at: str
    source: str
    profile_fingerprint: str = ""
    summary: MetricsSummary


class MannWhitney(PoetModel):
    """A one-sided Mann-Whitney U test: are the new run's latencies larger than the baseline's?"""

    u_statistic: float
    p_value: float
    effect_a: float = Field(description="Vargha-Delaney A: P(new latency > baseline latency), ties count half.")
    rank_biserial: float = Field(description="2A - 1: 0 no shift, 1 every new latency is larger.")
    n_baseline: int
    n_current: int
    significant: bool


class MetricChange(PoetModel):
    """One metric compared with the baseline."""

    metric: str
    baseline: float | None
    current: float | None
    change: float | None = Field(description="Percent change (latency, throughput) or points (error rate).")
    limit: str
    status: Literal["ok", "regressed", "no-evidence"]
    note: str = ""


class RegressionResult(PoetModel):
    """The verdict of a run against its baseline, with each metric and the statistical test."""

    verdict: Literal["pass", "fail", "no-evidence"]
    changes: list[MetricChange]
    test: MannWhitney | None = None
    narrative: str


def mann_whitney(baseline: Sequence[float], current: Sequence[float], *, alpha: float = 0.01) -> MannWhitney:
    """One-sided test that ``current`` latencies are stochastically larger than ``baseline`` ones."""
    from scipy.stats import mannwhitneyu

    result = mannwhitneyu(list(current), list(baseline), alternative="greater")
    n1, n2 = len(current), len(baseline)
    effect = float(result.statistic) / (n1 * n2)
    return MannWhitney(u_statistic=float(result.statistic), p_value=float(result.pvalue), effect_a=round(effect, 4),
                       rank_biserial=round(2 * effect - 1, 4), n_baseline=n2, n_current=n1,
                       significant=bool(result.pvalue < alpha))


def _pct(new: float, old: float) -> float | None:
    return None if old == 0 else (new - old) / old * 100


def compare(current: MetricsSummary, baseline: MetricsSummary, thresholds: dict[str, Any] | None = None
            ) -> RegressionResult:
    """Judge ``current`` against ``baseline``; see the module docstring for the rules."""
    limits = {**REGRESSION_DEFAULTS, **(thresholds or {})}
    p95_limit = float(limits["p95_increase_pct"])
    drop_limit = float(limits["throughput_drop_pct"])
    err_limit = float(limits["error_rate_abs"])
    changes: list[MetricChange] = []
    test = None
    if len(current.samples_ms) >= MIN_SAMPLES and len(baseline.samples_ms) >= MIN_SAMPLES:
        test = mann_whitney(baseline.samples_ms, current.samples_ms, alpha=float(limits["alpha"]))

    # latency: the p95 threshold, overruled by the test when both runs have raw samples
    if current.p95_ms is None or baseline.p95_ms is None:
        missing = "this run" if current.p95_ms is None else "the baseline"
        changes.append(MetricChange(metric="p95_ms", baseline=baseline.p95_ms, current=current.p95_ms, change=None,
                                    limit=f"+{p95_limit:g}%", status="no-evidence",
                                    note=f"{missing} has no p95 latency"))
    else:
        change = _pct(current.p95_ms, baseline.p95_ms)
        over = change is not None and change > p95_limit
        note = ""
        if test is None:
            regressed = over
        else:
            strong = test.effect_a >= float(limits["min_effect"])
            regressed = test.significant and (over or strong)
            stats = f"Mann-Whitney p={test.p_value:.3g}, A={test.effect_a:.2f}"
            if over and not test.significant:
                note = f"p95 rose {change:.0f}% but the latencies did not shift significantly ({stats}): noise"
            elif regressed and not over:
                note = f"p95 rose only {change:.1f}%, but the whole distribution shifted ({stats})"
            else:
                note = stats
        changes.append(MetricChange(metric="p95_ms", baseline=baseline.p95_ms, current=current.p95_ms,
                                    change=None if change is None else round(change, 2), limit=f"+{p95_limit:g}%",
                                    status="regressed" if regressed else "ok", note=note))

    if baseline.throughput_rps is not None:
        if current.throughput_rps is None:
            changes.append(MetricChange(metric="throughput_rps", baseline=baseline.throughput_rps, current=None,
                                        change=None, limit=f"-{drop_limit:g}%", status="no-evidence",
                                        note="this run has no throughput"))
        else:
            change = _pct(current.throughput_rps, baseline.throughput_rps)
            dropped = change is not None and -change > drop_limit
            changes.append(MetricChange(metric="throughput_rps", baseline=baseline.throughput_rps,
                                        current=current.throughput_rps,
                                        change=None if change is None else round(change, 2), limit=f"-{drop_limit:g}%",
                                        status="regressed" if dropped else "ok"))

    if baseline.error_rate is not None:
        if current.error_rate is None:
            changes.append(MetricChange(metric="error_rate", baseline=baseline.error_rate, current=None, change=None,
                                        limit=f"+{err_limit * 100:g} points", status="no-evidence",
                                        note="this run has no error rate"))
        else:
            points = (current.error_rate - baseline.error_rate) * 100
            changes.append(MetricChange(metric="error_rate", baseline=baseline.error_rate, current=current.error_rate,
                                        change=round(points, 3), limit=f"+{err_limit * 100:g} points",
                                        status="regressed" if points > err_limit * 100 + 1e-9 else "ok"))

    if any(c.status == "regressed" for c in changes):
        verdict: Literal["pass", "fail", "no-evidence"] = "fail"
    elif any(c.status == "no-evidence" for c in changes):
        verdict = "no-evidence"
    else:
        verdict = "pass"
    return RegressionResult(verdict=verdict, changes=changes, test=test, narrative=_narrative(changes))


def _narrative(changes: list[MetricChange]) -> str:
    parts = []
    for c in changes:
        if c.status == "no-evidence" or c.change is None:
            parts.append(f"{c.metric}: no comparison ({c.note or 'no data'})")
            continue
        unit = " points" if c.metric == "error_rate" else "%"
        word = "regressed" if c.status == "regressed" else "within limit"
        text = f"{c.metric} {c.change:+.1f}{unit} vs baseline ({word}, limit {c.limit})"
        parts.append(f"{text}; {c.note}" if c.note else text)
    return "; ".join(parts)


# -- storage (the rows are read and written by poetkb.store) ----------------------------------------------
def _db(source: Knowledge | sqlite_utils.Database) -> sqlite_utils.Database:
    """The connection of a knowledge base (or a bare connection, as older callers pass)."""
    from poetkb.knowledge import Knowledge

    return source.db if isinstance(source, Knowledge) else source


def get_baseline(kb: Knowledge | sqlite_utils.Database, service: str, scenario: str) -> Baseline | None:
    """The stored baseline of a service and scenario, if any."""
    rows = store.baseline_rows(_db(kb), service=service, scenario=scenario)
    return _decode(rows[0]) if rows else None


def list_baselines(kb: Knowledge | sqlite_utils.Database, service: str | None = None) -> list[Baseline]:
    """Every stored baseline (of one service), sorted by service and scenario."""
    return [_decode(r) for r in store.baseline_rows(_db(kb), service=service)]


def record_baseline(kb: Knowledge | sqlite_utils.Database, service: str, scenario: str, summary: MetricsSummary, *,
                    profile_fingerprint: str = "") -> Baseline:
    """Keep ``summary`` as the baseline of (service, scenario), replacing the previous one."""
    baseline = Baseline(service=service, scenario=scenario, recorded_at=store.now_iso(), source=summary.source,
                        profile_fingerprint=profile_fingerprint, summary=summary)
    store.put_baseline(_db(kb), {
        "service": service, "scenario": scenario, "recorded_at": baseline.recorded_at, "source": summary.source,
        "profile_fingerprint": profile_fingerprint, "sample_count": summary.sample_count,
        "summary": summary.model_dump_json()})
    return baseline


def _decode(row: dict[str, Any]) -> Baseline:
    from pydantic import ValidationError

    from poetkb.errors import StoreError

    try:
        summary = MetricsSummary.model_validate(json.loads(row["summary"]))
    except (ValueError, TypeError, ValidationError) as exc:
        raise StoreError(f"the stored baseline of {row.get('service')}/{row.get('scenario')} is damaged "
                         f"({str(exc).splitlines()[0][:120]})",
                         hint="record a new baseline from a passing run (`poet interpret --baseline auto`)") from exc
    return Baseline(service=row["service"], scenario=row["scenario"], recorded_at=row["recorded_at"],
                    source=row["source"], profile_fingerprint=row.get("profile_fingerprint") or "", summary=summary)
