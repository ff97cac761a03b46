"""Rank the obligations a change puts at risk, and say why.

>>> import poetkb
>>> kb = poetkb.open()
>>> ranking = kb.rank("switch the cache key to include Accept-Language")
>>> ranking.obligations[0].id, ranking.obligations[0].why.sentences[1]

:func:`rank` is the whole pipeline: understand the change
(:mod:`~poetkb.rank.change`), fetch the ranking model of the knowledge base
(:mod:`~poetkb.rank.model_store`, fitted by :mod:`~poetkb.rank.model` when the
knowledge base was built), match rules
and score (:mod:`~poetkb.rank.matching`, :mod:`~poetkb.rank.scoring`) and
explain (:mod:`~poetkb.rank.explain`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from poetkb.errors import InputError
from poetkb.rank.change import ChangeSummary, DirectiveChange, read_diff_file, understand
from poetkb.rank.explain import NO_MATCH, RankedObligation, Ranking, Why, explain, no_match_message

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge
    from poetkb.rank.gitchange import GitChange

__all__ = [
    "NO_MATCH", "ChangeSummary", "DirectiveChange", "RankedObligation", "Ranking", "Why", "rank", "read_change",
]

DEFAULT_TOP = 10


def read_change(
    kb: Knowledge,
    change: str | None = None,
    *,
    diff: str | Path | None = None,
    component: str | None = None,
    git: GitChange | None = None,
) -> ChangeSummary:
    """Understand a change (text and/or a diff given as text or a file path, or read from git) against ``kb``."""
    if component is not None:
        kb.component(component)  # UnknownEntity (exit 2) naming the known components
    if git is not None:
        if diff is not None:
            raise InputError("pass either --git or --diff, not both", field="diff")
        text = "\n".join(t for t in (change, git.text) if t and t.strip())
        if not git.diff.strip() and not text:
            raise InputError(f"nothing to rank: {git.origin} is empty", field="--git",
                             hint="make a change, or name the range to rank, e.g. --git main...HEAD")
        summary = understand(text or None, git.diff or None, diff_name=git.origin, component=component,
                             contents=git.contents, skip_binary=True)
        return summary.model_copy(update={"origin": git.origin, "warnings": [*git.warnings, *summary.warnings]})
    diff_text, diff_name = None, "diff"
    if isinstance(diff, Path):
        diff_text, diff_name = read_diff_file(diff)
        if not diff_text.strip():
            raise InputError("the diff is empty", file=diff_name,
                             hint="pass the output of `git diff` for the change, or describe it with --change")
    elif diff is not None:
        diff_text = diff
    return understand(change, diff_text, diff_name=diff_name, component=component)


def rank(
    kb: Knowledge,
    change: str | None = None,
    *,
    diff: str | Path | None = None,
    component: str | None = None,
    top: int = DEFAULT_TOP,
    git: GitChange | None = None,
) -> Ranking:
    """The obligations ``change`` puts at risk, best first, each with its why.

    An empty or malformed change raises :class:`~poetkb.errors.InputError`; an
    unknown component raises :class:`~poetkb.errors.UnknownEntity`. A change
    that matches nothing returns a :class:`Ranking` with no obligations and a
    ``message`` saying what was understood.
    """
    from poetkb.rank.model_store import matcher_for, model_for
    from poetkb.rank.scoring import score

    if top < 1:
        raise InputError(f"--top must be at least 1, not {top}", field="top")
    summary = read_change(kb, change, diff=diff, component=component, git=git)
    model = model_for(kb)
    scored = score(model, matcher_for(kb, model), summary)[:top]
    ranked = [explain(kb, model, s, summary) for s in scored]
    return Ranking(change=summary, obligations=ranked, message="" if ranked else no_match_message(summary))
