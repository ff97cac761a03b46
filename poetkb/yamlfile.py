"""Read YAML (and JSON) safely while keeping line numbers for error messages.

``yaml.safe_load`` loses positions; reviewers need ``file:line`` in every
message. :func:`load_with_lines` returns plain data whose mappings are
:class:`LineDict` objects remembering the line of each key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from poetkb.errors import InputError, Problem


class LineDict(dict[Any, Any]):
    """A dict that remembers the 1-based line of the mapping and of each key."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str | int | None) -> int:
        if isinstance(key, str) and key in getattr(self, "key_lines", {}):
            return self.key_lines[key]
        return self.line


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings are LineDicts (no arbitrary object construction)."""


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


def load_with_lines(path: Path, *, display: str | None = None) -> Any:
    """Parse a YAML or JSON file; raise :class:`InputError` naming file and line on bad syntax."""
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("file is not UTF-8 text", file=shown, hint="save it as UTF-8") from exc
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror}", file=shown) from exc
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"malformed JSON: {exc.msg}", file=shown, line=exc.lineno) from exc
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "malformed YAML"
        raise InputError(f"malformed YAML: {what}", file=shown, line=line) from exc
    except yaml.YAMLError as exc:
        raise InputError(f"malformed YAML: {exc}", file=shown) from exc


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
