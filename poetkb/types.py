"""Shared type aliases and the id grammar used across poetkb."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import StringConstraints

#: Obligation ids are lowercase, dotted, at least two segments: ``cache.vary.honored``.
OBLIGATION_ID_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
OBLIGATION_ID_RE = re.compile(OBLIGATION_ID_PATTERN)
#: Failure modes, recipes, rules and components: lowercase words joined by dots, dashes or underscores.
ENTITY_ID_PATTERN = r"^[a-z][a-z0-9_]*([.\-][a-z0-9_]+)*$"

ObligationId = Annotated[str, StringConstraints(pattern=OBLIGATION_ID_PATTERN)]
EntityId = Annotated[str, StringConstraints(pattern=ENTITY_ID_PATTERN)]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]

Risk = Literal["high", "medium", "low"]
RISK_WEIGHT: dict[str, float] = {"high": 1.0, "medium": 0.6, "low": 0.3}

#: What a piece of evidence is. Gates and evaluators dispatch on this.
EvidenceKind = Literal[
    "access_log",
    "http_capture",
    "upstream_counters",
    "metrics",
    "packet_capture",
    "tls_handshake",
    "config_snapshot",
    "load_summary",
    "latency_samples",
    "test_results",
    "app_log",
    "trace",
    "db_state",
]

#: Kinds of edge between nodes of the knowledge graph.
EdgeKind = Literal[
    "guards_against",  # obligation -> failure mode
    "requires_evidence",  # obligation -> evidence kind
    "applies_to",  # obligation / recipe -> component
    "exercised_by",  # obligation -> recipe
    "related_to",  # obligation <-> obligation
    "mapped_by",  # mapping rule -> obligation
    "learned_from",  # learned pattern -> obligation
    "in_domain",  # obligation -> domain
]


class NodeId(str):
    """A node of the knowledge graph: ``kind:key`` (``obligation:cache.vary.honored``, ``pattern:suite::test``).

    A plain ``str`` to SQLite and networkx, so it goes wherever a node id went before; the one place that builds
    and splits the ``kind:`` prefix. ``NodeId.of("obligation", oid)`` builds one, ``NodeId(text)`` reads one.
    """

    __slots__ = ()

    @classmethod
    def of(cls, kind: str, key: str) -> NodeId:
        """The node id of ``key`` in ``kind`` (``obligation``, ``failure_mode``, ``pattern``, ...)."""
        return cls(f"{kind}:{key}")

    @property
    def kind(self) -> str:
        """The part before the first colon (empty for an id without one)."""
        kind, sep, _ = self.partition(":")
        return kind if sep else ""

    @property
    def key(self) -> str:
        """The entity's own id: the part after the first colon (the whole id when there is none)."""
        _, sep, key = self.partition(":")
        return key if sep else str(self)


def node_key(node: str) -> str:
    """The entity id inside a node id (``obligation:a.b`` -> ``a.b``)."""
    return NodeId(node).key
