"""The mining cache: extraction results by content hash, kept in the knowledge base.

A test file's features depend on its text only (and on whether it is a
script-style file), so the result of parsing it is stored under the SHA-256 of
its bytes. A re-run over an unchanged suite finds every file here and parses
nothing; an edited file gets a new hash and is parsed again. Failures (a file
that does not parse) are cached too, so they are not retried either. Data files
named by tests are cached the same way, by their own hash.

Rows carry the extractor version; rows from another version are ignored and
pruned on the next write. The table is state (it survives ``poet kb build``).
New rows are written together with the run's results, in one transaction, by
:mod:`poetkb.learn.runner`: an interrupted run writes none.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from poetkb.store import now_iso

if TYPE_CHECKING:
    import sqlite_utils

#: Bump whenever extract.py or features.py change what they produce (invalidates every entry).
CACHE_VERSION = "4"
TABLE = "learn_cache"
_CHUNK = 500


def test_key(content_hash: str, script_style: bool) -> str:
    """Cache key of a test file's extraction result."""
    return f"test:{int(script_style)}:{content_hash}"


def data_key(content_hash: str) -> str:
    """Cache key of a data file's words."""
    return f"data:{content_hash}"


class LearnCache:
    """Reads cached extraction results and collects new ones to write at the end of a run."""

    def __init__(self, db: sqlite_utils.Database, version: str = CACHE_VERSION) -> None:
        self.db = db
        self.version = version
        self.pending: dict[str, dict[str, Any]] = {}
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Cached values for the keys that have one (counted as hits; the rest as misses)."""
        wanted = sorted(set(keys))
        found: dict[str, Any] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = self.db.execute(
                f"select key, features from {TABLE} where version = ? and key in ({marks})", [self.version, *chunk]
            ).fetchall()
            for key, features in rows:
                found[key] = json.loads(features)
        self.hits += len(found)
        self.misses += len(wanted) - len(found)
        return found

    def get(self, key: str) -> Any | None:
        return self.get_many([key]).get(key)

    def put(self, key: str, path: str, value: Any) -> None:
        """Remember a new result; it is written by :meth:`write` with the rest of the run."""
        self.pending[key] = {
            "key": key, "version": self.version, "path": path,
            "features": json.dumps(value, sort_keys=True, separators=(",", ":")), "mined_at": now_iso(),
        }

    def write(self) -> int:
        """Write the pending rows and prune rows of other versions; the caller holds the transaction."""
        self.db.execute(f"delete from {TABLE} where version != ?", [self.version])
        if self.pending:
            self.db.table(TABLE).insert_all(self.pending.values(), pk="key", replace=True)
        written = len(self.pending)
        self.pending = {}
        return written
