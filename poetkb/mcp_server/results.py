"""Result models of the MCP tools that return lists or rows rather than one library model.

MCP structured content is a JSON object, so a list of obligations is carried in
a small envelope that names what it holds and how many. Everything inside is the
library's own model (:class:`~poetkb.models.Obligation`,
:class:`~poetkb.models.RelatedNode`, ...), so an agent sees the same fields as
``poet ... --json`` and ``poet schema``.
"""

from __future__ import annotations

from pydantic import Field

from poetkb.gates.schema import GateRun
from poetkb.learn.results import ReviewItem
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
