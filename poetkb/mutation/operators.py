"""Mutation operators: load them, find where each applies, and write each mutant's text.

An operator is data (``operators.yaml`` beside this file): a directive to match,
an edit, and the obligations the edit should break. The configuration model
(:mod:`poetkb.edgeconfig`) says where each directive stands; the edit is made on
the directive's own text in the file (its *statement*: from its name to the
terminating ``;`` for NGINX, the line for HAProxy), so everything else in the
file stays byte for byte as the user wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from poetkb.edgeconfig import Directive, EdgeConfig, ProxyKind
from poetkb.errors import InputError
from poetkb.models import PoetModel
from poetkb.types import ObligationId

OPERATORS_FILE = Path(__file__).with_name("operators.yaml")
_NUMBER = re.compile(r"(?<![\w.$])(\d+)(ms|r/s|r/m|s|m|h|d|k|K|M)?(?![\w.])")


class Operator(PoetModel):
    """One mutation operator; see the header of ``operators.yaml`` for the fields."""

    id: str = Field(pattern=r"^(nginx|haproxy)\.[a-z0-9_]+\.[a-z0-9_]+$")
    proxy: ProxyKind
    match: str = Field(min_length=1)
    where: str | None = None
    op: Literal["remove", "scale", "replace", "append", "insert_after"]
    factor: int | None = Field(default=None, ge=2, le=100_000)
    pattern: str | None = None
    repl: str | None = None
    args: str | None = None
    text: str | None = None
    breaks: list[ObligationId] = Field(min_length=1)
    why: str = Field(min_length=1)

    @field_validator("where", "pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _fields_of_op(self) -> Operator:
        need = {"scale": ("factor",), "replace": ("pattern", "repl"), "append": ("args",),
                "insert_after": ("text",), "remove": ()}[self.op]
        missing = [name for name in need if getattr(self, name) is None]
        if missing:
            raise ValueError(f"op {self.op} needs {', '.join(missing)}")
        return self


class OperatorSet(PoetModel):
    operators: list[Operator]


def load_operators(path: Path = OPERATORS_FILE) -> list[Operator]:
    """The shipped operators (or those of ``path``), validated; duplicates and bad fields name the file."""
    from pydantic import ValidationError

    from poetkb.yamlfile import load_with_lines, problems_from_validation

    data = load_with_lines(path)
    try:
        operators = OperatorSet.model_validate(data).operators
    except ValidationError as exc:
        first = problems_from_validation(exc, data, file=str(path))[0]
        raise InputError(first.message, file=path, line=first.line, field=first.field) from None
    seen: set[str] = set()
    for op in operators:
        if op.id in seen:
            raise InputError(f"operator id {op.id!r} appears twice", file=path)
        seen.add(op.id)
    return operators


@dataclass(frozen=True)
class Mutant:
    """One operator applied at one directive: the mutated file text and a one-line description."""

    id: str
    operator: Operator
    file: Path
    line: int
    original: str
    mutated: str
    before: str
    after: str


def statement_span(text: str, directive: Directive, proxy: ProxyKind) -> tuple[int, int]:
    """Offsets of ``directive``'s statement in ``text`` (the file it came from)."""
    lines = text.splitlines(keepends=True)
    if directive.line > len(lines):
        raise InputError("the file changed since it was parsed", file=directive.file, line=directive.line)
    line_start = sum(len(x) for x in lines[: directive.line - 1])
    line_text = lines[directive.line - 1]
    found = re.search(rf"(?<![\w-]){re.escape(directive.name)}(?![\w-])", line_text)
    if found is None:
        raise InputError(f"cannot find {directive.name!r} on its line", file=directive.file, line=directive.line)
    start = line_start + found.start()
    if proxy == "haproxy":
        body = line_text.rstrip("\r\n")
        return start, line_start + len(body)
    quote: str | None = None
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in ";{":
            return start, i + 1
        i += 1
    raise InputError(f"{directive.name!r} has no terminating ';'", file=directive.file, line=directive.line)


def _edit(op: Operator, statement: str, indent: str) -> str | None:
    """The statement after the edit, or None when the edit would not change it."""
    if op.op == "remove":
        return ""
    if op.op == "replace":
        assert op.pattern is not None and op.repl is not None
        new = re.sub(op.pattern, op.repl, statement)
    elif op.op == "append":
        new = statement[:-1].rstrip() + f" {op.args};" if statement.endswith(";") else f"{statement} {op.args}"
    elif op.op == "insert_after":
        new = f"{statement}\n{indent}{op.text}"
    else:
        factor = op.factor or 1
        head, _, tail = statement.partition(" ")
        new = head + " " + _NUMBER.sub(lambda m: f"{int(m.group(1)) * factor}{m.group(2) or ''}", tail)
    return new if new != statement else None


def _matches(op: Operator, directive: Directive) -> bool:
    words = op.match.split()
    return directive.block is None and [directive.name, *directive.args][: len(words)] == words


def mutants(config: EdgeConfig, operators: Sequence[Operator], texts: dict[str, str]) -> Iterator[Mutant]:
    """Every (operator, matching directive) pair that changes the file, in file order per operator."""
    for op in operators:
        if op.proxy != config.proxy:
            continue
        for directive in config.walk():
            if not _matches(op, directive):
                continue
            text = texts[directive.file]
            start, end = statement_span(text, directive, config.proxy)
            statement = text[start:end]
            if op.where and not re.search(op.where, statement):
                continue
            line_start = text.rfind("\n", 0, start) + 1
            indent = re.match(r"[ \t]*", text[line_start:start])
            new = _edit(op, statement, indent.group(0) if indent else "")
            if new is None:
                continue
            name = Path(directive.file).name
            yield Mutant(id=f"{op.id}@{name}:{directive.line}", operator=op, file=Path(directive.file),
                         line=directive.line, original=text, mutated=text[:start] + new + text[end:],
                         before=" ".join(statement.split())[:160], after=" ".join(new.split())[:160] or "(removed)")
