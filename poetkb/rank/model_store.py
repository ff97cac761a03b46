"""Keep the ranking model of each knowledge base until its content changes.

Fitting the text model and walking the graph takes a second or more on a large
knowledge base; a query takes milliseconds. So the fitted
:class:`~poetkb.rank.model.RankModel` is fitted when the knowledge base is
built (:func:`prepare`) and kept in two places:

- in the knowledge base file itself, in the state table ``rank_cache``
  (migration ``005_rank_cache``), as compressed JSON of plain arrays keyed by the
  content digest, so every ``poet rank`` process, the first after a build
  included, starts warm and never fits anything;
- with the open :class:`~poetkb.knowledge.Knowledge` object (its model, rule
  matcher and digest), for the next query of the same process. Nothing is
  shared between knowledge bases: the state goes away with the object.

The digest covers everything the model is derived from: the catalog
fingerprint, for each table the model reads (obligations, failure modes,
recipes, rules, learned patterns) its row count, largest rowid and total size
of the stored items, and a hash of every graph edge (so remapping a learned
test to another obligation counts as a change). Any build, and any learned pattern written
straight into the file, changes it, and the model is refitted once. Computing
it takes a few SQL aggregates, so it is reused while the file is the same one
and no connection has written to it (SQLite's ``data_version`` and this
connection's change count). A read-only knowledge base still ranks: the model is
then kept in memory only.
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from poetkb.rank.model import MODEL_VERSION, RankModel, build_model

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge
    from poetkb.rank.matching import Matcher

CACHE_TABLE = "rank_cache"
_TABLES = ("obligations", "failure_modes", "recipes", "rules", "patterns")
_MEMO = "rank"


@dataclass
class _State:
    """What one open knowledge base keeps for ranking: the digest and when it was taken, the model, its matcher."""

    stamp: tuple[int, ...] = ()
    digest: str = ""
    model: RankModel | None = None
    matcher: Matcher | None = None


_lock = threading.Lock()
#: how many times a model was fitted in this process (benchmarks and tests read it)
fits = 0


def _state(kb: Knowledge) -> _State:
    return kb.memo(_MEMO, _State)


def digest(kb: Knowledge) -> str:
    """A fingerprint of everything the ranking model is derived from (memoised while nothing is written)."""
    stamp = kb.content_stamp()
    state = _state(kb)
    if state.stamp != stamp:
        state.stamp, state.digest = stamp, _compute_digest(kb)
    return state.digest


def _compute_digest(kb: Knowledge) -> str:
    parts = [f"model={MODEL_VERSION}", f"catalog={kb.meta().get('catalog_fingerprint', '')}",
             *kb.content_summary(_TABLES)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def model_for(kb: Knowledge) -> RankModel:
    """The ranking model of ``kb``: kept with ``kb``, else from the cache table, else fitted (and stored)."""
    global fits
    with _lock:
        key = digest(kb)
        state = _state(kb)
        if state.model is not None and state.model.digest == key:
            return state.model
        model = _load(kb, key)
        if model is None:
            model = build_model(kb, key)
            fits += 1
            _store(kb, model)
        state.model, state.matcher = model, None
        return model


def matcher_for(kb: Knowledge, model: RankModel) -> Matcher:
    """The rule matcher of ``model``, kept with ``kb`` while the model is the same."""
    from poetkb.rank.matching import Matcher

    state = _state(kb)
    if state.matcher is None or state.model is not model:
        state.matcher = Matcher(model.rules)
    return state.matcher


def prepare(kb: Knowledge) -> None:
    """Fit and store the ranking model of a knowledge base just built, so its first query is as fast as the rest.

    Does nothing when the stored model is current; a read-only file is left as it is.
    """
    model_for(kb)


def forget(kb: Knowledge | None = None) -> None:
    """Drop what is kept in memory for ``kb``; the cache table is untouched.

    The state lives with each knowledge base object (nothing is global), so with None there is nothing to drop.
    """
    if kb is not None:
        kb.changed()


def _load(kb: Knowledge, key: str) -> RankModel | None:
    payload = kb.stored_rank_model(key, MODEL_VERSION)
    if payload is None:
        return None
    try:
        text = zlib.decompress(payload).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, TypeError):
        return None
    model = RankModel.from_json(text)
    return model if model is not None and model.digest == key else None


def _store(kb: Knowledge, model: RankModel) -> None:
    kb.store_rank_model(model.digest, MODEL_VERSION, zlib.compress(model.to_json().encode("utf-8"), 6))
