"""Read a change where it lives: a git repository's diff, commit messages and branch name.

``poet rank --git [RANGE]`` runs git itself (never a shell; every output bounded
in bytes and time) and hands :func:`poetkb.rank.change.understand` the diff of
every file, both versions of each changed configuration or Python file (so
they are read through the configuration model and the syntax tree), and the
branch name and commit messages as the change's words.

Without RANGE: uncommitted changes against ``HEAD`` (untracked files included);
on a clean branch other than the default one, ``main...HEAD`` (or ``master``);
on a clean default branch, the last commit. RANGE is ``A..B``, ``A...B`` or
one revision (the working tree against it).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from poetkb.errors import EnvironmentProblem, InputError
from poetkb.rank.diff import MAX_DIFF_BYTES, FileDiff

GIT_TIMEOUT_S = 60.0
MAX_MESSAGE_BYTES = 64_000
MAX_FILE_BYTES = 1_000_000
#: both versions are read for at most this many files (configuration and Python); the rest by their diff lines
MAX_CONTENT_FILES = 300
MAX_UNTRACKED = 200
_REV = re.compile(r"^[A-Za-z0-9_./@^~{}:+-]{1,200}$")
_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_PAGER": "cat",
        "GIT_OPTIONAL_LOCKS": "0"}


@dataclass
class GitChange:
    """What git says about a change: the diff text, its words, and how to read both versions of a file."""

    root: Path
    diff: str
    text: str
    origin: str
    old_rev: str | None
    new_rev: str | None  # None: the working tree
    warnings: list[str] = field(default_factory=list)
    _reads: int = 0
    _blobs: dict[str, str | None] | None = None

    def contents(self, file_diff: FileDiff) -> tuple[str | None, str | None]:
        """Old and new text of a changed file (None where it does not exist or is too large to read).

        The first call reads every candidate file (configuration and Python, at most
        MAX_CONTENT_FILES) in one ``git cat-file --batch``, so a large change costs
        one git process, not one per file.
        """
        if self._reads >= MAX_CONTENT_FILES:
            return None, None
        self._reads += 1
        if self._blobs is None:
            self._blobs = self._prefetch()
        old = self._show(self.old_rev, file_diff.old_path) if file_diff.old_path and self.old_rev else None
        if not file_diff.new_path:
            return old, None
        if self.new_rev is None:
            from poetkb import safefile

            try:
                data = safefile.read_bytes(safefile.confine(self.root, file_diff.new_path), limit=MAX_FILE_BYTES,
                                           root=self.root)
            except (InputError, OSError):
                return old, None
            return old, data.decode("utf-8", "replace")
        return old, self._show(self.new_rev, file_diff.new_path)

    def _prefetch(self) -> dict[str, str | None]:
        specs: list[str] = []
        for match in _PATH_LINE.finditer(self.diff):
            sign, path = match.group(1), match.group(2)
            rev = self.old_rev if sign == "---" else self.new_rev
            if rev and _candidate(path):
                specs.append(f"{rev}:{path}")
        specs = list(dict.fromkeys(specs))[: 2 * MAX_CONTENT_FILES]
        return read_blobs(self.root, specs) if specs else {}

    def _show(self, rev: str, path: str) -> str | None:
        spec = f"{rev}:{path}"
        if self._blobs is not None and spec in self._blobs:
            return self._blobs[spec]
        try:
            data = run_git(self.root, ["cat-file", "blob", f"{rev}:{path}"], limit=MAX_FILE_BYTES, check=False)
        except InputError:
            return None
        return data.decode("utf-8", "replace") if data is not None else None


_PATH_LINE = re.compile(r"^(---|\+\+\+) [ab]/(.+?)\t?$", re.M)


def _candidate(path: str) -> bool:
    """A file whose two versions are worth reading: configuration or Python."""
    lower = path.lower()
    return lower.endswith((".py", ".conf", ".cfg")) or "nginx" in lower or "haproxy" in lower


def read_blobs(root: Path, specs: list[str], *, limit: int = 64_000_000) -> dict[str, str | None]:
    """``rev:path`` -> text for each spec, read by one ``git cat-file --batch`` (bounded in total and per file)."""
    import threading

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, **_ENV}
    proc = subprocess.Popen(["git", "-C", str(root), "cat-file", "--batch"],  # noqa: S603,S607
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    payload = "".join(f"{s}\n" for s in specs if "\n" not in s).encode("utf-8")

    def feed() -> None:
        try:
            proc.stdin.write(payload)  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    out: dict[str, str | None] = {}
    total = 0
    try:
        for spec in specs:
            header = proc.stdout.readline(4096).decode("utf-8", "replace").split()
            if len(header) != 3 or header[1] != "blob" or not header[2].isdigit():
                out[spec] = None
                if len(header) == 3 and header[2].isdigit():  # a tree or another object: skip its bytes
                    proc.stdout.read(int(header[2]) + 1)
                continue
            size = int(header[2])
            total += size
            if total > limit:
                break
            data = proc.stdout.read(size + 1)[:size]
            out[spec] = data.decode("utf-8", "replace") if size <= MAX_FILE_BYTES else None
    finally:
        proc.kill()
        proc.wait(timeout=GIT_TIMEOUT_S)
        proc.stdout.close()
        writer.join(timeout=GIT_TIMEOUT_S)
    return out


def run_git(root: Path, args: list[str], *, limit: int, check: bool = True, what: str = "git output",
            ok_codes: tuple[int, ...] = (0,)) -> bytes | None:
    """git's standard output, at most ``limit`` bytes (more is an InputError); None when git fails and not check."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, **_ENV}
    try:
        proc = subprocess.Popen(["git", "-C", str(root), "-c", "core.quotepath=off", *args],  # noqa: S603,S607
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except FileNotFoundError as exc:
        raise EnvironmentProblem("git is not installed", hint="install git, or pass the diff with --diff FILE") \
            from exc
    assert proc.stdout is not None and proc.stderr is not None
    try:
        data = proc.stdout.read(limit + 1)
        if len(data) > limit:
            proc.kill()
            proc.wait(timeout=GIT_TIMEOUT_S)
            raise InputError(f"{what} is larger than {limit // 1_000_000 or limit} "
                             f"{'MB' if limit >= 1_000_000 else 'bytes'}", field="--git",
                             hint="rank one change at a time: name a smaller range, e.g. --git HEAD~1..HEAD")
        err = proc.stderr.read(4000)
        code = proc.wait(timeout=GIT_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.wait()
        raise InputError(f"git {args[0]} took longer than {GIT_TIMEOUT_S:.0f} s", field="--git") from exc
    finally:
        proc.stdout.close()
        proc.stderr.close()
    if code not in ok_codes:
        if not check:
            return None
        message = err.decode("utf-8", "replace").strip().splitlines()
        raise InputError(f"git {args[0]} failed: {message[0] if message else f'exit {code}'}", field="--git",
                         hint="name a range git knows, e.g. --git main...HEAD or --git HEAD~3..HEAD")
    return data


def _text(root: Path, args: list[str], limit: int = 100_000) -> str:
    data = run_git(root, args, limit=limit)
    return (data or b"").decode("utf-8", "replace").strip()


def _ok(root: Path, args: list[str]) -> bool:
    return run_git(root, args, limit=100_000, check=False) is not None


def read_git(path: str | Path = ".", range_: str | None = None) -> GitChange:
    """The change in the repository holding ``path``: see the module docstring for what RANGE means."""
    start = Path(path)
    if not start.is_dir():
        raise InputError("not a directory", file=str(start), hint="pass the repository's directory with --repo")
    top = run_git(start, ["rev-parse", "--show-toplevel"], limit=10_000, check=False)
    if top is None:
        raise InputError(f"{start} is not inside a git repository", field="--git",
                         hint="run poet rank --git inside the repository, or pass --repo PATH")
    root = Path(top.decode("utf-8", "replace").strip())
    if range_ is not None and (range_.startswith("-") or not _REV.match(range_)):
        raise InputError(f"{range_!r} is not a revision range", field="--git",
                         hint="use A..B, A...B or one revision, e.g. main...HEAD or HEAD~1")
    branch = _text(root, ["rev-parse", "--abbrev-ref", "HEAD"]) if _ok(root, ["rev-parse", "HEAD"]) else ""
    warnings: list[str] = []
    untracked: list[str] = []
    if range_ is None:
        if not branch:
            raise InputError("the repository has no commit yet", field="--git", hint="commit, then rank")
        dirty = _text(root, ["status", "--porcelain", "--untracked-files=all"], limit=5_000_000)
        if dirty:
            diff_args, old_rev, new_rev, log_range = ["HEAD"], "HEAD", None, None
            origin = "uncommitted changes against HEAD"
            untracked = [line[3:] for line in dirty.splitlines() if line.startswith("?? ")]
        else:
            base = next((b for b in ("main", "master", "origin/main", "origin/master")
                         if _ok(root, ["rev-parse", "--verify", "--quiet", f"{b}^{{commit}}"])), None)
            if base and branch not in ("main", "master", "HEAD") and \
                    _text(root, ["rev-parse", base]) != _text(root, ["rev-parse", "HEAD"]):
                range_ = f"{base}...HEAD"
            elif _ok(root, ["rev-parse", "--verify", "--quiet", "HEAD~1^{commit}"]):
                range_ = "HEAD~1..HEAD"
            else:
                raise InputError("nothing to rank: the working tree is clean and HEAD has no parent", field="--git",
                                 hint="name a range, e.g. --git <first-commit>")
    if range_ is not None:
        if "..." in range_:
            a, b = range_.split("...", 1)
            b = b or "HEAD"
            old_rev = _text(root, ["merge-base", a or "HEAD", b])
            new_rev, diff_args, log_range = b, [f"{a}...{b}"], f"{a}..{b}"
        elif ".." in range_:
            a, b = range_.split("..", 1)
            old_rev, new_rev, diff_args, log_range = a or "HEAD", b or "HEAD", [range_], range_
        else:
            old_rev, new_rev, diff_args, log_range = range_, None, [range_], f"{range_}..HEAD"
        origin = f"git diff {range_}"
    diff = run_git(root, ["diff", "--no-color", "--no-ext-diff", "--no-textconv", "--find-renames",
                          "--unified=3", *diff_args, "--"], limit=MAX_DIFF_BYTES, what="the diff") or b""
    parts = [diff]
    size = len(diff)
    for rel in untracked[:MAX_UNTRACKED]:
        # --no-index exits 1 when the files differ, which they always do here
        extra = run_git(root, ["diff", "--no-color", "--no-ext-diff", "--no-index", "--", "/dev/null", rel],
                        limit=MAX_DIFF_BYTES, what="the diff", ok_codes=(0, 1)) or b""
        size += len(extra)
        if size > MAX_DIFF_BYTES:
            raise InputError(f"the diff is larger than {MAX_DIFF_BYTES // 1_000_000} MB", field="--git",
                             hint="commit or ignore large untracked files, or name a smaller range")
        parts.append(extra)
    if len(untracked) > MAX_UNTRACKED:
        warnings.append(f"{len(untracked) - MAX_UNTRACKED} untracked files not read (first {MAX_UNTRACKED} were)")
    if len(untracked):
        origin += f" (with {min(len(untracked), MAX_UNTRACKED)} untracked files)"
    text_parts = []
    if branch and branch != "HEAD":
        words = " ".join(w for w in re.split(r"[/_.\-]+", branch) if w)
        text_parts.append(f"Branch {branch} ({words}).")
    if log_range:
        messages = _text(root, ["log", "--no-color", "--format=%B", "--max-count=200", log_range],
                         limit=MAX_MESSAGE_BYTES * 4)
        if messages:
            text_parts.append(messages[:MAX_MESSAGE_BYTES])
    return GitChange(root=root, diff=b"".join(parts).decode("utf-8", "replace"), text="\n".join(text_parts),
                     origin=origin, old_rev=old_rev, new_rev=new_rev, warnings=warnings)

