"""Read a unified diff into files, hunks and changed lines, refusing what is not one.

This is the format-only half of understanding a change: it knows the unified
diff grammar (``diff --git`` / ``---`` / ``+++`` headers, ``@@`` hunks) and
nothing about NGINX, HAProxy or code. poetkb reads a diff and never applies
it, so a hunk whose line counts no longer match its lines (a diff edited by
hand) is read as it stands, with a warning naming the hunk's line. Input that
is not a diff at all (no hunks), binary data, or a binary patch (unless the
caller skips binary files, as ``poet rank --git`` does) is an
:class:`~poetkb.errors.InputError` naming the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from poetkb.errors import InputError

MAX_DIFF_BYTES = 5_000_000

_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
_BINARY_MARKERS = ("GIT binary patch", "Binary files ")


@dataclass
class DiffLine:
    """One added (``+``) or removed (``-``) line, with its line number in the new or old file."""

    sign: str
    text: str
    line: int


@dataclass
class FileDiff:
    """The changes to one file: its paths, status and the changed lines of every hunk."""

    old_path: str | None
    new_path: str | None
    lines: list[DiffLine] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    binary: bool = False

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or "?"

    @property
    def status(self) -> Literal["modified", "added", "deleted", "renamed"]:
        if self.old_path is None:
            return "added"
        if self.new_path is None:
            return "deleted"
        if self.old_path != self.new_path:
            return "renamed"
        return "modified"


def looks_like_diff(text: str) -> bool:
    """True when ``text`` has the shape of a unified diff (used to accept a diff passed as --change)."""
    return bool(re.search(r"^(diff --git |--- \S|@@ -\d)", text, re.M)) and bool(re.search(r"^@@ -\d", text, re.M))


def _strip_path(raw: str) -> str | None:
    path = raw.split("\t", 1)[0].strip()
    if path.startswith('"') and path.endswith('"') and len(path) >= 2:
        path = path[1:-1]
    if path == "/dev/null":
        return None
    if len(path) > 2 and path[1] == "/" and path[0] in "abciow":
        path = path[2:]
    return path


def _is_header(lines: list[str], index: int) -> bool:
    raw = lines[index]
    return raw.startswith(("diff --git ", "@@ ")) or (
        raw.startswith("--- ") and index + 1 < len(lines) and lines[index + 1].startswith("+++ "))


def parse_unified_diff(text: str, *, name: str = "diff", warnings: list[str] | None = None,
                       skip_binary: bool = False) -> list[FileDiff]:
    """Parse a unified diff; raise InputError (with ``name`` and the line) when it is binary or not a diff.

    Hunks whose counts do not add up are read leniently; a sentence naming the
    line is appended to ``warnings``. ``skip_binary`` records a binary file as
    changed (``binary=True``, no lines) instead of refusing the diff.
    """
    warnings = warnings if warnings is not None else []
    if len(text.encode("utf-8", "surrogatepass")) > MAX_DIFF_BYTES:
        raise InputError(
            f"the diff is larger than {MAX_DIFF_BYTES // 1_000_000} MB",
            file=name,
            hint="rank one change at a time: pass the diff of a single commit or pull request",
        )
    if "\x00" in text:
        raise InputError("the diff holds binary data (NUL bytes)", file=name,
                         hint="pass a text unified diff, e.g. `git diff --no-ext-diff > change.diff`")
    lines = text.splitlines()
    files: list[FileDiff] = []
    current: FileDiff | None = None
    pending_old: str | None | bool = False  # False: no '---' seen for the next file
    index = 0
    saw_hunk = False
    git_path: str | None = None
    while index < len(lines):
        number = index + 1
        raw = lines[index]
        if raw.startswith(_BINARY_MARKERS) and skip_binary:
            parts = re.match(r"Binary files (.+?) and (.+?) differ", raw)
            if parts:
                old, new = _strip_path(parts.group(1)), _strip_path(parts.group(2))
            else:
                old = new = git_path
            files.append(FileDiff(old_path=old, new_path=new, binary=True))
            saw_hunk = True  # a binary file is a change, read as such (without lines)
            index += 1
            while index < len(lines) and not lines[index].startswith("diff --git "):
                index += 1
            continue
        if raw.startswith(_BINARY_MARKERS):
            raise InputError(
                "the diff changes a binary file; poetkb ranks text changes only",
                file=name, line=number,
                hint="leave binary files out of the diff (`git diff -- '*.conf' '*.py'`)",
            )
        if raw.startswith("diff --git "):
            current = None
            pending_old = False
            git_path = _strip_path(raw.rsplit(" ", 1)[-1])
        elif raw.startswith("--- ") and index + 1 < len(lines) and lines[index + 1].startswith("+++ "):
            pending_old = _strip_path(raw[4:])
        elif raw.startswith("+++ ") and pending_old is not False:
            current = FileDiff(old_path=pending_old if isinstance(pending_old, str) else None,
                               new_path=_strip_path(raw[4:]))
            files.append(current)
            pending_old = False
        elif raw.startswith("@@"):
            match = _HUNK_RE.match(raw)
            if match is None:
                raise InputError(f"malformed hunk header {raw[:60]!r}", file=name, line=number,
                                 hint="a hunk header looks like `@@ -12,7 +12,8 @@`")
            if current is None:
                raise InputError("hunk before any file header", file=name, line=number,
                                 hint="a unified diff names each file with `--- a/path` and `+++ b/path` lines")
            saw_hunk = True
            index = _read_hunk(lines, index, match, current, name, warnings)
            continue
        index += 1
    if not saw_hunk:
        raise InputError(
            "not a unified diff: no `--- a/file` / `+++ b/file` headers followed by `@@` hunks",
            file=name,
            hint="produce one with `git diff` or `diff -u old new`; describe the change in words with --change",
        )
    return files


def _read_hunk(lines: list[str], start: int, match: re.Match[str], current: FileDiff, name: str,
               warnings: list[str]) -> int:
    """Read one hunk starting at ``start``; return the index of the first line after it.

    The counts in the header say where the hunk ends; when they are wrong (too
    large: the next header or a line that is not a hunk line ends it; too small:
    the ``+``/``-``/context lines that follow still belong to it) the hunk is read
    as it stands and a warning names the header's line.
    """
    old_line, old_count = int(match.group(1)), int(match.group(2) or 1)
    new_line, new_count = int(match.group(3)), int(match.group(4) or 1)
    section = match.group(5).strip()
    if section:
        current.sections.append(section)
    header_number = start + 1
    want_old, want_new = old_count, new_count
    index = start + 1
    while index < len(lines):
        if want_old <= 0 and want_new <= 0:
            nxt = lines[index]
            if not nxt.startswith(("+", "-")) or _is_header(lines, index) or nxt.startswith(("--- ", "+++ ")):
                break  # the promised lines are read; only unpromised +/- lines would continue the hunk
        elif _is_header(lines, index):
            break
        raw = lines[index]
        if raw.startswith("\\"):  # "\ No newline at end of file"
            index += 1
            continue
        sign, body = (raw[:1], raw[1:]) if raw else (" ", "")
        if sign == " ":
            want_old -= 1
            want_new -= 1
            old_line += 1
            new_line += 1
        elif sign == "-":
            current.lines.append(DiffLine("-", body, old_line))
            want_old -= 1
            old_line += 1
        elif sign == "+":
            current.lines.append(DiffLine("+", body, new_line))
            want_new -= 1
            new_line += 1
        else:
            break
        index += 1
    if want_old != 0 or want_new != 0:
        got_old, got_new = old_count - want_old, new_count - want_new
        warnings.append(
            f"{name}:{header_number}: hunk for {current.path} promises {old_count} old and {new_count} new lines "
            f"but holds {got_old} and {got_new}; read as it stands (edited by hand?)"
        )
    while index < len(lines) and lines[index].startswith("\\"):
        index += 1
    return index
