"""Obligation coverage: which obligations a test session proved, failed or left untested.

Tests link themselves to obligations (the pytest plugin's ``obligation`` marker, or
``obligation``/``requirements`` properties in JUnit XML). Given each linked test's
outcome, :func:`obligation_coverage` sorts the obligations of a selection (all, or
some domains) into *passing* (at least one linked test passed and none failed),
*failing* (a linked test failed) and *untested*. Coverage is the passing share of
the selection.

A *ratchet* keeps the best coverage seen per selection in the knowledge base; a
later session whose coverage is lower fails (:func:`ratchet`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from poetkb.models import PoetModel

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge

Outcome = Literal["passed", "failed", "skipped"]


class LinkedTest(PoetModel):
    """One test linked to obligations, with its outcome in the session."""

    nodeid: str
    outcome: Outcome
    obligations: list[str]


class ObligationCoverage(PoetModel):
    """Coverage of one selection of obligations by a session's linked tests."""

    selection: str = Field(description="what was measured: 'all' or 'domain=cache,...'")
    total: int
    passing: list[str]
    failing: list[str]
    untested: list[str]
    coverage: float = Field(ge=0.0, le=1.0, description="passing / total (0 when the selection is empty)")
    outside_selection: list[str] = Field(default_factory=list,
                                         description="linked obligations that are not in the selection")
    tests: dict[str, list[str]] = Field(default_factory=dict, description="obligation id -> linked test node ids")
    previous: float | None = Field(default=None, description="the ratchet's stored coverage before this session")

    def markdown(self) -> str:
        """A short Markdown summary for CI logs and pull requests."""
        lines = [f"# Obligation coverage ({self.selection})", "",
                 f"{len(self.passing)} of {self.total} obligations proved by passing tests "
                 f"({self.coverage:.1%}).", ""]
        for title, ids in (("Failing", self.failing), ("Passing", self.passing), ("Untested", self.untested)):
            lines.append(f"## {title} ({len(ids)})")
            lines.extend(f"- `{oid}`" + (f": {', '.join(f'`{t}`' for t in self.tests[oid])}"
                                          if self.tests.get(oid) else "") for oid in ids)
            lines.append("")
        return "\n".join(lines)


def selection_label(domains: Sequence[str]) -> str:
    return "domain=" + ",".join(sorted(set(domains))) if domains else "all"


def obligation_coverage(kb: Knowledge, tests: Iterable[LinkedTest], *,
                        domains: Sequence[str] = ()) -> ObligationCoverage:
    """Sort the selected obligations by what the linked tests showed."""
    if domains:
        selected = sorted({ob.id for d in set(domains) for ob in kb.obligations(domain=d)})
    else:
        selected = [ob.id for ob in kb.obligations()]
    linked: dict[str, list[LinkedTest]] = {}
    for test in tests:
        for oid in dict.fromkeys(test.obligations):
            linked.setdefault(oid, []).append(test)
    passing, failing, untested = [], [], []
    for oid in selected:
        outcomes = {t.outcome for t in linked.get(oid, [])}
        if "failed" in outcomes:
            failing.append(oid)
        elif "passed" in outcomes:
            passing.append(oid)
        else:
            untested.append(oid)
    chosen = set(selected)
    return ObligationCoverage(
        selection=selection_label(domains), total=len(selected), passing=passing, failing=failing,
        untested=untested, coverage=len(passing) / len(selected) if selected else 0.0,
        outside_selection=sorted(oid for oid in linked if oid not in chosen),
        tests={oid: sorted(t.nodeid for t in linked[oid]) for oid in sorted(linked)},
    )


def unknown_ids(kb: Knowledge, ids: Iterable[str]) -> Mapping[str, list[str]]:
    """Ids the knowledge base does not hold, each with up to three close matches."""
    import difflib

    known = [ob.id for ob in kb.obligations()]
    have = set(known)
    return {oid: difflib.get_close_matches(oid, known, n=3) for oid in dict.fromkeys(ids) if oid not in have}


def ratchet(kb: Knowledge, result: ObligationCoverage) -> ObligationCoverage:
    """Compare with the stored best coverage for the selection; store the new one unless it dropped.

    Returns ``result`` with ``previous`` set. The caller fails the session when
    ``result.coverage < result.previous``.
    """
    previous = kb.last_coverage(result.selection)
    if previous is None or result.coverage >= previous:
        kb.record_coverage(result.selection, result.coverage, passing=len(result.passing),
                           failing=len(result.failing), total=result.total)
    return result.model_copy(update={"previous": previous})


__all__ = ["LinkedTest", "ObligationCoverage", "obligation_coverage", "ratchet", "selection_label", "unknown_ids"]
