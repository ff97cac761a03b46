"""Training scenarios: a standard failure injected into the running demo, graded hints, and a check that says
when the system is healthy again and why.

A scenario (``poetkb/chaos/scenarios/*.yaml``, ``poet schema chaos-scenario``) names the tier (the demo edge,
or the service tier with its real PostgreSQL) and the variant of that tier that carries the failure (a
configuration or code mistake seen in real outages), run-time faults that make its symptom visible, the
obligations it teaches, three or more graded hints (first the signal to look at, then the component, then
the fix) and what to say when it is solved. ``check`` runs the gate checks of those
obligations (plus any extra probes) against the demo: healthy only when every one passes. While the
scenario is unsolved, ``check`` injects the run-time faults again (a gate run heals faults it finds), so
the learner keeps seeing the symptom. On the service tier, ``check`` first heals the faults it injected
(the service's ``/__poet/fault``), so the gates judge the service's code and configuration, not the
injected slowness.

State of the active scenario lives in ``$POET_HOME/train/active.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError

from poetkb.chaos.models import Action, GateProbe, Probe
from poetkb.errors import CatalogError, EnvironmentProblem, InputError, UnknownEntity
from poetkb.models import PoetModel
from poetkb.types import EntityId, NonEmptyStr, ObligationId

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
ProxyName = Literal["nginx", "haproxy"]
_BOTH: tuple[ProxyName, ...] = ("nginx", "haproxy")


class Scenario(PoetModel):
    """One training scenario (see the module docstring)."""

    id: EntityId
    title: NonEmptyStr
    obligations: list[ObligationId] = Field(min_length=1)
    failure_mode: str = ""
    #: where the failure lives: the demo edge (NGINX/HAProxy) or the service tier (service + PostgreSQL)
    tier: Literal["edge", "service"] = "edge"
    #: the variant of that tier that carries the failure (``poet demo variants`` / the service variants)
    variant: NonEmptyStr
    #: the proxies the variant exists for
    proxies: list[ProxyName] = Field(default_factory=lambda: list(_BOTH), min_length=1)
    #: run-time faults that make the symptom visible
    inject: list[Action] = Field(default_factory=list, max_length=20)
    symptom: NonEmptyStr
    hints: list[NonEmptyStr] = Field(min_length=3, max_length=10)
    fix: NonEmptyStr
    solved: NonEmptyStr
    #: extra probes checked besides the gates of the obligations
    check: list[Probe] = Field(default_factory=list, max_length=20)


class TrainingState(PoetModel):
    """The active scenario."""

    scenario: str
    proxy: str
    tier: Literal["edge", "service"] = "edge"
    previous_variant: str
    started_at: float
    hints_given: int = 0
    checks: int = 0
    solved_at: float | None = None


class CheckResult(PoetModel):
    """What ``check`` found: healthy or not, and why, probe by probe."""

    scenario: str
    healthy: bool
    details: list[str]
    message: str


def load_scenarios(directory: Path = SCENARIO_DIR) -> dict[str, Scenario]:
    """Every scenario of the library, by id (validated; problems name the file and line)."""
    from poetkb.chaos.loader import read_data
    from poetkb.yamlfile import problems_from_validation

    found: dict[str, Scenario] = {}
    for path in sorted(directory.glob("*.yaml")):
        data = read_data(path)
        try:
            scenario = Scenario.model_validate(data)
        except ValidationError as exc:
            raise CatalogError(problems_from_validation(exc, data, file=str(path))) from exc
        found[scenario.id] = scenario
    return found


def get_scenario(scenario_id: str) -> Scenario:
    scenarios = load_scenarios()
    if scenario_id not in scenarios:
        raise UnknownEntity("scenario", scenario_id, known=list(scenarios))
    return scenarios[scenario_id]


def _state_path() -> Path:
    from poetkb.paths import work_dir

    return work_dir() / "train" / "active.json"


def active() -> TrainingState | None:
    """The active scenario's state, or None."""
    path = _state_path()
    if not path.exists():
        return None
    from poetkb import safefile

    return TrainingState.model_validate_json(safefile.read_text(path, limit=64 * 1024))


def _save(state: TrainingState) -> None:
    from poetkb.chaos.journal import write_atomic

    write_atomic(_state_path(), state.model_dump(mode="json"))


def _require_active() -> tuple[TrainingState, Scenario]:
    state = active()
    if state is None:
        raise InputError("no training scenario is active", hint="start one with `poet train start ID` "
                         "(`poet train list` shows them)")
    return state, get_scenario(state.scenario)


def _demo() -> Any:
    from poetkb import demo

    state = demo.load_state()
    if state is None:
        raise EnvironmentProblem("the demo edge is not running", hint="start it with `poet demo up`")
    return state


def _service() -> Any:
    from poetkb.demo.service.tier import load_service_state

    state = load_service_state()
    if state is None:
        raise EnvironmentProblem("the service tier is not running",
                                 hint="start it with `poet demo up --tier service` (or --tier all)")
    return state


def _context(demo_state: Any, kb: Knowledge | None) -> Any:
    from poetkb.chaos.providers import RunContext
    from poetkb.gates.probes import make_client

    return RunContext(client=make_client("http://127.0.0.1"), scope=base_scope_for(demo_state), demo=demo_state,
                      kb=kb)


def base_scope_for(demo_state: Any) -> dict[str, Any]:
    import os

    from poetkb.chaos.runner import service_scope

    scope: dict[str, Any] = {"config": {}, "run": {"nonce": os.urandom(4).hex()}}
    if demo_state is not None:
        scope["demo"] = {"base_url": demo_state.base_url, "tls_url": demo_state.tls_url,
                         "metrics_url": demo_state.metrics_url, "proxy": demo_state.proxy,
                         "upstreams": {u.name: {"url": u.url, "admin_url": u.admin_url}
                                       for u in demo_state.upstreams}}
    service = service_scope()
    if service is not None:
        scope["service"] = service
    return scope


def _heal_service(state: Any) -> None:
    """Remove every fault of the service tier (its ``/__poet/fault``)."""
    import httpx

    from poetkb.gates.probes import ensure_allowed

    ensure_allowed(state.admin_url, allow_remote=False, what="service admin")
    try:
        httpx.delete(state.admin_url.rstrip("/") + "/fault", timeout=5.0)
    except httpx.HTTPError as exc:
        raise EnvironmentProblem(f"cannot heal the service tier's faults: {exc}") from None


def _inject(scenario: Scenario, demo_state: Any) -> list[str]:
    from poetkb.chaos.providers import run_step

    ctx = _context(demo_state, None)
    done = []
    try:
        for action in scenario.inject:
            outcome = run_step(action, ctx)
            if outcome.status != "ok":
                raise EnvironmentProblem(f"could not inject {action.name}: {outcome.detail}")
            done.append(f"{action.name}: {outcome.detail}")
    finally:
        ctx.client.close()
    return done


def start(scenario_id: str) -> tuple[Scenario, list[str]]:
    """Inject the scenario's failure into the running demo (its variant, then its run-time faults)."""
    from poetkb import demo

    scenario = get_scenario(scenario_id)
    current = active()
    if current is not None and current.scenario != scenario_id:
        raise InputError(f"scenario {current.scenario!r} is active", hint="end it with `poet train stop` first")
    if scenario.tier == "service":
        return _start_service(scenario, current)
    before = _demo()
    if before.proxy not in scenario.proxies:
        raise InputError(f"scenario {scenario.id!r} needs the demo on {' or '.join(scenario.proxies)}; it runs "
                         f"{before.proxy}", hint=f"`poet demo up --proxy {scenario.proxies[0]}` first")
    previous = current.previous_variant if current is not None else before.variant
    running = demo.up(proxy=before.proxy, variant=scenario.variant, base_port=before.base_port)
    _save(TrainingState(scenario=scenario.id, proxy=running.proxy, previous_variant=previous,
                        started_at=round(time.time(), 3)))
    return scenario, _inject(scenario, running)


def _start_service(scenario: Scenario, current: TrainingState | None) -> tuple[Scenario, list[str]]:
    from poetkb import demo
    from poetkb.demo.service import tier

    before = _service()
    previous = current.previous_variant if current is not None else before.variant
    _heal_service(before)
    tier.up(variant=scenario.variant, base_port=before.base_port)
    _save(TrainingState(scenario=scenario.id, proxy="service", tier="service", previous_variant=previous,
                        started_at=round(time.time(), 3)))
    return scenario, _inject(scenario, demo.load_state())


def hint() -> tuple[int, int, str]:
    """The next graded hint: (its number, how many there are, the text)."""
    state, scenario = _require_active()
    index = min(state.hints_given, len(scenario.hints) - 1)
    _save(state.model_copy(update={"hints_given": min(state.hints_given + 1, len(scenario.hints))}))
    return index + 1, len(scenario.hints), scenario.hints[index]


def check(kb: Knowledge) -> CheckResult:
    """Run the scenario's gates and probes; healthy only when all pass (see the module docstring)."""
    from poetkb import demo
    from poetkb.chaos.providers import run_step

    state, scenario = _require_active()
    if scenario.tier == "service":
        _heal_service(_service())
        demo_state = demo.load_state()
    else:
        demo_state = _demo()
    probes: list[Any] = [GateProbe(name="gate", obligations=list(scenario.obligations)), *scenario.check]
    ctx = _context(demo_state, kb)
    details: list[str] = []
    healthy = True
    try:
        for probe in probes:
            outcome = run_step(probe, ctx)
            healthy = healthy and outcome.status == "ok"
            if probe.type == "gate":
                diagnoses = outcome.output.get("diagnoses", {})
                for oid, verdict in sorted(outcome.output.get("obligations", {}).items()):
                    why = diagnoses.get(oid)
                    details.append(f"{oid}: {verdict}" + (f" ({why})" if why else ""))
            else:
                details.append(f"{probe.name}: {outcome.status} ({outcome.detail})")
    finally:
        ctx.client.close()
    update: dict[str, Any] = {"checks": state.checks + 1}
    if healthy:
        update["solved_at"] = round(time.time(), 3)
        message = f"solved: {scenario.solved}"
    else:
        _inject(scenario, demo_state)
        message = "not yet: the system is still unhealthy; `poet train hint` gives the next hint"
    _save(state.model_copy(update=update))
    return CheckResult(scenario=scenario.id, healthy=healthy, details=details, message=message)


def stop() -> str:
    """Heal every upstream, put the demo back in the variant it had before the scenario, forget the scenario."""
    from poetkb import demo
    from poetkb.chaos.models import UpstreamHealAction
    from poetkb.chaos.providers import run_step

    state, scenario = _require_active()
    if scenario.tier == "service":
        from poetkb.demo.service import tier

        service = _service()
        _heal_service(service)
        tier.up(variant=state.previous_variant, base_port=service.base_port)
        _state_path().unlink(missing_ok=True)
        return f"stopped {scenario.id}; the service tier runs the {state.previous_variant!r} variant again"
    demo_state = _demo()
    ctx = _context(demo_state, None)
    try:
        run_step(UpstreamHealAction(name="heal"), ctx)
    finally:
        ctx.client.close()
    demo.up(proxy=demo_state.proxy, variant=state.previous_variant, base_port=demo_state.base_port)
    _state_path().unlink(missing_ok=True)
    return f"stopped {scenario.id}; the demo runs the {state.previous_variant!r} configuration again"


def as_json(obj: Any) -> str:
    return json.dumps(obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj, indent=2)
