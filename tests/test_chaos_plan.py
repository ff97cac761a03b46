"""`poet chaos plan` covers the service tier: every obligation with a driven service-tier check gets an experiment
(from a training scenario or a fault template), or is listed with the reason no fault applies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poetkb.chaos.plan import NO_EXPERIMENT, SERVICE_TEMPLATES, service_experiment_for
from poetkb.chaos.training import load_scenarios
from poetkb.gates.kinds import SERVICE_KINDS


def test_every_service_obligation_has_an_experiment_or_a_reason(kb: Any) -> None:
    """No service obligation falls through; templates and reasons are disjoint, name real obligations, and every
    template builds a valid experiment whose rollback heals the service (the docs list the same reasons)."""
    obligations = kb.obligations()
    service = {ob.id for ob in obligations if any(c.kind in SERVICE_KINDS for c in ob.gate_checks)}
    known = {ob.id for ob in obligations}
    taught = {oid for s in load_scenarios().values() if s.inject and s.tier == "service" for oid in s.obligations}
    assert len(service) >= 20
    missing = service - taught - set(SERVICE_TEMPLATES) - set(NO_EXPERIMENT)
    assert not missing, f"service obligations without an experiment or a reason: {sorted(missing)}"
    assert not set(SERVICE_TEMPLATES) & set(NO_EXPERIMENT)
    assert set(SERVICE_TEMPLATES) | set(NO_EXPERIMENT) <= known
    for oid, (failure, actions, *health) in SERVICE_TEMPLATES.items():
        experiment = service_experiment_for(oid, oid, failure, actions, "test", health[0] if health else None)
        assert experiment.obligations == [oid] and experiment.rollbacks[0].url.endswith("/fault")
    docs = (Path(__file__).resolve().parent.parent / "docs" / "chaos.md").read_text(encoding="utf-8")
    for oid in NO_EXPERIMENT:
        assert f"`{oid}`" in docs, f"docs/chaos.md does not say why {oid} has no experiment"


def test_plan_lists_what_has_no_experiment_and_why(kb: Any) -> None:
    """A change ranking start-up and protocol obligations: the start-up ones carry the reason no fault applies,
    the edge ones without a scenario the gate command that checks them; none is dropped."""
    from poetkb.chaos.plan import plan_experiments

    items = {i.obligation_id: i for i in plan_experiments(kb, "allow mock authentication settings at service "
                                                              "start-up", top=4).items}
    assert items["auth.mock.disabled_in_production"].experiment is None
    assert "no fault experiment applies: a start-up property" in items["auth.mock.disabled_in_production"].note
    assert items["auth.policy.fail_closed"].experiment is not None
    items = {i.obligation_id: i for i in plan_experiments(kb, "change the HTTP/2 header size limits", top=3).items}
    assert len(items) == 3 and all(i.experiment is None for i in items.values())
    assert all(f"poet gate run --obligation {oid}" in i.note for oid, i in items.items())
