"""The mining memo: what a re-run need not compute again (extraction results by content hash, data-file words,
files' stat records, mapping results), kept in the knowledge base's ``learn_cache`` table.

A test file's features depend on its text only (and on whether it is a
script-style file), so the result of parsing it is stored under the SHA-256 of
its bytes. A re-run over an unchanged suite finds every file here and parses
nothing; an edited file gets a new hash and is parsed again. Failures (a file
that does not parse) are cached too, so they are not retried either. Data files
named by tests are cached the same way, by their own hash.

A test file's row holds its :class:`~poetkb.learn.features.Extraction` (or
:class:`~poetkb.learn.features.ExtractFailure`) as JSON: ``{"units": [{"test", "kind",
"line", "end_line", "summary", "fields", "refs"}, ...], "fixtures": [...], "module_doc": ...}``
or ``{"error": reason, "detail": ...}`` (:func:`encode_extraction`, :func:`decode_extraction`).
A row that does not decode to the shape its key promises (a damaged or edited
knowledge base) is treated as a miss: the file is parsed again and the row replaced.

Rows carry the extractor version; rows from another version are ignored and
pruned on the next write. The table is state (it survives ``poet kb build``).
New rows are written together with the run's results, in one transaction, by
:mod:`poetkb.learn.runner`: an interrupted run writes none.

Two more kinds of rows make a re-run over an unchanged suite cheap:

- ``stat:<path>`` remembers a data file's (by its real path) or a test file's
  (by its absolute path as discovery walked it) size, modification and change
  times, inode and device with the SHA-256 of its bytes, so an unchanged file is
  not read again (as git's index does; :func:`poetkb.learn.discover.discover`). An entry counts only when every
  one of those is unchanged and the file was last modified at least
  :data:`RACY_NS` before it was hashed (a write in the same clock tick as the
  hash could otherwise go unseen); anything else reads and hashes the file.
- ``map:<sha256>`` holds the mapper's result for one run's units (see
  :func:`poetkb.learn.runner.mapping_key`): the key covers the units' features,
  the catalog, the known examples and the code of the mapper, so the same key
  means the same result. One such row is kept per source.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from poetkb.learn.features import UNIT_KINDS, ExtractedUnit, ExtractFailure, Extraction
from poetkb.store import now_iso

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge

#: Bump whenever extract.py or features.py change what they produce (invalidates every entry).
CACHE_VERSION = "6"
TABLE = "learn_cache"
#: A data file modified less than this long before it was hashed is hashed again next time (racy stat).
RACY_NS = 2_000_000_000


def test_key(content_hash: str, script_style: bool) -> str:
    """Cache key of a test file's extraction result."""
    return f"test:{int(script_style)}:{content_hash}"


def data_key(content_hash: str) -> str:
    """Cache key of a data file's words."""
    return f"data:{content_hash}"


def stat_key(path: str) -> str:
    """Cache key of a data file's stat record (its real path)."""
    return f"stat:{path}"


def _stat_tuple(info: os.stat_result) -> list[int]:
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]


def fingerprint(*parts: bytes | str) -> str:
    """SHA-256 over parts, each length-prefixed (so no two different part lists give the same bytes)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


class LearnCache:
    """Reads cached extraction results and collects new ones to write at the end of a run."""

    def __init__(self, kb: Knowledge, version: str = CACHE_VERSION) -> None:
        self.kb = kb
        self.version = version
        self.pending: dict[str, dict[str, Any]] = {}
        self.hits = 0
        self.misses = 0
        self._stats: dict[str, list[Any]] | None = None  # stat:<path> rows, loaded on first use
        self._drop_runs: set[str] = set()  # sources whose older map: rows go on write
        self._data: dict[str, Any] = {}  # data: rows read ahead by preload_data

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
        if key in self._data:
            self.hits += 1
            return self._data[key]
        return self.get_many([key]).get(key)

    def put(self, key: str, path: str, value: Any) -> None:
        """Remember a new result (a file's extraction, a data file's words, a run's mapping); it is written by
        :meth:`write` with the rest of the run."""
        if isinstance(value, (Extraction, ExtractFailure)):
            value = encode_extraction(value)
        self.pending[key] = {
            "key": key, "version": self.version, "path": path,
            "features": json.dumps(value, sort_keys=True, separators=(",", ":")), "mined_at": now_iso(),
        }

    def _load_stats(self) -> dict[str, list[Any]]:
        if self._stats is None:
            self._stats = {}
            rows = self.kb.mining_cache_prefixed(self.version, "stat:")
            for key, features in rows:
                try:
                    value = json.loads(features)
                except (TypeError, ValueError):
                    continue
                if (isinstance(value, list) and len(value) == 7 and all(isinstance(v, int) for v in value[:6])
                        and isinstance(value[6], str) and len(value[6]) == 64):
                    self._stats[key[len("stat:"):]] = value
        return self._stats

    def known_hash(self, path: str, info: os.stat_result) -> str | None:
        """The SHA-256 recorded for the file at ``path`` if its stat shows it unchanged since, else None."""
        entry = self._load_stats().get(path)
        if entry is None or not stat.S_ISREG(info.st_mode) or entry[:5] != _stat_tuple(info):
            return None
        if info.st_mtime_ns + RACY_NS > entry[5]:  # modified too close to when it was hashed: not trusted
            return None
        return str(entry[6])

    def preload_data(self, under: str) -> None:
        """Read ahead, in one query per 500, the words of the data files recorded below the directory ``under``.

        A re-run then looks each data file up in memory instead of with a query of its own.
        """
        prefix = under if under.endswith("/") else f"{under}/"
        keys = sorted({data_key(entry[6]) for path, entry in self._load_stats().items()
                       if path.startswith(prefix) and not path.endswith(".py")})  # test files are no data files
        hits, misses = self.hits, self.misses
        self._data.update(self.get_many(keys))
        self.hits, self.misses = hits, misses  # counted when used, as a look-up of its own would be

    def remember_hash(self, path: str, info: os.stat_result, digest: str, hashed_at: int | None = None) -> None:
        """Record the hash of the file at ``path`` as read while its stat was ``info`` (at ``hashed_at``, ns)."""
        value = [*_stat_tuple(info), hashed_at or time.time_ns(), digest]
        if self._stats is not None:
            self._stats[path] = value
        self.pending[stat_key(path)] = {
            "key": stat_key(path), "version": self.version, "path": path,
            "features": json.dumps(value, separators=(",", ":")), "mined_at": now_iso(),
        }

    def put_run(self, source: str, key: str, value: Any) -> None:
        """Remember a run's mapping result under ``key``; older ones of the same source go on :meth:`write`."""
        self._drop_runs.add(source)
        self.put(key, f"run:{source}", value)

    def write(self) -> int:
        """Write the pending rows and prune rows of other versions; the caller holds the transaction."""
        self.kb.store_mining_cache(self.version, self.pending.values(), drop_runs=sorted(self._drop_runs))
        self._drop_runs = set()
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
    if key.startswith("map:"):
        return value if isinstance(value, list) and all(isinstance(v, dict) for v in value) else None
    return decode_extraction(value)


def encode_extraction(record: Extraction | ExtractFailure) -> dict[str, Any]:
    """The JSON form of a test file's extraction result, as the memo stores it."""
    if isinstance(record, ExtractFailure):
        return {"error": record.reason, "detail": record.detail}
    return {
        "units": [{"test": u.test, "kind": u.kind, "line": u.line, "end_line": u.end_line, "summary": u.summary,
                   "fields": u.fields, "refs": list(u.refs)} for u in record.units],
        "fixtures": list(record.fixtures),
        "module_doc": record.module_doc,
    }


def decode_extraction(value: object) -> Extraction | ExtractFailure | None:
    """A test file's extraction result from its stored JSON form, or None when the value is not one."""
    if not isinstance(value, dict):
        return None
    if "error" in value:
        reason, detail = value["error"], value.get("detail", "")
        return ExtractFailure(reason, detail) if isinstance(reason, str) and isinstance(detail, str) else None
    units, fixtures, doc = value.get("units"), value.get("fixtures", []), value.get("module_doc", "")
    if not isinstance(units, list) or not isinstance(fixtures, list) or not isinstance(doc, str) \
            or not all(isinstance(f, str) for f in fixtures):
        return None
    decoded = [_decode_unit(u) for u in units]
    if any(u is None for u in decoded):
        return None
    return Extraction(tuple(u for u in decoded if u is not None), tuple(fixtures), doc)


def _decode_unit(unit: object) -> ExtractedUnit | None:
    if not isinstance(unit, dict) or not unit.keys() >= _UNIT_KEYS:
        return None
    test, kind, line, end, fields = (unit.get(k) for k in ("test", "kind", "line", "end_line", "fields"))
    summary, refs = unit.get("summary", ""), unit.get("refs", [])
    if not (
        (test is None or isinstance(test, str))
        and kind in UNIT_KINDS
        and isinstance(line, int) and not isinstance(line, bool)
        and isinstance(end, int) and not isinstance(end, bool)
        and isinstance(fields, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
        and isinstance(summary, str)
        and isinstance(refs, list) and all(isinstance(r, str) for r in refs)
    ):
        return None
    return ExtractedUnit(test=test, kind=kind, line=line, end_line=end, fields=fields,  # type: ignore[arg-type]
                         summary=summary, refs=tuple(refs))


_UNIT_KEYS = frozenset({"test", "kind", "line", "end_line", "fields"})
