"""Service profiles: the shipped examples load, and every bad profile gets a message with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from poetkb.errors import InputError
from poetkb.load.profile import ServiceProfile, as_profile, load_profile, parse_profile

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "load"
EXAMPLES = REPO / "docs" / "examples" / "profiles"


@pytest.mark.parametrize("name", ["checkout-api.yaml", "search-api.json"])
def test_example_profiles_load(name: str) -> None:
    """The example profiles shipped in docs/examples/profiles are valid."""
    profile = load_profile(EXAMPLES / name)
    assert isinstance(profile, ServiceProfile)
    assert profile.traffic.peak_rps >= profile.traffic.baseline_rps
    assert profile.slo.latency_ms.items()


def test_error_rate_accepts_a_percentage_string() -> None:
    """`error_rate: "0.5%"` is read as the fraction 0.005."""
    assert load_profile(EXAMPLES / "search-api.json").slo.error_rate == pytest.approx(0.005)


def test_defaults_and_string_dependencies() -> None:
    """Method defaults to GET, burst factor to 1.5, data to no production data; a bare string is a dependency."""
    profile = parse_profile({
        "service": "x", "traffic": {"baseline_rps": 1, "peak_rps": 2},
        "slo": {"latency_ms": {"p95": 100}, "error_rate": 0.01},
        "endpoints": [{"path": "/a", "method": "post"}], "dependencies": ["db"],
    })
    assert profile.endpoints[0].method == "POST"
    assert profile.traffic.burst_factor == 1.5
    assert profile.data.uses_production_data is False
    assert profile.dependencies[0].name == "db"


def test_fingerprint_is_stable_and_content_based() -> None:
    """The same content gives the same fingerprint; a changed SLO gives another."""
    a = load_profile(FIXTURES / "profiles" / "small.yaml")
    b = load_profile(FIXTURES / "profiles" / "small.yaml")
    changed = as_profile({**a.model_dump(), "slo": {**a.slo.model_dump(), "error_rate": 0.02}})
    assert a.fingerprint() == b.fingerprint() != changed.fingerprint()


@pytest.mark.parametrize(
    ("name", "line", "field", "message"),
    [
        ("negative-rate.yaml", 3, "traffic.baseline_rps", "baseline_rps must not be negative (got -5)"),
        ("p99-below-p95.yaml", 6, "slo.latency_ms.p99", "p99 (300 ms) is below p95 (400 ms)"),
        ("peak-below-baseline.yaml", 4, "traffic.peak_rps", "peak_rps (20) is below baseline_rps (50)"),
        ("peak-below-baseline.json", 5, "traffic.peak_rps", "peak_rps (20) is below baseline_rps (50)"),
        ("unknown-key.yaml", 5, "traffic.burst_factr", "unknown field (did you mean 'burst_factor'?)"),
        ("missing-slo.yaml", 1, "slo", "the profile has no SLOs: add `slo:`"),
        ("empty-latency.yaml", 4, "slo.latency_ms", "no latency SLO: set at least one of p50, p95, p99"),
        ("error-rate-percent.yaml", 5, "slo.error_rate", "error_rate is a fraction between 0 and 1"),
    ],
)
def test_bad_profiles_name_file_line_and_field(name: str, line: int, field: str, message: str) -> None:
    """Each invalid profile raises InputError naming the file, the line and the field, with what is wrong."""
    path = FIXTURES / "bad" / name
    with pytest.raises(InputError) as caught:
        load_profile(path)
    err = caught.value
    assert err.file == str(path)
    assert err.line == line
    assert err.field == field
    assert message in str(err)


def test_a_zero_baseline_is_refused() -> None:
    """A baseline of 0 rps would make the steady and soak scenarios empty: it is an error naming the field."""
    data = {"service": "x", "traffic": {"baseline_rps": 0, "peak_rps": 2},
            "slo": {"latency_ms": {"p95": 100}, "error_rate": 0.01}, "endpoints": [{"path": "/"}]}
    with pytest.raises(InputError, match=r"\[traffic.baseline_rps\] baseline_rps must be above 0"):
        parse_profile(data)


def test_all_problems_are_reported_at_once() -> None:
    """A profile with two problems lists both, each with its own line."""
    path = FIXTURES / "bad" / "two-problems.yaml"
    with pytest.raises(InputError) as caught:
        load_profile(path)
    text = str(caught.value)
    assert "2 problems in the service profile" in text
    assert f"{path}:7: [endpoints.0.path] path 'no-slash' must start with '/'" in text
    assert f"{path}:8: [endpoints.0.methd] unknown field (did you mean 'method'?)" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "this file is empty"),
        ("- just\n- a list\n", "must be a mapping"),
        ("service: [unclosed\n", "malformed YAML"),
    ],
)
def test_unusable_files(tmp_path: Path, content: str, message: str) -> None:
    """Empty, non-mapping and malformed files are refused with a message naming the file."""
    path = tmp_path / "profile.yaml"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as caught:
        load_profile(path)
    assert str(path) in str(caught.value)


def test_missing_file() -> None:
    """A path that does not exist is an InputError naming it."""
    with pytest.raises(InputError, match="no such profile file"):
        load_profile("/nonexistent/profile.yaml")
