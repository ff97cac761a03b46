"""Node ids and edge kinds of the knowledge graph (no pydantic here: the store and the data access import it).

:mod:`poetkb.types` re-exports both.
"""

from __future__ import annotations

from typing import Literal

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
