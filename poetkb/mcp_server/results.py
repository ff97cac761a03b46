"""Result models of the MCP tools that return lists or rows rather than one library model.

MCP structured content is a JSON object, so a list of obligations is carried in
a small envelope that names what it holds and how many. Everything inside is the
library's own model (:class:`~poetkb.models.Obligation`,
:class:`~poetkb.models.RelatedNode`, ...), so an agent sees the same fields as
``poet ... --json`` and ``poet schema``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from poetkb.gates.models import GateSummary, Selection, Verdict
from poetkb.learn.models import ReviewItem
from poetkb.models import Obligation, PoetModel, RelatedNode


class ObligationList(PoetModel):
    """Obligations matching a filter or a search, best first for a search and by id otherwise."""

    count: int
    obligations: list[Obligation]


class Neighbourhood(PoetModel):
    """The graph neighbourhood of a node: each neighbour with the edge kind and direction that reached it."""

    node: str = Field(description="The graph node the walk started from, e.g. obligation:cache.vary.honored.")
    depth: int
    count: int
    neighbours: list[RelatedNode]


class GateRun(PoetModel):
    """One recorded gate run (the summary kept in the knowledge base; the full report is gate_report)."""

    run_id: str
    mode: str
    started_at: str
    finished_at: str | None = None
    duration_s: float | None = None
    target: str | None = None
    proxy: str | None = None
    variant: str | None = None
    verdict: Verdict
    exit_code: int
    coverage: float | None = None
    selection: Selection
    summary: GateSummary | None = None
    evidence_dir: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> GateRun:
        """Build from a ``gate_runs`` row as :meth:`KnowledgeBase.gate_runs` returns it."""
        selection = Selection.model_validate_json(row["selection"]) if row.get("selection") else Selection()
        summary = GateSummary.model_validate(json.loads(row["counts"])) if row.get("counts") else None
        fields = {k: row.get(k) for k in ("run_id", "mode", "started_at", "finished_at", "duration_s", "target",
                                          "proxy", "variant", "verdict", "exit_code", "coverage", "evidence_dir")}
        return cls.model_validate({**fields, "selection": selection, "summary": summary})


class GateRunList(PoetModel):
    """The latest recorded gate runs, newest first."""

    count: int
    runs: list[GateRun]


class ReviewList(PoetModel):
    """Learned mappings for a person to review, or the decisions just recorded."""

    count: int
    items: list[ReviewItem]


class DemoStopped(PoetModel):
    """What stopping the demo stopped (empty when it was not running)."""

    stopped: list[str]
