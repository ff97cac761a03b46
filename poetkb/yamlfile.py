"""Read YAML and JSON safely while keeping line numbers for error messages.

``yaml.safe_load`` loses positions; reviewers need ``file:line`` in every
message. :func:`load_with_lines` returns plain data whose mappings are
:class:`LineDict` objects remembering the line of each key.

This is the one parser of YAML and JSON that poetkb did not write itself
(catalogs, profiles, metrics summaries, access-log lines), so the limits live
here:

- files are read through :mod:`poetkb.safefile` (regular files only, size
  checked before reading);
- nesting deeper than :data:`MAX_DEPTH` levels is refused with the line where
  it happens, before any recursive code sees it (no ``RecursionError``);
- YAML aliases are refused where the caller says so (catalogs), and elsewhere
  bounded: a document may expand to at most :data:`MAX_EXPANDED_NODES` nodes,
  so a kilobyte of nested aliases cannot become gigabytes;
- JSON ``NaN``, ``Infinity`` and numbers too large for a double are refused
  (:func:`loads_json`); YAML's ``.nan`` and ``.inf`` are refused by the models
  (``allow_inf_nan=False``) with the field named.

Every problem is an :class:`~poetkb.errors.InputError` naming the file and line.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from poetkb.errors import InputError, Problem

#: deepest nesting of mappings and lists accepted in YAML or JSON (real files need about ten)
MAX_DEPTH = 64
#: most nodes a YAML document may expand to once aliases are followed
MAX_EXPANDED_NODES = 200_000


class LineDict(dict[Any, Any]):
    """A dict that remembers the 1-based line of the mapping and of each key."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str | int | None) -> int:
        if isinstance(key, str) and key in getattr(self, "key_lines", {}):
            return self.key_lines[key]
        return self.line


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings are LineDicts (no arbitrary object construction).

    Composition is where nesting and aliases become a tree, so the limits are
    enforced there: depth before the recursive composer descends, and the size
    of the tree with every alias expanded as each alias is met.
    """

    allow_aliases = True

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if not self.allow_aliases:
                raise yaml.composer.ComposerError(
                    None, None, "YAML aliases (*name) are not allowed here; write the value out", event.start_mark)
            node = super().compose_node(parent, index)
            self._count(self._size(node) if node is not None else 1, event.start_mark)
            return node
        if self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            if self._depth >= MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            self._depth += 1
            try:
                node = super().compose_node(parent, index)
            finally:
                self._depth -= 1
            self._count(1, _mark(node))
            return node
        node = super().compose_node(parent, index)
        self._count(1, _mark(node))
        return node

    def _size(self, node: yaml.Node) -> int:
        """Nodes in ``node`` with every alias expanded (memoised: anchors are shared nodes)."""
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self._size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(self._size(k) + self._size(v) for k, v in node.value)
        self._sizes[id(node)] = size
        return size

    def _count(self, nodes: int, mark: Any) -> None:
        self._expanded += nodes
        if self._expanded > MAX_EXPANDED_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"the document expands to more than {MAX_EXPANDED_NODES:,} nodes (nested aliases?)",
                mark)


def _mark(node: yaml.Node | None) -> Any:
    return node.start_mark if node is not None else None


class _CatalogLoader(_LineLoader):
    """The loader for catalog files: reviewable text, so no aliases at all."""

    allow_aliases = False


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be plain scalars", key_node.start_mark
            )
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[str(key)] = key_node.start_mark.line + 1
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_with_lines(path: Path, *, display: str | None = None, limit: int | None = None,
                    aliases: bool = True, root: Path | None = None, json_lines: bool = False) -> Any:
    """Parse a YAML or JSON file; raise :class:`InputError` naming file and line on bad syntax.

    The file is read with :func:`poetkb.safefile.read_text` (at most ``limit``
    bytes, default :data:`~poetkb.safefile.CATALOG_FILE_LIMIT`; inside ``root``
    when given). ``aliases=False`` refuses YAML aliases (catalog files). JSON
    files are parsed with :func:`loads_json`; with ``json_lines`` they are then
    re-read as YAML (JSON is YAML) so their mappings carry line numbers too.
    """
    from poetkb import safefile

    shown = display or str(path)
    text = safefile.read_text(path, limit=limit or safefile.CATALOG_FILE_LIMIT, root=root, display=shown)
    if path.suffix == ".json":
        data = loads_json(text, file=shown)
        if not json_lines or not isinstance(data, dict | list):
            return data
        try:
            lined = parse_yaml(text, file=shown, aliases=aliases)
        except InputError:
            return data
        return lined if lined == data else data
    return parse_yaml(text, file=shown, aliases=aliases)


def parse_yaml(text: str, *, file: str, aliases: bool = True) -> Any:
    """Parse YAML text with line numbers and the limits above; errors name ``file`` and the line."""
    loader = _LineLoader if aliases else _CatalogLoader
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - both loaders are SafeLoaders
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "malformed YAML"
        raise InputError(f"malformed YAML: {what}", file=file, line=line) from exc
    except yaml.YAMLError as exc:
        raise InputError(f"malformed YAML: {exc}", file=file) from exc
    except RecursionError as exc:  # pragma: no cover - the depth limit comes first
        raise InputError(f"malformed YAML: nested too deeply (limit {MAX_DEPTH} levels)", file=file) from exc


_JSON_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_JSON_STRUCTURE = re.compile(_JSON_STRING + r"|[\[\]{}]")
_JSON_STRINGS = re.compile(_JSON_STRING)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def json_depth_problem(text: str) -> tuple[int, int] | None:
    """(line, depth) where ``text`` first nests deeper than :data:`MAX_DEPTH`, or None.

    Nothing here recurses. The fast path (C-speed string operations) strips
    strings and everything but brackets, then peels innermost pairs at most
    :data:`MAX_DEPTH` times: well-formed JSON within the limit is gone by then.
    Anything left (too deep, or unbalanced) gets the exact scan, which finds
    the line.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    brackets = _NOT_BRACKETS.sub("", _JSON_STRINGS.sub("", text))
    for _ in range(MAX_DEPTH):
        if not brackets:
            return None
        peeled = brackets.replace("[]", "").replace("{}", "")
        if peeled == brackets:
            break
        brackets = peeled
    if not brackets:
        return None
    depth = 0
    for match in _JSON_STRUCTURE.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return text.count("\n", 0, match.start()) + 1, depth
        elif char in "]}":
            depth = max(depth - 1, 0)
    return None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number poetkb accepts: write a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is too large for a number")
    return value


#: one decoder for every call (json.loads with hooks would build a new one each time)
_STRICT_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


class JsonTooDeep(ValueError):
    """JSON nested deeper than :data:`MAX_DEPTH`; ``line`` is where the limit was crossed."""

    def __init__(self, line: int) -> None:
        super().__init__(f"JSON nested deeper than {MAX_DEPTH} levels")
        self.line = line


def strict_json(text: str) -> Any:
    """``json.loads`` with poetkb's limits, for callers that report problems themselves (log lines).

    Raises ``json.JSONDecodeError`` for bad syntax, :class:`JsonTooDeep` for
    deep nesting and ``ValueError`` for NaN, Infinity or an overflowing number.
    """
    deep = json_depth_problem(text)
    if deep is not None:
        raise JsonTooDeep(deep[0])
    return _STRICT_DECODER.decode(text)


def loads_json(text: str | bytes, *, file: str, first_line: int = 1) -> Any:
    """Parse JSON refusing NaN, Infinity, overflowing numbers and nesting deeper than :data:`MAX_DEPTH`.

    Errors are :class:`InputError` naming ``file`` and the line (``first_line``
    is the line number of the first line of ``text`` in the file).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError("file is not UTF-8 text", file=file, hint="save it as UTF-8") from exc
    try:
        return strict_json(text)
    except JsonTooDeep as exc:
        raise InputError(str(exc), file=file, line=exc.line + first_line - 1,
                         hint="real files nest a few levels; this one is malformed or hostile") from exc
    except json.JSONDecodeError as exc:
        line = exc.lineno + first_line - 1
        if text.strip() and exc.pos >= len(text.rstrip()):
            raise InputError("the JSON ends before it is complete: the file is truncated", file=file, line=line,
                             hint="re-run the export, or wait until the tool has finished writing") from exc
        raise InputError(f"malformed JSON: {exc.msg}", file=file, line=line) from exc
    except ValueError as exc:
        line, key = _where_refused(text, exc)
        raise InputError(str(exc), file=file, line=line + first_line - 1, field=key,
                         hint="NaN, Infinity and numbers beyond a double are refused") from exc
    except RecursionError as exc:  # pragma: no cover - the depth scan comes first
        raise InputError(f"JSON nested deeper than {MAX_DEPTH} levels", file=file) from exc


def _where_refused(text: str, exc: ValueError) -> tuple[int, str | None]:
    """(line, key) of a refused constant: its first occurrence outside strings, and the key it is the value of."""
    token = str(exc).split(" ", 1)[0]
    if not token:
        return 1, None
    pattern = re.compile(r'"((?:[^"\\]|\\.)*)"\s*(:)?|(?<![\w.+-])' + re.escape(token) + r"(?![\w.])")
    key: str | None = None
    for match in pattern.finditer(text):
        if match.group(0).startswith('"'):
            key = match.group(1) if match.group(2) else key
            continue
        before = text[:match.start()].rstrip()
        return text.count("\n", 0, match.start()) + 1, key if before.endswith(":") else None
    return 1, None


def problems_from_validation(
    exc: Any, data: Any, *, file: str, prefix: str = ""
) -> list[Problem]:
    """Turn a pydantic ValidationError on ``data`` into Problems with the nearest known line."""
    problems: list[Problem] = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        line = _line_for(data, loc)
        field = ".".join(str(p) for p in loc) or None
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        message = err.get("msg", "invalid value")
        if err.get("type") == "extra_forbidden":
            message = "unknown field (check the spelling; see `poet schema` for the allowed fields)"
        elif err.get("type") == "missing":
            message = "required field is missing"
        problems.append(Problem(file=file, line=line, field=field, message=message))
    return problems


def _line_for(data: Any, loc: tuple[Any, ...]) -> int | None:
    """Walk ``loc`` into ``data`` and return the deepest line known on the way."""
    line = data.line if isinstance(data, LineDict) else None
    node = data
    for part in loc:
        if isinstance(node, LineDict):
            line = node.line_of(part) or line
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            if isinstance(node, LineDict):
                line = node.line
        else:
            break
    return line
