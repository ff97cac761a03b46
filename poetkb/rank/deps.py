"""Read dependency bumps from a diff: which package moved from which version to which.

Requirement files (``requirements*.txt``, ``constraints*.txt``), ``pyproject.toml``,
``package.json``, ``go.mod``, ``Cargo.toml``, ``Gemfile`` and ``pom.xml`` lines are read
line by line from the diff: a removed and an added pin of the same package pair
up as a bump; a lone added or removed one is a new or dropped dependency.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Literal

from poetkb.models import PoetModel
from poetkb.rank.diff import DiffLine

_FILES = re.compile(r"(requirements[\w.-]*\.(txt|in)|constraints[\w.-]*\.txt|pyproject\.toml|package\.json|"
                    r"go\.mod|Cargo\.toml|Gemfile|pom\.xml|Pipfile|setup\.cfg|poetry\.lock|uv\.lock)$", re.I)
_PATTERNS = [
    re.compile(r"^\s*([A-Za-z0-9][\w.\-\[\],]*)\s*(==|>=|~=|<=|>|<|!=)\s*([\w.*+\-]+)"),  # pip
    re.compile(r"""^\s*["']([\w@/.\-]+)["']\s*:\s*["']([\^~><=]*)\s*([\w.\-+]+)["']"""),  # package.json
    re.compile(r"""^\s*["']([A-Za-z0-9][\w.\-\[\]]*)\s*(==|>=|~=|<=|>|<)\s*([\w.*+\-]+)"""),  # pyproject list
    re.compile(r"^\s*(?:require\s+)?([\w.\-]+/[\w./\-]+)\s+(v)?([\w.\-+]+)"),  # go.mod
    re.compile(r"""^\s*([\w\-]+)\s*=\s*(?:\{\s*version\s*=\s*)?["']([\^~=<>]*)([\w.\-+]+)["']"""),  # toml tables
]


class DependencyBump(PoetModel):
    """A dependency the change adds, removes or moves to another version."""

    name: str
    action: Literal["bumped", "added", "removed"]
    old: str | None = None
    new: str | None = None
    file: str
    line: int

    def describe(self) -> str:
        if self.action == "bumped":
            return f"{self.name} {self.old} -> {self.new} ({self.file}:{self.line})"
        return f"{self.name} {self.new or self.old} {self.action} ({self.file}:{self.line})"


def is_manifest(path: str) -> bool:
    return bool(_FILES.search(PurePosixPath(path).name))


def _pin(text: str) -> tuple[str, str] | None:
    for pattern in _PATTERNS:
        m = pattern.match(text)
        if m:
            name, version = m.group(1), m.group(3)
            if name.lower() in {"version", "name", "python", "description", "edition", "go", "module"}:
                return None
            return name.split("[", 1)[0].lower(), version
    return None


def bumps(lines: list[DiffLine], file: str) -> list[DependencyBump]:
    """The bumps, additions and removals a manifest's changed lines make."""
    removed: dict[str, tuple[str, int]] = {}
    added: dict[str, tuple[str, int]] = {}
    for changed in lines:
        pin = _pin(changed.text)
        if pin:
            (added if changed.sign == "+" else removed)[pin[0]] = (pin[1], changed.line)
    out = []
    for name, (new, line) in added.items():
        if name in removed:
            old = removed.pop(name)[0]
            if old != new:
                out.append(DependencyBump(name=name, action="bumped", old=old, new=new, file=file, line=line))
        else:
            out.append(DependencyBump(name=name, action="added", new=new, file=file, line=line))
    for name, (old, line) in removed.items():
        out.append(DependencyBump(name=name, action="removed", old=old, file=file, line=line))
    return sorted(out, key=lambda b: (b.line, b.name))
