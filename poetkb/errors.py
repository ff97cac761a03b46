"""The one exception tree of poetkb.

Every error poetkb raises on purpose derives from :class:`PoetError`. Where a
caller would naturally catch a built-in (``ValueError`` for bad input,
``LookupError`` for a missing id, ``OSError`` for a file problem) the error
subclasses that built-in too. Each error carries the context a person needs
(file, line, field, obligation id) and a ``hint`` that says what to do next.

The CLI turns these into a message and an exit code in one place: exit 2 for
bad input or usage, exit 1 for a check or gate that ran and failed, exit 3 for
an internal error (anything that is not a PoetError), so a crash never reads
as a verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class PoetError(Exception):
    """Base of every error poetkb raises on purpose."""

    #: process exit code the CLI uses for this error
    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


@dataclass(frozen=True)
class Problem:
    """One problem found in a file: where it is and what is wrong."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field = f" [{self.field}]" if self.field else ""
        return f"{where}:{field} {self.message}"


class CatalogError(PoetError, ValueError):
    """The catalog (obligations, packs, mappings) has one or more problems."""

    def __init__(self, problems: Sequence[Problem], *, hint: str | None = None) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"catalog has {count} problem{'s' if count != 1 else ''}"
        body = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"{head}:\n{body}" if body else head,
            hint=hint or "fix the files named above, then run `poet kb check` again",
        )


class UnknownObligation(PoetError, LookupError):
    """An obligation id that the knowledge base does not hold."""

    def __init__(self, obligation_id: str, *, suggestions: Sequence[str] = ()) -> None:
        self.obligation_id = obligation_id
        hint = "run `poet obligations list` to see the ids"
        if suggestions:
            hint = f"did you mean {', '.join(suggestions)}? ({hint})"
        super().__init__(f"unknown obligation id {obligation_id!r}", hint=hint)


class UnknownEntity(PoetError, LookupError):
    """A failure mode, recipe, component, schema or other named thing that does not exist."""

    def __init__(self, kind: str, name: str, *, known: Sequence[str] = ()) -> None:
        self.kind = kind
        self.name = name
        hint = f"known {kind}s: {', '.join(sorted(known))}" if known else None
        super().__init__(f"unknown {kind} {name!r}", hint=hint)


class StoreError(PoetError, OSError):
    """The knowledge base file cannot be opened, read or written."""

    def __init__(self, message: str, *, path: Path | str | None = None, hint: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(message, hint=hint)


class SchemaVersionError(StoreError):
    """The knowledge base was written by a newer poetkb than this one."""


class InputError(PoetError, ValueError):
    """A user-supplied input (file, option, text) is not usable."""

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        where = ""
        if self.file:
            where = self.file if line is None else f"{self.file}:{line}"
            where += ": "
        if field:
            where += f"[{field}] "
        super().__init__(f"{where}{message}", hint=hint)


class EnvironmentProblem(PoetError, RuntimeError):
    """Something outside poetkb is missing or not usable (a binary, a port, a permission)."""


class TargetUnreachable(PoetError, ConnectionError):
    """A probe target did not answer."""


class CheckFailed(PoetError):
    """A check or gate ran and did not pass (exit code 1)."""

    exit_code = 1
