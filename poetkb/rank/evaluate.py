"""Measure how well ranking answers: hit@3 and mean reciprocal rank over a set of change scenarios.

A scenarios file (YAML) lists changes (text and/or a diff file next to it)
with the obligations a person expects to see. A scenario is a *hit@k* when any
expected obligation is among the top k; its *reciprocal rank* is 1 / the rank
of the first expected obligation found (0 when none is ranked). The repository
keeps one such set in ``tests/fixtures/rank/scenarios.yaml``; teams can keep
their own to check their mapping rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationError

from poetkb.errors import InputError
from poetkb.models import PoetModel
from poetkb.yamlfile import load_with_lines, problems_from_validation

if TYPE_CHECKING:
    from poetkb.kb import KnowledgeBase


class Scenario(PoetModel):
    """One change and the obligations a person expects to be ranked for it."""

    id: str
    area: str = ""
    change: str | None = None
    diff: str | None = None
    component: str | None = None
    expect: list[str] = Field(min_length=1)


class ScenarioResult(PoetModel):
    """How one scenario ranked."""

    id: str
    area: str
    expected: list[str]
    ranked: list[str]
    first_hit: int | None  # 1-based rank of the first expected obligation, None when not ranked

    @property
    def reciprocal_rank(self) -> float:
        return 1.0 / self.first_hit if self.first_hit else 0.0


class Evaluation(PoetModel):
    """hit@1, hit@3 and MRR over a scenario set, with every scenario's result."""

    scenarios: int
    hit_at_1: float
    hit_at_3: float
    mrr: float
    results: list[ScenarioResult]


def load_scenarios(path: Path) -> tuple[list[Scenario], Path]:
    """Read a scenarios file; diffs are resolved against its ``diffs/`` directory. Problems name file and line."""
    data = load_with_lines(path)
    items = data.get("scenarios") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise InputError("a scenarios file needs a `scenarios` list", file=path)
    scenarios = []
    for index, item in enumerate(items):
        try:
            scenarios.append(Scenario.model_validate(item))
        except ValidationError as exc:
            problem = problems_from_validation(exc, item, file=str(path), prefix=f"scenarios[{index}]")[0]
            raise InputError(problem.message, file=path, line=problem.line, field=problem.field) from exc
    return scenarios, path.parent / "diffs"


def evaluate(kb: KnowledgeBase, scenarios: list[Scenario], diffs: Path, *, top: int = 10) -> Evaluation:
    """Rank every scenario and score the answers."""
    results = []
    for scenario in scenarios:
        diff = diffs / scenario.diff if scenario.diff else None
        ranking = kb.rank(scenario.change, diff=diff, component=scenario.component, top=top)
        ranked = [r.id for r in ranking.obligations]
        first = next((i for i, oid in enumerate(ranked, start=1) if oid in scenario.expect), None)
        results.append(ScenarioResult(id=scenario.id, area=scenario.area, expected=scenario.expect, ranked=ranked,
                                      first_hit=first))
    count = len(results) or 1
    return Evaluation(
        scenarios=len(results),
        hit_at_1=round(sum(1 for r in results if r.first_hit == 1) / count, 4),
        hit_at_3=round(sum(1 for r in results if r.first_hit and r.first_hit <= 3) / count, 4),
        mrr=round(sum(r.reciprocal_rank for r in results) / count, 4),
        results=results,
    )
