"""The mining cache: extraction results by content hash, kept in the knowledge base.

A test file's features depend on its text only (and on whether it is a
script-style file), so the result of parsing it is stored under the SHA-256 of
its bytes. A re-run over an unchanged suite finds every file here and parses
nothing; an edited file gets a new hash and is parsed again. Failures (a file
that does not parse) are cached too, so they are not retried either. Data files
named by tests are cached the same way, by their own hash.

A row that does not decode to the shape its key promises (a damaged or edited
knowledge base) is treated as a miss: the file is parsed again and the row replaced.

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
    from poetkb.knowledge import Knowledge

#: Bump whenever extract.py or features.py change what they produce (invalidates every entry).
CACHE_VERSION = "5"
TABLE = "learn_cache"


def test_key(content_hash: str, script_style: bool) -> str:
    """Cache key of a test file's extraction result."""
    return f"test:{int(script_style)}:{content_hash}"


def data_key(content_hash: str) -> str:
    """Cache key of a data file's words."""
    return f"data:{content_hash}"


class LearnCache:
    """Reads cached extraction results and collects new ones to write at the end of a run."""

    def __init__(self, kb: Knowledge, version: str = CACHE_VERSION) -> None:
        self.kb = kb
        self.version = version
        self.pending: dict[str, dict[str, Any]] = {}
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Cached values for the keys that have one (counted as hits; the rest as misses)."""
        wanted = sorted(set(keys))
        found: dict[str, Any] = {}
        for key, features in self.kb.mining_cache(self.version, wanted):
            value = _decode(key, features)
            if value is not None:
                found[key] = value
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
        self.kb.store_mining_cache(self.version, self.pending.values())
        written = len(self.pending)
        self.pending = {}
        return written


def _decode(key: str, features: object) -> Any | None:
    """A cached value, or None when the row is not what its kind of key holds."""
    try:
        value = json.loads(features) if isinstance(features, (str, bytes)) else None
    except ValueError:
        return None
    if key.startswith("data:"):
        return value if isinstance(value, str) else None
    if not isinstance(value, dict):
        return None
    if "error" in value:
        ok = isinstance(value["error"], str) and isinstance(value.get("detail", ""), str)
        return value if ok else None
    units = value.get("units")
    if not isinstance(units, list) or not all(_is_unit(u) for u in units):
        return None
    return value


def _is_unit(unit: object) -> bool:
    return (
        isinstance(unit, dict)
        and unit.keys() >= _UNIT_KEYS
        and isinstance(unit["fields"], dict)
        and all(isinstance(v, str) for v in unit["fields"].values())
        and isinstance(unit["line"], int)
        and isinstance(unit["end_line"], int)
        and isinstance(unit.get("refs", []), list)
    )


_UNIT_KEYS = frozenset({"test", "kind", "line", "end_line", "fields"})
