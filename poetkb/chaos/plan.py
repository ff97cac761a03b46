"""``poet chaos plan``: experiments derived from the obligations a change puts at risk.

The change is ranked (:mod:`poetkb.rank`); for each ranked obligation that a scenario of the training
library teaches, the scenario's run-time faults become the method of an experiment:

- hypothesis: the gate checks of the obligation (checked before the method and after the rollbacks), the
  edge's pool route answering (watched during the method, so a fault that spreads beyond its route is
  seen), and the scenario's own probes;
- method: the faults, a watched soak, then one request to each faulted route, recorded as evidence;
- rollbacks: heal every upstream (the runner also heals what the method faulted).

On the service tier (a scenario of ``tier: service``, or one of :data:`SERVICE_TEMPLATES` for obligations
no scenario teaches; every service obligation with a driven check has one of the two, or is listed in
:data:`NO_EXPERIMENT` with the reason no fault applies), the hypothesis is the obligation's gate checks
and the service's ``/health`` (which touches the database); the method injects the faults (the
service's fault API, PostgreSQL actions, a fault proxy on the service's own database path), soaks and
records one query on the database; the rollback heals the service's faults.

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
#: the demo edge's passive-health window (nginx ``fail_timeout=5s``) plus a margin, waited after an edge rollback
PASSIVE_HEALTH_S = 5.5

def _fault(name: str, body: str) -> dict[str, Any]:
    """An action on the service's fault API (``PUT /__poet/fault``); the rollback heals it."""
    return {"name": name, "type": "http_call", "method": "PUT", "url": "${service.admin_url}/fault",
            "headers": {"content-type": "application/json"}, "body": body, "expect_status": [200]}


_JWKS_DOWN = ("the identity provider's key set is unreachable", [_fault("jwks_down", '{"jwks_down": true}')])
_TERMINATE = ("backends are terminated under the service", [{"name": "terminate", "type": "pg_terminate_backends"}])
_SLOW_DEPENDENCY = ("the dependency slows to 3 s", [_fault("slow_dependency", '{"dependency_latency_ms": 3000}')])
_SLOW_DB_PATH = ("the network between the service's pool and PostgreSQL adds 50 ms to every chunk", [
    {"name": "slow_db_path", "type": "service_db_interpose", "toxics": {"latency_ms": 50}}])

#: service-tier obligations no training scenario teaches: (the failure, the actions that inject it, and optionally
#: the statuses ``/health`` may answer while the fault is in (a service that must refuse fast answers 503))
SERVICE_TEMPLATES: dict[str, tuple[str, list[dict[str, Any]]] | tuple[str, list[dict[str, Any]], list[Any]]] = {
    "data.migration.lock_bounded": ("a long read holds its lock on accounts while a migration waits", [
        {"name": "long_read", "type": "pg_slow_statements", "sessions": 1, "seconds": 3.0, "table": "accounts"}]),
    "resilience.slow_dependency.isolated": _SLOW_DEPENDENCY,
    "resilience.retry.backoff": ("the dependency slows to 3 s, so calls time out and are retried",
                                 _SLOW_DEPENDENCY[1]),
    "auth.jwks.cache.bounded": _JWKS_DOWN,
    "auth.policy.fail_closed": _JWKS_DOWN,
    "auth.jwt.signature.verified": _JWKS_DOWN,
    "auth.jwt.claims.validated": _JWKS_DOWN,
    "data.concurrency.no_lost_update": _TERMINATE,
    "data.txn.rollback.complete": ("backends are terminated under the service, cutting its transactions",
                                   _TERMINATE[1]),
    "data.ids.unique": _TERMINATE,
    "data.deadlock.retried": ("every query of the service takes 200 ms longer, widening its lock windows",
                              [_fault("slow_queries", '{"slow_query_ms": 200}')]),
    "data.migration.idempotent": ("PostgreSQL restarts under the service (a deploy re-runs its migrations after it)",
                                  [{"name": "restart_database", "type": "pg_restart"}]),
    "data.outbox.no_loss": ("the broker (the dependency's /publish) slows to 3 s, so publishing times out",
                            _SLOW_DEPENDENCY[1]),
    "resilience.partition.recovery": (
        "the network between the service's pool and PostgreSQL goes silent (connections held unanswered)",
        [{"name": "silent_db_path", "type": "service_db_interpose", "toxics": {"timeout_ms": 0}}], ["2xx", 503]),
    "perf.latency.slo": _SLOW_DB_PATH,
    "perf.error_rate.slo": _SLOW_DB_PATH,
    "perf.throughput.slo": _SLOW_DB_PATH,
    "perf.burst.recovery": _SLOW_DB_PATH,
}

#: service-tier obligations with a driven check for which no fault experiment applies, and why (docs/chaos.md)
NO_EXPERIMENT: dict[str, str] = {
    "auth.config.fail_fast": "a start-up property: its check starts the service with unsafe settings and expects "
                             "a refusal; no fault injected into a running service changes what it tests",
    "auth.mock.disabled_in_production": "a start-up property (mock authentication refused in production): no "
                                        "run-time fault applies",
    "data.migration.backward_compatible": "a property of the schema change against the code still running: its "
                                          "check applies the migration under the old code; a fault adds nothing",
    "data.schema.drift.detected": "a comparison of the live schema with the migrations: nothing a fault breaks",
    "perf.soak.stable": "the soak check is itself minutes of steady load that compares the process with itself; "
                        "a fault before or after it is outside its window (its figures are the evidence)",
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
                           source: str, health_status: list[Any] | None = None) -> Experiment:
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
             "tolerance": {"status": health_status or ["2xx"], "max_latency_ms": 5000}}],
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
        # then wait out the edge's passive health (the demo's fail_timeout is 5 s): the hypothesis gate's own faults
        # before the method may have taken a server out, and the check after the rollbacks needs it back
        "rollbacks": [{"name": "heal_all", "type": "upstream_heal", "pause_after_s": PASSIVE_HEALTH_S}],
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
            failure, actions, *health = SERVICE_TEMPLATES[ranked.id]
            items.append(PlannedExperiment(
                obligation_id=ranked.id, title=ranked.title, score=ranked.score, why=why, scenario=None,
                experiment=service_experiment_for(ranked.id, ranked.title, failure, actions,
                                                  "poetkb's service-tier fault templates",
                                                  health[0] if health else None),
                note="service tier: run it with `poet demo up --tier service` up"))
            continue
        if scenario is None and ranked.id in NO_EXPERIMENT:
            items.append(PlannedExperiment(
                obligation_id=ranked.id, title=ranked.title, score=ranked.score, why=why,
                note=f"no fault experiment applies: {NO_EXPERIMENT[ranked.id]}; "
                     f"`poet gate run --obligation {ranked.id}` checks it"))
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
