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
#: What a mined test unit is (:class:`poetkb.learn.features.MinedUnit`, :class:`poetkb.models.LearnedPattern`).
UnitKind = Literal["function", "method", "class", "file", "parametrized"]
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

from poetkb.nodeid import EdgeKind, NodeId, node_key  # noqa: E402 - re-exported: the shared vocabulary

__all__ = ["ENTITY_ID_PATTERN", "OBLIGATION_ID_PATTERN", "OBLIGATION_ID_RE", "RISK_WEIGHT", "EdgeKind", "EntityId",
           "EvidenceKind", "NodeId", "NonEmptyStr", "ObligationId", "Risk", "node_key"]
