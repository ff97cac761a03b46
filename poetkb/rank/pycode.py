"""Read a Python change from its syntax tree: the functions it touches and what they do that can fail.

A code diff's identifiers say little about risk; the calls in the functions it
touches say more. This module parses the old and the new file with :mod:`ast`
(static: nothing is imported or run), finds the functions and methods whose
lines the diff changed, and recognises in them, from the syntax tree, the calls
and arguments that reliability obligations are about: retries, timeouts,
caches, authentication and SQL. Each finding becomes a :class:`CodeSignal`
with its file, line and function, and words the ranking can match.
"""

from __future__ import annotations

import ast
import bisect
from collections.abc import Iterable
from typing import Literal

from poetkb.models import PoetModel

SignalKind = Literal["retry", "timeout", "cache", "auth", "sql", "pool", "idempotency"]

#: words for ranking, per kind, in the catalog's vocabulary
WORDS: dict[str, str] = {
    "retry": "retry retries backoff bounded retry budget idempotent",
    "timeout": "timeout deadline hung request enforced timeout",
    "cache": "cache cached ttl cache key stale",
    "auth": "auth authentication token jwt signature verify authorization",
    "sql": "sql database query transaction",
    "pool": "connection pool exhaustion",
    "idempotency": "idempotency key duplicate request",
}
_NAMES: dict[str, tuple[str, ...]] = {
    "retry": ("retry", "retrying", "backoff", "tenacity", "stamina", "max_retries", "retries", "Retry",
              "stop_after_attempt", "wait_exponential", "on_exception"),
    "timeout": ("timeout", "wait_for", "settimeout", "deadline", "Timeout", "ClientTimeout", "read_timeout",
                "connect_timeout", "statement_timeout"),
    "cache": ("cache", "lru_cache", "cached", "cachetools", "TTLCache", "setex", "cache_page", "memoize",
              "ttl", "expire", "max_age"),
    "auth": ("jwt", "decode", "verify", "authenticate", "authorization", "Authorization", "login", "token",
             "verify_signature", "audience", "issuer", "jwks", "oauth", "permission", "login_required"),
    "sql": ("sql", "execute", "executemany", "cursor", "query", "text", "select", "insert", "commit", "rollback",
            "transaction", "atomic", "raw"),
    "pool": ("pool_size", "max_overflow", "pool", "create_engine", "maxconn", "pool_timeout", "Pool"),
    "idempotency": ("idempotency_key", "idempotency", "Idempotency-Key", "dedupe", "dedup"),
}
#: names too common to count on their own: they count only with a second, specific name of the same kind
_WEAK = {"decode", "verify", "token", "query", "text", "select", "insert", "raw", "pool", "ttl",
         "expire", "commit", "execute"}
MAX_SIGNALS = 60


class CodeSignal(PoetModel):
    """A reliability-relevant construct in a function the change touches."""

    kind: SignalKind
    file: str
    line: int
    function: str
    detail: str

    def describe(self) -> str:
        return f"{self.kind} in {self.function} ({self.file}:{self.line}): {self.detail}"


def touched_functions(tree: ast.AST, lines: set[int]) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """The functions (nested ones too) whose span (decorators included) holds one of ``lines``.

    Only subtrees whose span holds a changed line are visited, so a large module costs little.
    """
    wanted = sorted(lines)

    def hit(start: int, end: int) -> bool:
        at = bisect.bisect_left(wanted, start)
        return at < len(wanted) and wanted[at] <= end

    found = []
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.stmt):
                continue
            decorators = getattr(child, "decorator_list", [])
            start = min([child.lineno, *(d.lineno for d in decorators)])
            if not hit(start, child.end_lineno or child.lineno):
                continue
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append(child)
            stack.append(child)
    return sorted(found, key=lambda f: f.lineno)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    return ""


_BY_NAME: dict[str, list[str]] = {}
for _kind, _names in _NAMES.items():
    for _name in _names:
        _BY_NAME.setdefault(_name.lower(), []).append(_kind)


def _kinds(name: str) -> list[str]:
    """The kinds a dotted name points at: by any of its parts (``max_retries`` -> retry), lower-cased."""
    parts = {p.lower() for p in name.replace(".", "_").split("_") if p}
    parts.add(name.rsplit(".", 1)[-1].lower())
    parts.add(name.lower())
    found: dict[str, None] = {}
    for part in parts:
        for kind in _BY_NAME.get(part, ()):
            found[kind] = None
    return sorted(found, key=list(_NAMES).index)


def _strong(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last not in _WEAK


def signals(source: str, file: str, lines: Iterable[int], *, function_names: list[str] | None = None
            ) -> list[CodeSignal]:
    """Signals in the functions of ``source`` that hold one of ``lines``; [] when it does not parse.

    ``function_names`` (when given) receives the qualified names of the touched functions.
    """
    try:
        tree = ast.parse(source, filename=file)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    wanted = set(lines)
    touched = touched_functions(tree, wanted)
    # module level lines (constants such as TIMEOUT = 5, decorators of classes) count as a scope of their own
    scopes: list[tuple[str, list[ast.AST]]] = [(f.name, [f]) for f in touched]
    covered = {n for f in touched for n in range(f.lineno, (f.end_lineno or f.lineno) + 1)}
    module_nodes: list[ast.AST] = [
        n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and any(n.lineno <= x <= (n.end_lineno or n.lineno) for x in wanted - covered)]
    if module_nodes:
        scopes.append(("<module>", module_nodes))
    if function_names is not None:
        function_names.extend(f.name for f in touched)
    found: dict[tuple[str, str, str], CodeSignal] = {}
    for scope, nodes in scopes:
        weak: dict[str, CodeSignal] = {}
        strong_kinds: set[str] = set()
        for root in nodes:
            for node in ast.walk(root):
                for name, line, detail in _names_in(node):
                    for kind in _kinds(name):
                        signal = CodeSignal(kind=kind, file=file, line=line, function=scope,  # type: ignore[arg-type]
                                            detail=detail)
                        if _strong(name):
                            strong_kinds.add(kind)
                            found.setdefault((scope, kind, detail), signal)
                        else:
                            weak.setdefault(kind, signal)
        for kind, signal in weak.items():
            if kind in strong_kinds or kind == "sql" and signal.detail.endswith(("execute()", "executemany()")):
                found.setdefault((scope, kind, signal.detail), signal)
    return sorted(found.values(), key=lambda s: (s.line, s.kind, s.detail))[:MAX_SIGNALS]


def _names_in(node: ast.AST) -> Iterable[tuple[str, int, str]]:
    """(name, line, detail) of the calls, keyword arguments, decorators and assignments in one node."""
    if isinstance(node, ast.Call):
        name = _dotted(node.func)
        if name:
            yield name, node.lineno, f"call {name}()"
        for kw in node.keywords:
            if kw.arg:
                yield kw.arg, node.lineno, f"argument {kw.arg}= to {name or 'a call'}"
        if name.rsplit(".", 1)[-1] in ("execute", "executemany", "text") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield "sql", node.lineno, f"SQL {' '.join(first.value.split())[:60]!r}"
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        for deco in node.decorator_list:
            name = _dotted(deco)
            if name:
                yield name, deco.lineno, f"decorator @{name}"
    elif isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            name = _dotted(target)
            if name:
                yield name, node.lineno, f"assignment {name}"
    elif isinstance(node, ast.ImportFrom) and node.module:
        yield node.module, node.lineno, f"import {node.module}"
    elif isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, node.lineno, f"import {alias.name}"
