"""Find the test files of a suite, and skip the ones that are unsafe or useless to mine, with a reason.

A file is a test file when its name is ``test_*.py``, ``*_test.py``, ``*.test.py``
(script-style suites: the file is one test) or ``conftest.py``, or when it is a
``.py`` file under a ``tests``/``test``/``testing`` directory that defines test
functions or classes.

Safety rules (every skipped file is reported with its reason, the run goes on):

- files larger than :data:`MAX_FILE_BYTES` (1 MiB) are skipped as too large;
- files that are not UTF-8 are skipped (mined code is read as text, never imported);
- symbolic links are followed (files are only read); a link that leads back
  to one of its own parent directories, or to itself, is a *symlink loop*;
  a broken link is reported too; a file reached twice is mined once;
- hidden directories, ``__pycache__``, ``node_modules``, ``site-packages`` and
  virtual environments (a directory holding ``pyvenv.cfg``) are not entered.

Parsing problems (syntax errors, nesting too deep) are found later, by the extractor.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from poetkb.errors import InputError

#: Files above this size are not mined (generated fixtures, vendored blobs).
MAX_FILE_BYTES = 1024 * 1024
#: Directory names whose Python files are test files when they define tests.
TEST_DIR_NAMES = frozenset({"tests", "test", "testing"})
_SKIP_DIR_NAMES = frozenset({"__pycache__", "node_modules", "site-packages"})
_HAS_TESTS_RE = re.compile(rb"^[ \t]*(?:async[ \t]+)?def[ \t]+test|^[ \t]*class[ \t]+Test", re.MULTILINE)


@dataclass(frozen=True)
class TestFile:
    """A test file found under one of the given paths, read and hashed."""

    root: Path  # the PATH it was found under (a directory, or the file itself)
    path: Path  # where it is
    rel: str  # its path relative to ``root`` (posix), or its name when ``root`` is the file
    text: str
    content_hash: str
    script_style: bool  # a file that is one test when it holds no test functions

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


class _Walker:
    def __init__(self, result: Discovery) -> None:
        self.result = result
        self.seen_files: set[tuple[int, int]] = set()
        self.seen_dirs: set[tuple[int, int]] = set()

    def skip(self, root: Path, path: Path, reason: str, detail: str = "") -> None:
        self.result.skipped.append(Skipped(_rel(root, path), reason, detail))

    def walk_root(self, root: Path) -> None:
        try:
            info = root.stat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InputError(
                    "is a symlink loop", file=root, hint="pass the directory the link should name"
                ) from exc
            raise InputError("does not exist or cannot be read", file=root,
                             hint="pass a test suite directory or a test file") from exc
        if root.is_file():
            self.consider(root, root, in_test_dir=True, explicit=True)
            return
        self.walk_dir(root, root, [(info.st_dev, info.st_ino)], in_test_dir=root.name in TEST_DIR_NAMES)

    def walk_dir(self, root: Path, directory: Path, ancestors: list[tuple[int, int]], in_test_dir: bool) -> None:
        key = ancestors[-1]
        if key in self.seen_dirs:
            return  # reached again through a link: mined once
        self.seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            self.skip(root, directory, "cannot be read", exc.strerror or str(exc))
            return
        if any(e.name == "pyvenv.cfg" for e in entries):
            return
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError as exc:
                reason = "symlink loop" if exc.errno == errno.ELOOP else "cannot be read"
                self.skip(root, path, reason)
                continue
            if is_dir:
                if entry.name.startswith(".") or entry.name in _SKIP_DIR_NAMES:
                    continue
                try:
                    info = entry.stat()
                except OSError as exc:
                    reason = "symlink loop" if exc.errno == errno.ELOOP else "cannot be read"
                    self.skip(root, path, reason)
                    continue
                dir_key = (info.st_dev, info.st_ino)
                if dir_key in ancestors:
                    self.skip(root, path, "symlink loop", "the link leads back to one of its parent directories")
                    continue
                self.walk_dir(root, path, [*ancestors, dir_key], in_test_dir or entry.name in TEST_DIR_NAMES)
            elif entry.name.endswith(".py"):
                if entry.is_symlink():
                    try:
                        os.stat(path)
                    except OSError as exc:
                        if exc.errno == errno.ELOOP:
                            self.skip(root, path, "symlink loop")
                        elif is_test_name(entry.name):
                            self.skip(root, path, "broken symlink")
                        continue
                self.consider(root, path, in_test_dir=in_test_dir, explicit=False)

    def consider(self, root: Path, path: Path, *, in_test_dir: bool, explicit: bool) -> None:
        name = path.name
        named = is_test_name(name)
        if not (named or in_test_dir or explicit):
            return
        try:
            info = path.stat()
        except OSError as exc:
            self.skip(root, path, "symlink loop" if exc.errno == errno.ELOOP else "cannot be read")
            return
        key = (info.st_dev, info.st_ino)
        if key in self.seen_files:
            return
        self.seen_files.add(key)
        if info.st_size > MAX_FILE_BYTES:
            if named or explicit:
                self.skip(root, path, "too large", f"{info.st_size} bytes, limit {MAX_FILE_BYTES}")
            return
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.skip(root, path, "cannot be read", exc.strerror or str(exc))
            return
        if not (named or explicit) and not _HAS_TESTS_RE.search(data):
            return  # a helper module under tests/: nothing to mine
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.skip(root, path, "not UTF-8", f"byte {exc.start}: invalid {exc.reason}")
            return
        self.result.bytes_read += len(data)
        rel = name if root == path else _rel(root, path)
        self.result.files.append(
            TestFile(root=root, path=path, rel=rel, text=text, content_hash=content_hash(data),
                     script_style=_is_script_style(name) or (explicit and name != "conftest.py"))
        )


def _rel(root: Path, path: Path) -> str:
    if root == path:
        return path.name
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def discover(paths: list[Path]) -> Discovery:
    """Find and read the test files under ``paths`` (directories or files), in a stable order."""
    if not paths:
        raise InputError("no path given", hint="pass one or more test suite directories or test files")
    result = Discovery()
    walker = _Walker(result)
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
    """The commit checked out in the git repository holding ``path``, read from ``.git`` (git is not run)."""
    current = Path(path).resolve()
    if current.is_file():
        current = current.parent
    for directory in (current, *current.parents):
        dot_git = directory / ".git"
        if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
            try:
                text = dot_git.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                return None
            if not text.startswith("gitdir:"):
                return None
            dot_git = (directory / text.split(":", 1)[1].strip()).resolve()
        if dot_git.is_dir():
            return _read_head(dot_git)
    return None


def _read_head(git_dir: Path) -> str | None:
    try:
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not head.startswith("ref:"):
        return head if re.fullmatch(r"[0-9a-f]{40}", head) else None
    ref = head.split(":", 1)[1].strip()
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        try:
            common = (git_dir / commondir.read_text(encoding="utf-8").strip()).resolve()
        except (OSError, UnicodeDecodeError):
            return None
    for base in (git_dir, common):
        try:
            value = (base / ref).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if re.fullmatch(r"[0-9a-f]{40}", value):
            return value
    try:
        packed = (common / "packed-refs").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for line in packed.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == ref and re.fullmatch(r"[0-9a-f]{40}", parts[0]):
            return parts[0]
    return None
