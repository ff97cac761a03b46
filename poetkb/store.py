"""The SQLite knowledge base file: schema, migrations and atomic builds.

The file holds typed tables for the catalog (obligations, failure modes,
recipes, components, rules, learned patterns), a node/edge view of the same
knowledge, FTS5 indexes, and *state* tables that later features write
(gate runs, baselines, the mining cache, review decisions).

Builds never modify a live file: they write a new file beside it, copy the
state tables over from the old one, and swap it in with ``os.replace``. A
failed build leaves the previous knowledge base intact and readable. The file
runs in WAL mode with a busy timeout, so several reading processes and one
writer work at once.

A knowledge base file is material poetkb may not have written, so it is
checked before it is trusted or replaced:

- ``build`` writes only to a missing path, an empty file, or a poetkb
  knowledge base this version can migrate (its state is carried over). A text
  file, another application's SQLite database, a file from a newer poetkb, a
  link or a device is refused, naming the file; ``force=True`` only lets a
  *damaged* poetkb file be replaced, and keeps its bytes beside it first.
- Opening runs ``PRAGMA quick_check`` (files up to :data:`QUICK_CHECK_MAX_BYTES`;
  about 2 ms on the shipped knowledge base), and every connection turns SQLite's
  "malformed"/"not a database" errors into a :class:`StoreError` naming the file,
  so damage found later, by any query, is reported the same way.
- Build files left by a killed build (``.NAME.build-PID``) are removed once their
  process is gone; those of a live process are never touched.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from poetkb.dbfile import (
    SQLITE_MAGIC,
    FileState,
    GuardedConnection,
    build_file,
    companions,
    damaged_hint,
    keep_damaged,
    open_readonly,
    raise_damaged,
    read_header,
    remove_stale_build_files,
    summary,
)
from poetkb.errors import SchemaVersionError, StoreError
from poetkb.nodeid import EdgeKind, NodeId

if TYPE_CHECKING:
    import sqlite_utils

    from poetkb.catalog import Catalog

BUSY_TIMEOUT_MS = 10_000
#: ``PRAGMA quick_check`` runs on every open of a file up to this size (it reads the whole file once).
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024
#: How many problems of an integrity check are reported (a badly damaged file lists thousands).
MAX_CHECK_PROBLEMS = 20
#: The meta value recording that ``source_file`` columns are relative to the catalog root.
SOURCE_PATHS_RELATIVE = "catalog-root"

#: Tables rebuilt from the catalog on every build. Every other table is state and survives rebuilds.
CATALOG_TABLES = ("components", "obligations", "failure_modes", "recipes", "rules", "patterns", "nodes", "edges")

Migration = Callable[["sqlite_utils.Database"], None]


def _m001_catalog(db: sqlite_utils.Database) -> None:
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("components").create({"id": str, "title": str, "data": str}, pk="id")
    db.table("obligations").create(
        {
            "id": str, "title": str, "statement": str, "rationale": str, "domain": str, "risk": str,
            "safe_in_prod": int, "applies_to": str, "tags": str, "keywords": str,
            "source_file": str, "source_line": int, "data": str,
        },
        pk="id",
    )
    db.table("failure_modes").create(
        {"id": str, "title": str, "description": str, "keywords": str, "source_file": str,
         "source_line": int, "data": str},
        pk="id",
    )
    db.table("recipes").create({"id": str, "title": str, "source_file": str, "source_line": int, "data": str}, pk="id")
    db.table("rules").create(
        {"id": str, "kind": str, "component": str, "source_file": str, "source_line": int, "data": str}, pk="id"
    )
    db.table("patterns").create(
        {"id": str, "source": str, "file": str, "test": str, "line": int, "summary": str, "data": str}, pk="id"
    )
    db.table("nodes").create({"id": str, "kind": str, "label": str}, pk="id")
    db.table("edges").create({"src": str, "dst": str, "kind": str, "weight": float}, pk=("src", "dst", "kind"))
    db.table("edges").create_index(["dst"])
    db.table("obligations").enable_fts(["title", "statement", "rationale", "keywords"], create_triggers=True)
    db.table("failure_modes").enable_fts(["title", "description", "keywords"], create_triggers=True)
    db.table("patterns").enable_fts(["test", "file", "summary"], create_triggers=True)


def _m004_baselines(db: sqlite_utils.Database) -> None:
    """State: the last passing load-test result per service and scenario; see poetkb.load.baselines."""
    db.table("baselines").create(
        {"service": str, "scenario": str, "recorded_at": str, "source": str, "profile_fingerprint": str,
         "sample_count": int, "summary": str},
        pk=("service", "scenario"),
    )


def _m005_rank_cache(db: sqlite_utils.Database) -> None:
    """State: the fitted ranking model (compressed JSON) keyed by a digest of the KB; see poetkb.rank.model_store."""
    db.table("rank_cache").create(
        {"digest": str, "model_version": int, "created_at": str, "payload": bytes}, pk="digest"
    )


def _m002_learn(db: sqlite_utils.Database) -> None:
    """State: the test-mining cache by content hash, and review decisions; see poetkb.learn.memo/review."""
    db.table("learn_cache").create(
        {"key": str, "version": str, "path": str, "features": str, "mined_at": str}, pk="key"
    )
    db.table("learn_decisions").create(
        {"pattern_id": str, "obligation_id": str, "decision": str, "decided_at": str, "note": str},
        pk=("pattern_id", "obligation_id"),
    )


def _m003_gates(db: sqlite_utils.Database) -> None:
    """State: gate runs and each obligation's verdict per run; see poetkb.gates.history."""
    db.table("gate_runs").create(
        {"run_id": str, "mode": str, "started_at": str, "finished_at": str, "duration_s": float, "target": str,
         "proxy": str, "variant": str, "selection": str, "verdict": str, "exit_code": int, "coverage": float,
         "counts": str, "evidence_dir": str, "report_path": str},
        pk="run_id",
    )
    db.table("gate_results").create(
        {"run_id": str, "obligation_id": str, "verdict": str, "diagnosis": str, "checks": str},
        pk=("run_id", "obligation_id"),
    )
    db.table("gate_results").create_index(["obligation_id"])


def _m006_gate_run_manifest_digest(db: sqlite_utils.Database) -> None:
    """State: the sha256 of each gate run's evidence manifest, checked on re-evaluation; see poetkb.gates.history."""
    db.table("gate_runs").add_column("manifest_sha256", str)


def _m010_obligation_coverage(db: sqlite_utils.Database) -> None:
    """State: the best obligation coverage seen per selection (the pytest plugin's ratchet)."""
    db.table("obligation_coverage").create(
        {"selection": str, "coverage": float, "passing": int, "failing": int, "total": int, "recorded_at": str},
        pk="selection",
    )


def _m011_mutation_equivalents(db: sqlite_utils.Database) -> None:
    """State: mutants a person judged equivalent (the obligation still holds); see poetkb.mutation."""
    db.table("mutation_equivalents").create(
        {"mutant_id": str, "proxy": str, "note": str, "decided_at": str}, pk=("mutant_id", "proxy"),
    )


def _m012_pattern_role(db: sqlite_utils.Database) -> None:
    """Catalog: each learned pattern's role, ``own`` (coverage) or ``reference`` (an example from a public suite)."""
    db.table("patterns").add_column("role", str, not_null_default="own")
    db.conn.execute(
        "update patterns set role = 'reference' where json_valid(data) and json_extract(data, '$.role') = 'reference'"
    )
    db.table("patterns").create_index(["role"])


#: Named migrations, applied in order; the schema version is how many have run.
MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_catalog", _m001_catalog),
    ("004_baselines", _m004_baselines),
    ("005_rank_cache", _m005_rank_cache),
    ("002_learn", _m002_learn),
    ("003_gates", _m003_gates),
    ("006_gate_run_manifest_digest", _m006_gate_run_manifest_digest),
    ("010_obligation_coverage", _m010_obligation_coverage),
    ("011_mutation_equivalents", _m011_mutation_equivalents),
    ("012_pattern_role", _m012_pattern_role),
]


def register_migration(name: str, migration: Migration) -> None:
    """Append a named migration (features add their state tables this way, in import order)."""
    if any(existing == name for existing, _ in MIGRATIONS):
        return
    MIGRATIONS.append((name, migration))


def schema_version() -> int:
    return len(MIGRATIONS)


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def connect(path: Path, *, must_exist: bool = True, check: bool = True) -> sqlite_utils.Database:
    """Open a knowledge base file with a busy timeout; raise StoreError on a bad or damaged file.

    Builds set WAL mode, which SQLite records in the file, so every connection uses it.
    With ``check`` an existing file gets ``PRAGMA quick_check`` when it is small enough to be cheap.
    """
    import sqlite_utils

    return sqlite_utils.Database(open_connection(path, must_exist=must_exist, check=check))


def open_connection(path: Path, *, must_exist: bool = True, check: bool = True) -> GuardedConnection:
    """:func:`connect` without sqlite_utils: the checked, guarded ``sqlite3`` connection (what reads use)."""
    if must_exist:
        if not path.exists():
            raise StoreError(
                f"no knowledge base at {path}", path=path, hint=f"build one with `poet kb build --db {path}`"
            )
        if read_header(path) != SQLITE_MAGIC:
            raise StoreError(
                f"{path} is not a poetkb knowledge base (not an SQLite file, or its header is damaged)",
                path=path,
                hint="pass the path of a knowledge base built by `poet kb build`; poetkb never overwrites this file "
                     "(if it is a damaged knowledge base, move it aside and run `poet kb build` to make a new one)",
            )
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                               factory=GuardedConnection)
        conn.poet_path = path
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA schema_version").fetchone()  # reads the header: fails here on a damaged file
        if must_exist and check and path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)").fetchall()]
            if problems != ["ok"]:
                conn.close()
                raise_damaged(path, summary(problems))
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"cannot open knowledge base {path}: the file is damaged or not a database ({exc})",
            path=path,
            hint=damaged_hint(path),
        ) from exc
    return conn


def integrity_problems(path: Path) -> list[str]:
    """Every problem ``PRAGMA integrity_check`` finds in a knowledge base file (empty: the file is sound).

    Also reports a file that is not SQLite, not poetkb's, or from a newer poetkb. Never writes to the file.
    """
    state = inspect(path)
    if state.kind in ("missing", "empty", "not-sqlite", "foreign", "unreadable", "special"):
        return [f"the file {state.detail}"]
    problems: list[str] = []
    if state.kind == "newer":
        problems.append(f"the file {state.detail}")
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)  # poetkb's own file: read with its WAL
        try:
            rows = [r[0] for r in conn.execute(f"PRAGMA integrity_check({MAX_CHECK_PROBLEMS})").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return [*problems, f"damaged: {exc}"]
    if rows != ["ok"]:
        problems += [summary([r]) for r in rows]
    return problems


def inspect(path: Path) -> FileState:
    """Classify ``path`` before anything is written to it; reads at most the file's schema and migrations."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return FileState("missing", "does not exist")
    except OSError as exc:
        return FileState("unreadable", f"cannot be read: {exc.strerror}")
    if stat.S_ISLNK(info.st_mode):
        return FileState("special", "is a symbolic link (pass the path of the file itself)")
    if not stat.S_ISREG(info.st_mode):
        return FileState("special", "is not a regular file")
    if info.st_size == 0:
        return FileState("empty", "is an empty file")
    try:
        header = read_header(path)
    except StoreError as exc:
        return FileState("unreadable", exc.message.replace(f" {path}", "", 1))
    if header != SQLITE_MAGIC:
        return FileState("not-sqlite", "is not an SQLite file, so not a poetkb knowledge base")
    try:
        conn = open_readonly(path)
    except sqlite3.DatabaseError as exc:
        return FileState("unreadable", f"cannot be opened as SQLite: {exc}")
    try:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
        if "migrations" not in tables:
            return FileState("foreign", "is an SQLite database of another application (no poetkb tables)")
        applied = [r[0] for r in conn.execute("select name from migrations order by rowid")]
        if not applied or applied[0] != MIGRATIONS[0][0]:
            return FileState("foreign", "is an SQLite database of another application (its migrations "
                                        "table is not poetkb's)")
        known = {name for name, _ in MIGRATIONS}
        unknown = [name for name in applied if name not in known]
        if unknown:
            return FileState("newer", f"was written by a newer poetkb (schema version {len(applied)}, "
                                      f"migrations {', '.join(unknown)}); this poetkb knows schema version "
                                      f"{schema_version()}")
    except sqlite3.DatabaseError as exc:
        return FileState("unreadable", f"is an SQLite file too damaged to tell whose it is ({exc})")
    finally:
        conn.close()
    try:  # poetkb's own file: checked with locks and its WAL, so a writer checkpointing now is not "damage"
        own = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            problems = [r[0] for r in own.execute("PRAGMA quick_check(3)")]
        finally:
            own.close()
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems != ["ok"]:
        return FileState("damaged", "is a damaged poetkb knowledge base: "
                                    + summary(problems))
    return FileState("poetkb", "is a poetkb knowledge base")


def _refuse(path: Path, state: FileState, *, force: bool) -> NoReturn:
    """The error for a build target that must not be overwritten, with what is safe to do instead."""
    elsewhere = "pass another --db path"
    if state.kind == "newer":
        raise SchemaVersionError(
            f"refusing to overwrite {path}: it {state.detail}",
            path=path,
            hint="build it with that newer poetkb (`pip install -U poetkb`), or " + elsewhere
                 + "; a newer knowledge base is never overwritten, --force included",
        )
    if state.kind == "damaged":
        raise StoreError(
            f"refusing to overwrite {path}: it {state.detail}",
            path=path,
            hint=f"it may hold gate runs, baselines or learn decisions; `poet kb build --force --db {path}` keeps it "
                 f"beside the new file as {path.name}.damaged-TIME, or " + elsewhere,
        )
    also = " (--force only replaces a damaged poetkb knowledge base)" if force else ""
    raise StoreError(
        f"refusing to overwrite {path}: it {state.detail}{also}",
        path=path,
        hint=f"{elsewhere}; poetkb writes only to a missing file or a poetkb knowledge base, so if {path} is not "
             "needed, move or delete it yourself",
    )


def writable_target(path: Path, *, force: bool = False) -> FileState:
    """The state of ``path`` if a build may write there; otherwise a StoreError saying why and what is safe."""
    state = inspect(path)
    if state.kind in ("missing", "empty", "poetkb") or (state.kind == "damaged" and force):
        return state
    _refuse(path, state, force=force)


def read_meta(db: sqlite_utils.Database) -> dict[str, str]:
    if "meta" not in db.table_names():
        return {}
    return {row["key"]: row["value"] for row in db.table("meta").rows}


def ensure_schema(db: sqlite_utils.Database | sqlite3.Connection, path: Path) -> None:
    """Refuse files from a newer poetkb; bring older files up to date with the pending migrations."""
    conn: sqlite3.Connection = db if isinstance(db, sqlite3.Connection) else db.conn
    # a damaged file raises StoreError here (GuardedConnection)
    names = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
    if "migrations" not in names:
        raise StoreError(
            f"{path} is an SQLite file but not a poetkb knowledge base",
            path=path,
            hint="pass the path of a knowledge base built by `poet kb build`; poetkb never overwrites this file",
        )
    applied = [row[0] for row in conn.execute("select name from migrations order by rowid")]
    known = [name for name, _ in MIGRATIONS]
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise SchemaVersionError(
            f"{path} was written by a newer poetkb (schema version {len(applied)}, migrations "
            f"{', '.join(unknown)}); this poetkb knows schema version {schema_version()}",
            path=path,
            hint="open it with the newer poetkb that wrote it (upgrade: `pip install -U poetkb`); the file is left "
                 "as it is. To use this version, build a separate knowledge base with `poet kb build --db OTHER-PATH`",
        )
    pending = [(n, m) for n, m in MIGRATIONS if n not in applied]
    if pending:
        import sqlite_utils

        try:
            _apply(sqlite_utils.Database(conn), pending)
        except sqlite3.OperationalError as exc:
            raise StoreError(
                f"cannot upgrade knowledge base {path}: {exc}",
                path=path,
                hint="make the file and its directory writable, then open it again (its state is kept)",
            ) from exc


def _apply(db: sqlite_utils.Database, migrations: Iterable[tuple[str, Migration]]) -> None:
    for name, migration in migrations:
        with db.conn:
            migration(db)
            db.table("migrations").insert({"name": name, "applied_at": now_iso()})
            db.table("meta").upsert({"key": "schema_version", "value": str(schema_version())}, pk="key")


def _obligation_rows(catalog: Catalog) -> Iterable[dict[str, Any]]:
    for oid, ob in sorted(catalog.obligations.items()):
        src = catalog.sources[("obligation", oid)]
        yield {
            "id": oid, "title": ob.title, "statement": ob.statement, "rationale": ob.rationale,
            "domain": ob.domain, "risk": ob.risk, "safe_in_prod": int(ob.safe_in_prod),
            "applies_to": json.dumps(ob.applies_to), "tags": json.dumps(ob.tags),
            "keywords": " ".join(ob.keywords), "source_file": src.path or src.file, "source_line": src.line,
            "data": ob.model_dump_json(),
        }


def graph_rows(catalog: Catalog) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The node/edge view of a catalog, with kind-prefixed node ids (``obligation:cache.vary.honored``)."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[tuple[str, str, str], dict[str, Any]] = {}

    def node(kind: str, key: str, label: str) -> str:
        nid = NodeId.of(kind, key)
        nodes.setdefault(nid, {"id": nid, "kind": kind, "label": label})
        return nid

    def edge(src: str, dst: str, kind: EdgeKind, weight: float = 1.0) -> None:
        edges.setdefault((src, dst, kind), {"src": src, "dst": dst, "kind": kind, "weight": weight})

    for cid, comp in catalog.components.items():
        node("component", cid, comp.title)
    for fid, fm in catalog.failure_modes.items():
        node("failure_mode", fid, fm.title)
    for oid, ob in catalog.obligations.items():
        o = node("obligation", oid, ob.title)
        edge(o, node("domain", ob.domain, ob.domain), "in_domain")
        for fid in ob.failure_modes:
            edge(o, NodeId.of("failure_mode", fid), "guards_against")
        for cid in ob.applies_to:
            edge(o, NodeId.of("component", cid), "applies_to")
        for ev in ob.evidence:
            edge(o, node("evidence", ev.kind, ev.kind.replace("_", " ")), "requires_evidence")
        for rel in ob.related:
            edge(o, NodeId.of("obligation", rel), "related_to")
    for fid, fm in catalog.failure_modes.items():
        for oid in fm.guarded_by:
            edge(NodeId.of("obligation", oid), NodeId.of("failure_mode", fid), "guards_against")
    for rid, recipe in catalog.recipes.items():
        r = node("recipe", rid, recipe.title)
        for oid in recipe.obligations:
            edge(NodeId.of("obligation", oid), r, "exercised_by")
        for cid in recipe.components:
            edge(r, NodeId.of("component", cid), "applies_to")
    for oid, ob in catalog.obligations.items():
        for rid in ob.recipes:
            edge(NodeId.of("obligation", oid), NodeId.of("recipe", rid), "exercised_by")
    for rid, rule in catalog.rules.items():
        r = node("rule", rid, rule.why or rid)
        for oid in rule.obligations:
            edge(r, NodeId.of("obligation", oid), "mapped_by", rule.weight)
        for fid in rule.failure_modes:
            edge(r, NodeId.of("failure_mode", fid), "mapped_by", rule.weight)
    for pid, pattern in catalog.patterns.items():
        p = node("pattern", pid, pattern.test or pattern.file)
        for match in pattern.obligations:
            edge(p, NodeId.of("obligation", match.id), "learned_from", match.confidence)
    return sorted(nodes.values(), key=lambda n: n["id"]), [edges[k] for k in sorted(edges)]


def _write_catalog(db: sqlite_utils.Database, catalog: Catalog, source: str) -> None:
    def src(kind: str, key: str) -> tuple[str, int | None]:
        ref = catalog.sources[(kind, key)]
        return ref.path or ref.file, ref.line

    with db.conn:
        db.table("components").insert_all(
            ({"id": k, "title": v.title, "data": v.model_dump_json()} for k, v in sorted(catalog.components.items()))
        )
        db.table("obligations").insert_all(_obligation_rows(catalog))
        db.table("failure_modes").insert_all(
            {"id": k, "title": v.title, "description": v.description, "keywords": " ".join(v.keywords),
             "source_file": src("failure_mode", k)[0], "source_line": src("failure_mode", k)[1],
             "data": v.model_dump_json()}
            for k, v in sorted(catalog.failure_modes.items())
        )
        db.table("recipes").insert_all(
            {"id": k, "title": v.title, "source_file": src("recipe", k)[0], "source_line": src("recipe", k)[1],
             "data": v.model_dump_json()}
            for k, v in sorted(catalog.recipes.items())
        )
        db.table("rules").insert_all(
            {"id": k, "kind": v.kind, "component": v.component, "source_file": src("rule", k)[0],
             "source_line": src("rule", k)[1], "data": v.model_dump_json()}
            for k, v in sorted(catalog.rules.items())
        )
        db.table("patterns").insert_all(
            {"id": k, "source": v.source, "role": v.role, "file": v.file, "test": v.test, "line": v.line,
             "summary": v.summary, "data": v.model_dump_json()}
            for k, v in sorted(catalog.patterns.items())
        )
        nodes, edges = graph_rows(catalog)
        db.table("nodes").insert_all(nodes)
        db.table("edges").insert_all(edges)
        from poetkb._version import __version__

        for key, value in {
            "schema_version": str(schema_version()),
            "poetkb_version": __version__,
            "built_at": now_iso(),
            "catalog_fingerprint": catalog.fingerprint,
            "catalog_source": source,
            "source_paths": SOURCE_PATHS_RELATIVE,
        }.items():
            db.table("meta").upsert({"key": key, "value": value}, pk="key")


def _copy_state(db: sqlite_utils.Database, old_path: Path) -> None:
    """Carry state tables (runs, baselines, caches, decisions) from the old file into the new one."""
    old = connect(old_path)  # errors propagate: state is never dropped because the old file could not be read
    try:
        ensure_schema(old, old_path)
        old_tables = set(old.table_names())
        old.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        old.conn.close()
    new_tables = set(db.table_names())
    skip = set(CATALOG_TABLES) | {"meta", "migrations"}
    keep = sorted(
        t for t in old_tables & new_tables
        if t not in skip and not any(t.startswith(f"{c}_fts") for c in CATALOG_TABLES)
    )
    if not keep:
        return
    db.conn.execute("ATTACH DATABASE ? AS old", (str(old_path),))
    try:
        with db.conn:
            for table in keep:
                cols = [c.name for c in db.table(table).columns]
                old_cols = {r[1] for r in db.conn.execute(f"PRAGMA old.table_info([{table}])")}
                shared = ", ".join(f"[{c}]" for c in cols if c in old_cols)
                db.conn.execute(f"INSERT OR REPLACE INTO main.[{table}] ({shared}) SELECT {shared} FROM old.[{table}]")
    finally:
        db.conn.execute("DETACH DATABASE old")


def build(catalog: Catalog, target: Path, *, source: str, force: bool = False) -> Path:
    """Write ``catalog`` into a new knowledge base file and atomically swap it in at ``target``.

    ``target`` must be missing, empty, or a poetkb knowledge base this version can
    migrate (its state tables are carried over); anything else is refused with a
    StoreError before a byte is written. ``force`` lets a *damaged* poetkb file be
    replaced: its bytes are kept beside the new file as ``NAME.damaged-TIME``.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create directory {target.parent}: {exc.strerror}", path=target) from exc
    if not os.access(target.parent, os.W_OK):
        raise StoreError(
            f"cannot write the knowledge base: {target.parent} is read-only",
            path=target,
            hint="pass --db (or set POET_DB) to a writable location",
        )
    state = writable_target(target, force=force)
    remove_stale_build_files(target)
    tmp = build_file(target, os.getpid())
    for leftover in (tmp, *companions(tmp)):
        leftover.unlink(missing_ok=True)
    try:
        db = connect(tmp, must_exist=False)
        try:
            db.conn.execute("PRAGMA journal_mode = DELETE")
            with db.conn:
                db.table("migrations").create({"name": str, "applied_at": str}, pk="name")
            _apply(db, MIGRATIONS)
            _write_catalog(db, catalog, source)
            if state.kind == "poetkb":
                _copy_state(db, target)
            db.conn.execute("PRAGMA journal_mode = WAL")
        finally:
            db.conn.close()
        if state.kind == "damaged":
            keep_damaged(target)
        os.replace(tmp, target)
    except BaseException:
        for leftover in (tmp, *companions(tmp)):
            leftover.unlink(missing_ok=True)
        raise
    for stale in companions(target):
        if stale.name.endswith(("-wal", "-shm")) and stale.exists() and stale.stat().st_size == 0:
            stale.unlink(missing_ok=True)
    return target


def last_coverage(db: sqlite_utils.Database, selection: str) -> float | None:
    """The stored best obligation coverage of ``selection``, or None."""
    rows = list(db.query("select coverage from obligation_coverage where selection = ?", [selection]))
    return float(rows[0]["coverage"]) if rows else None


def record_coverage(db: sqlite_utils.Database, selection: str, coverage: float, *, passing: int, failing: int,
                    total: int) -> None:
    """Store ``coverage`` as the ratchet value of ``selection``."""
    with db.conn:
        db.table("obligation_coverage").upsert(
            {"selection": selection, "coverage": coverage, "passing": passing, "failing": failing, "total": total,
             "recorded_at": now_iso()}, pk="selection")


def mutation_equivalents(db: sqlite_utils.Database, proxy: str) -> dict[str, str]:
    """Mutant id -> note, for the mutants recorded as equivalent on ``proxy``."""
    return {r["mutant_id"]: r["note"] for r in db.query(
        "select mutant_id, note from mutation_equivalents where proxy = ?", [proxy])}


def record_mutation_equivalent(db: sqlite_utils.Database, mutant_id: str, proxy: str, note: str) -> None:
    with db.conn:
        db.table("mutation_equivalents").upsert(
            {"mutant_id": mutant_id, "proxy": proxy, "note": note, "decided_at": now_iso()},
            pk=("mutant_id", "proxy"))


def decode(row: dict[str, Any], model: type[Any]) -> Any:
    """Rebuild a model from the JSON ``data`` column of a row."""
    return model.model_validate_json(row["data"])


# -- state tables written by features (each feature calls these through poetkb.knowledge) ----------------------
def learn_decisions(db: sqlite_utils.Database) -> dict[tuple[str, str], str]:
    """Review decisions of learned mappings: (pattern id, obligation id) -> decision."""
    if "learn_decisions" not in db.table_names():
        return {}
    return {(r["pattern_id"], r["obligation_id"]): r["decision"] for r in db.table("learn_decisions").rows}


def record_gate_run(db: sqlite_utils.Database, run: dict[str, Any], results: Iterable[dict[str, Any]]) -> None:
    """Insert (or replace) one row of ``gate_runs`` and its rows of ``gate_results``, in one transaction."""
    with db.conn:
        db.table("gate_runs").upsert(run, pk="run_id")
        db.table("gate_results").upsert_all(results, pk=("run_id", "obligation_id"))


def gate_runs(db: sqlite_utils.Database, *, limit: int = 20) -> list[dict[str, Any]]:
    """The latest gate runs, newest first."""
    if "gate_runs" not in db.table_names():
        return []
    return list(db.query("select * from gate_runs order by started_at desc, run_id desc limit ?", [limit]))


def gate_run(db: sqlite_utils.Database, run_id: str) -> dict[str, Any] | None:
    """The recorded row of one run (gate run or evaluation), or None."""
    if "gate_runs" not in db.table_names():
        return None
    return next(iter(db.query("select * from gate_runs where run_id = ?", [run_id])), None)


def gate_results(db: sqlite_utils.Database, run_id: str) -> list[dict[str, Any]]:
    """The obligation verdicts recorded for one run, by obligation id."""
    if "gate_results" not in db.table_names():
        return []
    return list(db.query("select obligation_id, verdict, diagnosis, checks from gate_results where run_id = ? "
                         "order by obligation_id", [run_id]))


def recorded_manifest_digest(db: sqlite_utils.Database, run_id: str) -> str | None:
    """The manifest digest recorded when gate run ``run_id`` collected its evidence; None when there is none
    (an unknown run, an evaluation rather than a run, or a run recorded before digests were kept)."""
    if "gate_runs" not in db.table_names():
        return None
    if "manifest_sha256" not in {c.name for c in db.table("gate_runs").columns}:
        return None
    row = next(iter(db.query("select manifest_sha256 from gate_runs where run_id = ? and mode = 'run'", [run_id])),
               None)
    return row["manifest_sha256"] if row and row["manifest_sha256"] else None


def last_verdicts(db: sqlite_utils.Database, obligation_id: str, *, limit: int = 10) -> list[dict[str, Any]]:
    """An obligation's verdicts in the latest runs, newest first."""
    if "gate_results" not in db.table_names():
        return []
    return list(db.query(
        "select r.run_id, r.started_at, r.proxy, r.variant, g.verdict, g.diagnosis from gate_results g "
        "join gate_runs r using (run_id) where g.obligation_id = ? order by r.started_at desc limit ?",
        [obligation_id, limit]))


def latest_verdicts(db: sqlite_utils.Database) -> dict[str, dict[str, Any]]:
    """Per obligation, its verdict, run id and start time in the latest run that judged it."""
    names = set(db.table_names())
    if not {"gate_runs", "gate_results"} <= names:
        return {}
    return {row["obligation_id"]: row for row in db.query(
        "select obligation_id, verdict, run_id, started_at from (select g.obligation_id, g.verdict, "
        "g.run_id, r.started_at, row_number() over (partition by g.obligation_id order by r.started_at "
        "desc, r.run_id desc) as n from gate_results g join gate_runs r using (run_id)) where n = 1")}


def baseline_rows(db: sqlite_utils.Database, *, service: str | None = None,
                  scenario: str | None = None) -> list[dict[str, Any]]:
    """Rows of ``baselines`` (of one service, one scenario), sorted by service and scenario."""
    if "baselines" not in db.table_names():
        return []
    where, args = [], []
    if service:
        where.append("service = ?")
        args.append(service)
    if scenario:
        where.append("scenario = ?")
        args.append(scenario)
    return list(db.table("baselines").rows_where(" and ".join(where) or None, args, order_by="service, scenario"))


def put_baseline(db: sqlite_utils.Database, row: dict[str, Any]) -> None:
    """Insert or replace the baseline row of its (service, scenario)."""
    with db.conn:
        db.table("baselines").upsert(row, pk=("service", "scenario"))
