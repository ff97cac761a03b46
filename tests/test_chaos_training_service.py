"""Training scenarios on the service tier (real PostgreSQL): started, checked unhealthy, repaired by the
documented fix (the service without the flaw) and checked healthy; stop puts the tier back.

Two of the three service scenarios run here (one service tier shared by the module, about 30 s);
``benchmarks/chaos_scenarios.py`` runs every scenario of the library, edge and service, end to end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from poetkb.chaos.training import load_scenarios
from poetkb.cli import main
from poetkb.demo.service import tier

pytestmark = [pytest.mark.proxy, pytest.mark.slow]


def poet(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def started(shared_home: Path, base_port: int) -> Any:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POET_HOME", str(shared_home))
        return tier.up(variant="good", base_port=base_port)


@pytest.fixture
def service(started: Any, home: Path, kb_path: Path) -> Any:
    yield tier.load_service_state()
    poet("train", "stop")
    state = tier.load_service_state()
    if state is not None and state.variant != "good":
        tier.up(variant="good", base_port=state.base_port)


@pytest.mark.parametrize("scenario_id", ["pool-exhaustion", "thread-exhaustion"])
def test_service_scenario_breaks_then_its_fix_makes_it_healthy(service: Any, scenario_id: str) -> None:
    """start switches the service to the flawed variant and injects the fault (the symptom is visible);
    check exits 1 naming the failing obligation; the documented fix makes check exit 0; stop restores."""
    scenario = load_scenarios()[scenario_id]
    started = poet("train", "start", scenario_id)
    assert started.exit_code == 0, started.output
    assert scenario.symptom in started.output
    state = tier.load_service_state()
    assert state is not None and state.variant == scenario.variant
    if scenario_id == "pool-exhaustion":
        # the symptom: PostgreSQL is back, the service's pooled connections are dead
        assert httpx.get(state.service_url + "/health", timeout=5).status_code != 200
    else:
        slow = httpx.get(state.dependency_url + "/work", timeout=10)  # the injected 3 s dependency
        assert slow.elapsed.total_seconds() >= 2.5
    unhealthy = poet("train", "check")
    assert unhealthy.exit_code == 1, unhealthy.output
    # a service that cannot serve at all when the gate begins is an error of the check, never a pass
    assert "not yet" in unhealthy.output and all(f"{o}: fail" in unhealthy.output or f"{o}: error" in unhealthy.output
                                                 for o in scenario.obligations)
    tier.up(variant="good", base_port=state.base_port)  # the documented fix
    healthy = poet("train", "check")
    assert healthy.exit_code == 0, healthy.output
    assert f"solved: {scenario.solved}" in healthy.output
    stopped = poet("train", "stop")
    assert stopped.exit_code == 0 and "'good'" in stopped.output
    after = tier.load_service_state()
    assert after is not None and after.variant == "good"
    assert httpx.get(after.service_url + "/health", timeout=5).status_code == 200


def test_service_scenario_needs_the_service_tier(kb_path: Path, isolated_home: Path) -> None:
    """Without the service tier running, start is exit 2 saying how to start it."""
    result = poet("train", "start", "slow-database-query")
    assert result.exit_code == 2 and "--tier service" in result.output
