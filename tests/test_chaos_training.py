"""Training scenarios against the real demo edge: every scenario starts, is checked unhealthy, is repaired by its
documented fix and is checked healthy; hints are graded; stop restores the demo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from poetkb import demo
from poetkb.chaos.training import Scenario, load_scenarios
from poetkb.cli import main

SCENARIOS = sorted(sid for sid, s in load_scenarios().items() if s.tier == "edge")


def poet(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def started(shared_home: Path, base_port: int) -> str:
    """The good NGINX edge, started once for the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POET_HOME", str(shared_home))
        return demo.up(proxy="nginx", variant="good", base_port=base_port).proxy


@pytest.fixture
def edge(started: str, home: Path, kb_path: Path) -> Iterator[Any]:
    """The demo in its good configuration with no fault, before and after the test."""
    yield demo.load_state()
    poet("train", "stop")
    state = demo.load_state()
    assert state is not None
    if state.variant != "good":
        demo.up(proxy=state.proxy, variant="good", base_port=state.base_port)
    for up in state.upstreams:
        httpx.delete(up.admin_url + "/fault", timeout=5)


def test_library_has_the_scenarios() -> None:
    """The library holds at least eight scenarios, each with three graded hints and a variant that exists."""
    from poetkb.demo.overlays import all_variants
    from poetkb.demo.service.variants import VARIANTS as SERVICE_VARIANTS

    variants = {v.name for v in all_variants()}
    scenarios = load_scenarios()
    assert len(scenarios) >= 8
    assert {"slow-upstream", "retry-storm", "cache-poisoning-vary", "connection-exhaustion", "slow-database-query",
            "thread-exhaustion", "pool-exhaustion", "stale-cache-forever", "tls-chain-broken"} <= set(scenarios)
    for scenario in scenarios.values():
        assert isinstance(scenario, Scenario) and len(scenario.hints) >= 3
        assert [h.split(":")[0] for h in scenario.hints[:3]] == ["Signal", "Component", "Fix"]
        if scenario.tier == "service":
            assert scenario.variant in SERVICE_VARIANTS
            assert set(scenario.obligations) <= set(SERVICE_VARIANTS[scenario.variant].breaks)
            continue
        assert scenario.variant in variants
        for proxy in scenario.proxies:
            assert any(v.name == scenario.variant and v.proxy == proxy for v in all_variants())
        assert [h.split(":")[0] for h in scenario.hints[:3]] == ["Signal", "Component", "Fix"]


@pytest.mark.proxy
@pytest.mark.slow
@pytest.mark.parametrize("scenario_id", SCENARIOS)
def test_scenario_breaks_then_its_fix_makes_it_healthy(edge: Any, scenario_id: str) -> None:
    """start injects the failure (check exits 1 naming the failing obligation); the documented fix (the good
    configuration) makes check exit 0 with the solved message; stop leaves the good demo without faults."""
    scenario = load_scenarios()[scenario_id]
    started = poet("train", "start", scenario_id)
    assert started.exit_code == 0, started.output
    assert scenario.symptom in started.output
    assert demo.load_state().variant == scenario.variant
    unhealthy = poet("train", "check")
    assert unhealthy.exit_code == 1, unhealthy.output
    assert "not yet" in unhealthy.output and any(f"{o}: fail" in unhealthy.output for o in scenario.obligations)
    state = demo.load_state()
    demo.up(proxy=state.proxy, variant="good", base_port=state.base_port)  # the documented fix
    healthy = poet("train", "check")
    assert healthy.exit_code == 0, healthy.output
    assert f"solved: {scenario.solved}" in healthy.output
    assert poet("train", "stop").exit_code == 0
    assert demo.load_state().variant == "good"
    for up in demo.load_state().upstreams:
        fault = httpx.get(up.admin_url + "/fault", timeout=5).json()
        assert fault["latency_ms"] == 0 and fault["status"] is None


@pytest.mark.proxy
def test_hints_are_graded_and_stop_restores(edge: Any) -> None:
    """hint gives the signal, then the component, then the fix, then keeps the last; stop heals the fault."""
    assert poet("train", "start", "retry-storm").exit_code == 0
    faulty = demo.load_state().upstream("faulty")
    assert httpx.get(faulty.admin_url + "/fault").json()["status"] == 503
    texts = [poet("train", "hint").output for _ in range(4)]
    assert texts[0].startswith("hint 1/3: Signal:") and texts[1].startswith("hint 2/3: Component:")
    assert texts[2].startswith("hint 3/3: Fix:") and texts[3] == texts[2]
    other = poet("train", "start", "slow-upstream")
    assert other.exit_code == 2 and "retry-storm" in other.output
    stopped = poet("train", "stop")
    assert stopped.exit_code == 0 and "'good'" in stopped.output
    assert httpx.get(faulty.admin_url + "/fault").json()["status"] is None


def test_errors_are_bad_input(kb_path: Path, isolated_home: Path) -> None:
    """No active scenario, or an unknown id, is exit 2 with what to do."""
    assert poet("train", "hint").exit_code == 2
    unknown = poet("train", "start", "no-such-scenario")
    assert unknown.exit_code == 2 and "slow-upstream" in unknown.output
    assert poet("scenario", "list").exit_code == 0


def test_instructor_guides_match_the_scenarios() -> None:
    """docs/scenarios/ holds exactly what `python -m poetkb.chaos.guides docs/scenarios` generates."""
    from poetkb.chaos.guides import render_all

    docs = Path(__file__).resolve().parent.parent / "docs" / "scenarios"
    expected = render_all()
    assert sorted(p.name for p in docs.glob("*.md")) == sorted(expected)
    for name, text in expected.items():
        assert (docs / name).read_text(encoding="utf-8") == text, f"regenerate docs/scenarios ({name} differs)"


def test_guide_command_prints_the_guide(kb_path: Path) -> None:
    """`poet train guide ID` prints the scenario's guide."""
    result = poet("train", "guide", "retry-storm")
    assert result.exit_code == 0 and result.output.startswith("# One failing request is retried on every server")
    assert "## How to diagnose" in result.output
