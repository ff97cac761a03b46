"""Understand a change: free text, or a unified diff of NGINX, HAProxy or code files.

:func:`understand` turns what a release owner hands poetkb (a sentence such as
"switch the cache key to include Accept-Language", a ``git diff``, or both)
into a :class:`ChangeSummary`: which files changed and what they are, which
proxy directives were added, removed or changed (with old and new values),
which identifiers and imports the code touched, and the words of the
description. Ranking works only from this summary, and the summary is shown to
the user, so "what poetkb understood" is always visible.

Bad input is refused here with an :class:`~poetkb.errors.InputError`: an empty
change, a binary or malformed diff, or a diff that is not UTF-8 text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Literal

from pydantic import Field, PrivateAttr

from poetkb.errors import InputError
from poetkb.models import PoetModel
from poetkb.rank.configdiff import _HAPROXY_COMPOUND, _PAIR_BY_FIRST_ARG, DirectiveChange
from poetkb.rank.deps import DependencyBump, bumps, is_manifest
from poetkb.rank.diff import MAX_DIFF_BYTES, DiffLine, FileDiff, looks_like_diff, parse_unified_diff
from poetkb.rank.migration import MigrationStatement, is_migration, read_statements
from poetkb.rank.pycode import WORDS as SIGNAL_WORDS
from poetkb.rank.pycode import CodeSignal
from poetkb.text import CODE_NOISE

#: gives the old and new text of a changed file (None where it does not exist), when the caller has them
Contents = Callable[[FileDiff], tuple[str | None, str | None]]

FileKind = Literal["nginx", "haproxy", "code", "config", "docs", "other"]

MAX_IDENTIFIERS = 80

_CODE_EXT = {
    ".py": "python", ".go": "go", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".jsx": "javascript", ".java": "java", ".kt": "kotlin",
    ".rb": "ruby", ".rs": "rust", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp",
    ".cs": "csharp", ".php": "php", ".scala": "scala", ".sql": "sql", ".sh": "shell", ".lua": "lua",
    ".ex": "elixir", ".exs": "elixir", ".swift": "swift",
}
_CONFIG_EXT = {".yaml", ".yml", ".json", ".toml", ".ini", ".env", ".properties", ".tf", ".hcl"}
_DOCS_EXT = {".md", ".rst", ".txt", ".adoc"}

_NGINX_HINTS = re.compile(
    r"^\s*(proxy_pass|proxy_\w+|upstream\s+\S+\s*\{|server\s*\{|location\s|listen\s+\d|server_name\s|"
    r"fastcgi_\w+|add_header\s|limit_req\w*|keepalive\w*|ssl_\w+|access_log\s|error_page\s|worker_\w+)",
    re.M,
)
_HAPROXY_HINTS = re.compile(
    r"^\s*(frontend\s|backend\s|listen\s|defaults\b|balance\s|default_backend\s|use_backend\s|bind\s+\S*:\d|"
    r"option\s|timeout\s+(client|server|connect|queue|http-request|tunnel)|retries\s|server\s+\S+\s+\S+:\d)",
    re.M,
)
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NGINX_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_HAPROXY_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]*$")





class ChangedFile(PoetModel):
    """One file a diff touched and what kind of file poetkb took it for."""

    path: str
    kind: FileKind
    language: str | None = None
    status: Literal["modified", "added", "deleted", "renamed"] = "modified"
    added: int = 0
    removed: int = 0


class ChangeSummary(PoetModel):
    """What poetkb understood of a change; ranking works from this and nothing else."""

    text: str = ""
    source: Literal["text", "diff", "text+diff"]
    components: list[str] = Field(default_factory=list)
    files: list[ChangedFile] = Field(default_factory=list)
    directives: list[DirectiveChange] = Field(default_factory=list)
    identifiers: list[str] = Field(default_factory=list)
    imports: list[str] = Field(default_factory=list)
    terms: list[str] = Field(default_factory=list)
    #: functions and methods whose lines the change touched (Python, read from the syntax tree)
    functions: list[str] = Field(default_factory=list)
    #: retries, timeouts, caches, auth and SQL calls in the touched functions
    code_signals: list[CodeSignal] = Field(default_factory=list)
    #: schema and data statements a migration adds, with their lock level and compatibility
    migrations: list[MigrationStatement] = Field(default_factory=list)
    dependencies: list[DependencyBump] = Field(default_factory=list)
    #: what was read leniently (a hunk whose counts do not add up, a binary file skipped), naming the line
    warnings: list[str] = Field(default_factory=list)
    #: where the change was read from, when not handed in (``git diff main...HEAD``)
    origin: str = ""
    _changed_lines: str = PrivateAttr(default="")

    @property
    def changed_lines(self) -> str:
        """The added and removed lines of the diff (what keyword rules search besides the description)."""
        return self._changed_lines

    def describe(self) -> list[str]:
        """Sentences saying what was understood, for people."""
        out: list[str] = []
        if self.origin:
            out.append(f"Read from {self.origin}")
        if self.text:
            out.append(f"Description: {self.text}")
        if self.files:
            kinds = Counter(f.kind for f in self.files)
            parts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
            out.append(f"Diff of {len(self.files)} file{'s' if len(self.files) != 1 else ''} ({parts}): "
                       + ", ".join(f.path for f in self.files[:8]) + (" ..." if len(self.files) > 8 else ""))
        for directive in self.directives[:20]:
            out.append(f"Directive {directive.describe()}")
        if len(self.directives) > 20:
            out.append(f"... and {len(self.directives) - 20} more directive changes")
        if self.functions:
            out.append(f"Functions touched: {', '.join(self.functions[:15])}")
        for signal in self.code_signals[:12]:
            out.append(f"Code: {signal.describe()}")
        for statement in self.migrations[:12]:
            out.append(f"Migration: {statement.describe()}")
        for bump in self.dependencies[:12]:
            out.append(f"Dependency: {bump.describe()}")
        if self.imports:
            out.append(f"Imports touched: {', '.join(self.imports[:15])}")
        if self.identifiers:
            out.append(f"Identifiers touched: {', '.join(self.identifiers[:25])}")
        if self.components:
            out.append(f"Components: {', '.join(self.components)}")
        if self.terms and not self.text:
            out.append(f"Words: {', '.join(self.terms[:25])}")
        return out

    def query_text(self) -> str:
        """The text a similarity model compares with the catalog: description, directives, code words."""
        parts = [self.text]
        for d in self.directives:
            parts.append(f"{d.name} {d.old or ''} {d.new or ''}")
        parts.extend(self.imports)
        parts.extend(self.identifiers)
        parts.extend(self.signal_words())
        parts.extend(Path(f.path).stem for f in self.files)
        parts.extend(self.terms if not self.text else [])
        return " ".join(p for p in parts if p)


    def signal_words(self) -> list[str]:
        """Words for what the syntax tree, the migrations and the manifests showed (once per kind)."""
        out = [SIGNAL_WORDS[k] for k in dict.fromkeys(s.kind for s in self.code_signals)]
        out.extend(dict.fromkeys(m.words() for m in self.migrations))
        if self.dependencies:
            out.append("dependency upgrade library version " + " ".join(b.name for b in self.dependencies[:10]))
        return out


def read_diff_file(path: Path | str) -> tuple[str, str]:
    """Read a diff file (``-`` is not handled here); return (text, display name) or raise InputError.

    Only a regular file is read, and its size is checked against
    :data:`~poetkb.rank.diff.MAX_DIFF_BYTES` before reading (``/dev/zero`` or a
    FIFO is refused at once); use :func:`read_diff_stream` for standard input.
    """
    from poetkb import safefile

    shown = str(path)
    target = Path(path)
    if not target.exists() and not target.is_symlink():
        raise InputError("no such diff file", file=shown, hint="pass the path of a unified diff")
    try:
        data = safefile.read_bytes(target, limit=MAX_DIFF_BYTES, display=shown)
    except InputError as exc:
        raise InputError(_strip_file(exc), file=shown,
                         hint="pass a unified diff saved to a file, or feed it on standard input with --diff -"
                         ) from exc
    return decode_diff(data, shown), shown


def read_diff_stream(stream: BinaryIO, name: str = "<stdin>") -> str:
    """Read a diff from a stream (standard input), at most MAX_DIFF_BYTES: an endless stream is refused."""
    data = stream.read(MAX_DIFF_BYTES + 1)
    if len(data) > MAX_DIFF_BYTES:
        raise InputError(f"the diff is larger than {MAX_DIFF_BYTES // 1_000_000} MB", file=name,
                         hint="rank one change at a time: pass the diff of a single commit or pull request")
    return decode_diff(data, name)


def _strip_file(exc: InputError) -> str:
    prefix = f"{exc.file}: " if exc.file else ""
    return exc.message[len(prefix):] if prefix and exc.message.startswith(prefix) else exc.message


def decode_diff(data: bytes, name: str) -> str:
    """Decode diff bytes as UTF-8 text, refusing binary data with a message naming ``name``."""
    if b"\x00" in data:
        raise InputError("the diff holds binary data (NUL bytes)", file=name,
                         hint="pass a text unified diff, e.g. `git diff --no-ext-diff > change.diff`")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError("the diff is not UTF-8 text", file=name, line=line,
                         hint="save it as UTF-8, or leave binary files out of the diff") from exc


def understand(
    text: str | None = None,
    diff: str | None = None,
    *,
    diff_name: str = "diff",
    component: str | None = None,
    contents: Contents | None = None,
    skip_binary: bool = False,
) -> ChangeSummary:
    """Build a :class:`ChangeSummary` from a description and/or a unified diff.

    A description that is itself a unified diff is read as one. ``component``
    (already validated by the caller) is recorded as the change's component.
    ``contents`` (``poet rank --git`` gives it) returns both versions of a changed
    file: configuration is then compared through the configuration model and
    Python through its syntax tree. ``skip_binary`` records binary files instead
    of refusing the diff.
    """
    text = (text or "").strip()
    diff = diff or ""
    if text and not diff.strip() and looks_like_diff(text):
        text, diff, diff_name = "", text, "--change"
    if not text and not diff.strip():
        raise InputError(
            "the change is empty",
            field="change",
            hint="describe it with --change 'switch the cache key to include Accept-Language', or pass --diff FILE",
        )
    if "\x00" in text:
        raise InputError("the change description holds binary data (NUL bytes)", field="change")
    files: list[ChangedFile] = []
    directives: list[DirectiveChange] = []
    identifiers: Counter[str] = Counter()
    imports: dict[str, None] = {}
    diff_words: list[str] = []
    components: dict[str, None] = {}
    warnings: list[str] = []
    functions: dict[str, None] = {}
    signals: list[CodeSignal] = []
    migrations: list[MigrationStatement] = []
    dependencies: list[DependencyBump] = []
    parsed = (parse_unified_diff(diff, name=diff_name, warnings=warnings, skip_binary=skip_binary)
              if diff.strip() else [])
    for file_diff in parsed:
        kind, language = ("other", None) if file_diff.binary else classify(file_diff)
        files.append(ChangedFile(
            path=file_diff.path, kind=kind, language=language, status=file_diff.status,
            added=sum(1 for ln in file_diff.lines if ln.sign == "+"),
            removed=sum(1 for ln in file_diff.lines if ln.sign == "-"),
        ))
        if file_diff.binary:
            warnings.append(f"{file_diff.path}: a binary file; only its name is read")
            continue
        old_new = contents(file_diff) if contents is not None and kind in ("nginx", "haproxy", "code") else None
        if is_migration(file_diff.path):
            migrations.extend(_migration_statements(file_diff, old_new))
        if is_manifest(file_diff.path):
            dependencies.extend(bumps(file_diff.lines, file_diff.path))
        if language == "python" and old_new is not None:
            for side, code in (("-", old_new[0]), ("+", old_new[1])):
                lines = [ln.line for ln in file_diff.lines if ln.sign == side]
                if code and lines:
                    names: list[str] = []
                    signals.extend(_python_signals(code, file_diff.path, lines, names))
                    functions.update(dict.fromkeys(names))
        if kind in ("nginx", "haproxy"):
            components[kind] = None
            modelled = None
            if old_new is not None:
                from poetkb.rank.configdiff import compare

                modelled = compare(old_new[0], old_new[1], kind, file_diff.path)
                if modelled is None:
                    warnings.append(f"{file_diff.path}: does not parse as {kind} configuration; read line by line")
            directives.extend(modelled if modelled is not None else directive_changes(file_diff, kind))
        elif kind in ("code", "config", "other"):
            for ident in code_identifiers(file_diff.lines):
                identifiers[ident] += 1
            for name in code_imports(file_diff.lines, language):
                imports[name] = None
        else:
            diff_words.extend(ln.text for ln in file_diff.lines)
    if component:
        components = {component: None, **components}
    ranked_idents = [name for name, _ in sorted(identifiers.items(), key=lambda kv: (-kv[1], kv[0].lower()))]
    terms = content_words(" ".join([text, *diff_words]))
    source: Literal["text", "diff", "text+diff"] = (
        "text+diff" if text and diff.strip() else ("diff" if diff.strip() else "text")
    )
    summary = ChangeSummary(
        text=text,
        source=source,
        components=list(components),
        files=files,
        directives=directives,
        identifiers=ranked_idents[:MAX_IDENTIFIERS],
        imports=sorted(imports)[:40],
        terms=terms[:60],
        functions=list(functions)[:40],
        code_signals=_unique_signals(signals),
        migrations=migrations[:200],
        dependencies=dependencies[:100],
        warnings=warnings[:50],
    )
    summary._changed_lines = "\n".join([*(ln.text for fd in parsed for ln in fd.lines), *summary.signal_words()])
    return summary


def _python_signals(text: str, path: str, lines: list[int], names: list[str]) -> list[CodeSignal]:
    from poetkb.rank.pycode import signals

    return signals(text, path, lines, function_names=names)


def _unique_signals(found: list[CodeSignal]) -> list[CodeSignal]:
    seen: dict[tuple[str, str, str, str], CodeSignal] = {}
    for s in found:
        seen.setdefault((s.file, s.function, s.kind, s.detail), s)
    return sorted(seen.values(), key=lambda s: (s.file, s.line, s.kind, s.detail))[:60]


def _migration_statements(file_diff: FileDiff, old_new: tuple[str | None, str | None] | None
                          ) -> list[MigrationStatement]:
    """Statements of the added lines (runs of consecutive added lines, each read with its first line number)."""
    if old_new is not None and old_new[1] and file_diff.status == "added":
        return read_statements(old_new[1], file_diff.path)
    out: list[MigrationStatement] = []
    run: list[DiffLine] = []
    for ln in [*file_diff.lines, None]:
        if ln is not None and ln.sign == "+" and (not run or ln.line == run[-1].line + 1):
            run.append(ln)
            continue
        if run:
            out.extend(read_statements("\n".join(r.text for r in run), file_diff.path, run[0].line))
        run = [ln] if ln is not None and ln.sign == "+" else []
    return out


def classify(file_diff: FileDiff) -> tuple[FileKind, str | None]:
    """Decide whether a changed file is NGINX or HAProxy configuration, code, other config, or docs."""
    path = file_diff.path
    lower = path.lower()
    suffix = Path(lower).suffix
    body = "\n".join(ln.text for ln in file_diff.lines)
    if suffix in _CODE_EXT:
        return "code", _CODE_EXT[suffix]
    if "haproxy" in lower or suffix == ".cfg" and _HAPROXY_HINTS.search(body):
        return "haproxy", None
    if "nginx" in lower or "sites-available" in lower or "sites-enabled" in lower:
        return "nginx", None
    nginx_hits = len(_NGINX_HINTS.findall(body))
    haproxy_hits = len(_HAPROXY_HINTS.findall(body))
    if suffix in {".conf", ".cfg", ""} or suffix not in _CONFIG_EXT | _DOCS_EXT:
        if nginx_hits and nginx_hits >= haproxy_hits and re.search(r"[;{]\s*(#.*)?$", body, re.M):
            return "nginx", None
        if haproxy_hits:
            return "haproxy", None
    if suffix in _DOCS_EXT:
        return "docs", None
    if suffix in _CONFIG_EXT:
        return "config", suffix.lstrip(".")
    return "other", None


def _strip_comment(line: str) -> str:
    quote: str | None = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[:index]
    return line


def _nginx_statements(text: str) -> list[tuple[str, str]]:
    """(name, value) pairs of the NGINX statements and block openers on one line."""
    out = []
    body = _strip_comment(text).strip()
    for chunk in re.split(r"[;{}]", body):
        words = chunk.strip().split(None, 1)
        if not words or not _NGINX_NAME_RE.match(words[0]):
            continue
        out.append((words[0], words[1].strip() if len(words) > 1 else ""))
    return out


def _haproxy_statement(text: str) -> tuple[str, str] | None:
    """(name, value) of one HAProxy configuration line; compound keywords keep their first argument."""
    words = _strip_comment(text).split()
    if not words:
        return None
    prefix = ""
    if words[0] == "no" and len(words) > 1:
        prefix, words = "no ", words[1:]
    if not _HAPROXY_NAME_RE.match(words[0]):
        return None
    if words[0] in _HAPROXY_COMPOUND and len(words) > 1:
        return f"{prefix}{words[0]} {words[1]}", " ".join(words[2:])
    return f"{prefix}{words[0]}", " ".join(words[1:])


def directive_changes(file_diff: FileDiff, component: Literal["nginx", "haproxy"]) -> list[DirectiveChange]:
    """Directives added, removed or changed in one configuration file's diff.

    A removed and an added statement with the same name (and, for directives
    that repeat, the same first argument) pair up as one change with old and
    new values.
    """
    removed: list[tuple[str, str, int]] = []
    added: list[tuple[str, str, int]] = []
    for changed in file_diff.lines:
        if component == "nginx":
            statements = _nginx_statements(changed.text)
        else:
            one = _haproxy_statement(changed.text)
            statements = [one] if one else []
        for name, value in statements:
            (added if changed.sign == "+" else removed).append((name, value, changed.line))
    changes: list[DirectiveChange] = []
    unmatched_added = list(added)

    def key(name: str, value: str) -> tuple[str, str]:
        first = value.split(None, 1)[0] if value and name in _PAIR_BY_FIRST_ARG else ""
        return name, first

    for name, value, line in removed:
        partner = next((a for a in unmatched_added if key(*a[:2]) == key(name, value)), None)
        if partner is None:
            partner = next((a for a in unmatched_added if a[0] == name and name not in _PAIR_BY_FIRST_ARG), None)
        if partner is not None:
            unmatched_added.remove(partner)
            if partner[1] == value:
                continue  # moved, not changed
            changes.append(DirectiveChange(component=component, name=name, action="changed", old=value,
                                           new=partner[1], file=file_diff.path, line=partner[2]))
        else:
            changes.append(DirectiveChange(component=component, name=name, action="removed", old=value,
                                           file=file_diff.path, line=line))
    for name, value, line in unmatched_added:
        changes.append(DirectiveChange(component=component, name=name, action="added", new=value,
                                       file=file_diff.path, line=line))
    changes.sort(key=lambda c: (c.file, c.line, c.name))
    return changes


def code_identifiers(lines: list[DiffLine]) -> list[str]:
    """Identifiers on the changed lines of a code or config file, without language keywords."""
    found = []
    for line in lines:
        for ident in _IDENT_RE.findall(line.text):
            if len(ident) < 3 or ident.lower() in CODE_NOISE:
                continue
            found.append(ident)
    return found


_IMPORT_PATTERNS = [
    re.compile(r"^\s*from\s+([\w.]+)\s+import\s+([\w., ()*]+)"),
    re.compile(r"^\s*import\s+([\w.]+(?:\s*,\s*[\w.]+)*)\s*$"),
    re.compile(r"""^\s*import\s+.*?\bfrom\s+['"]([^'"]+)['"]"""),
    re.compile(r"""require\(\s*['"]([^'"]+)['"]\s*\)"""),
    re.compile(r"""^\s*import\s+(?:\w+\s+)?"([^"]+)"\s*$"""),
    re.compile(r"""^\s*(?:\w+\s+)?"([\w.\-]+(?:/[\w.\-]+)+)"\s*$"""),
    re.compile(r"^\s*import\s+(?:static\s+)?([\w.]+)\s*;"),
    re.compile(r"^\s*use\s+([\w:]+)"),
]


def code_imports(lines: list[DiffLine], language: str | None) -> list[str]:
    """Modules the changed lines import (Python, JavaScript/TypeScript, Go, Java, Rust)."""
    found: list[str] = []
    for line in lines:
        for index, pattern in enumerate(_IMPORT_PATTERNS):
            if index == 5 and language != "go":
                continue
            match = pattern.search(line.text)
            if not match:
                continue
            if index == 0:
                found.append(match.group(1))
                found.extend(f"{match.group(1)}.{n.strip()}" for n in match.group(2).strip("() ").split(",")
                             if n.strip() and n.strip() != "*")
            elif index == 1:
                found.extend(n.strip() for n in match.group(1).split(","))
            else:
                found.append(match.group(1))
            break
    return found


def content_words(text: str) -> list[str]:
    """The meaningful words of a description, in order of first appearance, without filler."""
    seen: dict[str, None] = {}
    for word in re.findall(r"[A-Za-z][A-Za-z0-9_\-]*[A-Za-z0-9]|[A-Za-z]{2,}", text):
        lowered = word.lower()
        if lowered not in CODE_NOISE and len(lowered) > 2:
            seen.setdefault(lowered, None)
    return list(seen)
