"""``poet chaos plan``: experiments derived from the obligations a change puts at risk.

The change is ranked (:mod:`poetkb.rank`); for each ranked obligation that a scenario of the training
library teaches, the scenario's run-time faults become the method of an experiment:

- hypothesis: the gate checks of the obligation (checked before the method and after the rollbacks), the
  edge's pool route answering (watched during the method, so a fault that spreads beyond its route is
  seen), and the scenario's own probes;
- method: the faults, a watched soak, then one request to each faulted route, recorded as evidence;
- rollbacks: heal every upstream (the runner also heals what the method faulted).

On the service tier (a scenario of ``tier: service``, or one of :data:`SERVICE_TEMPLATES` for obligations
no scenario teaches), the hypothesis is the obligation's gate checks and the service's ``/health`` (which
touches the database); the method injects the faults (the service's fault API, PostgreSQL actions),
soaks and records one query on the database; the rollback heals the service's faults.

Obligations no scenario covers are listed with the gate command that checks them, never silently dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from poetkb.chaos.models import Experiment
from poetkb.models import PoetModel

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge

SOAK_S = 2.0

#: service-tier obligations no training scenario teaches: (the failure, the actions that inject it)
SERVICE_TEMPLATES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "data.migration.lock_bounded": ("a long read holds its lock on accounts while a migration waits", [
        {"name": "long_read", "type": "pg_slow_statements", "sessions": 1, "seconds": 3.0, "table": "accounts"}]),
    "resilience.slow_dependency.isolated": ("the dependency slows to 3 s", [
        {"name": "slow_dependency", "type": "http_call", "method": "PUT", "url": "${service.admin_url}/fault",
         "headers": {"content-type": "application/json"}, "body": '{"dependency_latency_ms": 3000}',
         "expect_status": [200]}]),
    "auth.jwks.cache.bounded": ("the identity provider's key set is unreachable", [
        {"name": "jwks_down", "type": "http_call", "method": "PUT", "url": "${service.admin_url}/fault",
         "headers": {"content-type": "application/json"}, "body": '{"jwks_down": true}', "expect_status": [200]}]),
    "auth.policy.fail_closed": ("the identity provider's key set is unreachable", [
        {"name": "jwks_down", "type": "http_call", "method": "PUT", "url": "${service.admin_url}/fault",
         "headers": {"content-type": "application/json"}, "body": '{"jwks_down": true}', "expect_status": [200]}]),
    "data.concurrency.no_lost_update": ("backends are terminated under the service", [
        {"name": "terminate", "type": "pg_terminate_backends"}]),
}

class PlannedExperiment(PoetModel):
    """One ranked obligation: the experiment derived for it, or why there is none."""

    obligation_id: str
    title: str
    score: float
    why: str = ""
    scenario: str | None = None
    experiment: Experiment | None = None
    note: str = ""


class ChaosPlan(PoetModel):
    """What ``poet chaos plan`` returns (``poet schema chaos-plan``)."""

    change: str
    items: list[PlannedExperiment] = Field(default_factory=list)


def _routes(scenario: Any) -> list[str]:
    found: list[str] = []
    for action in scenario.inject:
        for path in getattr(getattr(action, "fault", None), "paths", []) or []:
            if path not in found:
                found.append(path)
    return found


def service_experiment_for(obligation_id: str, title: str, failure: str, actions: list[dict[str, Any]],
                           source: str) -> Experiment:
    """The service-tier experiment testing ``obligation_id`` under ``actions`` (see the module docstring)."""
    method: list[dict[str, Any]] = [*actions, {"name": "soak", "type": "pause", "seconds": SOAK_S},
                                    {"name": "database_answers", "type": "sql", "query": "SELECT 1",
                                     "timeout_s": 15.0}]
    data = {
        "title": f"{title}: holds while {failure}",
        "description": f"Derived by `poet chaos plan` from {source}.",
        "obligations": [obligation_id],
        "steady_state": {"title": f"{obligation_id} holds and the service answers", "probes": [
            {"name": "obligation_holds", "type": "gate", "obligations": [obligation_id]},
            {"name": "service_answers", "type": "http", "url": "${service.url}/health",
             "tolerance": {"status": ["2xx"], "max_latency_ms": 5000}}],
            # a restarted database takes the service a few seconds to reconnect to: 3 s of failures in a row
            "watch": {"interval_s": 0.5, "tolerance_rounds": 6}},
        "method": method,
        "rollbacks": [{"name": "heal_service", "type": "http_call", "method": "DELETE",
                       "url": "${service.admin_url}/fault", "expect_status": [200]}],
        "guardrails": {"max_duration_s": 300},
    }
    return Experiment.model_validate(data)


def experiment_for(obligation_id: str, title: str, scenario: Any) -> Experiment:
    """The experiment testing ``obligation_id`` under ``scenario``'s faults (see the module docstring)."""
    if scenario.tier == "service":
        actions = [a.model_dump(mode="json", exclude_defaults=True) | {"name": a.name, "type": a.type}
                   for a in scenario.inject]
        return service_experiment_for(obligation_id, title, scenario.failure_mode or scenario.title, actions,
                                      f"the training scenario {scenario.id!r}")
    host = {"Host": "edge.test"}
    probes: list[dict[str, Any]] = [
        {"name": "obligation_holds", "type": "gate", "obligations": [obligation_id]},
        {"name": "pool_answers", "type": "http", "url": "${demo.base_url}/api/chaos-${run.nonce}", "headers": host,
         "tolerance": {"status": ["2xx"], "max_latency_ms": 2000}},
        *[p.model_dump(mode="json", exclude_defaults=True) | {"name": p.name, "type": p.type}
          for p in scenario.check],
    ]
    method: list[dict[str, Any]] = [a.model_dump(mode="json", exclude_defaults=True) | {"name": a.name, "type": a.type}
                                    for a in scenario.inject]
    method.append({"name": "soak", "type": "pause", "seconds": SOAK_S})
    for index, route in enumerate(_routes(scenario)):
        url = f"${{demo.base_url}}{route}chaos-${{run.nonce}}"
        method.append({"name": f"route_{index}", "type": "http", "url": url, "headers": host, "timeout_s": 15.0})
    data = {
        "title": f"{title}: holds while {scenario.failure_mode or scenario.title}",
        "description": f"Derived by `poet chaos plan` from the training scenario {scenario.id!r}.",
        "obligations": [obligation_id],
        "steady_state": {"title": f"{obligation_id} holds and the edge answers", "probes": probes,
                         "watch": {"interval_s": 0.5, "tolerance_rounds": 2}},
        "method": method,
        "rollbacks": [{"name": "heal_all", "type": "upstream_heal"}],
        "guardrails": {"max_duration_s": 300},
    }
    return Experiment.model_validate(data)


def plan_experiments(kb: Knowledge, change: str | None, *, diff: str | Path | None = None,
                     component: str | None = None, top: int = 5) -> ChaosPlan:
    """Rank the change and derive an experiment for each ranked obligation a scenario teaches."""
    from poetkb.chaos.training import load_scenarios
    from poetkb.rank import rank

    ranking = rank(kb, change, diff=diff, component=component, top=top)
    by_obligation: dict[str, Any] = {}
    for candidate in load_scenarios().values():
        if candidate.inject:
            for oid in candidate.obligations:
                by_obligation.setdefault(oid, candidate)
    items = []
    for ranked in ranking.obligations:
        scenario = by_obligation.get(ranked.id)
        why = ranked.why.sentences[0] if ranked.why.sentences else ""
        if scenario is None and ranked.id in SERVICE_TEMPLATES:
            failure, actions = SERVICE_TEMPLATES[ranked.id]
            items.append(PlannedExperiment(
                obligation_id=ranked.id, title=ranked.title, score=ranked.score, why=why, scenario=None,
                experiment=service_experiment_for(ranked.id, ranked.title, failure, actions,
                                                  "poetkb's service-tier fault templates"),
                note="service tier: run it with `poet demo up --tier service` up"))
            continue
        if scenario is None:
            items.append(PlannedExperiment(
                obligation_id=ranked.id, title=ranked.title, score=ranked.score, why=why,
                note=f"no fault template in the scenario library; `poet gate run --obligation {ranked.id}` checks it"))
            continue
        items.append(PlannedExperiment(obligation_id=ranked.id, title=ranked.title, score=ranked.score, why=why,
                                       scenario=scenario.id,
                                       experiment=experiment_for(ranked.id, ranked.title, scenario)))
    return ChaosPlan(change=change or str(diff or ""), items=items)
