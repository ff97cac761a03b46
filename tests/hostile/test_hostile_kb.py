"""Hostile knowledge-base files: refused, never overwritten, damage reported, killed builds leave no trace."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import poetkb
from poetkb import store
from poetkb.catalog import load_catalog
from poetkb.errors import SchemaVersionError, StoreError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MINI = FIXTURES / "catalog" / "mini"
PAGE = 4096


def poet(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "poetkb", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


def mini_kb(path: Path) -> Path:
    store.build(load_catalog(MINI), path, source=str(MINI))
    return path


def add_state(path: Path) -> None:
    """Commit a learn decision and a gate run, the state a user would hate to lose."""
    with sqlite3.connect(path) as conn:
        conn.execute("insert into learn_decisions (pattern_id, obligation_id, decision, decided_at, note) "
                     "values ('p.keep', 'demo.cache.keyed', 'accept', '2026-01-01T00:00:00+00:00', 'kept')")
        conn.execute("insert into gate_runs (run_id, mode, started_at, verdict, exit_code) "
                     "values ('run-keep', 'run', '2026-01-01T00:00:00+00:00', 'pass', 0)")
    conn.close()


def state_rows(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        decisions = conn.execute("select pattern_id, decision, note from learn_decisions").fetchall()
        runs = conn.execute("select run_id, verdict from gate_runs").fetchall()
    finally:
        conn.close()
    return decisions, runs


def build_leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.build-"))


def damage_table(path: Path, table: str) -> None:
    """Really damage a file: overwrite the root page of ``table`` (in the middle of the file) with junk bytes."""
    conn = sqlite3.connect(path)
    root = conn.execute("select rootpage from sqlite_master where name = ?", [table]).fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert root > 1
    rnd = random.Random(root)
    with path.open("r+b") as fh:
        fh.seek((root - 1) * PAGE)
        fh.write(bytes(rnd.randrange(256) for _ in range(64)))


def damage_middle(path: Path, seed: int) -> None:
    """Scatter junk bytes over a few pages in the middle of the file, as a bad disk or a bad copy would."""
    data = bytearray(path.read_bytes())
    rnd = random.Random(seed)
    middle = len(data) // PAGE // 2
    for page in range(middle - 3, middle + 3):
        for _ in range(64):
            data[page * PAGE + rnd.randrange(PAGE)] = rnd.randrange(256)
    path.write_bytes(bytes(data))


@pytest.fixture
def damaged_kb(built_kb_file: Path, tmp_path: Path) -> Path:
    """A copy of the shipped knowledge base with the obligations table and a few middle pages damaged."""
    path = tmp_path / "damaged.sqlite"
    shutil.copyfile(built_kb_file, path)
    damage_table(path, "obligations")
    damage_middle(path, seed=7)
    return path


# -- kb build refuses what is not poetkb's ------------------------------------------------------


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_build_refuses_a_text_file(tmp_path: Path, force: bool) -> None:
    """`kb build --db notes.txt` exits 2 naming the file and leaves it byte for byte, --force included."""
    target = tmp_path / "notes.txt"
    target.write_text("my notes, not a database\n" * 20)
    before = target.read_bytes()
    result = poet("kb", "build", "--from", str(MINI), "--db", str(target), *(["--force"] if force else []))
    assert result.returncode == 2, result.stderr
    assert f"refusing to overwrite {target}" in result.stderr and "not an SQLite file" in result.stderr
    assert "Traceback" not in result.stderr
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_build_leaves_another_applications_database_untouched(tmp_path: Path, force: bool) -> None:
    """Another application's SQLite file is refused (exit 2), its tables and bytes untouched, nothing beside it."""
    target = tmp_path / "app.db"
    conn = sqlite3.connect(target)
    conn.execute("create table customers (id integer primary key, name text)")
    conn.executemany("insert into customers (name) values (?)", [("ada",), ("grace",)])
    conn.commit()
    conn.close()
    before = target.read_bytes()
    result = poet("kb", "build", "--from", str(MINI), "--db", str(target), *(["--force"] if force else []))
    assert result.returncode == 2, result.stderr
    assert str(target) in result.stderr and "another application" in result.stderr
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]
    check = sqlite3.connect(target)
    assert check.execute("select name from customers order by id").fetchall() == [("ada",), ("grace",)]
    check.close()


def test_library_build_refuses_before_writing(tmp_path: Path) -> None:
    """The library path (store.build, KnowledgeBase.build) refuses the same files as the CLI."""
    target = tmp_path / "app.db"
    conn = sqlite3.connect(target)
    conn.execute("create table t (x)")
    conn.commit()
    conn.close()
    before = target.read_bytes()
    with pytest.raises(StoreError, match="another application") as caught:
        store.build(load_catalog(MINI), target, source=str(MINI), force=True)
    assert caught.value.path == target
    assert target.read_bytes() == before and build_leftovers(target) == []


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_newer_knowledge_base_is_never_overwritten(tmp_path: Path, force: bool) -> None:
    """A knowledge base from a newer poetkb is refused by build and open; its state and bytes are kept."""
    target = mini_kb(tmp_path / "kb.sqlite")
    add_state(target)
    with sqlite3.connect(target) as conn:
        conn.execute("insert into migrations (name, applied_at) values ('950_from_a_newer_poetkb', 'x')")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = target.read_bytes()
    result = poet("kb", "build", "--from", str(MINI), "--db", str(target), *(["--force"] if force else []))
    assert result.returncode == 2, result.stderr
    assert str(target) in result.stderr and "newer poetkb" in result.stderr and "950_from_a_newer_poetkb" in result.stderr
    assert "never overwritten" in result.stderr
    with pytest.raises(SchemaVersionError) as caught:
        poetkb.open(target)
    hint = caught.value.hint or ""
    assert "upgrade" in hint and "left as it is" in hint and f"--db {target}" not in hint
    assert target.read_bytes() == before
    assert state_rows(target) == ([("p.keep", "accept", "kept")], [("run-keep", "pass")])


def test_rebuild_of_a_poetkb_file_keeps_its_state(tmp_path: Path) -> None:
    """`kb build` over a poetkb knowledge base carries learn decisions and gate runs over."""
    target = mini_kb(tmp_path / "kb.sqlite")
    add_state(target)
    result = poet("kb", "build", "--from", str(MINI), "--db", str(target))
    assert result.returncode == 0, result.stderr
    assert state_rows(target) == ([("p.keep", "accept", "kept")], [("run-keep", "pass")])


def test_special_files_as_knowledge_base_are_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO passed as the knowledge base is named and refused (exit 2) by reads and builds; nothing blocks."""
    fifo = tmp_path / "kb.fifo"
    os.mkfifo(fifo)
    for args in (("--db", str(fifo), "kb", "stats"), ("kb", "build", "--from", str(MINI), "--db", str(fifo)),
                 ("kb", "check", "--db-only", "--db", str(fifo))):
        result = poet(*args, timeout=60)
        assert result.returncode == 2, (args, result.stderr)
        assert str(fifo) in result.stderr and "regular file" in result.stderr and "Traceback" not in result.stderr


# -- damaged files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("obligations", "list"), ("search", "cache"), ("kb", "stats"), ("rank", "--change", "cache key change"),
     ("obligations", "show", "cache.vary.honored"), ("related", "cache.vary.honored")],
    ids=["list", "search", "stats", "rank", "show", "related"],
)
def test_damaged_knowledge_base_is_a_clear_error_from_every_command(damaged_kb: Path, args: tuple[str, ...]) -> None:
    """Every command on a knowledge base with damaged pages exits 2 naming the file as damaged; file untouched."""
    before = damaged_kb.read_bytes()
    result = poet("--db", str(damaged_kb), *args)
    assert result.returncode == 2, result.stderr
    assert f"knowledge base {damaged_kb} is damaged" in result.stderr
    assert "--force" in result.stderr and "Traceback" not in result.stderr and result.stdout == ""
    assert damaged_kb.read_bytes() == before


def test_damage_found_by_a_later_query_is_the_same_store_error(
    damaged_kb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the open-time check skipped (a large file), any query that meets damage raises StoreError naming it."""
    monkeypatch.setattr(store, "QUICK_CHECK_MAX_BYTES", 0)
    with poetkb.open(damaged_kb) as kb:
        for read in (kb.obligations, lambda: kb.search("cache"), lambda: kb.obligation("cache.vary.honored")):
            with pytest.raises(StoreError) as caught:
                read()
            assert caught.value.path == damaged_kb and "is damaged" in caught.value.message


def test_kb_check_runs_the_integrity_check(damaged_kb: Path, kb_path: Path) -> None:
    """`kb check` passes a sound knowledge base and lists a damaged one's problems with exit 2."""
    result = poet("kb", "check", "--db", str(kb_path))
    assert result.returncode == 0, result.stderr
    assert "catalog ok:" in result.stdout and f"knowledge base ok: {kb_path}" in result.stdout
    result = poet("kb", "check", "--db-only", "--db", str(damaged_kb))
    assert result.returncode == 2
    assert f"{damaged_kb}:" in result.stderr and "catalog ok" not in result.stdout
    result = poet("kb", "check", "--catalog-only", "--db", str(damaged_kb))
    assert result.returncode == 0 and "knowledge base" not in result.stdout


def test_damaged_knowledge_base_is_replaced_only_with_force_and_kept(damaged_kb: Path) -> None:
    """Building over a damaged file needs --force, which keeps the damaged bytes beside the new file."""
    before = damaged_kb.read_bytes()
    result = poet("kb", "build", "--from", str(MINI), "--db", str(damaged_kb))
    assert result.returncode == 2 and "damaged poetkb knowledge base" in result.stderr and "--force" in result.stderr
    assert damaged_kb.read_bytes() == before
    result = poet("kb", "build", "--from", str(MINI), "--db", str(damaged_kb), "--force")
    assert result.returncode == 0, result.stderr
    kept = list(damaged_kb.parent.glob(f"{damaged_kb.name}.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == before and str(kept[0].name) in result.stderr
    assert store.integrity_problems(damaged_kb) == []


# -- build files of killed builds ---------------------------------------------------------------


def test_stale_build_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    """Opening removes `.NAME.build-PID` files of dead processes and keeps those of a live one."""
    target = mini_kb(tmp_path / "kb.sqlite")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [store.build_file(target, dead.pid), tmp_path / f".kb.sqlite.build-{dead.pid}-journal"]
        alive = store.build_file(target, live.pid)
        for path in (*stale, alive):
            path.write_bytes(b"half a build")
        with poetkb.open(target):
            pass
        assert not any(p.exists() for p in stale)
        assert alive.exists()
    finally:
        live.kill()
        live.wait(timeout=30)


def test_source_locations_are_right_from_any_directory(tmp_path: Path) -> None:
    """source_file is stored relative to the catalog root and read back as the real file, whatever the cwd."""
    catalog = tmp_path / "catalog"
    shutil.copytree(MINI, catalog)
    build_dir, read_dir = tmp_path / "a" / "deep" / "dir", tmp_path / "b"
    build_dir.mkdir(parents=True)
    read_dir.mkdir()
    target = tmp_path / "kb.sqlite"
    assert poet("kb", "build", "--from", "../../../catalog", "--db", str(target), cwd=build_dir).returncode == 0
    conn = sqlite3.connect(target)
    stored = conn.execute("select source_file from obligations where id = 'demo.cache.keyed'").fetchone()[0]
    conn.close()
    assert stored == "obligations/mini.yaml"
    result = poet("--db", str(target), "obligations", "show", "demo.cache.keyed", cwd=read_dir)
    expected = catalog.resolve() / "obligations" / "mini.yaml"
    assert result.returncode == 0 and f"Defined at: {expected}:11" in result.stdout
    with poetkb.open(target) as kb:
        file, line = kb.source_of("demo.cache.keyed")
    assert Path(file) == expected and Path(file).is_file() and line == 11


# -- kill -9 at random points ---------------------------------------------------------------------


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def seeded() -> Iterator[random.Random]:
    """A random source whose seed is printed when a test fails, so a failing run can be replayed."""
    seed = int(os.environ.get("POET_TEST_SEED", time.time_ns() % 1_000_000))
    print(f"seed={seed}")
    yield random.Random(seed)


def _kill_at_random_point(proc: subprocess.Popen[bytes], build_file: Path, rnd: random.Random, *,
                          after_start: bool) -> str:
    """SIGKILL ``proc`` at a random moment: after it started, or while it writes its build file."""
    if not after_start:
        deadline = time.monotonic() + 60
        while not build_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
    # the build file lives for a fraction of a second (about 0.2 s of a 1.5 s build here): kill inside it
    delay = rnd.uniform(0.0, 0.15) if not after_start else rnd.uniform(0.1, 2.5)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return f"{'start' if after_start else 'build file'} + {delay:.2f}s"


@pytest.mark.slow
def test_kill_9_during_kb_build_loses_nothing(built_kb_file: Path, tmp_path: Path, seeded: random.Random) -> None:
    """kb build killed with SIGKILL at random points: the KB opens, passes the integrity check, keeps its state."""
    target = tmp_path / "killed" / "kb.sqlite"
    target.parent.mkdir()
    shutil.copyfile(built_kb_file, target)
    add_state(target)
    killed_mid_write = 0
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-m", "poetkb", "kb", "build", "--db", str(target)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        when = _kill_at_random_point(proc, store.build_file(target, proc.pid), seeded, after_start=attempt == 0)
        where = f"run {attempt} killed at {when} (exit {proc.returncode})"
        assert proc.returncode in (0, -signal.SIGKILL), where
        killed_mid_write += bool(build_leftovers(target))
        assert _processes_naming(str(target)) == [], where
        with poetkb.open(target) as kb:
            assert len(kb.obligations()) >= 50, where
        assert build_leftovers(target) == [], where
        assert store.integrity_problems(target) == [], where
        assert state_rows(target) == ([("p.keep", "accept", "kept")], [("run-keep", "pass")]), where
    assert killed_mid_write >= 1, "no run was killed while writing its build file"
    result = poet("kb", "check", "--db-only", "--db", str(target))
    assert result.returncode == 0, result.stderr
