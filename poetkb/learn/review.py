"""Review of learned mappings: list the unsure ones, store a person's accept or reject, apply it later.

A decision is keyed by (pattern id, obligation id) and kept in the state table
``learn_decisions``, so it survives ``poet kb build`` and every later
``poet learn`` run applies it: a rejected mapping is dropped, an accepted one is
kept (or added, when the mapping had not found it) with confidence 1.0 and the
reason ``accepted in review``. Deciding also updates the pattern stored in the
knowledge base at once, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from poetkb import store
from poetkb.errors import InputError
from poetkb.learn.mapping import REVIEW_THRESHOLD
from poetkb.learn.results import ReviewItem
from poetkb.models import LearnedPattern, ObligationMatch

if TYPE_CHECKING:
    import sqlite_utils

    from poetkb.knowledge import Knowledge

TABLE = "learn_decisions"
ACCEPTED_REASON = "accepted in review"
Decision = Literal["accept", "reject"]


def parse_pair(text: str, *, option: str = "--accept") -> tuple[str, str]:
    """``PATTERN_ID:OBLIGATION_ID`` -> the two ids (the obligation id never holds a colon)."""
    pattern_id, sep, obligation_id = text.rpartition(":")
    if not sep or not pattern_id or not obligation_id:
        raise InputError(
            f"expected PATTERN_ID:OBLIGATION_ID, got {text!r}", field=option,
            hint="copy the pair from `poet learn review`, e.g. httpx:tests/test_x.py::test_vary:cache.vary.honored",
        )
    return pattern_id, obligation_id


def load_decisions(db: sqlite_utils.Database) -> dict[tuple[str, str], str]:
    """Every stored decision: (pattern id, obligation id) -> "accept" or "reject" (``kb.learn_decisions()``)."""
    return store.learn_decisions(db)


def apply_decisions(
    pattern_id: str,
    matches: Sequence[ObligationMatch],
    decisions: Mapping[tuple[str, str], str],
    *,
    candidates: Sequence[ObligationMatch] = (),
) -> tuple[list[ObligationMatch], list[ObligationMatch]]:
    """A pattern's (mapped, candidates) with the stored decisions applied, best first.

    Rejected pairs leave both lists; accepted ones are mapped at confidence 1.0
    (a candidate is promoted, a pair the mapper never proposed is added).
    """
    if not decisions:
        return list(matches), list(candidates)
    kept: dict[str, ObligationMatch] = {}
    near: dict[str, ObligationMatch] = {}
    for match, into in [(m, kept) for m in matches] + [(c, near) for c in candidates]:
        decision = decisions.get((pattern_id, match.id))
        if decision == "reject":
            continue
        if decision == "accept":
            match, into = ObligationMatch(id=match.id, confidence=1.0,
                                          reasons=[ACCEPTED_REASON, *match.reasons][:5]), kept
        into.setdefault(match.id, match)
    for (pid, oid), decision in sorted(decisions.items()):
        if pid == pattern_id and decision == "accept" and oid not in kept:
            kept[oid] = ObligationMatch(id=oid, confidence=1.0, reasons=[ACCEPTED_REASON])
    for oid in kept:
        near.pop(oid, None)
    return sorted(kept.values(), key=_best_first), sorted(near.values(), key=_best_first)


def _best_first(match: ObligationMatch) -> tuple[float, str]:
    return -match.confidence, match.id


def review_items(
    kb: Knowledge, *, threshold: float = REVIEW_THRESHOLD, source: str | None = None, decided: bool = False
) -> list[ReviewItem]:
    """Mappings and candidates below ``threshold`` (with ``decided``, every decision too), most confident first.

    Candidates are near misses the mapper did not map (below its map threshold):
    accepting one maps it.
    """
    decisions = kb.learn_decisions()
    items: list[ReviewItem] = []
    for pattern in kb.patterns(source=source):
        for match in pattern.obligations:
            decision = decisions.get((pattern.id, match.id))
            if match.confidence < threshold or (decided and decision):
                items.append(_item(pattern, match, decision))
        for match in pattern.candidates:
            if match.confidence < threshold:
                items.append(_item(pattern, match, None, status="candidate"))
    if decided:
        listed = {(i.pattern_id, i.obligation_id) for i in items}
        for (pid, oid), decision in sorted(decisions.items()):
            if decision == "reject" and (pid, oid) not in listed:
                stored = _stored_pattern(kb, pid)
                if stored is None or (source and stored.source != source):
                    continue
                items.append(_item(stored, ObligationMatch(id=oid, confidence=0.0, reasons=["rejected in review"]),
                                   decision))
    items.sort(key=lambda i: (-i.confidence, i.pattern_id, i.obligation_id))
    return items


def _item(
    pattern: LearnedPattern, match: ObligationMatch, decision: str | None, *, status: str = "mapped"
) -> ReviewItem:
    return ReviewItem(
        pattern_id=pattern.id, obligation_id=match.id, confidence=match.confidence, file=pattern.file,
        test=pattern.test, line=pattern.line, reasons=list(match.reasons), status=status,  # type: ignore[arg-type]
        decision=decision,
    )


def decide(
    kb: Knowledge, pairs: Iterable[tuple[str, str]], decision: Decision, *, note: str = ""
) -> list[ReviewItem]:
    """Store decisions and apply them to the stored patterns, all in one transaction.

    Raises :class:`~poetkb.errors.UnknownObligation` for an unknown obligation
    and :class:`~poetkb.errors.InputError` for a pattern id the knowledge base
    does not hold, before anything is written.
    """
    wanted = list(dict.fromkeys(pairs))
    patterns: dict[str, LearnedPattern] = {}
    for pattern_id, obligation_id in wanted:
        kb.obligation(obligation_id)
        if pattern_id not in patterns:
            found = _stored_pattern(kb, pattern_id)
            if found is None:
                close = _close_ids(kb, pattern_id)
                raise InputError(
                    f"unknown learned pattern {pattern_id!r}", field=f"--{decision}",
                    hint=(f"did you mean {', '.join(close)}? " if close else "")
                    + "list the ids with `poet learn review --threshold 1`, or mine the suite first",
                )
            patterns[pattern_id] = found
    stamp = store.now_iso()
    done: list[ReviewItem] = []
    with kb.transaction():
        kb.record_learn_decisions(wanted, decision, note=note, at=stamp)
        decisions = kb.learn_decisions()
        for pattern_id, pattern in patterns.items():
            matches, near = apply_decisions(pattern_id, pattern.obligations, decisions, candidates=pattern.candidates)
            updated = pattern.model_copy(update={"obligations": matches, "candidates": near})
            kb.update_pattern_matches(updated)
            for oid in (o for p, o in wanted if p == pattern_id):
                match = next((m for m in matches if m.id == oid), None)
                done.append(_item(updated, match or ObligationMatch(id=oid, confidence=0.0), decision))
    return done


def _stored_pattern(kb: Knowledge, pattern_id: str) -> LearnedPattern | None:
    return kb.pattern(pattern_id)


def _close_ids(kb: Knowledge, pattern_id: str) -> list[str]:
    import difflib

    ids = kb.pattern_ids()
    return difflib.get_close_matches(pattern_id, ids, n=3, cutoff=0.6)
