"""The public models whose JSON Schema ``poet schema NAME`` prints."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from poetkb.errors import UnknownEntity

#: schema name -> "module:Class"
SCHEMAS: dict[str, str] = {
    "obligation": "poetkb.models:Obligation",
    "failure-mode": "poetkb.models:FailureMode",
    "recipe": "poetkb.models:Recipe",
    "component": "poetkb.models:Component",
    "evidence-requirement": "poetkb.models:EvidenceRequirement",
    "check": "poetkb.models:Check",
    "mapping-rule": "poetkb.models:MappingRule",
    "claim": "poetkb.models:Claim",
    "probe": "poetkb.verify.probes:Probe",
    "probe-result": "poetkb.verify.runner:ProbeResult",
    "learned-pattern": "poetkb.models:LearnedPattern",
    "kb-stats": "poetkb.models:KBStats",
    "service-profile": "poetkb.load.profile:ServiceProfile",
    "load-plan": "poetkb.load.plan:LoadPlan",
    "metrics-summary": "poetkb.load.metrics:MetricsSummary",
    "interpretation": "poetkb.load.interpret:Interpretation",
    "gate-report": "poetkb.gates.schema:GateReport",
    "obligation-verdict": "poetkb.gates.schema:ObligationVerdict",
    "check-result": "poetkb.gates.schema:CheckResult",
    "evidence-manifest": "poetkb.gates.schema:EvidenceManifest",
    "http-exchange": "poetkb.gates.records:HttpExchange",
    "target-profile": "poetkb.gates.profile:TargetProfile",
    "probe-plan": "poetkb.ownedge.plan:ProbePlan",
    "change-summary": "poetkb.rank.change:ChangeSummary",
    "ranked-obligation": "poetkb.rank.explain:RankedObligation",
    "ranking": "poetkb.rank.explain:Ranking",
    "test-plan": "poetkb.plans.testplan:TestPlan",
    "runbook": "poetkb.plans.runbook:Runbook",
    "demo-state": "poetkb.demo.state:DemoState",
    "demo-status": "poetkb.demo.state:DemoStatus",
    "demo-variant": "poetkb.demo.state:Variant",
    "demo-fault": "poetkb.demo.state:Fault",
    "learn-report": "poetkb.learn.results:LearnReport",
    "learn-review-item": "poetkb.learn.results:ReviewItem",
    "chaos-experiment": "poetkb.chaos.models:Experiment",
    "chaos-journal": "poetkb.chaos.journal:Journal",
    "chaos-scenario": "poetkb.chaos.training:Scenario",
    "chaos-plan": "poetkb.chaos.plan:ChaosPlan",
}


def schema_names() -> list[str]:
    return sorted(SCHEMAS)


def model_for(name: str) -> Any:
    key = name.lower().replace("_", "-")
    if key not in SCHEMAS:
        raise UnknownEntity("schema", name, known=schema_names())
    module, cls = SCHEMAS[key].split(":")
    return getattr(import_module(module), cls)


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12, as pydantic writes it) of a public model."""
    schema: dict[str, Any] = model_for(name).model_json_schema()
    schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
    return schema
