"""Find the test files of a suite, and skip the ones that are unsafe or useless to mine, with a reason.

A file is a test file when its name is ``test_*.py``, ``*_test.py``, ``*.test.py``
(script-style suites: the file is one test) or ``conftest.py``, or when it is a
``.py`` file under a ``tests``/``test``/``testing`` directory that defines test
functions or classes.

A suite is untrusted input (it may come from anywhere, and mining it must not
hang, exhaust memory or leak files from outside it). Safety rules; every file
skipped is reported with its reason and the run goes on:

- only regular files are read, through :func:`poetkb.safefile.read_bytes`: its
  size is checked on the open descriptor *before* reading and the read is
  bounded, so a FIFO (``not a regular file``), a device or a file that never
  ends cannot hang the run or fill memory;
- files larger than :data:`MAX_FILE_BYTES` (1 MiB) are skipped as too large, and
  a run reads at most :data:`MAX_SUITE_BYTES` of test files in all;
- links are followed only while their target stays inside the PATH being
  mined (``link leaves PATH`` otherwise: neither read nor entered); a link
  that leads back to one of its own parent directories, or to itself, is a
  *symlink loop*; a broken link is reported too; a file reached twice is mined once;
- directories deeper than :data:`MAX_DEPTH` below the PATH are not entered;
- files that are not UTF-8 are skipped (mined code is read as text, never imported);
- hidden directories, ``__pycache__``, ``node_modules``, ``site-packages`` and
  virtual environments (a directory holding ``pyvenv.cfg``) are not entered.

A re-run over an unchanged suite need not read its files again: given
``known_hash`` (:meth:`poetkb.learn.memo.LearnCache.known_hash`), a file whose
size, modification and change times, inode and device are those recorded when it
was last hashed (and which was not modified in the same moment it was hashed) is
taken as unchanged: it is listed with its recorded hash and no text
(:attr:`TestFile.text` is None; :func:`read_again` reads it when its text is
needed after all). Any difference in that stat reads and hashes the file as usual.
A file read is listed with the stat taken before the read when a stat after the
read shows the same, so the caller can record its hash for the next run.

A PATH itself that is missing, a symlink loop, unreadable or neither a file nor
a directory is an :class:`~poetkb.errors.InputError` (exit 2). Parsing problems
(syntax errors, nesting too deep) are found later, by the extractor.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from poetkb.errors import InputError
from poetkb.safefile import SOURCE_FILE_LIMIT, is_within, read_bytes

#: Files above this size are not mined (generated fixtures, vendored blobs); below safefile's source limit.
MAX_FILE_BYTES = min(1024 * 1024, SOURCE_FILE_LIMIT)
#: Bytes of test files one run reads in all (they are held until parsed); further files are skipped.
MAX_SUITE_BYTES = 128 * 1024 * 1024
#: Directory levels below a PATH that are entered.
MAX_DEPTH = 64
#: Directory names whose Python files are test files when they define tests.
TEST_DIR_NAMES = frozenset({"tests", "test", "testing"})
_SKIP_DIR_NAMES = frozenset({"__pycache__", "node_modules", "site-packages"})
_HAS_TESTS_RE = re.compile(rb"^[ \t]*(?:async[ \t]+)?def[ \t]+test|^[ \t]*class[ \t]+Test", re.MULTILINE)
#: Bounds for the git metadata read to record the commit (HEAD, .git files, commondir; packed-refs).
GIT_FILE_LIMIT = 64 * 1024
PACKED_REFS_LIMIT = 16 * 1024 * 1024
_SHA_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_REF_RE = re.compile(r"refs/[A-Za-z0-9._/-]{1,240}")


#: Given a file's path (absolute, as walked) and its stat: the SHA-256 recorded for it if that stat shows it
#: unchanged since it was hashed, else None (see :meth:`poetkb.learn.memo.LearnCache.known_hash`).
KnownHash = Callable[[str, os.stat_result], "str | None"]


@dataclass(frozen=True)
class TestFile:
    """A test file found under one of the given paths, read and hashed (or known unchanged by its stat)."""

    root: Path  # the PATH it was found under (a directory, or the file itself)
    path: Path  # where it is
    rel: str  # its path relative to ``root`` (posix), or its name when ``root`` is the file
    text: str | None  # None: not read, its stat matched the recorded hash (see read_again)
    content_hash: str
    script_style: bool  # a file that is one test when it holds no test functions
    stat: os.stat_result | None = None  # taken before the read, when unchanged after it: to record the hash
    hashed_at: int = 0  # time.time_ns() when it was read

    @property
    def key_path(self) -> str:
        """The path its hash is recorded under for the next run (absolute, as walked)."""
        return os.path.abspath(self.path)

    __test__ = False  # not a pytest class


@dataclass(frozen=True)
class Skipped:
    """A file that was not mined, and why."""

    path: str
    reason: str
    detail: str = ""


@dataclass
class Discovery:
    """What discovery found: test files to mine, and files skipped with reasons."""

    files: list[TestFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    bytes_read: int = 0


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_test_name(name: str) -> bool:
    """Whether a file name alone marks a test file."""
    return (
        name.endswith(".py")
        and (name.startswith("test_") or name.endswith(("_test.py", ".test.py")) or name == "conftest.py")
    )


def _is_script_style(name: str) -> bool:
    return name.endswith(".test.py") or (name.startswith("test_") and name.endswith(".py"))


def real_path(path: Path) -> Path:
    """``path`` with every link resolved; raises :class:`OSError` (``ELOOP`` for a loop) when it cannot be."""
    return Path(os.path.realpath(path, strict=True))


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


class _Walker:
    def __init__(self, result: Discovery, known_hash: KnownHash | None = None) -> None:
        self.result = result
        self.known_hash = known_hash
        self.seen_files: set[tuple[int, int]] = set()
        self.seen_dirs: set[tuple[int, int]] = set()

    def skip(self, root: Path, path: Path, reason: str, detail: str = "") -> None:
        self.result.skipped.append(Skipped(_rel(root, path), reason, detail))

    def walk_root(self, root: Path) -> None:
        try:
            boundary = real_path(root)
            info = os.stat(boundary)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InputError("is a symlink loop", file=root,
                                 hint="pass the directory the link should name") from exc
            raise InputError(f"does not exist or cannot be read ({exc.strerror or exc})", file=root,
                             hint="pass a test suite directory or a test file") from exc
        if stat.S_ISREG(info.st_mode):
            self.consider(root, boundary, root, info, in_test_dir=True, explicit=True)
        elif stat.S_ISDIR(info.st_mode):
            self.walk_dir(root, boundary, root, [(info.st_dev, info.st_ino)],
                          in_test_dir=root.name in TEST_DIR_NAMES)
        else:
            raise InputError(f"is neither a directory nor a regular file ({_kind(info.st_mode)})", file=root,
                             hint="pass a test suite directory or a test file")

    def walk_dir(self, root: Path, boundary: Path, directory: Path, ancestors: list[tuple[int, int]],
                 in_test_dir: bool) -> None:
        key = ancestors[-1]
        if key in self.seen_dirs:
            return  # reached again through a link: mined once
        self.seen_dirs.add(key)
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            if directory == root:
                raise InputError(f"cannot be read ({exc.strerror or exc})", file=root,
                                 hint="pass a directory this user can list") from exc
            self.skip(root, directory, "cannot be read", exc.strerror or str(exc))
            return
        if any(e.name == "pyvenv.cfg" for e in entries):
            return
        for entry in entries:
            self.visit(root, boundary, entry, ancestors, in_test_dir)

    def visit(self, root: Path, boundary: Path, entry: os.DirEntry[str], ancestors: list[tuple[int, int]],
              in_test_dir: bool) -> None:
        name = entry.name
        wanted = name.endswith(".py") and (in_test_dir or is_test_name(name))  # a file we would read
        if not wanted:
            try:
                if entry.is_file(follow_symlinks=False):  # from the directory listing: no system call
                    return  # a plain file we would not read (data files, other sources): nothing to check
            except OSError:
                pass
        path = Path(entry.path)
        try:
            link = entry.is_symlink()
            info = os.stat(path)  # follows links
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.skip(root, path, "symlink loop")
            elif exc.errno == errno.ENOENT and is_test_name(name):
                self.skip(root, path, "broken symlink")
            elif exc.errno != errno.ENOENT and (wanted or not name.endswith(".py")):
                self.skip(root, path, "cannot be read", exc.strerror or str(exc))
            return
        is_dir = stat.S_ISDIR(info.st_mode)
        if is_dir and (name.startswith(".") or name in _SKIP_DIR_NAMES):
            return
        if not is_dir and not wanted:
            return
        if link:
            try:
                inside = is_within(real_path(path), boundary)
            except OSError as exc:
                self.skip(root, path, "symlink loop" if exc.errno == errno.ELOOP else "cannot be read")
                return
            if not inside:
                self.skip(root, path, "link leaves PATH",
                          "its target lies outside the PATH mined; links are followed only inside it")
                return
        if is_dir:
            if len(ancestors) > MAX_DEPTH:
                self.skip(root, path, "too deep", f"more than {MAX_DEPTH} directory levels below the PATH")
                return
            dir_key = (info.st_dev, info.st_ino)
            if dir_key in ancestors:
                self.skip(root, path, "symlink loop", "the link leads back to one of its parent directories")
                return
            self.walk_dir(root, boundary, path, [*ancestors, dir_key], in_test_dir or name in TEST_DIR_NAMES)
            return
        self.consider(root, boundary, path, info, in_test_dir=in_test_dir, explicit=False)

    def consider(self, root: Path, boundary: Path, path: Path, info: os.stat_result, *, in_test_dir: bool,
                 explicit: bool) -> None:
        name = path.name
        named = is_test_name(name)
        if not (named or in_test_dir or explicit):
            return
        key = (info.st_dev, info.st_ino)
        if key in self.seen_files:
            return
        self.seen_files.add(key)
        rel = name if root == path else _rel(root, path)
        if not stat.S_ISREG(info.st_mode):
            self.skip(root, path, "not a regular file", f"{_kind(info.st_mode)}; only regular files are read")
            return
        if info.st_size > MAX_FILE_BYTES:
            self.skip(root, path, "too large", f"{info.st_size} bytes, limit {MAX_FILE_BYTES}")
            return
        if self.result.bytes_read + info.st_size > MAX_SUITE_BYTES:
            self.skip(root, path, "suite too large",
                      f"the run already read {self.result.bytes_read} bytes, limit {MAX_SUITE_BYTES}")
            return
        script_style = _is_script_style(name) or (explicit and name != "conftest.py")
        if self.known_hash is not None:
            digest = self.known_hash(os.path.abspath(path), info)
            if digest is not None:  # unchanged since it was hashed (and found to hold tests): not read again
                self.result.bytes_read += info.st_size
                self.result.files.append(TestFile(root=root, path=path, rel=rel, text=None, content_hash=digest,
                                                  script_style=script_style))
                return
        hashed_at = time.time_ns()
        try:
            data = read_bytes(path, limit=MAX_FILE_BYTES, root=boundary, display=rel)
        except InputError as exc:  # changed since it was listed: a FIFO, grown, a link moved out
            self.skip(root, path, "cannot be read", exc.message.removeprefix(f"{rel}: "))
            return
        except (OSError, RuntimeError) as exc:
            self.skip(root, path, "cannot be read", str(exc))
            return
        if not (named or explicit) and not _HAS_TESTS_RE.search(data):
            return  # a helper module under tests/: nothing to mine
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.skip(root, path, "not UTF-8", f"byte {exc.start}: invalid {exc.reason}")
            return
        self.result.bytes_read += len(data)
        self.result.files.append(
            TestFile(root=root, path=path, rel=rel, text=text, content_hash=content_hash(data),
                     script_style=script_style, stat=info if _unchanged(path, info, len(data)) else None,
                     hashed_at=hashed_at)
        )


def _unchanged(path: Path, before: os.stat_result, size: int) -> bool:
    """Whether ``path``'s stat now is ``before`` and its size the bytes read (nothing changed during the read)."""
    try:
        after = os.stat(path)
    except OSError:
        return False
    return size == after.st_size and (before.st_size, before.st_mtime_ns, before.st_ctime_ns, before.st_ino,
                                      before.st_dev) == (after.st_size, after.st_mtime_ns, after.st_ctime_ns,
                                                         after.st_ino, after.st_dev)


def read_again(found: TestFile) -> TestFile | Skipped:
    """A test file listed unread (its stat matched a recorded hash) read now, or why it cannot be.

    Used when its text is needed after all (its extraction is no longer cached).
    The file is read and hashed afresh through the same checks; the hash may differ
    from the recorded one if it changed meanwhile.
    """
    boundary = real_path(found.root if found.root.is_dir() else found.root.parent)
    try:
        data = read_bytes(found.path, limit=MAX_FILE_BYTES, root=boundary, display=found.rel)
        text = data.decode("utf-8")
    except InputError as exc:
        return Skipped(found.rel, "cannot be read", exc.message.removeprefix(f"{found.rel}: "))
    except UnicodeDecodeError as exc:
        return Skipped(found.rel, "not UTF-8", f"byte {exc.start}: invalid {exc.reason}")
    except (OSError, RuntimeError) as exc:
        return Skipped(found.rel, "cannot be read", str(exc))
    return TestFile(root=found.root, path=found.path, rel=found.rel, text=text, content_hash=content_hash(data),
                    script_style=found.script_style)


def _rel(root: Path, path: Path) -> str:
    if root == path:
        return path.name
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def discover(paths: list[Path], known_hash: KnownHash | None = None) -> Discovery:
    """Find and read the test files under ``paths`` (directories or files), in a stable order.

    With ``known_hash``, files whose stat shows them unchanged since they were hashed are not read (see above).
    """
    if not paths:
        raise InputError("no path given", hint="pass one or more test suite directories or test files")
    result = Discovery()
    walker = _Walker(result, known_hash)
    for path in paths:
        walker.walk_root(Path(path))
    owners: dict[str, Path] = {}
    for found in result.files:
        other = owners.setdefault(found.rel, found.root)
        if other != found.root:
            raise InputError(
                f"{found.rel} is found under two of the given paths ({other} and {found.root})",
                hint="mine the two paths in separate runs, each with its own --source",
            )
    result.files.sort(key=lambda f: f.rel)
    result.skipped.sort(key=lambda s: (s.path, s.reason))
    return result


def git_commit(path: Path) -> str | None:
    """The commit checked out in the git repository holding ``path``, read from ``.git`` (git is not run).

    The repository's metadata is as untrusted as the suite: every file is read
    through :func:`poetkb.safefile.read_text` (regular files only, bounded), a
    ref must look like ``refs/...`` without ``..`` and is read only inside the
    git directory, and only a value that is a commit id is ever returned. Anything
    unexpected gives ``None`` (no commit recorded), never an error.
    """
    try:
        current = real_path(Path(path))
        if not current.is_dir():
            current = current.parent
        for directory in (current, *current.parents):
            dot_git = directory / ".git"
            if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
                text = _git_text(dot_git, GIT_FILE_LIMIT)
                if text is None or not text.startswith("gitdir:"):
                    return None
                dot_git = real_path(directory / text.split(":", 1)[1].strip())
            if dot_git.is_dir():
                return _read_head(real_path(dot_git))
            if os.path.lexists(dot_git):
                return None  # a .git that is neither a file nor a directory
    except (OSError, ValueError, RuntimeError):
        return None
    return None


def _git_text(path: Path, limit: int, root: Path | None = None) -> str | None:
    """A git metadata file's text, or None when it is missing, not a regular file, too large or not UTF-8."""
    try:
        return read_bytes(path, limit=limit, root=root).decode("utf-8").strip()
    except (InputError, OSError, RuntimeError, UnicodeDecodeError):
        return None


def _read_head(git_dir: Path) -> str | None:
    head = _git_text(git_dir / "HEAD", GIT_FILE_LIMIT)
    if head is None:
        return None
    if not head.startswith("ref:"):
        return head if _SHA_RE.fullmatch(head) else None
    ref = head.split(":", 1)[1].strip()
    if not _REF_RE.fullmatch(ref) or ".." in ref.split("/"):
        return None
    common = git_dir
    if (git_dir / "commondir").is_file():
        pointer = _git_text(git_dir / "commondir", GIT_FILE_LIMIT)
        if not pointer:
            return None
        common = real_path(git_dir / pointer)
    for base in (git_dir, common):
        value = _git_text(base / ref, GIT_FILE_LIMIT, root=base)
        if value is not None and _SHA_RE.fullmatch(value):
            return value
    packed = _git_text(common / "packed-refs", PACKED_REFS_LIMIT, root=common)
    for line in (packed or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == ref and _SHA_RE.fullmatch(parts[0]):
            return parts[0]
    return None
