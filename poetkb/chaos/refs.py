"""``${...}`` references in step fields: configuration, the running demo, and outputs of earlier steps.

A string that is exactly one reference takes the referenced value's type (``"${first.status}"`` is the
integer 200); a reference inside a longer string is formatted as text. A reference to a step that has
not produced an output yet, or to a field it does not have, is an error of that step, never an empty
string, so a mistyped name cannot silently send a request to the wrong place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from poetkb.errors import PoetError

REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*)\}")
#: how deep a substitution walks into nested lists and mappings
MAX_DEPTH = 12


class ReferenceError_(PoetError, LookupError):  # noqa: N801 - keeps clear of the builtin ReferenceError
    """A ``${...}`` reference that names nothing known."""


def names_in(value: Any) -> set[str]:
    """The first segment of every reference in ``value`` (walked recursively)."""
    found: set[str] = set()
    _walk(value, lambda text: found.update(m.group(1).split(".")[0] for m in REF.finditer(text)), 0)
    return found


def _walk(value: Any, visit: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(value, str):
        visit(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _walk(item, visit, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk(item, visit, depth + 1)


def lookup(path: str, scope: Mapping[str, Any]) -> Any:
    """The value at dotted ``path`` in ``scope`` (list items by index); :class:`ReferenceError_` otherwise."""
    head, *rest = path.split(".")
    if head == "demo" and head not in scope:
        raise ReferenceError_(f"${{{path}}}: the demo edge is not running", hint="start it with `poet demo up`")
    if head == "service" and head not in scope:
        raise ReferenceError_(f"${{{path}}}: the service tier is not running",
                              hint="start it with `poet demo up --tier service`")
    if head not in scope:
        raise ReferenceError_(f"${{{path}}}: nothing called {head!r} has produced an output yet",
                              hint="reference a probe or action that runs earlier, or config.KEY / demo.FIELD")
    node = scope[head]
    for part in rest:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            keys = ", ".join(sorted(map(str, node))[:12]) if isinstance(node, Mapping) else type(node).__name__
            raise ReferenceError_(f"${{{path}}}: no field {part!r} (available: {keys})")
    return node


def substitute(value: Any, scope: Mapping[str, Any], depth: int = 0) -> Any:
    """``value`` with every reference replaced from ``scope`` (see the module docstring)."""
    if depth > MAX_DEPTH:
        return value
    if isinstance(value, str):
        whole = REF.fullmatch(value)
        if whole:
            return lookup(whole.group(1), scope)
        return REF.sub(lambda m: _text(lookup(m.group(1), scope)), value)
    if isinstance(value, Mapping):
        return {k: substitute(v, scope, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, scope, depth + 1) for v in value]
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, separators=(",", ":"))
    return str(value)
