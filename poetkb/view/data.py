"""What the viewer's pages show, read from the knowledge base (read-only).

Catalog reads go through :class:`~poetkb.kb.KnowledgeBase`; gate history and
mining coverage are aggregates over the state tables ``gate_runs``,
``gate_results``, ``patterns`` and ``edges``, asked here with parameterised,
read-only SELECTs (the server also sets ``PRAGMA query_only``). Every list is
bounded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poetkb.kb import KnowledgeBase
    from poetkb.models import FailureMode, LearnedPattern, Obligation, Recipe, RelatedNode

#: ceilings of what one page lists
MAX_RUNS = 500
MAX_HISTORY = 60
MAX_PATTERNS = 200

#: how a verdict changed between two runs (see :func:`diff_runs`)
CHANGE_ORDER = {"broke": 0, "changed": 1, "fixed": 2, "added": 3, "removed": 4, "same": 5}


@dataclass
class ObligationRow:
    """One line of the obligations list: the obligation and its latest gate verdict, if any."""

    id: str
    title: str
    domain: str
    risk: str
    verdict: str | None = None
    run_id: str | None = None
    when: str | None = None


@dataclass
class ObligationPage:
    """An obligation with its graph neighbourhood and its verdicts over time."""

    obligation: Obligation
    source: tuple[str, int | None]
    failure_modes: list[FailureMode]
    recipes: list[Recipe]
    related: list[RelatedNode]
    neighbours: list[RelatedNode]
    patterns: list[LearnedPattern]
    pattern_count: int
    history: list[dict[str, Any]]


@dataclass
class VerdictChange:
    """One obligation in a run diff: its verdict in each run and what changed."""

    obligation_id: str
    before: str | None
    after: str | None
    change: str
    diagnosis: str = ""


@dataclass
class SuiteCoverage:
    """Mining coverage of one source (suite): its patterns and the obligations they map to."""

    source: str
    patterns: int
    mapped: int
    obligations: list[tuple[str, int]] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.mapped / self.patterns if self.patterns else 0.0


def obligation_rows(kb: KnowledgeBase, *, domain: str | None = None) -> list[ObligationRow]:
    """Every obligation (of one domain), with its verdict in the latest run that judged it."""
    latest = kb.latest_verdicts()
    rows = []
    for ob in kb.obligations(domain=domain or None):
        last = latest.get(ob.id, {})
        rows.append(ObligationRow(id=ob.id, title=ob.title, domain=ob.domain, risk=ob.risk,
                                  verdict=last.get("verdict"), run_id=last.get("run_id"),
                                  when=last.get("started_at")))
    return rows


def domains(kb: KnowledgeBase) -> list[str]:
    return kb.domains()


def obligation_page(kb: KnowledgeBase, obligation_id: str) -> ObligationPage:
    """The obligation page; :class:`~poetkb.errors.UnknownObligation` when the id is unknown."""
    ob = kb.obligation(obligation_id)
    neighbours = kb.related(ob.id, depth=1)
    related = [n for n in neighbours if n.kind == "obligation"]
    patterns = kb.patterns(obligation=ob.id)
    history = list(reversed(kb.last_verdicts(ob.id, limit=MAX_HISTORY)))
    return ObligationPage(obligation=ob, source=kb.source_of(ob.id), failure_modes=kb.failure_modes(obligation=ob.id),
                          recipes=kb.recipes(obligation=ob.id), related=related, neighbours=neighbours,
                          patterns=patterns[:MAX_PATTERNS], pattern_count=len(patterns), history=history)


def runs(kb: KnowledgeBase, *, limit: int = MAX_RUNS) -> list[dict[str, Any]]:
    """Recorded gate runs, newest first, with their verdict counts decoded."""
    out = []
    for row in kb.gate_runs(limit=limit):
        out.append({**row, "counts": _json(row.get("counts")) or {}})
    return out


def run(kb: KnowledgeBase, run_id: str) -> dict[str, Any] | None:
    """One recorded run by id, or None."""
    row = kb.gate_run(run_id)
    if row is None:
        return None
    return {**row, "counts": _json(row.get("counts")) or {}}


def results(kb: KnowledgeBase, run_id: str) -> list[dict[str, Any]]:
    """The obligation verdicts recorded for one run, with their check verdicts decoded."""
    return [{**r, "checks": _json(r.get("checks")) or []} for r in kb.gate_results(run_id)]


def diff_runs(kb: KnowledgeBase, before: str, after: str) -> list[VerdictChange]:
    """Per obligation, its verdict in ``before`` and in ``after``: broke, fixed, changed, same, added, removed."""
    old = {r["obligation_id"]: r for r in results(kb, before)}
    new = {r["obligation_id"]: r for r in results(kb, after)}
    changes = []
    for oid in sorted(old.keys() | new.keys()):
        a = old[oid]["verdict"] if oid in old else None
        b = new[oid]["verdict"] if oid in new else None
        if a is None:
            change = "added"
        elif b is None:
            change = "removed"
        elif a == b:
            change = "same"
        elif b == "pass":
            change = "fixed"
        elif a == "pass":
            change = "broke"
        else:
            change = "changed"
        diagnosis = (new.get(oid) or old.get(oid) or {}).get("diagnosis") or ""
        changes.append(VerdictChange(obligation_id=oid, before=a, after=b, change=change, diagnosis=diagnosis))
    return sorted(changes, key=lambda c: (CHANGE_ORDER[c.change], c.obligation_id))


def mining_coverage(kb: KnowledgeBase) -> list[SuiteCoverage]:
    """Per mined source: how many learned patterns, how many map to an obligation, and to which."""
    suites: dict[str, SuiteCoverage] = {}
    for source, patterns, mapped, obligations in kb.mining_coverage():
        suites[source] = SuiteCoverage(source=source, patterns=patterns, mapped=mapped, obligations=obligations)
    return list(suites.values())


def _json(text: Any) -> Any:
    if not isinstance(text, str) or not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
