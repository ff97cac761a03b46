"""The knowledge base as typed data access: reads that return models, named writes, caches kept per file.

The layer between the store (schema, migrations, builds) and the features. Every
SQL statement a feature needs is a named method here (or in :mod:`poetkb.store`),
so no feature reaches into the connection. What is derived from the content (the
graph view and features' memos) lives with the :class:`Knowledge` object and is
dropped by the writes made through it (:meth:`Knowledge.changed`).

This module imports no feature: the façade (:mod:`poetkb.kb`) adds the feature
entry points on top of it.
"""

from __future__ import annotations

import difflib
import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Self, TypeVar

from poetkb import store
from poetkb._lazy import LazyModule
from poetkb.errors import UnknownEntity, UnknownObligation
from poetkb.nodeid import EdgeKind, NodeId

if TYPE_CHECKING:
    import networkx
    import sqlite_utils

    from poetkb import models
else:
    models = LazyModule("poetkb.models")  # the catalog models load when a read builds one

#: ``catalog_source`` of a knowledge base built from the catalog shipped with poetkb
SHIPPED = "shipped"
#: rows per ``in (...)`` list (SQLite's limit on host parameters is far above it)
_CHUNK = 500

T = TypeVar("T")


class RelatedLine(NamedTuple):
    """A neighbour in the graph as a listing shows it (the fields of :class:`~poetkb.models.RelatedNode`)."""

    id: str
    kind: str
    label: str
    edge: str
    direction: Literal["out", "in"]
    distance: int = 1
    role: Literal["own", "reference"] | None = None


class ObligationLine(NamedTuple):
    """An obligation as a listing shows it: id, title, domain and risk (read without building the model)."""

    id: str
    title: str
    domain: str
    risk: str


class Knowledge:
    """Typed data access to one knowledge base file: reads as models, and the named writes features need.

    Features are functions over a ``Knowledge`` (the façade :class:`poetkb.kb.KnowledgeBase` is one); they never
    write SQL of their own. What is derived from the content (the graph view, features' memos through
    :meth:`memo`) is kept with this object and dropped by every write made through it.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.conn: sqlite3.Connection = store.open_connection(self.path)
        self._db: sqlite_utils.Database | None = None
        store.ensure_schema(self.conn, self.path)
        self._graph: networkx.MultiDiGraph | None = None
        self._memo: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def db(self) -> sqlite_utils.Database:
        """The connection as a ``sqlite_utils.Database`` (made on first use: reads go through :attr:`conn`)."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    @db.setter
    def db(self, value: sqlite_utils.Database) -> None:
        self.conn, self._db = value.conn, value

    def reopen(self) -> None:
        """Open the file again (after a build swapped a new one in) and drop every cache."""
        self.conn = store.open_connection(self.path)
        self._db = None
        self.changed()

    def _dicts(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, list(args))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def _decoded(self, model: type[T], table: str, where: Sequence[str] = (), args: Sequence[Any] = ()) -> list[T]:
        sql = f"select data from [{table}]" + (f" where {' and '.join(where)}" if where else "") + " order by id"
        return [model.model_validate_json(data) for (data,) in self.conn.execute(sql, list(args))]  # type: ignore[attr-defined]

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"

    def meta(self) -> dict[str, str]:
        try:
            return dict(self.conn.execute("select key, value from meta").fetchall())
        except sqlite3.OperationalError:
            return {}  # no meta table

    # -- catalog reads ---------------------------------------------------------------------------
    def obligations(
        self,
        *,
        domain: str | None = None,
        risk: str | None = None,
        component: str | None = None,
        tag: str | None = None,
        ids: Iterable[str] | None = None,
    ) -> list[models.Obligation]:
        """Obligations, sorted by id, filtered by domain, risk, component, tag or a set of ids."""
        where, args = self._obligation_filter(domain, risk, component, tag, ids)
        return self._decoded(models.Obligation, "obligations", where, args)

    def obligation_lines(
        self,
        *,
        domain: str | None = None,
        risk: str | None = None,
        component: str | None = None,
        tag: str | None = None,
        ids: Iterable[str] | None = None,
    ) -> list[ObligationLine]:
        """:meth:`obligations` as (id, title, domain, risk) lines: what a listing prints, without building models."""
        where, args = self._obligation_filter(domain, risk, component, tag, ids)
        sql = "select id, title, domain, risk from obligations" + (f" where {' and '.join(where)}" if where else "")
        return [ObligationLine(*row) for row in self.conn.execute(sql + " order by id", args)]

    def _obligation_filter(self, domain: str | None, risk: str | None, component: str | None, tag: str | None,
                           ids: Iterable[str] | None) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if domain:
            where.append("domain = ?")
            args.append(domain)
        if risk:
            where.append("risk = ?")
            args.append(risk)
        if component:
            self.component(component)
            where.append("exists (select 1 from json_each(applies_to) where value = ?)")
            args.append(component)
        if tag:
            where.append("exists (select 1 from json_each(tags) where value = ?)")
            args.append(tag)
        if ids is not None:
            wanted = list(ids)
            for oid in wanted:
                self.obligation(oid)
            where.append(f"id in ({', '.join('?' * len(wanted))})")
            args.extend(wanted)
        return where, args

    def obligation(self, obligation_id: str) -> models.Obligation:
        """One obligation by id; :class:`UnknownObligation` (a LookupError) with suggestions otherwise."""
        row = self._row("obligations", obligation_id)
        if row is None:
            ids = self._ids("obligations")
            raise UnknownObligation(obligation_id, suggestions=difflib.get_close_matches(obligation_id, ids, n=3))
        return store.decode(row, models.Obligation)

    def info(self) -> models.KBMeta:
        """:meth:`meta` as a model: schema version, poetkb version, build time, catalog fingerprint and source."""
        meta = dict(self.meta())
        known = {k: meta.pop(k) for k in list(meta) if k in models.KBMeta.model_fields and k != "other"}
        version = known.pop("schema_version", "0")
        return models.KBMeta(schema_version=int(version) if version.isdigit() else 0, **known, other=meta)

    def source_location(self, obligation_id: str) -> models.SourceLocation:
        """:meth:`source_of` as a model."""
        file, line = self.source_of(obligation_id)
        return models.SourceLocation(file=file, line=line)

    def source_of(self, obligation_id: str) -> tuple[str, int | None]:
        """The catalog file (an absolute path) and line an obligation was defined at.

        The store keeps the file relative to the catalog root; it is resolved here
        against the root this knowledge base was built from, so it is right whatever
        the current directory is.
        """
        row = self._row("obligations", obligation_id)
        if row is None:
            raise UnknownObligation(obligation_id)
        file = row["source_file"]
        root = self.catalog_root()
        if root is not None and file and not Path(file).is_absolute():
            file = str(root / file)
        return file, row["source_line"]

    def catalog_root(self) -> Path | None:
        """The catalog directory this knowledge base was built from (None for files that did not record it)."""
        meta = self.meta()
        if meta.get("source_paths") != store.SOURCE_PATHS_RELATIVE:
            return None
        source = meta.get("catalog_source", "")
        if source == SHIPPED:
            from poetkb.catalog_files import shipped_catalog_root

            return shipped_catalog_root()
        return Path(source) if source else None

    def failure_modes(self, *, obligation: str | None = None, component: str | None = None) -> list[models.FailureMode]:
        """Failure modes, optionally those an obligation guards against or that affect a component."""
        if obligation:
            modes = self._decoded(models.FailureMode, "failure_modes", [
                "id in (select substr(dst, 14) from edges where src = ? and kind = 'guards_against' "
                "and dst like 'failure_mode:%')"], [NodeId.of("obligation", self.obligation(obligation).id)])
        else:
            modes = self._decoded(models.FailureMode, "failure_modes")
        if component:
            self.component(component)
            modes = [m for m in modes if component in m.components or not m.components]
        return modes

    def failure_mode_titles(self, obligation_id: str) -> list[tuple[str, str]]:
        """(id, title) of the failure modes an obligation guards against, by id (without building models)."""
        return self.conn.execute(
            "select id, title from failure_modes where id in (select substr(dst, 14) from edges where src = ? and "
            "kind = 'guards_against' and dst like 'failure_mode:%') order by id",
            [NodeId.of("obligation", obligation_id)]).fetchall()

    def domains(self) -> list[str]:
        """The obligation domains, sorted."""
        return [r[0] for r in self.conn.execute("select distinct domain from obligations order by domain")]

    def failure_mode(self, failure_mode_id: str) -> models.FailureMode:
        row = self._row("failure_modes", failure_mode_id)
        if row is None:
            raise UnknownEntity("failure mode", failure_mode_id, known=self._ids("failure_modes"))
        return store.decode(row, models.FailureMode)

    def recipes(self, *, obligation: str | None = None, component: str | None = None) -> list[models.Recipe]:
        """Recipes, optionally those exercising an obligation or usable on a component."""
        if obligation:
            recipes = self._decoded(models.Recipe, "recipes", [
                "id in (select substr(dst, 8) from edges where src = ? and kind = 'exercised_by' "
                "and dst like 'recipe:%')"], [NodeId.of("obligation", self.obligation(obligation).id)])
        else:
            recipes = self._decoded(models.Recipe, "recipes")
        if component:
            self.component(component)
            recipes = [r for r in recipes if not r.components or component in r.components]
        return recipes

    def recipe(self, recipe_id: str) -> models.Recipe:
        row = self._row("recipes", recipe_id)
        if row is None:
            raise UnknownEntity("recipe", recipe_id, known=self._ids("recipes"))
        return store.decode(row, models.Recipe)

    def components(self) -> list[models.Component]:
        return self._decoded(models.Component, "components")

    def component(self, component_id: str) -> models.Component:
        row = self._row("components", component_id)
        if row is None:
            raise UnknownEntity("component", component_id, known=self._ids("components"))
        return store.decode(row, models.Component)

    def rules(self, *, kind: str | None = None, component: str | None = None) -> list[models.MappingRule]:
        where, args = [], []
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if component:
            where.append("(component = ? or component is null)")
            args.append(component)
        return self._decoded(models.MappingRule, "rules", where, args)

    def patterns(self, *, obligation: str | None = None, source: str | None = None) -> list[models.LearnedPattern]:
        """Learned test patterns, optionally those mapped to an obligation or mined from one source."""
        where, args = [], []
        if source:
            where.append("source = ?")
            args.append(source)
        if obligation:
            where.append("id in (select substr(src, 9) from edges where dst = ? and kind = 'learned_from')")
            args.append(NodeId.of("obligation", obligation))
        return self._decoded(models.LearnedPattern, "patterns", where, args)

    # -- search and graph ------------------------------------------------------------------------
    def search(self, text: str, *, limit: int = 20) -> list[models.Obligation]:
        """Obligations whose title, statement, rationale or keywords match ``text`` (FTS5, best first)."""
        return [models.Obligation.model_validate_json(row[-1]) for row in self._search(text, limit, "data")]

    def search_lines(self, text: str, *, limit: int = 20) -> list[ObligationLine]:
        """:meth:`search` as (id, title, domain, risk) lines, best first, without building models."""
        return [ObligationLine(*row) for row in self._search(text, limit)]

    def _search(self, text: str, limit: int, *extra: str) -> list[tuple[Any, ...]]:
        words = re.findall(r"\w+", text.lower())
        if not words:
            return []
        query = " OR ".join(f'"{w}"' for w in dict.fromkeys(words))
        columns = ", ".join(f"obligations.{c}" for c in ("id", "title", "domain", "risk", *extra))
        return self.conn.execute(
            f"select {columns} from obligations join obligations_fts on obligations.rowid = obligations_fts.rowid "
            "where obligations_fts match ? order by bm25(obligations_fts), obligations.id limit ?",
            [query, limit],
        ).fetchall()

    def graph(self) -> networkx.MultiDiGraph:
        """The knowledge graph as a networkx MultiDiGraph (built once per open knowledge base)."""
        if self._graph is None:
            import networkx as nx

            graph = nx.MultiDiGraph()
            for node, kind, label in self.conn.execute("select id, kind, label from nodes"):
                graph.add_node(node, kind=kind, label=label)
            for src, dst, kind, weight in self.conn.execute("select src, dst, kind, weight from edges"):
                graph.add_edge(src, dst, key=kind, kind=kind, weight=weight)
            self._graph = graph
        return self._graph

    def node_id(self, name: str) -> str:
        """Resolve an obligation id or a ``kind:id`` node name to a graph node id."""
        for candidate in (name, NodeId.of("obligation", name)):
            if self._is_node(candidate):
                return candidate
        matches = [r[0] for r in self.conn.execute(
            "select id from (select id from nodes union select src from edges union select dst from edges) "
            "where instr(id, ':') > 0 and substr(id, instr(id, ':') + 1) = ? order by id", [name])]
        if len(matches) == 1:
            return matches[0]
        if not matches and "." in name:
            self.obligation(name)  # raises UnknownObligation with suggestions
        raise UnknownEntity("node", name, known=matches)

    def _is_node(self, node: str) -> bool:
        return self.conn.execute(
            "select exists(select 1 from nodes where id = ?) or exists(select 1 from edges where src = ?) "
            "or exists(select 1 from edges where dst = ?)", [node, node, node]).fetchone()[0] == 1

    def related(self, name: str, *, depth: int = 1, edge_kinds: Iterable[EdgeKind | str] | None = None
                ) -> list[models.RelatedNode]:
        """The graph neighbourhood of a node up to ``depth`` hops, each neighbour with the edge that reached it.

        Walked with SQL over the edge table (the same answer as a walk of :meth:`graph`, without building it).
        """
        return [models.RelatedNode(**line._asdict()) for line in self.related_lines(name, depth=depth,
                                                                                     edge_kinds=edge_kinds)]

    def related_lines(self, name: str, *, depth: int = 1, edge_kinds: Iterable[EdgeKind | str] | None = None
                      ) -> list[RelatedLine]:
        """:meth:`related` as plain rows (what a listing prints), without building models."""
        start = self.node_id(name)
        kinds = set(edge_kinds) if edge_kinds else None
        seen = {start: 0}
        frontier = [start]
        found: list[RelatedLine] = []
        for distance in range(1, depth + 1):
            nxt: list[str] = []
            for current in frontier:
                links: list[tuple[str, str, Literal["out", "in"]]] = [
                    (dst, kind, "out") for dst, kind in self.conn.execute(
                        "select dst, kind from edges where src = ?", [current])
                ]
                links += [(src, kind, "in") for src, kind in self.conn.execute(
                    "select src, kind from edges where dst = ?", [current])]
                for other, kind, direction in sorted(links):
                    if kinds and kind not in kinds or other in seen:
                        continue
                    seen[other] = distance
                    nxt.append(other)
                    row = self.conn.execute("select kind, label from nodes where id = ?", [other]).fetchone()
                    node_kind, label = row if row is not None else ("?", other)
                    found.append(RelatedLine(other, node_kind, label, kind, direction, distance))
            frontier = nxt
        patterns = [NodeId(n.id).key for n in found if n.kind == "pattern"]
        roles: dict[str, Literal["own", "reference"]] = {}
        for start_at in range(0, len(patterns), _CHUNK):
            chunk = patterns[start_at:start_at + _CHUNK]
            roles.update(self.conn.execute(
                f"select id, role from patterns where id in ({', '.join('?' * len(chunk))})", chunk).fetchall())
        return [n._replace(role=roles.get(NodeId(n.id).key, "own")) if n.kind == "pattern" else n for n in found]

    def table_counts(self) -> dict[str, int]:
        """Rows per catalog table and edges per kind (``edges.KIND``): the counts of :meth:`stats`."""
        tables = ["obligations", "failure_modes", "recipes", "components", "rules", "patterns", "nodes", "edges"]
        counts = {t: int(self.conn.execute(f"select count(*) from [{t}]").fetchone()[0]) for t in tables}
        counts.update({f"edges.{kind}": int(n) for kind, n in self.conn.execute(
            "select kind, count(*) from edges group by kind order by kind")})
        return counts

    def stats(self) -> models.KBStats:
        """Counts, schema version and provenance of this file."""
        meta = self.meta()
        counts = self.table_counts()
        return models.KBStats(
            path=str(self.path),
            schema_version=int(meta.get("schema_version", 0)),
            poetkb_version=meta.get("poetkb_version", "?"),
            built_at=meta.get("built_at", "?"),
            catalog_fingerprint=meta.get("catalog_fingerprint", ""),
            counts=counts,
        )

    # -- helpers ---------------------------------------------------------------------------------
    def _row(self, table: str, key: str) -> dict[str, Any] | None:
        rows = self._dicts(f"select * from [{table}] where id = ? limit 1", [key])
        return rows[0] if rows else None

    def _ids(self, table: str) -> list[str]:
        return [r[0] for r in self.conn.execute(f"select id from [{table}] order by id")]

    def read_only(self) -> None:
        """Refuse every write on this connection from now on (SQLite's ``query_only``): for readers like the viewer."""
        self.conn.execute("PRAGMA query_only = ON")

    # -- caches kept with this object ------------------------------------------------------------
    def changed(self) -> None:
        """Drop what was derived from the content (graph view, memos): called by every write made here."""
        self._graph = None
        self._memo.clear()

    def memo(self, key: str, make: Callable[[], T]) -> T:
        """A value derived from this knowledge base, made once and kept until the next write through it.

        Features keep their per-knowledge-base state here instead of in module globals.
        """
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]  # type: ignore[no-any-return]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (nested ones join it); the caches are dropped when it ends."""
        try:
            with self.db.atomic():
                yield
        finally:
            self.changed()

    # -- learned patterns (written by poetkb.learn) ----------------------------------------------
    def pattern(self, pattern_id: str) -> models.LearnedPattern | None:
        """One learned pattern by id, or None."""
        row = self._row("patterns", pattern_id)
        return store.decode(row, models.LearnedPattern) if row is not None else None

    def stored_data(self, table: str) -> list[str]:
        """The stored JSON of every row of ``obligations``, ``rules`` or ``failure_modes``, by id: what the typed
        reads decode, without decoding it (for fingerprints of the catalog)."""
        if table not in ("obligations", "rules", "failure_modes"):
            raise ValueError(f"not a catalog table with stored data: {table}")
        return [data for (data,) in self.conn.execute(f"select data from [{table}] order by id")]

    def obligation_ids(self) -> list[str]:
        """Every obligation id, sorted (without decoding the obligations)."""
        return self._ids("obligations")

    def pattern_ids(self) -> list[str]:
        return self._ids("patterns")

    def pattern_data(self, *, exclude_source: str | None = None) -> Iterator[dict[str, Any]]:
        """Stored patterns as plain JSON data (cheaper than models for bulk reads), by id."""
        if exclude_source is None:
            rows = self.conn.execute("select data from patterns order by id")
        else:
            rows = self.conn.execute("select data from patterns where source != ? order by id", [exclude_source])
        for (data,) in rows:
            yield json.loads(data)

    def replace_patterns(self, source: str, patterns: Sequence[models.LearnedPattern]) -> None:
        """Replace one source's patterns, their nodes and ``learned_from`` edges (joins an open transaction)."""
        conn = self.conn
        known = {r[0] for r in conn.execute("select id from obligations")}
        rows = [(p.id, p.source, p.role, p.file, p.test, p.line, p.summary, p.model_dump_json()) for p in patterns]
        edges = [(NodeId.of("pattern", p.id), NodeId.of("obligation", m.id), m.confidence)
                 for p in patterns for m in p.obligations if m.id in known]
        if self._patterns_stored_as(source, rows, edges):
            return  # a re-run that changed nothing: rewriting the same rows would only cost time
        old = [r[0] for r in conn.execute("select id from patterns where source = ?", [source])]
        for start in range(0, len(old), _CHUNK):
            chunk = [NodeId.of("pattern", pid) for pid in old[start:start + _CHUNK]]
            marks = ", ".join("?" * len(chunk))
            conn.execute(f"delete from edges where src in ({marks})", chunk)
            conn.execute(f"delete from nodes where id in ({marks})", chunk)
        conn.execute("delete from patterns where source = ?", [source])
        conn.executemany(
            "insert or replace into patterns (id, source, role, file, test, line, summary, data) "
            "values (?, ?, ?, ?, ?, ?, ?, ?)", rows,
        )
        conn.executemany(
            "insert or replace into nodes (id, kind, label) values (?, 'pattern', ?)",
            ((NodeId.of("pattern", p.id), p.test or p.file) for p in patterns),
        )
        conn.executemany("insert or replace into edges (src, dst, kind, weight) values (?, ?, 'learned_from', ?)",
                         edges)
        self.changed()

    def _patterns_stored_as(self, source: str, rows: list[tuple[Any, ...]],
                            edges: Sequence[tuple[str, str, float]]) -> bool:
        """Whether the knowledge base holds exactly these pattern rows, their nodes and their edges for ``source``."""
        conn = self.conn
        stored = conn.execute(
            "select id, source, role, file, test, line, summary, data from patterns where source = ?", [source]
        ).fetchall()
        if sorted(stored) != sorted(rows):
            return False
        nodes = conn.execute(
            "select count(*) from patterns p join nodes n on n.id = 'pattern:' || p.id "
            "where p.source = ? and n.kind = 'pattern' and n.label = coalesce(p.test, p.file)", [source]
        ).fetchone()[0]
        if nodes != len(rows):
            return False
        linked = conn.execute(
            "select e.src, e.dst, e.kind, e.weight from patterns p join edges e on e.src = 'pattern:' || p.id "
            "where p.source = ?", [source]
        ).fetchall()
        return sorted(linked) == sorted((src, dst, "learned_from", weight) for src, dst, weight in edges)

    def update_pattern_matches(self, pattern: models.LearnedPattern) -> None:
        """Store a pattern's new obligation matches and its ``learned_from`` edges (joins an open transaction)."""
        node = NodeId.of("pattern", pattern.id)
        self.db.table("patterns").update(pattern.id, {"data": pattern.model_dump_json()})
        self.conn.execute("delete from edges where src = ? and kind = 'learned_from'", [node])
        rows = [{"src": node, "dst": NodeId.of("obligation", m.id), "kind": "learned_from", "weight": m.confidence}
                for m in pattern.obligations]
        if rows:
            self.db.table("edges").insert_all(rows, pk=("src", "dst", "kind"), replace=True)
        self.changed()

    def learn_decisions(self) -> dict[tuple[str, str], str]:
        """Review decisions: (pattern id, obligation id) -> ``accept`` or ``reject``."""
        return store.learn_decisions(self.db)

    def record_learn_decisions(self, pairs: Iterable[tuple[str, str]], decision: str, *, note: str = "",
                               at: str | None = None) -> None:
        """Store a review decision for each (pattern id, obligation id) pair (joins an open transaction)."""
        stamp = at or store.now_iso()
        for pattern_id, obligation_id in pairs:
            self.db.table("learn_decisions").upsert(
                {"pattern_id": pattern_id, "obligation_id": obligation_id, "decision": decision,
                 "decided_at": stamp, "note": note},
                pk=("pattern_id", "obligation_id"),
            )
        self.changed()

    def learned_tests(self, obligation_id: str, *, role: str = "own", limit: int = 10
                      ) -> list[tuple[models.LearnedPattern, float]]:
        """Learned patterns of one role mapped to an obligation, with the mapping's weight, strongest first."""
        rows = self.conn.execute(
            "select p.data, e.weight from edges e join patterns p on p.id = substr(e.src, 9) "
            "where e.dst = ? and e.kind = 'learned_from' and p.role = ? order by e.weight desc, p.id limit ?",
            [NodeId.of("obligation", obligation_id), role, limit],
        ).fetchall()
        return [(models.LearnedPattern.model_validate_json(data), float(weight)) for data, weight in rows]

    def learned_counts(self, obligation_id: str | None = None) -> dict[str, int]:
        """With an obligation: its learned tests per role; without: learned tests per obligation id."""
        if obligation_id is None:
            rows = self.conn.execute(
                "select dst, count(*) from edges where kind = 'learned_from' group by dst order by dst").fetchall()
            return {NodeId(dst).key: int(n) for dst, n in rows}
        rows = self.conn.execute(
            "select p.role, count(*) from edges e join patterns p on p.id = substr(e.src, 9) "
            "where e.dst = ? and e.kind = 'learned_from' group by p.role",
            [NodeId.of("obligation", obligation_id)],
        ).fetchall()
        return {str(role): int(n) for role, n in rows}

    def pattern_label(self, pattern_id: str) -> str | None:
        """A learned pattern's test name (its file when it has none), or None for an unknown id."""
        row = self.conn.execute("select test, file from patterns where id = ?", [pattern_id]).fetchone()
        return (row[0] or row[1]) if row else None

    def mining_cache(self, version: str, keys: Sequence[str]) -> list[tuple[str, str]]:
        """(key, features JSON) of the mining cache rows of ``version`` among ``keys``."""
        found: list[tuple[str, str]] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = list(keys[start:start + _CHUNK])
            marks = ", ".join("?" * len(chunk))
            found.extend(self.conn.execute(
                f"select key, features from learn_cache where version = ? and key in ({marks})", [version, *chunk]
            ).fetchall())
        return found

    def mining_cache_prefixed(self, version: str, prefix: str) -> list[tuple[str, str]]:
        """(key, features JSON) of the mining cache rows of ``version`` whose key starts with ``prefix``."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return self.conn.execute(
            "select key, features from learn_cache where version = ? and key >= ? and key < ?", [version, prefix, upper]
        ).fetchall()

    def store_mining_cache(self, version: str, rows: Iterable[dict[str, Any]], *,
                           drop_runs: Iterable[str] = ()) -> None:
        """Write mining cache rows and prune rows of other versions (joins an open transaction).

        ``drop_runs`` names sources whose older cached mapping results (``map:`` rows) go first.
        """
        self.conn.execute("delete from learn_cache where version != ?", [version])
        for source in drop_runs:
            self.conn.execute("delete from learn_cache where path = ? and key >= 'map:' and key < 'map;'",
                              [f"run:{source}"])
        rows = list(rows)
        if rows:
            self.db.table("learn_cache").insert_all(rows, pk="key", replace=True)

    def mining_coverage(self) -> list[tuple[str, int, int, list[tuple[str, int]]]]:
        """Per mined source: (source, patterns, patterns mapped to an obligation, [(obligation, patterns)])."""
        suites: dict[str, tuple[str, int, int, list[tuple[str, int]]]] = {}
        for source, n in self.conn.execute("select source, count(*) from patterns group by source order by source"):
            suites[source] = (source, int(n), 0, [])
        for source, n in self.conn.execute(
                "select p.source, count(distinct p.id) from patterns p join edges e "
                "on e.src = 'pattern:' || p.id and e.kind = 'learned_from' group by p.source"):
            name, total, _, obligations = suites[source]
            suites[source] = (name, total, int(n), obligations)
        for source, obligation, n in self.conn.execute(
                "select p.source, substr(e.dst, 12) as obligation, count(*) as n from patterns p "
                "join edges e on e.src = 'pattern:' || p.id and e.kind = 'learned_from' "
                "group by p.source, e.dst order by p.source, n desc, obligation"):
            suites[source][3].append((obligation, int(n)))
        return list(suites.values())

    # -- what ranking reads and keeps ------------------------------------------------------------
    def item_data(self, table: Literal["obligations", "failure_modes", "recipes", "rules", "patterns"]
                  ) -> list[dict[str, Any]]:
        """Every item of a catalog table as plain JSON data, by id (bulk reads without building models)."""
        if table not in ("obligations", "failure_modes", "recipes", "rules", "patterns"):
            raise ValueError(f"not a catalog table: {table}")
        return [json.loads(data) for (data,) in self.conn.execute(f"select data from [{table}] order by id")]

    def content_stamp(self) -> tuple[int, ...]:
        """Cheap proof that nothing changed: same file, same connection, no commit by anyone since."""
        info = self.path.stat()
        conn = self.conn
        version = conn.execute("pragma data_version").fetchone()[0]  # changes when another connection commits
        return (info.st_ino, info.st_dev, id(conn), version, conn.total_changes)

    def content_summary(self, tables: Iterable[str]) -> list[str]:
        """Per table, ``name=count/max rowid/size of data``, and a digest of every edge: what derived data hangs on."""
        import hashlib

        parts = []
        for table in tables:
            row = self.conn.execute(
                f"select count(*), coalesce(max(rowid), 0), coalesce(sum(length(data)), 0) from [{table}]"
            ).fetchone()
            parts.append(f"{table}={row[0]}/{row[1]}/{row[2]}")
        row = self.conn.execute(
            "select group_concat(src || '>' || dst || '>' || kind || '>' || weight, '|') "
            "from (select src, dst, kind, weight from edges order by src, dst, kind)"
        ).fetchone()
        parts.append("edges=" + hashlib.sha256((row[0] or "").encode()).hexdigest())
        return parts

    def stored_rank_model(self, digest: str, version: int) -> bytes | None:
        """The stored (compressed) ranking model for a content digest and model version, or None."""
        import sqlite3

        try:
            row = self.conn.execute("select payload from rank_cache where digest = ? and model_version = ?",
                                  [digest, version]).fetchone()
        except sqlite3.OperationalError:
            return None  # no cache table (a file from before migration 005 opened read-only)
        return row[0] if row is not None and isinstance(row[0], bytes) else None

    def store_rank_model(self, digest: str, version: int, payload: bytes) -> bool:
        """Keep one ranking model (replacing any other); False when the file is read-only or busy."""
        import sqlite3

        try:
            with self.conn:
                self.conn.execute("delete from rank_cache")
                self.conn.execute(
                    "insert or replace into rank_cache (digest, model_version, created_at, payload) "
                    "values (?, ?, ?, ?)", [digest, version, store.now_iso(), payload])
        except sqlite3.OperationalError:
            return False
        return True

    # -- gate history (written by poetkb.gates) --------------------------------------------------
    def record_gate_run(self, run: dict[str, Any], results: Iterable[dict[str, Any]]) -> None:
        """Insert (or replace) one gate run's row and its obligation verdicts, in one transaction."""
        store.record_gate_run(self.db, run, results)

    def gate_runs(self, *, limit: int = 20) -> list[dict[str, Any]]:
        """The latest recorded gate runs, newest first (rows of ``gate_runs``)."""
        return store.gate_runs(self.db, limit=limit)

    def gate_run(self, run_id: str) -> dict[str, Any] | None:
        """The recorded row of one run (gate run or evaluation), or None."""
        return store.gate_run(self.db, run_id)

    def gate_results(self, run_id: str) -> list[dict[str, Any]]:
        """The obligation verdicts recorded for one run, by obligation id."""
        return store.gate_results(self.db, run_id)

    def recorded_manifest_digest(self, run_id: str) -> str | None:
        """The manifest digest recorded when gate run ``run_id`` collected its evidence, or None."""
        return store.recorded_manifest_digest(self.db, run_id)

    def last_verdicts(self, obligation_id: str, *, limit: int = 10) -> list[dict[str, Any]]:
        """An obligation's verdicts in the latest runs, newest first."""
        return store.last_verdicts(self.db, obligation_id, limit=limit)

    def latest_verdicts(self) -> dict[str, dict[str, Any]]:
        """Per obligation, its verdict, run id and start time in the latest run that judged it."""
        return store.latest_verdicts(self.db)

    # -- pytest plugin ratchet and mutation review ----------------------------------------------
    def last_coverage(self, selection: str) -> float | None:
        """The pytest plugin's ratchet: the best obligation coverage stored for ``selection``."""
        return store.last_coverage(self.db, selection)

    def record_coverage(self, selection: str, coverage: float, *, passing: int, failing: int, total: int) -> None:
        """Store ``coverage`` as the ratchet value of ``selection``."""
        store.record_coverage(self.db, selection, coverage, passing=passing, failing=failing, total=total)

    def mutation_equivalents(self, proxy: str) -> dict[str, str]:
        """Mutants recorded as equivalent on ``proxy`` (id -> note); they do not count in a mutation score."""
        return store.mutation_equivalents(self.db, proxy)

    def record_mutation_equivalent(self, mutant_id: str, proxy: str, note: str) -> None:
        """Record that ``mutant_id`` leaves its obligations holding, with the reviewer's note."""
        store.record_mutation_equivalent(self.db, mutant_id, proxy, note)
