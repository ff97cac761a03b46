"""Plans derived from the knowledge base for a change: test plans (release checklists) and runbooks.

- :mod:`poetkb.plans.testplan`: for the obligations a change puts at risk,
  what must be true, how to exercise it on the component, the evidence to
  capture, the gate command and the learned tests that already cover it.
- :mod:`poetkb.plans.runbook`: the observability runbook: signals to collect
  and, per failure mode, symptoms, mitigation, verification and escalation.

Both render to Markdown (Jinja2 templates in ``templates/``) and JSON (the
pydantic models), deterministically: the same knowledge base and change give
byte-identical output, so generated examples in ``docs/`` can be checked.
"""

from __future__ import annotations

from poetkb.plans.runbook import Runbook, RunbookFailureMode, RunbookSignals, build_runbook
from poetkb.plans.testplan import TestPlan, TestPlanItem, build_test_plan

__all__ = [
    "Runbook", "RunbookFailureMode", "RunbookSignals", "TestPlan", "TestPlanItem", "build_runbook", "build_test_plan",
]
