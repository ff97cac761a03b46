"""Load plans: scenarios, stages, checks, endpoint mix and safety notes; the k6 and Locust exports really work."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from poetkb.errors import UnknownEntity
from poetkb.load.export_k6 import export_k6
from poetkb.load.export_locust import export_locust
from poetkb.load.metrics import read_metrics
from poetkb.load.plan import CHECK_OBLIGATIONS, LoadPlan, build_plan
from poetkb.load.plan_markdown import plan_markdown
from poetkb.load.profile import load_profile

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "load"
SMALL = FIXTURES / "profiles" / "small.yaml"
EXAMPLES = REPO / "docs" / "examples" / "profiles"


@pytest.fixture
def plan() -> LoadPlan:
    return build_plan(load_profile(SMALL))


def test_four_scenarios_with_their_executors(plan: LoadPlan) -> None:
    """The plan has steady (constant arrival rate), burst, soak and stress (ramping arrival rate)."""
    assert [s.name for s in plan.scenarios] == ["steady", "burst", "soak", "stress"]
    assert plan.scenario("steady").executor == "constant-arrival-rate"
    assert {plan.scenario(n).executor for n in ("burst", "soak", "stress")} == {"ramping-arrival-rate"}
    for scenario in plan.scenarios:
        assert scenario.duration_s == sum(s.duration_s for s in scenario.stages)
        assert scenario.peak_rps == max(s.target_rps for s in scenario.stages)


def test_steady_holds_the_baseline_after_a_warmup(plan: LoadPlan) -> None:
    """Steady runs at baseline_rps: a warm-up phase, then at least ten minutes of the judged steady phase."""
    steady = plan.scenario("steady")
    assert {s.target_rps for s in steady.stages} == {10}
    phases = {p.name: p for p in steady.phases()}
    assert phases["steady"].end_s - phases["steady"].start_s >= 600
    assert phases["warmup"].start_s == 0


def test_burst_goes_to_peak_times_factor_and_back(plan: LoadPlan) -> None:
    """Burst reaches peak x burst factor (20 x 2), then returns to baseline for a recovery window."""
    burst = plan.scenario("burst")
    rates = [s.target_rps for s in burst.stages]
    assert max(rates) == 40
    assert rates[0] == 10 and rates[-1] == 10
    assert [p.name for p in burst.phases()][-2:] == ["recovering", "recovered"]
    recovery = next(c for c in burst.checks if c.kind == "burst_recovery")
    assert recovery.params == {"recovery_s": 60, "phase": "recovered"}


def test_soak_is_long_near_baseline_with_drift_checks(plan: LoadPlan) -> None:
    """Soak lasts hours at the baseline rate and is judged by soak_drift on early and late windows."""
    soak = plan.scenario("soak")
    assert soak.duration_s >= 4 * 3600
    assert max(s.target_rps for s in soak.stages) == 10
    drift = next(c for c in soak.checks if c.kind == "soak_drift")
    assert drift.params["early_phase"] == "early" and drift.params["late_phase"] == "late"
    assert any("memory" in m for m in soak.metrics_to_watch)


def test_stress_steps_past_the_burst_rate(plan: LoadPlan) -> None:
    """Stress climbs through baseline, peak and burst (headroom), then steps up to twice the burst rate."""
    stress = plan.scenario("stress")
    rates = [s.target_rps for s in stress.stages]
    assert rates == sorted(rates)
    assert max(rates) == 80
    headroom = {s.target_rps for s in stress.stages if s.phase == "headroom"}
    assert headroom == {10, 20, 40}
    assert all(c.params.get("phase") == "headroom" and c.params.get("phase_required") for c in stress.checks)
    assert any("isolated environment" in n for n in stress.safety_notes)


def test_checks_mirror_the_slos_and_name_perf_obligations(plan: LoadPlan) -> None:
    """Steady has one latency check per SLO percentile, error rate, throughput and regression, each on perf.*."""
    steady = plan.scenario("steady")
    latency = {c.params["percentile"]: c.params["max_ms"] for c in steady.checks if c.kind == "slo_latency"}
    assert latency == {"p50": 50, "p95": 400, "p99": 800}
    assert next(c for c in steady.checks if c.kind == "slo_error_rate").params["max_rate"] == 0.01
    assert next(c for c in steady.checks if c.kind == "slo_throughput").params["min_rps"] == 9.5
    for scenario in plan.scenarios:
        for check in scenario.checks:
            assert check.obligation == CHECK_OBLIGATIONS[check.kind]
    assert plan.obligations == sorted(CHECK_OBLIGATIONS.values())


def test_endpoint_mix_leans_toward_critical_endpoints(plan: LoadPlan) -> None:
    """Shares sum to 1 and a critical endpoint gets twice the share its weight alone would give."""
    shares = {(e.method, e.path): e.share for e in plan.endpoint_mix}
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    assert shares[("GET", "/items")] == pytest.approx(3 / 7, abs=1e-3)
    assert shares[("POST", "/items")] == pytest.approx(2 / 7, abs=1e-3)
    assert shares[("GET", "/items/{id}")] == pytest.approx(2 / 7, abs=1e-3)


def test_safety_notes_follow_the_data_policy() -> None:
    """No production data unless the profile allows it; write endpoints and dependencies get their notes."""
    checkout = build_plan(load_profile(EXAMPLES / "checkout-api.yaml"))
    search = build_plan(load_profile(EXAMPLES / "search-api.json"))
    assert "synthetic or staging data only" in checkout.safety_notes[0]
    assert "allows production data" in search.safety_notes[0]
    assert any("POST /api/checkout" in n for n in checkout.safety_notes)
    assert any("payments-gateway" in n and "sandbox" in n for n in checkout.safety_notes)
    assert not any("change data" in n for n in search.safety_notes)


def test_plans_are_deterministic_and_round_trip(plan: LoadPlan) -> None:
    """The same profile gives the same plan, and the plan's JSON validates back to an equal model."""
    again = build_plan(load_profile(SMALL))
    assert again.model_dump_json() == plan.model_dump_json()
    assert LoadPlan.model_validate_json(plan.model_dump_json()) == plan


def test_unknown_scenario_names_the_known_ones(plan: LoadPlan) -> None:
    """Asking for a scenario the plan does not have lists the ones it has."""
    with pytest.raises(UnknownEntity, match="unknown scenario 'spike'") as caught:
        plan.scenario("spike")
    assert "steady" in str(caught.value)


def test_markdown_has_every_scenario_and_stage(plan: LoadPlan) -> None:
    """The Markdown plan lists the endpoint mix and each scenario with its stage table and checks."""
    text = plan_markdown(plan)
    for scenario in plan.scenarios:
        assert f"## {scenario.name}: " in text
    assert "| GET | `/items` | no | 42.9% |" in text
    assert "`burst_recovery` (perf.burst.recovery)" in text


# -- k6 --------------------------------------------------------------------------------------------
def _node() -> str:
    node = shutil.which("node")
    assert node, "node is needed for the k6 script checks (apt-get install nodejs)"
    return node


def test_k6_script_passes_a_javascript_syntax_check(plan: LoadPlan, tmp_path: Path) -> None:
    """`node --check` accepts the exported k6 script as an ES module."""
    script = tmp_path / "load.mjs"
    script.write_text(export_k6(plan))
    result = subprocess.run([_node(), "--check", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


_K6_STUBS = """
const http = { request: (method, url, body, params) => { CALLS.push([method, url, body, params.tags.name]);
  return { status: 200, timings: { duration: 12 } }; } };
const exec = { scenario: { startTime: Date.now() } };
class Trend { constructor(name) { METRICS.push(name); } add() {} }
class Rate { constructor(name) { METRICS.push(name); } add() {} }
class Counter { constructor(name) { METRICS.push(name); } add() {} }
"""


def _run_k6_init(plan: LoadPlan, tmp_path: Path, env: dict[str, str]) -> dict[str, object]:
    """Run the script's init code and default function under node with stand-ins for the k6 modules."""
    source = export_k6(plan)
    source = re.sub(r"^import .*$", "", source, flags=re.MULTILINE)
    source = source.replace("export const options", "const options").replace("export function", "function")
    harness = (f"const __ENV = {json.dumps(env)};\nconst CALLS = [];\nconst METRICS = [];\n{_K6_STUBS}\n{source}\n"
               "for (let i = 0; i < 50; i++) { traffic(); }\n"
               "const files = handleSummary({ metrics: {} });\n"
               "console.log(JSON.stringify({ options, calls: CALLS, metrics: METRICS, files: Object.keys(files) }));\n")
    path = tmp_path / "harness.mjs"
    path.write_text(harness)
    result = subprocess.run([_node(), str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_k6_options_use_arrival_rates_and_slo_thresholds(plan: LoadPlan, tmp_path: Path) -> None:
    """Run by node, the script configures the chosen scenario's executor, stages and SLO thresholds."""
    burst = _run_k6_init(plan, tmp_path, {"SCENARIO": "burst", "BASE_URL": "http://127.0.0.1:9/"})
    options = burst["options"]
    config = options["scenarios"]["burst"]
    assert config["executor"] == "ramping-arrival-rate"
    assert config["timeUnit"] == "1m" and config["startRate"] == 600
    assert [s["target"] for s in config["stages"]] == [600, 600, 2400, 2400, 600, 600, 600]
    assert options["thresholds"]["poet_phase_recovered_duration"] == ["p(50)<=50", "p(95)<=400", "p(99)<=800"]
    assert options["thresholds"]["poet_phase_recovered_failed"] == ["rate<=0.01"]
    assert "p(99)" in options["summaryTrendStats"]
    assert "poet_phase_ramp_up_duration" in burst["metrics"]
    assert burst["files"] == ["poet-summary-burst.json", "stdout"]
    urls = {call[1] for call in burst["calls"]}
    assert urls <= {"http://127.0.0.1:9/items", "http://127.0.0.1:9/items/1"}
    posts = [call for call in burst["calls"] if call[0] == "POST"]
    assert posts and all(json.loads(call[2]) == {"name": "load-test"} for call in posts)

    steady = _run_k6_init(plan, tmp_path, {"TIME_SCALE": "0.5", "RATE_SCALE": "2"})["options"]
    config = steady["scenarios"]["steady"]
    assert config["executor"] == "constant-arrival-rate"
    assert config["rate"] == 1200 and config["duration"] == "360s"
    assert steady["thresholds"]["poet_phase_steady_duration"] == ["p(50)<=50", "p(95)<=400", "p(99)<=800"]
    assert steady["thresholds"]["http_reqs"] == ["rate>=19.000"]

    stress = _run_k6_init(plan, tmp_path, {"SCENARIO": "stress"})["options"]
    assert stress["thresholds"]["http_req_failed"][0]["abortOnFail"] is True


def test_k6_script_refuses_an_unknown_scenario(plan: LoadPlan, tmp_path: Path) -> None:
    """SCENARIO=spike stops the script with the list of scenarios."""
    with pytest.raises(AssertionError, match="unknown SCENARIO spike; choose one of steady, burst, soak, stress"):
        _run_k6_init(plan, tmp_path, {"SCENARIO": "spike"})


# -- Locust ----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def upstream() -> str:
    """A real HTTP upstream on a free 127.0.0.1 port (a subprocess), stopped after the test."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(FIXTURES / "upstream.py"), str(port)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.slow
def test_locustfile_runs_headless_and_its_csv_reads_back(plan: LoadPlan, tmp_path: Path, upstream: str) -> None:
    """The exported locustfile runs the burst shape scaled down against a local upstream; its CSV reads back."""
    locust = Path(sys.executable).with_name("locust")
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(export_locust(plan))
    env = {**os.environ, "POET_SCENARIO": "burst", "POET_TIME_SCALE": "0.012", "POET_RATE_SCALE": "0.25",
           "POET_SUMMARY_OUT": str(tmp_path / "summary.json")}
    result = subprocess.run(
        [str(locust), "-f", str(locustfile), "--headless", "--host", upstream, "--csv", str(tmp_path / "run"),
         "--only-summary", "--loglevel", "WARNING"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    stats = read_metrics(tmp_path / "run_stats.csv")
    assert stats.format == "locust-csv"
    assert stats.requests and stats.requests >= 10
    assert stats.error_rate == 0
    assert stats.p95_ms is not None and stats.throughput_rps

    summary = read_metrics(tmp_path / "summary.json")
    assert summary.scenario == "burst" and summary.service == "small-api"
    assert summary.slo == plan.slo
    assert summary.requests == stats.requests
    assert summary.sample_count == stats.requests
    assert set(summary.phases) <= {p.name for p in plan.scenario("burst").phases()}
    assert "warmup" in summary.phases and len(summary.phases) >= 3


def test_locustfile_refuses_an_unknown_scenario(plan: LoadPlan, tmp_path: Path) -> None:
    """POET_SCENARIO=spike stops the locustfile at import with the list of scenarios."""
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(export_locust(plan))
    result = subprocess.run([sys.executable, str(locustfile)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "POET_SCENARIO": "spike"})
    assert result.returncode != 0
    assert "unknown POET_SCENARIO 'spike'; choose one of steady, burst, soak, stress" in result.stderr


# -- properties over many profiles -------------------------------------------------------------------
def _profiles() -> object:
    from hypothesis import strategies as st

    rates = st.floats(min_value=0.1, max_value=5000, allow_nan=False, allow_infinity=False)
    endpoint = st.fixed_dictionaries({
        "path": st.from_regex(r"/[a-z]{1,8}(/\{id\})?", fullmatch=True),
        "method": st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
        "critical": st.booleans(),
        "weight": st.one_of(st.none(), st.floats(min_value=0.01, max_value=100)),
    })
    return st.builds(
        lambda base, extra, factor, p95, p99_extra, err, endpoints, prod: {
            "service": "prop-api",
            "traffic": {"baseline_rps": base, "peak_rps": base + extra, "burst_factor": factor},
            "slo": {"latency_ms": {"p95": p95, "p99": p95 + p99_extra}, "error_rate": err},
            "endpoints": endpoints,
            "data": {"uses_production_data": prod},
        },
        rates, rates, st.floats(min_value=1, max_value=5), st.floats(min_value=1, max_value=5000),
        st.floats(min_value=0, max_value=5000), st.floats(min_value=0, max_value=1),
        st.lists(endpoint, min_size=1, max_size=6), st.booleans(),
    )


def test_plan_invariants_hold_for_any_valid_profile() -> None:
    """For any valid profile: positive stages, burst at peak x factor, shares summing to 1, a JSON round trip."""
    from hypothesis import given, settings

    from poetkb.load.profile import parse_profile

    @settings(max_examples=60, deadline=None)
    @given(_profiles())
    def check(data: dict[str, object]) -> None:
        profile = parse_profile(data)
        built = build_plan(profile)
        assert sum(e.share for e in built.endpoint_mix) == pytest.approx(1.0, abs=5e-3)
        for scenario in built.scenarios:
            assert all(s.duration_s > 0 and s.target_rps >= 0 for s in scenario.stages)
            assert scenario.checks
        assert built.scenario("burst").peak_rps == pytest.approx(profile.traffic.burst_rps, abs=0.01)
        assert built.scenario("stress").peak_rps == pytest.approx(profile.traffic.burst_rps * 2, abs=0.02)
        assert LoadPlan.model_validate_json(built.model_dump_json()) == built
        production = "allows production data" in built.safety_notes[0]
        assert production is profile.data.uses_production_data

    check()
