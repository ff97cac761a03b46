"""Read NGINX and HAProxy configuration files into :class:`~poetkb.edgeconfig.model.EdgeConfig`."""

from __future__ import annotations

import glob
import re
import tempfile
from pathlib import Path
from typing import Any

from poetkb.edgeconfig.model import Directive, EdgeConfig, ProxyKind
from poetkb.errors import InputError
from poetkb.safefile import CATALOG_FILE_LIMIT, read_text

#: Bounds on what one configuration may pull in through ``include``.
MAX_INCLUDE_FILES = 256
MAX_INCLUDE_DEPTH = 16
MAX_CONFIG_BYTES = CATALOG_FILE_LIMIT
#: Blocks deeper than this are refused before parsing (real configurations stay below ten).
MAX_BLOCK_DEPTH = 64

#: HAProxy section keywords: a line starting with one opens a section.
HAPROXY_SECTIONS = frozenset({
    "global", "defaults", "frontend", "backend", "listen", "resolvers", "peers", "userlist", "cache",
    "http-errors", "program", "ring", "mailers", "crt-store", "traces", "log-forward", "fcgi-app",
})
_NGINX_HINT = re.compile(r"^\s*(http|events|server|location|upstream|proxy_pass|worker_processes)\b[^\n]*[{;]", re.M)
_HAPROXY_HINT = re.compile(r"^\s*(frontend|backend|listen|defaults|global)\b", re.M)


def infer_proxy(path: Path, text: str) -> ProxyKind:
    """NGINX or HAProxy, from the file name first, then from the content."""
    name = path.name.lower()
    if "haproxy" in name or name.endswith(".cfg"):
        return "haproxy"
    if "nginx" in name or name.endswith(".conf") and _NGINX_HINT.search(text):
        return "nginx"
    if _HAPROXY_HINT.search(text) and not _NGINX_HINT.search(text):
        return "haproxy"
    if _NGINX_HINT.search(text):
        return "nginx"
    raise InputError("cannot tell whether this is an NGINX or a HAProxy configuration", file=path,
                     hint="pass --proxy nginx or --proxy haproxy")


def load_config(path: str | Path, *, proxy: ProxyKind | None = None) -> EdgeConfig:
    """Parse the configuration at ``path`` (NGINX includes followed, bounded)."""
    main = Path(path)
    text = read_text(main, limit=MAX_CONFIG_BYTES)
    kind = proxy or infer_proxy(main, text)
    if kind == "haproxy":
        return EdgeConfig(proxy="haproxy", path=str(main), files=[str(main)],
                          directives=parse_haproxy(text, str(main)))
    reader = _NginxReader(main.parent)
    directives = reader.parse(text, str(main), context=[], stack=(str(main.resolve()),))
    return EdgeConfig(proxy="nginx", path=str(main), files=[str(main), *reader.included], directives=directives)


def parse_text(text: str, proxy: ProxyKind, *, display: str = "<text>") -> EdgeConfig:
    """Parse configuration text that is not on disk (a fragment, a rendered template); includes are not followed."""
    if proxy == "haproxy":
        return EdgeConfig(proxy=proxy, path=display, files=[display], directives=parse_haproxy(text, display))
    reader = _NginxReader(None)
    return EdgeConfig(proxy=proxy, path=display, files=[display],
                      directives=reader.parse(text, display, context=[], stack=(display,)))


# -- NGINX -----------------------------------------------------------------------------------------
class _NginxReader:
    """crossplane on each file (one at a time), with ``include`` resolved here so reads stay bounded."""

    def __init__(self, base: Path | None) -> None:
        self.base = base
        self.included: list[str] = []

    def parse(self, text: str, display: str, *, context: list[str], stack: tuple[str, ...]) -> list[Directive]:
        payload = _crossplane(text, display)
        return self._convert(payload, display, context, stack)

    def _convert(self, items: list[dict[str, Any]], display: str, context: list[str],
                 stack: tuple[str, ...]) -> list[Directive]:
        out: list[Directive] = []
        for item in items:
            name, args, line = item["directive"], [str(a) for a in item.get("args", [])], int(item.get("line") or 1)
            if name == "include" and self.base is not None and args:
                out.extend(self._include(args[0], display, line, context, stack))
                continue
            block = None
            if "block" in item:
                inner = [*context, " ".join([name, *args])]
                block = self._convert(item["block"], display, inner, stack)
            out.append(Directive(name=name, args=args, file=display, line=line, context=list(context), block=block))
        return out

    def _include(self, pattern: str, display: str, line: int, context: list[str],
                 stack: tuple[str, ...]) -> list[Directive]:
        assert self.base is not None
        if len(stack) > MAX_INCLUDE_DEPTH:
            raise InputError(f"includes nest deeper than {MAX_INCLUDE_DEPTH} levels", file=display, line=line)
        full = pattern if Path(pattern).is_absolute() else str(self.base / pattern)
        matches = sorted(glob.glob(full))
        if not matches and not glob.has_magic(pattern):
            raise InputError(f"included file {pattern!r} does not exist", file=display, line=line,
                             hint="fix the path, or parse the configuration where its includes are")
        out: list[Directive] = []
        for match in matches:
            real = str(Path(match).resolve())
            if real in stack:
                raise InputError(f"include loop through {match}", file=display, line=line)
            if len(self.included) >= MAX_INCLUDE_FILES:
                raise InputError(f"more than {MAX_INCLUDE_FILES} included files", file=display, line=line)
            self.included.append(match)
            text = read_text(Path(match), limit=MAX_CONFIG_BYTES)
            out.extend(self.parse(text, match, context=context, stack=(*stack, real)))
        return out


def _crossplane(text: str, display: str) -> list[dict[str, Any]]:
    """One file's directives as crossplane's payload, parsed from a private copy (no includes followed)."""
    import crossplane

    with tempfile.TemporaryDirectory(prefix="poet-edgeconfig-") as tmp:
        copy = Path(tmp) / "nginx.conf"
        copy.write_text(text, encoding="utf-8")
        _check_depth(crossplane, copy, display)
        result = crossplane.parse(str(copy), single=True, check_ctx=False, check_args=False)
    errors = result.get("errors") or []
    if errors:
        first = errors[0]
        message = str(first.get("error", "cannot parse")).replace(f" in {copy}", "").replace(str(copy), display)
        raise InputError(f"not a valid NGINX configuration: {message}", file=display, line=first.get("line"),
                         hint="`nginx -t` shows the same problem")
    config = result.get("config") or [{}]
    return list(config[0].get("parsed", []))


def _check_depth(crossplane: Any, copy: Path, display: str) -> None:
    """Refuse blocks nested deeper than MAX_BLOCK_DEPTH before crossplane recurses into them."""
    depth = 0
    try:
        for token, line, quoted in crossplane.lex(str(copy)):
            if quoted:
                continue
            depth += 1 if token == "{" else -1 if token == "}" else 0
            if depth > MAX_BLOCK_DEPTH:
                raise InputError(f"blocks nest deeper than {MAX_BLOCK_DEPTH} levels", file=display, line=line)
    except crossplane.errors.NgxParserBaseException:
        return  # a syntax error: the parser reports it with its line


# -- HAProxy ---------------------------------------------------------------------------------------
def haproxy_words(line: str) -> list[str]:
    """Split one HAProxy line into words: quotes group, backslash escapes, ``#`` starts a comment."""
    words: list[str] = []
    current: list[str] = []
    quote: str | None = None
    started = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) and quote != "'":
            current.append(line[i + 1])
            started = True
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = None
            else:
                current.append(ch)
        elif ch in "\"'":
            quote = ch
            started = True
        elif ch == "#":
            break
        elif ch.isspace():
            if started:
                words.append("".join(current))
                current, started = [], False
        else:
            current.append(ch)
            started = True
        i += 1
    if quote:
        raise ValueError(f"unterminated {quote} quote")
    if started:
        words.append("".join(current))
    return words


def parse_haproxy(text: str, display: str) -> list[Directive]:
    """Sections with their keyword lines; a keyword before any section, or a broken quote, names the line."""
    sections: list[Directive] = []
    current: tuple[str, list[str], int, list[Directive]] | None = None

    def close() -> None:
        if current is not None:
            name, args, line, block = current
            sections.append(Directive(name=name, args=args, file=display, line=line, block=block))

    for number, raw in enumerate(text.splitlines(), start=1):
        try:
            words = haproxy_words(raw)
        except ValueError as exc:
            raise InputError(f"not a valid HAProxy line: {exc}", file=display, line=number) from None
        if not words:
            continue
        if words[0] in HAPROXY_SECTIONS:
            close()
            current = (words[0], words[1:], number, [])
            continue
        if current is None:
            raise InputError(f"{words[0]!r} stands outside any section", file=display, line=number,
                             hint="HAProxy keywords belong to a section such as global, defaults, frontend or "
                                  "backend")
        label = " ".join([current[0], *current[1]])
        current[3].append(Directive(name=words[0], args=words[1:], file=display, line=number, context=[label]))
    close()
    return sections
