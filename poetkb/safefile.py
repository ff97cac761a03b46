"""Read files poetkb did not write: bounded, confined, regular files only.

Evidence directories, catalogs, test suites, profiles, metrics and diffs come
from outside and may be hostile: a FIFO that never ends, a link to a device or
to ``/etc/passwd``, a file of gigabytes, a path with ``..`` in it. Every read
of such material goes through :func:`read_bytes` (or :func:`read_text`), which

- opens without blocking and refuses anything but a regular file (FIFOs,
  sockets and devices are named in the error, never read);
- checks the size *before* reading and reads at most ``limit`` bytes, so a file
  that grows while it is read cannot exhaust memory either;
- when ``root`` is given, resolves the path and refuses it unless it stays inside
  ``root`` (a link pointing out counts as outside).

Errors are :class:`~poetkb.errors.InputError` naming the file and what to do.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path
from typing import TextIO

from poetkb.errors import InputError

#: Default ceilings, generous for real material and small enough to keep memory bounded.
MiB = 1024 * 1024
CATALOG_FILE_LIMIT = 8 * MiB
SOURCE_FILE_LIMIT = 4 * MiB
INPUT_FILE_LIMIT = 64 * MiB
EVIDENCE_FILE_LIMIT = 256 * MiB


def confine(root: Path, relative: str | Path, *, what: str = "file") -> Path:
    """Return ``root / relative`` resolved, or raise if it would leave ``root``.

    ``relative`` must be a relative path; absolute paths, ``..`` that climbs out
    and links whose target lies outside ``root`` are all refused.
    """
    text = str(relative)
    if not text or "\x00" in text:
        raise InputError(f"{what} path is empty or holds a NUL byte", file=text or "''")
    rel = Path(text)
    if rel.is_absolute() or rel.drive:
        raise InputError(f"{what} path must be relative to {root}", file=text,
                         hint="list files by their path inside the directory")
    base = root.resolve()
    target = (base / rel).resolve()
    if not is_within(target, base):
        raise InputError(f"{what} path leaves {root}", file=text,
                         hint="only files inside the directory are read; links out of it are refused")
    return target


def is_within(path: Path, root: Path) -> bool:
    """True when resolved ``path`` is ``root`` or lies below it."""
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _open_regular(path: Path, *, limit: int, root: Path | None, shown: str) -> int:
    """Open ``path`` without blocking; return a blocking fd of a regular file of at most ``limit`` bytes."""
    if root is not None and not is_within(path.resolve(), root.resolve()):
        raise InputError("file lies outside the directory being read (a link out?)", file=shown,
                         hint="only files inside the directory are read")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise InputError("file does not exist (or is a dangling link)", file=shown) from exc
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror}", file=shown) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"not a regular file ({_kind(info.st_mode)})", file=shown,
                             hint="only regular files are read")
        if info.st_size > limit:
            raise InputError(f"file is {info.st_size:,} bytes, over the limit of {limit:,}", file=shown,
                             hint="split it, or pass a smaller file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _BoundedReader(io.RawIOBase):
    """A raw file that refuses to deliver more than ``limit`` bytes (a file growing while it is streamed)."""

    def __init__(self, fd: int, limit: int, shown: str) -> None:
        super().__init__()
        self._fd, self._limit, self._shown, self._total = fd, limit, shown, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = os.read(self._fd, len(buffer))
        self._total += len(data)
        if self._total > self._limit:
            raise InputError(f"file grew past the limit of {self._limit:,} bytes while being read", file=self._shown)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def open_text(path: Path, *, limit: int, root: Path | None = None, display: str | None = None,
              newline: str | None = None) -> TextIO:
    """Open a regular file of at most ``limit`` bytes for streaming UTF-8 reads (large metrics files).

    The same checks as :func:`read_bytes` happen before anything is read, and
    the stream stops with an error if the file grows past ``limit``. Reading
    text that is not UTF-8 raises ``UnicodeDecodeError``; callers name the file.
    """
    shown = display or str(path)
    fd = _open_regular(path, limit=limit, root=root, shown=shown)
    return io.TextIOWrapper(io.BufferedReader(_BoundedReader(fd, limit, shown)), encoding="utf-8",
                            newline=newline)


def read_bytes(path: Path, *, limit: int, root: Path | None = None, display: str | None = None) -> bytes:
    """Read a regular file of at most ``limit`` bytes; see the module docstring."""
    shown = display or str(path)
    fd = _open_regular(path, limit=limit, root=root, shown=shown)
    try:
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 * MiB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise InputError(f"file grew past the limit of {limit:,} bytes while being read", file=shown)
        return b"".join(chunks)
    except IsADirectoryError as exc:
        raise InputError("is a directory, not a file", file=shown) from exc
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror}", file=shown) from exc
    finally:
        os.close(fd)


def read_text(path: Path, *, limit: int, root: Path | None = None, display: str | None = None,
              errors: str = "strict") -> str:
    """:func:`read_bytes` decoded as UTF-8; undecodable text names the file."""
    data = read_bytes(path, limit=limit, root=root, display=display)
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise InputError("file is not UTF-8 text", file=display or str(path), hint="save it as UTF-8") from exc


def read_head(path: Path, size: int, *, display: str | None = None) -> bytes:
    """The first ``size`` bytes of a regular file (a header probe: FIFOs and devices are refused, never read)."""
    shown = display or str(path)
    fd = _open_regular(path, limit=sys.maxsize, root=None, shown=shown)  # any size: only the head is read
    try:
        return os.read(fd, size)
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror}", file=shown) from exc
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"
