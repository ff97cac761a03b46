"""Compare two versions of an NGINX or HAProxy file through the configuration model.

When both versions of a changed configuration file are at hand (``poet rank
--git`` reads them from the repository), each is parsed with
:mod:`poetkb.edgeconfig` and the directives are compared in their context
(``http > server > location /api``, ``backend app``): a directive whose value
changed, one added, one removed, each with the line it has in its file. Unlike
reading the diff's lines, this sees directives split over several lines, knows
which block a directive belongs to, and ignores moves and reformatting. When a
version does not parse (a fragment, a template), the caller falls back to the
line reader of :mod:`poetkb.rank.change`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

from pydantic import Field

from poetkb.errors import PoetError
from poetkb.models import PoetModel

#: HAProxy keywords whose first argument is part of the directive's name ("timeout server", "option redispatch")
_HAPROXY_COMPOUND = {"option", "timeout", "http-request", "http-response", "tcp-request", "tcp-response",
                     "http-check", "tcp-check", "stick", "http-after-response", "errorfile"}

_PAIR_BY_FIRST_ARG = {"proxy_set_header", "add_header", "server", "location", "set", "map", "limit_req_zone",
                      "proxy_cache_path", "upstream", "error_page", "log_format", "http-request", "http-response",
                      "acl", "use_backend", "bind", "default-server", "stick-table", "timeout", "option"}

class DirectiveChange(PoetModel):
    """A proxy configuration directive the diff added, removed or changed."""

    component: Literal["nginx", "haproxy"]
    name: str
    action: Literal["added", "removed", "changed"]
    old: str | None = None
    new: str | None = None
    file: str
    line: int
    #: the enclosing blocks, outside in (``["http", "server", "location /api"]``), when read through the model
    context: list[str] = Field(default_factory=list)

    def describe(self) -> str:
        where = f"{self.file}:{self.line}" + (f" in {' > '.join(self.context)}" if self.context else "")
        if self.action == "changed":
            return f"{self.name} changed from {self.old!r} to {self.new!r} ({where})"
        value = self.new if self.action == "added" else self.old
        shown = f" {value!r}" if value else ""
        return f"{self.name}{shown} {self.action} ({where})"


Entry = tuple[str, str, int]  # (name, value, line)


def _entries(text: str, proxy: Literal["nginx", "haproxy"], display: str) -> dict[tuple[str, ...], list[Entry]]:
    from poetkb.edgeconfig import parse_text

    config = parse_text(text, proxy, display=display)
    out: dict[tuple[str, ...], list[Entry]] = defaultdict(list)
    for d in config.walk():
        if proxy == "haproxy" and d.name in _HAPROXY_COMPOUND and d.args:
            name, value = f"{d.name} {d.args[0]}", " ".join(d.args[1:])
        elif proxy == "haproxy" and d.name == "no" and d.args:
            name, value = f"no {d.keyword(3)[3:]}", ""
        else:
            name, value = d.name, " ".join(d.args)
        first = value.split(None, 1)[0] if value and name in _PAIR_BY_FIRST_ARG else ""
        out[(*d.context, name, first)].append((name, value, d.line))
    return out


def compare(old: str | None, new: str | None, proxy: Literal["nginx", "haproxy"], path: str
            ) -> list[DirectiveChange] | None:
    """Directive changes between two versions of one file; None when either version does not parse."""
    try:
        before = _entries(old, proxy, path) if old else {}
        after = _entries(new, proxy, path) if new else {}
    except (PoetError, ValueError, RecursionError):
        return None
    changes: list[DirectiveChange] = []
    for key in sorted(set(before) | set(after)):
        context = list(key[:-2])
        olds = [e for e in before.get(key, []) if e[1] not in [a[1] for a in after.get(key, [])]]
        news = [e for e in after.get(key, []) if e[1] not in [b[1] for b in before.get(key, [])]]
        for (name, old_value, old_line), pair in zip(olds, news + [None] * len(olds), strict=False):
            if pair is not None:
                changes.append(DirectiveChange(component=proxy, name=name, action="changed", old=old_value,
                                               new=pair[1], file=path, line=pair[2], context=context))
            else:
                changes.append(DirectiveChange(component=proxy, name=name, action="removed", old=old_value,
                                               file=path, line=old_line, context=context))
        for name, value, line in news[len(olds):]:
            changes.append(DirectiveChange(component=proxy, name=name, action="added", new=value, file=path,
                                           line=line, context=context))
    changes.sort(key=lambda c: (c.file, c.line, c.name))
    return changes
