"""Baselines: kept in the knowledge base across rebuilds, and regressions judged with thresholds and Mann-Whitney U."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from poetkb import store
from poetkb.catalog import load_catalog
from poetkb.kb import KnowledgeBase
from poetkb.load.baselines import compare, mann_whitney
from poetkb.load.metrics import RESERVOIR_SIZE, MetricsSummary, SampleSink, read_metrics, summary_from_samples

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "load"
MINI_CATALOG = Path(__file__).resolve().parent / "fixtures" / "catalog" / "mini"
PROFILE = FIXTURES / "profiles" / "small.yaml"


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    """A real knowledge base file (built from a small catalog) in the test's tmp dir."""
    path = tmp_path / "kb.sqlite"
    store.build(load_catalog(MINI_CATALOG), path, source=str(MINI_CATALOG))
    base = KnowledgeBase(path)
    yield base
    base.close()


def lognormal(seed: int, n: int, *, mu: float = 4.0, sigma: float = 0.5, scale: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(mu, sigma) * scale for _ in range(n)]


def from_samples(values: list[float], *, name: str = "run", **extra: float) -> MetricsSummary:
    sink = SampleSink()
    for value in values:
        sink.add(value)
    return summary_from_samples(sink, source=name, **extra)


def write_summary(path: Path, **fields: object) -> Path:
    path.write_text(json.dumps(fields))
    return path


def test_baseline_round_trip(kb: KnowledgeBase) -> None:
    """A recorded baseline comes back equal, samples included; recording again replaces it."""
    first = from_samples(lognormal(1, 500), name="first.txt", error_rate=0.001, throughput_rps=10.0)
    kb.record_baseline("small-api", "steady", first, profile_fingerprint="abc")
    stored = kb.load_baseline("small-api", "steady")
    assert stored is not None
    assert stored.summary == first
    assert stored.profile_fingerprint == "abc"
    assert kb.load_baseline("small-api", "burst") is None
    second = from_samples(lognormal(2, 300), name="second.txt")
    kb.record_baseline("small-api", "steady", second)
    assert [(b.service, b.scenario, b.source) for b in kb.load_baselines()] == [("small-api", "steady", "second.txt")]


def test_baselines_survive_a_rebuild(kb: KnowledgeBase) -> None:
    """The baselines table is state: rebuilding the knowledge base from the catalog keeps it."""
    kb.record_baseline("small-api", "soak", from_samples(lognormal(3, 100), name="soak.txt"))
    kb.build(MINI_CATALOG)
    stored = kb.load_baseline("small-api", "soak")
    assert stored is not None and stored.source == "soak.txt"


def test_the_stored_sample_reservoir_is_bounded(kb: KnowledgeBase) -> None:
    """A run with more samples than the reservoir stores a bounded uniform sample, enough for the test later."""
    big = from_samples(lognormal(4, 3 * RESERVOIR_SIZE), name="big")
    kb.record_baseline("small-api", "steady", big)
    stored = kb.load_baseline("small-api", "steady")
    assert stored is not None
    assert stored.summary.sample_count == 3 * RESERVOIR_SIZE
    assert len(stored.summary.samples_ms) == RESERVOIR_SIZE
    result = compare(from_samples(lognormal(5, 2000)), stored.summary)
    assert result.test is not None and result.test.n_baseline == RESERVOIR_SIZE


def test_same_distribution_twice_is_no_regression() -> None:
    """Two runs drawn from one distribution: Mann-Whitney finds no shift and the comparison passes."""
    base, new = from_samples(lognormal(10, 2000)), from_samples(lognormal(11, 2000))
    result = compare(new, base)
    assert result.verdict == "pass"
    assert result.test is not None and not result.test.significant
    assert 0.45 < result.test.effect_a < 0.55
    assert result.test.rank_biserial == pytest.approx(2 * result.test.effect_a - 1, abs=1e-3)


def test_a_real_shift_is_a_regression() -> None:
    """Latencies 30% slower across the board: significant, clear effect, p95 over the 20% limit: fail."""
    base, new = from_samples(lognormal(10, 2000)), from_samples(lognormal(11, 2000, scale=1.3))
    result = compare(new, base)
    assert result.verdict == "fail"
    assert result.test is not None and result.test.significant and result.test.p_value < 1e-6
    assert result.test.effect_a > 0.6
    p95 = result.changes[0]
    assert p95.metric == "p95_ms" and p95.status == "regressed" and p95.change is not None and p95.change > 20
    assert "p95_ms +" in result.narrative and "Mann-Whitney p=" in result.narrative


def test_a_noisy_tail_does_not_fail_the_gate() -> None:
    """p95 up more than 20% because of a few slow requests, the distribution unchanged: noise, not a regression."""
    base_values = lognormal(20, 400)
    ordered = sorted(base_values)
    cutoff = ordered[int(len(ordered) * 0.93)]
    new_values = [v * 1.6 if v >= cutoff else v for v in base_values]
    base, new = from_samples(base_values), from_samples(new_values)
    assert new.p95_ms is not None and base.p95_ms is not None and new.p95_ms > base.p95_ms * 1.2
    result = compare(new, base)
    assert result.verdict == "pass"
    assert result.test is not None and not result.test.significant
    assert "did not shift significantly" in result.changes[0].note


def test_a_consistent_shift_below_the_threshold_still_fails() -> None:
    """Every request 12% slower on a narrow distribution: under the 20% p95 limit, but a real shift: fail."""
    base = from_samples(lognormal(30, 3000, sigma=0.1))
    new = from_samples(lognormal(31, 3000, sigma=0.1, scale=1.12))
    result = compare(new, base)
    assert result.verdict == "fail"
    assert result.changes[0].change is not None and result.changes[0].change < 20
    assert "rose only" in result.changes[0].note


@pytest.mark.parametrize(
    ("current", "verdict", "metric", "status"),
    [
        ({"p95_ms": 125.0}, "fail", "p95_ms", "regressed"),
        ({"p95_ms": 110.0}, "pass", "p95_ms", "ok"),
        ({"p95_ms": 100.0, "throughput_rps": 80.0}, "fail", "throughput_rps", "regressed"),
        ({"p95_ms": 100.0, "throughput_rps": 90.0}, "pass", "throughput_rps", "ok"),
        ({"p95_ms": 100.0, "error_rate": 0.07}, "fail", "error_rate", "regressed"),
        ({"p95_ms": 100.0, "error_rate": 0.05}, "pass", "error_rate", "ok"),
        ({"p50_ms": 10.0}, "no-evidence", "p95_ms", "no-evidence"),
    ],
)
def test_threshold_defaults_without_samples(current: dict[str, float], verdict: str, metric: str, status: str
                                            ) -> None:
    """Without raw samples: p95 +20%, throughput -15% and error rate +5 points are the limits."""
    base = MetricsSummary(source="b", format="summary-json", p95_ms=100.0, throughput_rps=100.0, error_rate=0.01)
    defaults = {"throughput_rps": 100.0, "error_rate": 0.01}
    new = MetricsSummary(source="n", format="summary-json", **{**defaults, **current})
    result = compare(new, base)
    assert result.verdict == verdict
    assert next(c for c in result.changes if c.metric == metric).status == status


def test_thresholds_are_configurable() -> None:
    """A 10% p95 limit fails a 15% rise that the default 20% limit passes."""
    base = MetricsSummary(source="b", format="summary-json", p95_ms=100.0)
    new = MetricsSummary(source="n", format="summary-json", p95_ms=115.0)
    assert compare(new, base).verdict == "pass"
    assert compare(new, base, {"p95_increase_pct": 10}).verdict == "fail"


def test_mann_whitney_effect_sizes() -> None:
    """A = P(new > baseline): 1 when every new latency is larger, 0.5 for identical samples."""
    assert mann_whitney([1, 2, 3] * 10, [10, 11, 12] * 10).effect_a == 1.0
    same = mann_whitney([1.0, 2.0, 3.0] * 10, [1.0, 2.0, 3.0] * 10)
    assert same.effect_a == 0.5 and same.rank_biserial == 0.0 and not same.significant


def test_auto_baseline_records_passing_runs_and_catches_regressions(kb: KnowledgeBase, tmp_path: Path) -> None:
    """--baseline auto: the first passing run becomes the baseline; a slower run is a regression and is not kept."""
    good = write_summary(tmp_path / "good.json", p50_ms=30, p95_ms=300, p99_ms=600, error_rate=0.001,
                         throughput_rps=10, samples_ms=lognormal(40, 500, mu=5.0, sigma=0.3))
    first = kb.interpret(PROFILE, good, baseline="auto")
    assert first.passed and first.baseline_recorded
    [regression] = [v for v in first.verdicts if v.kind == "baseline_regression"]
    assert regression.verdict == "no-evidence" and not regression.gating
    assert "no baseline yet for small-api/steady" in regression.narrative
    recorded = kb.load_baseline("small-api", "steady")
    assert recorded is not None and recorded.source == str(good)

    slower = write_summary(tmp_path / "slower.json", p50_ms=45, p95_ms=390, p99_ms=790, error_rate=0.001,
                           throughput_rps=10, samples_ms=lognormal(41, 500, mu=5.0, sigma=0.3, scale=1.3))
    second = kb.interpret(PROFILE, slower, baseline="auto")
    assert second.status == "fail" and not second.baseline_recorded
    assert second.obligations["perf.regression.baseline"] == "fail"
    assert second.obligations["perf.latency.slo"] == "pass"
    assert second.baseline is not None and second.baseline.recorded_at == recorded.recorded_at
    after = kb.load_baseline("small-api", "steady")
    assert after is not None and after.source == str(good)


def test_baseline_from_a_file(kb: KnowledgeBase, tmp_path: Path) -> None:
    """--baseline FILE compares with that run, and nothing is recorded in the knowledge base."""
    base = write_summary(tmp_path / "base.json", p95_ms=250, error_rate=0.0, throughput_rps=10)
    result = kb.interpret(PROFILE, FIXTURES / "metrics" / "summary-pass.json", baseline=base)
    regression = next(v for v in result.verdicts if v.kind == "baseline_regression")
    assert regression.verdict == "fail" and regression.gating
    assert regression.observed["p95_ms"]["change"] == pytest.approx(40.0)
    assert result.baseline is not None and result.baseline.mode == "file"
    assert kb.load_baselines() == []
    assert read_metrics(base).p95_ms == 250


def test_kb_load_plan_is_the_library_plan(kb: KnowledgeBase) -> None:
    """kb.load_plan(path) gives the same plan as building it from the loaded profile."""
    from poetkb.load.plan import build_plan
    from poetkb.load.profile import load_profile

    assert kb.load_plan(PROFILE) == build_plan(load_profile(PROFILE))
