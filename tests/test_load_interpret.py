"""Interpretation: a verdict per check in plain words, mapped to perf obligations; no data is never a pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import poetkb.load
from poetkb.errors import UnknownEntity
from poetkb.load.checks import CHECK_KINDS, evaluate_check
from poetkb.load.interpret import interpret, interpret_files, interpretation_text
from poetkb.load.metrics import MetricsSummary, read_metrics
from poetkb.load.profile import ServiceProfile, load_profile

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "load"
METRICS = FIXTURES / "metrics"


@pytest.fixture
def profile() -> ServiceProfile:
    return load_profile(FIXTURES / "profiles" / "small.yaml")


def summary(**fields: Any) -> MetricsSummary:
    return MetricsSummary(source="run.json", format="summary-json", **fields)


def test_the_narrative_says_by_how_much_an_slo_is_missed(profile: ServiceProfile) -> None:
    """p95 412 ms against a 400 ms SLO reads "p95 412 ms exceeds the 400 ms SLO by 3%" and fails."""
    result = interpret(profile, read_metrics(METRICS / "summary-slow.json"))
    p95 = next(v for v in result.verdicts if v.observed.get("p95_ms") is not None)
    assert p95.verdict == "fail"
    assert p95.narrative.startswith("p95 412 ms exceeds the 400 ms SLO by 3%")
    assert result.status == "fail"
    assert result.obligations["perf.latency.slo"] == "fail"


def test_a_metric_the_slo_needs_but_the_file_lacks_is_no_evidence(profile: ServiceProfile) -> None:
    """A profile with a p99 SLO and metrics without p99 gives no-evidence naming the file and the field."""
    result = interpret(profile, read_metrics(METRICS / "k6-summary-export.json"))
    p99 = next(v for v in result.verdicts if v.expected.get("p99_ms_max"))
    assert p99.verdict == "no-evidence"
    assert "k6-summary-export.json has no p99_ms" in p99.narrative
    assert "summaryTrendStats" in p99.narrative
    assert result.status == "no-evidence" and not result.passed
    assert result.obligations["perf.latency.slo"] == "no-evidence"


def test_a_passing_run(profile: ServiceProfile) -> None:
    """Every steady check passes on a good summary, each obligation is pass, and the text says so."""
    result = interpret(profile, read_metrics(METRICS / "summary-pass.json"))
    assert result.passed
    assert result.obligations == {"perf.latency.slo": "pass", "perf.error_rate.slo": "pass",
                                  "perf.throughput.slo": "pass"}
    assert "p95 350 ms is within the 400 ms SLO (12% headroom" in interpretation_text(result)
    assert not any(v.kind == "baseline_regression" for v in result.verdicts)


@pytest.mark.parametrize("name", ["summary.csv", "summary-kv.csv", "locust_stats.csv", "samples.txt"])
def test_fixtures_of_every_format_interpret(profile: ServiceProfile, name: str) -> None:
    """Summaries from every reader can be interpreted; samples alone lack the error rate, so they cannot pass."""
    result = interpret(profile, read_metrics(METRICS / name))
    if name == "samples.txt":
        error = next(v for v in result.verdicts if v.kind == "slo_error_rate")
        assert error.verdict == "no-evidence"
        assert not result.passed
    else:
        assert result.passed, result.narrative


def test_burst_recovery_reads_the_recovered_phase(profile: ServiceProfile) -> None:
    """The k6 burst summary's recovered phase is within SLO: pass, with the burst's own numbers reported."""
    result = interpret(profile, read_metrics(METRICS / "k6-handle-summary.json"))
    assert result.scenario == "burst"
    [verdict] = [v for v in result.verdicts if v.kind == "burst_recovery"]
    assert verdict.verdict == "pass"
    assert "p95 is 330 ms" in verdict.narrative and "during the burst: p95 2600 ms, errors 10%" in verdict.narrative
    assert result.obligations == {"perf.burst.recovery": "pass"}


def test_burst_without_phases_is_no_evidence(profile: ServiceProfile) -> None:
    """A whole-run summary cannot show recovery: burst_recovery is no-evidence, never a pass."""
    result = interpret(profile, read_metrics(METRICS / "summary-pass.json"), scenario="burst")
    assert result.status == "no-evidence"
    assert "no 'recovered' phase" in result.verdicts[0].narrative
    assert any("metrics say scenario 'steady'" in n for n in result.notes)


def test_soak_drift_from_phases_and_from_a_series(profile: ServiceProfile) -> None:
    """Flat early/late phases pass soak_drift; a series whose p95 and memory climb fails it."""
    stable = interpret(profile, read_metrics(METRICS / "soak-phases.json"))
    assert stable.obligations["perf.soak.stable"] == "pass"
    drifting = interpret(profile, read_metrics(METRICS / "soak-series.json"))
    drift = next(v for v in drifting.verdicts if v.kind == "soak_drift")
    assert drift.verdict == "fail"
    assert "latency drifts up" in drift.narrative and "memory keeps growing" in drift.narrative
    assert drift.observed["from"] == "series"


def test_stress_reports_the_breaking_point(profile: ServiceProfile) -> None:
    """With per-step phases the stress interpretation names the step where the SLOs first broke."""
    phases = {
        "headroom": {"p95_ms": 300, "p99_ms": 600, "p50_ms": 30, "error_rate": 0.001},
        "break-1": {"p95_ms": 380, "error_rate": 0.002},
        "break-2": {"p95_ms": 900, "error_rate": 0.05},
    }
    result = interpret(profile, summary(p95_ms=500, error_rate=0.02, phases=phases), scenario="stress")
    assert result.passed  # the headroom phase met every SLO
    assert result.breaking_point is not None
    assert result.breaking_point.startswith("the SLOs first broke in the break-2 step (up to 60 rps)")
    assert "held up to 50 rps" in result.breaking_point
    no_phases = interpret(profile, summary(p95_ms=300, error_rate=0.0), scenario="stress")
    assert no_phases.status == "no-evidence"
    assert no_phases.breaking_point and "breaking point unknown" in no_phases.breaking_point


def test_phase_data_wins_over_the_whole_run(profile: ServiceProfile) -> None:
    """With a steady phase in the metrics, the steady checks judge it, not the warm-up-polluted whole run."""
    data = summary(p50_ms=45, p95_ms=900, p99_ms=1500, error_rate=0.05, throughput_rps=10,
                   phases={"steady": {"p50_ms": 30, "p95_ms": 300, "p99_ms": 600, "error_rate": 0.001,
                                      "throughput_rps": 10}})
    result = interpret(profile, data)
    assert result.passed
    assert all("steady phase" in v.narrative for v in result.verdicts)


def test_unknown_scenario(profile: ServiceProfile) -> None:
    """A scenario the plan does not have is an error naming the known ones."""
    with pytest.raises(UnknownEntity, match="unknown scenario 'spike'"):
        interpret_files(None, profile, METRICS / "summary-pass.json", scenario="spike")


# -- evaluate_check, the entry point gates use ---------------------------------------------------
def test_evaluate_check_is_exported() -> None:
    """poetkb.load.evaluate_check is the documented evaluator for every perf check kind."""
    assert poetkb.load.evaluate_check is evaluate_check
    assert set(CHECK_KINDS) == {"slo_latency", "slo_error_rate", "slo_throughput", "baseline_regression",
                                "soak_drift", "burst_recovery"}
    assert "Returns:" in (evaluate_check.__doc__ or "")


@pytest.mark.parametrize(
    ("kind", "params", "fields", "verdict", "words"),
    [
        ("slo_latency", {"percentile": "p95", "max_ms": 400}, {"p95_ms": 412}, "fail", "exceeds the 400 ms SLO by 3%"),
        ("slo_latency", {"percentile": "p95", "max_ms": 400}, {"p95_ms": 399}, "pass", "within the 400 ms SLO"),
        ("slo_latency", {"percentile": "p95", "max_ms": 400}, {"p50_ms": 20}, "no-evidence", "run.json has no p95_ms"),
        ("slo_latency", {"percentile": "p97", "max_ms": 400}, {"p95_ms": 1}, "error", "unknown percentile 'p97'"),
        ("slo_latency", {"percentile": "p90"}, {"p90_ms": 1}, "error", "no p90 threshold"),
        ("slo_error_rate", {"max_rate": 0.01}, {"error_rate": 0.021}, "fail", "error rate 2.1% exceeds the 1% SLO"),
        ("slo_error_rate", {"max_rate": 0.01}, {"error_rate": 0.0}, "pass", "error rate 0% is within the 1% SLO"),
        ("slo_error_rate", {"max_rate": 0.01}, {}, "no-evidence", "not a pass"),
        ("slo_throughput", {"min_rps": 100}, {"throughput_rps": 80}, "fail", "below the 100 rps minimum by 20%"),
        ("slo_throughput", {"min_rps": 100}, {"throughput_rps": 101}, "pass", "meets the 100 rps minimum"),
        ("slo_throughput", {}, {"throughput_rps": 101}, "error", "no throughput threshold"),
        ("baseline_regression", {}, {"p95_ms": 100}, "no-evidence", "no baseline to compare with, not a pass"),
        ("soak_drift", {}, {"p95_ms": 100}, "no-evidence", "soak drift: no data, not a pass"),
        ("burst_recovery", {"max_p95_ms": 400, "max_rate": 0.01}, {"p95_ms": 100}, "no-evidence", "no 'recovered'"),
        ("burst_recovery", {}, {}, "error", "needs the p95 and error-rate SLOs"),
        ("no_such_kind", {}, {}, "error", "unknown load check kind 'no_such_kind'"),
    ],
)
def test_evaluate_check_without_a_profile(kind: str, params: dict[str, Any], fields: dict[str, Any], verdict: str,
                                          words: str) -> None:
    """Thresholds in params are enough; missing data is no-evidence and a check that cannot run is error."""
    outcome = evaluate_check(kind, params, summary(**fields), None)
    assert outcome[0] == verdict
    assert words in outcome[3]
    assert isinstance(outcome[1], dict) and isinstance(outcome[2], dict)


def test_evaluate_check_takes_thresholds_from_the_profile(profile: ServiceProfile) -> None:
    """Catalog checks carry no thresholds: the profile's SLOs fill them in (all percentiles when none is named)."""
    good = summary(p50_ms=30, p95_ms=300, p99_ms=700, error_rate=0.001, throughput_rps=9.6)
    assert evaluate_check("slo_latency", {}, good, profile)[0] == "pass"
    assert evaluate_check("slo_latency", {"percentile": "p99"}, good, profile)[2] == {"p99_ms_max": 800}
    assert evaluate_check("slo_error_rate", {}, good, profile)[0] == "pass"
    assert evaluate_check("slo_throughput", {}, good, profile)[2] == {"throughput_rps_min": 9.5}
    bad = summary(p50_ms=30, p95_ms=300, error_rate=0.001)
    verdict, observed, _, diagnosis = evaluate_check("slo_latency", {}, bad, profile)
    assert verdict == "no-evidence" and observed["p99_ms"] is None and "p99" in diagnosis


def test_gates_without_a_profile_use_the_slos_the_summary_recorded() -> None:
    """As a gate calls it (catalog params, no profile), the SLOs recorded by the exported script set thresholds."""
    data = read_metrics(METRICS / "k6-handle-summary.json")
    assert evaluate_check("burst_recovery", {"recovery_s": 60}, data)[0] == "pass"
    verdict, _, expected, diagnosis = evaluate_check("slo_latency", {"percentile": "p95"}, data)
    assert (verdict, expected) == ("fail", {"p95_ms_max": 400.0})
    assert diagnosis.startswith("p95 980 ms exceeds the 400 ms SLO by 145%")


def test_a_summary_of_another_scenario_is_no_evidence() -> None:
    """A check that names its scenario does not accept a run of a different one."""
    data = read_metrics(METRICS / "summary-pass.json")
    verdict, observed, expected, diagnosis = evaluate_check("slo_error_rate", {"scenario": "burst", "max_rate": 0.01},
                                                            data)
    assert verdict == "no-evidence"
    assert (observed, expected) == ({"scenario": "steady"}, {"scenario": "burst"})
    assert "is a steady run; this check needs a burst run" in diagnosis


def test_burst_recovery_fails_when_the_service_stays_slow(profile: ServiceProfile) -> None:
    """A recovered phase still above the SLOs fails burst_recovery with both reasons."""
    data = summary(phases={"recovered": {"p95_ms": 950, "error_rate": 0.04}, "burst": {"p95_ms": 3000}})
    verdict, observed, _, diagnosis = evaluate_check("burst_recovery", {"recovery_s": 60}, data, profile)
    assert verdict == "fail"
    assert "p95 950 ms is still above the 400 ms SLO" in diagnosis
    assert "error rate 4% is still above the 1% SLO" in diagnosis
    assert observed["burst_p95_ms"] == 3000


def test_soak_without_memory_checks_latency_and_says_so(profile: ServiceProfile) -> None:
    """Without memory data soak_drift judges latency drift and states that leaks were not checked."""
    data = summary(phases={"early": {"p95_ms": 300}, "late": {"p95_ms": 320}})
    verdict, observed, _, diagnosis = evaluate_check("soak_drift", {"max_p95_drift_pct": 10}, data, profile)
    assert verdict == "pass" and observed["memory_growth_pct"] is None
    assert "memory not measured" in diagnosis
