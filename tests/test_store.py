"""The SQLite knowledge base: atomic builds, schema versions, damaged files, concurrent access."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import poetkb
from poetkb import store
from poetkb.catalog import load_catalog
from poetkb.errors import CatalogError, SchemaVersionError, StoreError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MINI = FIXTURES / "catalog" / "mini"


def _mini_kb(tmp_path: Path) -> Path:
    target = tmp_path / "mini.sqlite"
    store.build(load_catalog(MINI), target, source=str(MINI))
    return target


def test_build_writes_typed_tables_graph_and_meta(tmp_path: Path) -> None:
    """A build writes typed rows, graph nodes and edges, FTS indexes and provenance."""
    path = _mini_kb(tmp_path)
    with poetkb.open(path) as kb:
        stats = kb.stats()
        assert stats.counts["obligations"] == 2
        assert stats.counts["edges.guards_against"] == 1
        assert stats.schema_version == store.schema_version()
        assert kb.meta()["catalog_source"] == str(MINI)
        assert [o.id for o in kb.search("retries backend")] == ["demo.retry.bounded"]
        assert kb.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert {m["name"] for m in kb.db["migrations"].rows} == {n for n, _ in store.MIGRATIONS}


def test_failed_build_leaves_previous_knowledge_base_intact(tmp_path: Path) -> None:
    """A catalog with an error never reaches the store: the old file stays as it was and readable."""
    path = _mini_kb(tmp_path)
    before = path.read_bytes()
    broken = tmp_path / "broken"
    shutil.copytree(MINI, broken)
    (broken / "obligations" / "bad.yaml").write_text("obligations:\n  - id: demo.x\n    risk: nope\n")
    with poetkb.open(path) as kb, pytest.raises(CatalogError):
        kb.build(broken)
    assert path.read_bytes() == before
    with poetkb.open(path) as kb:
        assert len(kb.obligations()) == 2
    assert not list(tmp_path.glob(".mini.sqlite.build-*"))


def test_interrupted_build_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception in the middle of writing removes the half-built file and keeps the old one."""
    path = _mini_kb(tmp_path)
    before = path.read_bytes()

    def explode(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_write_catalog", explode)
    with pytest.raises(KeyboardInterrupt):
        store.build(load_catalog(MINI), path, source="x")
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".mini.sqlite.build-*"))


def test_state_tables_survive_a_rebuild(tmp_path: Path) -> None:
    """Tables that are not derived from the catalog (runs, baselines, decisions) are carried over."""
    path = _mini_kb(tmp_path)

    def add_state(db: object) -> None:
        db["notes"].create({"id": int, "text": str}, pk="id")  # type: ignore[index]

    store.register_migration("999_test_notes", add_state)
    try:
        with poetkb.open(path) as kb:
            kb.db["notes"].insert({"id": 1, "text": "kept"})
            kb.build(MINI)
            assert list(kb.db["notes"].rows) == [{"id": 1, "text": "kept"}]
    finally:
        store.MIGRATIONS[:] = [m for m in store.MIGRATIONS if m[0] != "999_test_notes"]


def test_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    """A file written by a newer poetkb is refused, naming its version and what to do."""
    path = _mini_kb(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("insert into migrations (name, applied_at) values ('900_from_the_future', 'x')")
    with pytest.raises(SchemaVersionError) as caught:
        poetkb.open(path)
    message = str(caught.value)
    assert "newer poetkb" in message and "900_from_the_future" in message and "upgrade" in message


def test_older_schema_is_migrated_in_place(tmp_path: Path) -> None:
    """A file missing a known migration gets it applied and recorded when opened."""
    path = _mini_kb(tmp_path)

    def add_table(db: object) -> None:
        db["extra_state"].create({"id": int}, pk="id")  # type: ignore[index]

    store.register_migration("998_test_extra", add_table)
    try:
        with poetkb.open(path) as kb:
            assert "extra_state" in kb.db.table_names()
            assert "998_test_extra" in {m["name"] for m in kb.db["migrations"].rows}
    finally:
        store.MIGRATIONS[:] = [m for m in store.MIGRATIONS if m[0] != "998_test_extra"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"this is not a database at all" * 100, "not a poetkb knowledge base"),
        (b"SQLite format 3\x00" + b"\xff" * 4000, "is damaged"),
        (b"", "not a poetkb knowledge base"),
    ],
    ids=["text-file", "damaged-sqlite", "empty-file"],
)
def test_damaged_file_gives_a_clear_error(tmp_path: Path, content: bytes, expected: str) -> None:
    """A file that is not a knowledge base, or a damaged one, gives a StoreError saying how to rebuild."""
    path = tmp_path / "kb.sqlite"
    path.write_bytes(content)
    with pytest.raises(StoreError) as caught:
        poetkb.open(path)
    assert expected in str(caught.value)
    assert "poet kb build" in str(caught.value)
    assert path.read_bytes() == content


def test_plain_sqlite_file_is_not_mistaken_for_a_knowledge_base(tmp_path: Path) -> None:
    """An SQLite file of another application is refused, and left untouched."""
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("create table t (x)")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a poetkb knowledge base"):
        poetkb.open(path)
    assert path.read_bytes() == before


def test_read_only_location_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Building where the directory is not writable fails, naming it and suggesting --db; nothing is written."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    with pytest.raises(StoreError) as caught:
        store.build(load_catalog(MINI), tmp_path / "kb.sqlite", source="x")
    assert "read-only" in str(caught.value) and "--db" in str(caught.value)
    assert not (tmp_path / "kb.sqlite").exists()


_READER = """
import sys, time, poetkb
path, rounds = sys.argv[1], int(sys.argv[2])
seen = set()
for _ in range(rounds):
    with poetkb.open(path) as kb:
        seen.add(len(kb.obligations()))
    time.sleep(0.005)
print(sorted(seen))
"""


def test_readers_in_other_processes_see_whole_knowledge_bases_during_rebuilds(tmp_path: Path) -> None:
    """While one process rebuilds repeatedly, readers in other processes always see a complete file."""
    path = _mini_kb(tmp_path)
    readers = [
        subprocess.Popen([sys.executable, "-c", _READER, str(path), "60"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    catalog = load_catalog(MINI)
    for _ in range(15):
        store.build(catalog, path, source=str(MINI))
    for reader in readers:
        out, _ = reader.communicate(timeout=60)
        assert reader.returncode == 0
        assert json.loads(out) == [2]


def test_concurrent_writer_and_readers_share_the_file(tmp_path: Path) -> None:
    """A writer holding a transaction does not make readers fail (WAL plus busy timeout)."""
    path = _mini_kb(tmp_path)
    with poetkb.open(path) as writer:
        writer.db["extra"].insert({"id": 1}, pk="id")
        writer.db.conn.execute("BEGIN IMMEDIATE")
        writer.db.conn.execute("insert into extra (id) values (2)")
        reader = subprocess.run(
            [sys.executable, "-c", _READER, str(path), "3"], capture_output=True, text=True, timeout=60
        )
        writer.db.conn.execute("COMMIT")
    assert reader.returncode == 0, reader.stderr
    assert json.loads(reader.stdout) == [2]


def test_inspect_classifies_what_a_build_may_replace(tmp_path: Path) -> None:
    """inspect() tells missing, empty, poetkb, newer, foreign, non-SQLite and special files apart, writing nothing."""
    kb = _mini_kb(tmp_path)
    newer = tmp_path / "newer.sqlite"
    shutil.copyfile(kb, newer)
    with sqlite3.connect(newer) as conn:
        conn.execute("insert into migrations (name, applied_at) values ('901_next', 'x')")
    conn.close()
    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("create table migrations (name text)")
        conn.execute("insert into migrations values ('v1_users')")
    conn.close()
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "text").write_text("hello")
    (tmp_path / "link").symlink_to(kb)
    expected = {
        "missing": "missing", "empty": "empty", "mini.sqlite": "poetkb", "newer.sqlite": "newer",
        "app.db": "foreign", "text": "not-sqlite", "link": "special",
    }
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and not p.is_symlink()}
    for name, kind in expected.items():
        assert store.inspect(tmp_path / name).kind == kind, name
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and not p.is_symlink()} == before
    assert not list(tmp_path.glob("app.db-*"))


def test_build_refuses_unless_the_target_is_poetkb(tmp_path: Path) -> None:
    """store.build refuses a newer knowledge base even with force, and writes an empty file's path."""
    kb = _mini_kb(tmp_path)
    with sqlite3.connect(kb) as conn:
        conn.execute("insert into migrations (name, applied_at) values ('901_next', 'x')")
    conn.close()
    with pytest.raises(SchemaVersionError, match="refusing to overwrite"):
        store.build(load_catalog(MINI), kb, source=str(MINI), force=True)
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    store.build(load_catalog(MINI), empty, source=str(MINI))
    with poetkb.open(empty) as built:
        assert len(built.obligations()) == 2
