"""A knowledge base file before poetkb trusts it: damage, build files, what a path holds.

The store (poetkb.store) owns the schema and every write; this module holds the
checks around the file itself, which any poetkb file may need before it is read
or replaced:

- :class:`GuardedConnection`, the connection every knowledge base is opened
  with: SQLite's "malformed" and "not a database" errors, from any query, become
  one :class:`~poetkb.errors.StoreError` naming the file and saying what is safe;
- the header probe (regular files only, so a FIFO or a device never blocks);
- :class:`FileState`, what a path holds as far as replacing it is concerned;
- build files of killed builds (``.NAME.build-PID``), removed once their process is gone;
- keeping a damaged file's bytes beside it before a forced build replaces it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn

from poetkb.errors import InputError, StoreError

SQLITE_MAGIC = b"SQLite format 3\x00"
#: SQLite primary result codes that mean the file itself is damaged: SQLITE_CORRUPT, SQLITE_NOTADB.
_DAMAGE_CODES = frozenset({11, 26})


def damaged_hint(path: Path) -> str:
    """What is safe to do with a damaged knowledge base: keep it, never overwrite it blindly."""
    return (f"nothing was changed; keep a copy of {path} if it holds gate runs, baselines or learn decisions you "
            f"need, then build a new one: `poet kb build --force --db {path}` keeps the damaged file beside it "
            "as NAME.damaged-TIME (or move it aside yourself and run `poet kb build`)")


def raise_damaged(path: Path, exc: BaseException | str) -> NoReturn:
    """Raise the StoreError for a damaged file: named, and with what is safe to do."""
    raise StoreError(f"knowledge base {path} is damaged: {exc}", path=path, hint=damaged_hint(path))


def summary(problems: list[str]) -> str:
    """SQLite's check output on one line, without its ``*** in database main ***`` banner."""
    text = "; ".join(" ".join(p.replace("*** in database main ***", "").split()) for p in problems)
    return text.strip("; ") or "integrity check failed"


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """True when SQLite says the file itself is damaged (not a busy lock, a constraint or a bug in a query)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _DAMAGE_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


class _GuardedCursor(sqlite3.Cursor):
    """A cursor whose damage errors become a StoreError naming the file, wherever the query was made."""

    def _damaged(self, exc: sqlite3.DatabaseError) -> None:
        if is_damage(exc):
            raise_damaged(getattr(self.connection, "poet_path", Path("?")), exc)

    def execute(self, sql: str, parameters: Any = (), /) -> _GuardedCursor:
        try:
            return super().execute(sql, parameters)  # type: ignore[return-value]
        except sqlite3.DatabaseError as exc:
            self._damaged(exc)
            raise

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _GuardedCursor:
        try:
            return super().executemany(sql, seq_of_parameters)  # type: ignore[return-value]
        except sqlite3.DatabaseError as exc:
            self._damaged(exc)
            raise

    def executescript(self, sql_script: str, /) -> _GuardedCursor:
        try:
            return super().executescript(sql_script)  # type: ignore[return-value]
        except sqlite3.DatabaseError as exc:
            self._damaged(exc)
            raise

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.DatabaseError as exc:
            self._damaged(exc)
            raise

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        try:
            return super().fetchmany(size if size is not None else self.arraysize)
        except sqlite3.DatabaseError as exc:
            self._damaged(exc)
            raise

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.DatabaseError as exc:
            self._damaged(exc)
            raise

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.DatabaseError as exc:
            self._damaged(exc)
            raise


class GuardedConnection(sqlite3.Connection):
    """An SQLite connection that knows its file and reports damage found by any query as a StoreError.

    This is the one place where ``sqlite3.DatabaseError`` for a damaged file is
    translated; every reader (typed reads, search, rank, stats, gates) goes through it.
    """

    poet_path: Path

    def cursor(self, factory: Any = None) -> Any:  # type: ignore[override]
        return super().cursor(factory or _GuardedCursor)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        return self.cursor().executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> Any:
        return self.cursor().executescript(sql_script)


def read_header(path: Path) -> bytes:
    from poetkb.safefile import read_head

    try:
        return read_head(path, len(SQLITE_MAGIC))
    except InputError as exc:
        raise StoreError(f"cannot read knowledge base {path}: {exc.message.split(': ', 1)[-1]}", path=path,
                         hint="pass the path of a knowledge base file built by `poet kb build`") from exc


FileKind = Literal["missing", "empty", "poetkb", "damaged", "newer", "foreign", "not-sqlite", "unreadable",
                   "special"]


@dataclass(frozen=True)
class FileState:
    """What a path holds, as far as replacing it is concerned: ``kind`` and a phrase for messages ("is ...")."""

    kind: FileKind
    detail: str


def open_readonly(path: Path) -> sqlite3.Connection:
    """Open a file that may not be poetkb's without creating or changing anything beside it.

    ``immutable=1`` takes no locks and creates no ``-wal``/``-shm`` files, so
    another application's database is left exactly as it was.
    """
    return sqlite3.connect(f"{path.absolute().as_uri()}?immutable=1", uri=True)


def build_file(target: Path, pid: int) -> Path:
    """The file a build by process ``pid`` writes before swapping it in at ``target``."""
    return target.with_name(f".{target.name}.build-{pid}")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a process id we wrote: leave the file alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_stale_build_files(target: Path) -> list[Path]:
    """Remove ``.NAME.build-PID`` files (and their journals) whose build process is gone; return them.

    A file whose process is alive, or whose name does not end in a process id, is left alone.
    """
    prefix = f".{target.name}.build-"
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid_text, _, suffix = entry.name[len(prefix):].partition("-")
        if not pid_text.isdigit() or suffix not in ("", "journal", "wal", "shm"):
            continue
        pid = int(pid_text)
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def companions(path: Path) -> tuple[Path, ...]:
    """The files SQLite keeps beside ``path``: its rollback journal, WAL and shared-memory index."""
    return tuple(path.with_name(path.name + suffix) for suffix in ("-journal", "-wal", "-shm"))


def keep_damaged(target: Path) -> Path:
    """Keep a damaged knowledge base (and its WAL) beside ``target`` before a forced build replaces it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = target.with_name(f"{target.name}.damaged-{stamp}")
    for n in range(1, 1000):
        if not kept.exists():
            break
        kept = target.with_name(f"{target.name}.damaged-{stamp}.{n}")
    for src, dst in ((target, kept), (target.with_name(target.name + "-wal"), kept.with_name(kept.name + "-wal"))):
        if not src.exists():
            continue
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    target.with_name(target.name + "-wal").unlink(missing_ok=True)
    target.with_name(target.name + "-shm").unlink(missing_ok=True)
    return kept
