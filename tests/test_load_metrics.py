"""Metrics readers: every supported format reads into one summary; bad files get a message naming file and field."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from poetkb.errors import InputError
from poetkb.load.metrics import RESERVOIR_SIZE, MetricsSummary, merge, read_metrics, read_samples

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "load"
METRICS = FIXTURES / "metrics"
BAD = FIXTURES / "bad"


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("summary-pass.json", "summary-json",
         {"p50_ms": 40, "p90_ms": 200, "p95_ms": 350, "p99_ms": 700, "error_rate": 0.002, "throughput_rps": 10.1,
          "cpu_percent": 41.5, "memory_percent": 52.0, "scenario": "steady"}),
        ("summary.csv", "summary-csv", {"p95_ms": 330, "p99_ms": 650, "error_rate": 0.001, "memory_percent": 48}),
        ("summary-kv.csv", "summary-csv", {"p50_ms": 38, "p95_ms": 330, "throughput_rps": 10.2}),
        ("k6-summary-export.json", "k6-summary-export",
         {"p50_ms": 42.3, "p90_ms": 180.7, "p95_ms": 310.2, "p99_ms": None, "throughput_rps": 10.0, "requests": 7200}),
        ("k6-handle-summary.json", "k6-handle-summary",
         {"p50_ms": 44.0, "p95_ms": 980.0, "p99_ms": 2900.0, "error_rate": 0.031, "duration_s": 540.123,
          "scenario": "burst"}),
        ("locust_stats.csv", "locust-csv",
         {"p50_ms": 44, "p90_ms": 180, "p95_ms": 320, "p99_ms": 760, "throughput_rps": 10.0, "requests": 7200}),
        ("samples.txt", "samples", {"sample_count": 400, "requests": 400}),
        ("samples.json", "samples", {"sample_count": 200}),
        ("k6-stream.ndjson", "k6-json-stream", {"sample_count": 100, "error_rate": 0.02, "p99_ms": 65.0}),
    ],
)
def test_each_format_reads_into_a_summary(name: str, fmt: str, expected: dict[str, object]) -> None:
    """The format is recognised from the content and its numbers land in the summary's fields."""
    summary = read_metrics(METRICS / name)
    assert summary.format == fmt
    assert summary.source == str(METRICS / name)
    for key, value in expected.items():
        actual = getattr(summary, key)
        assert actual == (pytest.approx(value) if isinstance(value, float) else value), key


def test_locust_error_rate_is_failures_over_requests() -> None:
    """Locust's Aggregated row gives the error rate as Failure Count / Request Count."""
    assert read_metrics(METRICS / "locust_stats.csv").error_rate == pytest.approx(25 / 7200)


def test_k6_summary_without_p99_says_how_to_get_it() -> None:
    """A k6 summary lacking p(99) keeps p99 empty and notes the summaryTrendStats fix."""
    summary = read_metrics(METRICS / "k6-summary-export.json")
    assert any("add 'p(99)' to summaryTrendStats" in note for note in summary.notes)


def test_k6_handle_summary_phases_become_phases() -> None:
    """poet_phase_* metrics of the exported script become phases, with throughput from the phase windows."""
    summary = read_metrics(METRICS / "k6-handle-summary.json")
    assert set(summary.phases) == {"before", "burst", "ramp-down", "recovered"}
    recovered = summary.phases["recovered"]
    assert (recovered.p95_ms, recovered.error_rate, recovered.requests) == (330.0, 0.002, 1200)
    assert recovered.throughput_rps == pytest.approx(10.0)


def test_k6_summary_of_the_exported_script_records_service_and_slos() -> None:
    """The `poet` block the exported script writes gives the service and the SLOs the run was planned against."""
    summary = read_metrics(METRICS / "k6-handle-summary.json")
    assert summary.service == "small-api"
    assert summary.slo is not None and summary.slo.latency_ms.p95 == 400 and summary.slo.error_rate == 0.01


def test_csv_phase_rows() -> None:
    """A CSV summary with a phase column gives the whole run (empty phase) and one entry per phase."""
    summary = read_metrics(METRICS / "summary-phases.csv")
    assert summary.p95_ms == 380 and summary.error_rate == 0.02
    assert summary.phases["burst"].p95_ms == 1900 and summary.phases["recovered"].error_rate == 0.002


def test_series_are_read() -> None:
    """A JSON summary's time series is kept in order for drift checks."""
    summary = read_metrics(METRICS / "soak-series.json")
    assert len(summary.series) == 17
    assert summary.series[-1].memory_percent == 72


def test_samples_give_exact_percentiles() -> None:
    """Percentiles from raw samples match numpy's (linear interpolation) on the same numbers."""
    import numpy

    values = [float(v) for v in (METRICS / "samples.txt").read_text().split()[1:]]
    summary = read_samples(METRICS / "samples.txt")
    assert summary.p95_ms == pytest.approx(float(numpy.percentile(values, 95)), abs=1e-3)
    assert summary.p50_ms == pytest.approx(float(numpy.percentile(values, 50)), abs=1e-3)
    assert sorted(summary.samples_ms) == sorted(values)


def test_large_sample_files_stream_into_a_bounded_reservoir(tmp_path: Path) -> None:
    """300k samples (one per line and as a JSON list) read with exact percentiles and a reservoir of fixed size."""
    rng = random.Random(11)
    values = [round(rng.uniform(1, 1000), 2) for _ in range(300_000)]
    lines = tmp_path / "big.txt"
    lines.write_text("\n".join(map(str, values)) + "\n")
    as_list = tmp_path / "big.json"
    as_list.write_text(json.dumps(values))
    for path in (lines, as_list):
        summary = read_metrics(path)
        assert summary.sample_count == 300_000
        assert len(summary.samples_ms) == RESERVOIR_SIZE
        assert summary.p50_ms == pytest.approx(sorted(values)[150_000], rel=1e-3)
    assert read_metrics(lines).samples_ms == read_metrics(as_list).samples_ms


def test_json_summary_with_samples_computes_missing_percentiles(tmp_path: Path) -> None:
    """samples_ms in a JSON summary fill the percentiles it does not give and enable the statistical test."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"error_rate": 0.0, "p99_ms": 999, "samples_ms": list(range(1, 101))}))
    summary = read_metrics(path)
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p99_ms == 999
    assert summary.sample_count == 100


def test_merge_fills_gaps_from_later_files() -> None:
    """Merging a k6 summary with a CSV adds what the first lacks (p99, memory) without overriding it."""
    merged = merge([read_metrics(METRICS / "k6-summary-export.json"), read_metrics(METRICS / "summary.csv")])
    assert merged.p95_ms == 310.2
    assert merged.p99_ms == 650
    assert merged.memory_percent == 48
    assert " + " in merged.source


def test_summary_round_trips_through_json() -> None:
    """A summary validates back from its own JSON (how baselines are stored)."""
    summary = read_metrics(METRICS / "k6-handle-summary.json")
    assert MetricsSummary.model_validate_json(summary.model_dump_json()) == summary


@pytest.mark.parametrize(
    ("name", "line", "field", "message"),
    [
        ("empty.json", None, None, "file is empty; expected a simple JSON/CSV summary"),
        ("truncated.json", 3, None, "the JSON ends before it is complete: the file is truncated"),
        ("truncated-list.json", 2, None, "the JSON list of samples has no closing ']': the file is truncated"),
        ("unknown.txt", 1, None, "unknown metrics format (first line: 'hello world')"),
        ("locust-no-aggregated_stats.csv", None, "Aggregated", "has no 'Aggregated' row: the file is truncated"),
        ("k6-no-duration.json", None, "metrics.http_req_duration", "the k6 summary has no http_req_duration"),
        ("samples-bad.txt", 3, None, "'fast' is not a number"),
        ("summary-unknown-field.json", 3, "p95", "unknown field 'p95' (did you mean 'p95_ms'?)"),
    ],
)
def test_bad_metrics_files_name_the_file_and_the_problem(name: str, line: int | None, field: str | None,
                                                         message: str) -> None:
    """Empty, truncated, unknown-format and incomplete files raise InputError with file, line/field and cause."""
    path = BAD / name
    with pytest.raises(InputError) as caught:
        read_metrics(path)
    err = caught.value
    assert err.file == str(path)
    assert err.line == line
    assert err.field == field
    assert message in str(err)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("p95_ms,error_rate\n", "has a header but no values: the file is truncated"),
        ("p95_ms,error_rate\n120\n", "row has 1 values but the header has 2 columns"),
        ("p95_ms,latency_avg\n1,2\n", "unknown column(s) latency_avg"),
        ("metric,value\np95_ms,abc\n", "'abc' is not a number"),
        ("p95_ms,error_rate\n120,1.5\n", "less than or equal to 1"),
    ],
)
def test_bad_csv_summaries(tmp_path: Path, content: str, message: str) -> None:
    """CSV summaries that are cut short, misaligned, unknown or out of range are refused with the reason."""
    path = tmp_path / "summary.csv"
    path.write_text(content)
    with pytest.raises(InputError) as caught:
        read_metrics(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_and_samples_only() -> None:
    """A missing file is named; read_samples refuses a summary that has no raw samples."""
    with pytest.raises(InputError, match="no such metrics file"):
        read_metrics("/nonexistent/metrics.json")
    with pytest.raises(InputError, match="no raw latency samples"):
        read_samples(METRICS / "summary-pass.json")
