"""Propose ``@pytest.mark.obligation`` markers for a suite, as a reviewable patch.

The miner (:func:`poetkb.learn.runner.learn`, run without storing anything)
maps each test to obligations; this module turns those mappings into a libcst
codemod that adds one decorator per test with the ids it does not carry yet,
and ``import pytest`` where the module lacks it. The result is a unified diff
for review; files are rewritten only when the caller asks (``apply``), each
written to a temporary name and renamed into place. Nothing in the suite is
imported or run: the miner is static and so is the codemod.

Functions, parametrized tests and methods get their own marker. A test class
gets one only for obligations none of its methods is marked with. Script-style
files (no test functions) cannot carry a marker and are listed as such.
"""

from __future__ import annotations

import difflib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from poetkb.errors import InputError
from poetkb.models import PoetModel
from poetkb.safefile import SOURCE_FILE_LIMIT, read_text

if TYPE_CHECKING:
    import libcst as cst

    from poetkb.knowledge import Knowledge
    from poetkb.models import LearnedPattern

MARKABLE = ("function", "method", "parametrized", "class")


class MarkerSuggestion(PoetModel):
    """One test and the obligation ids a marker would add to it."""

    file: str
    test: str
    line: int
    obligations: list[str]
    confidence: float = Field(ge=0.0, le=1.0, description="the lowest confidence among the ids")


class MarkerPatch(PoetModel):
    """What ``poet learn suggest-markers`` proposes: the suggestions, the patch, and what could not be marked."""

    root: str
    suggestions: list[MarkerSuggestion]
    patch: str
    files_changed: int
    unmarkable: list[str] = Field(default_factory=list, description="mapped units that cannot carry a marker")
    applied: bool = False


def _wanted(patterns: Sequence[LearnedPattern], min_confidence: float) -> dict[str, dict[str, list[str]]]:
    """file -> test name (dotted for methods) -> ids, confident enough and not implied by a marked class."""
    wanted: dict[str, dict[str, list[str]]] = {}
    for p in patterns:
        ids = [m.id for m in p.obligations if m.confidence >= min_confidence]
        if ids and p.test and p.kind in MARKABLE:
            wanted.setdefault(p.file, {})[p.test] = ids
    for tests in wanted.values():
        for name in sorted(tests, key=len, reverse=True):
            from_methods = {oid for other, ids in tests.items() if other.startswith(name + ".") for oid in ids}
            if from_methods:
                rest = [oid for oid in tests[name] if oid not in from_methods]
                if rest:
                    tests[name] = rest
                else:
                    del tests[name]
    return wanted


def _existing_ids(decorators: Sequence[cst.Decorator]) -> set[str]:
    import libcst as cst

    found: set[str] = set()
    for dec in decorators:
        call = dec.decorator
        if not isinstance(call, cst.Call):
            continue
        func = call.func
        if isinstance(func, cst.Attribute) and func.attr.value == "obligation":
            for arg in call.args:
                if isinstance(arg.value, cst.SimpleString):
                    found.add(str(arg.value.evaluated_value))
    return found


def _decorator(ids: Sequence[str]) -> cst.Decorator:
    import libcst as cst

    args = ", ".join(f'"{oid}"' for oid in ids)
    return cst.Decorator(decorator=cst.parse_expression(f"pytest.mark.obligation({args})"))


def rewrite(source: str, tests: Mapping[str, Sequence[str]]) -> tuple[str, dict[str, list[str]]]:
    """Add obligation markers to the named tests of one module; return the new text and what was added."""
    import libcst as cst
    from libcst.codemod import CodemodContext
    from libcst.codemod.visitors import AddImportsVisitor

    added: dict[str, list[str]] = {}

    class AddMarkers(cst.CSTTransformer):
        def __init__(self) -> None:
            self.scope: list[str] = []

        def _name(self, node: cst.FunctionDef | cst.ClassDef) -> str:
            return ".".join([*self.scope, node.name.value])

        def visit_ClassDef(self, node: cst.ClassDef) -> bool:
            self.scope.append(node.name.value)
            return True

        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            self.scope.append(node.name.value)
            return False  # nested functions are never tests

        def _mark(self, original: cst.FunctionDef | cst.ClassDef,
                  updated: cst.FunctionDef | cst.ClassDef) -> cst.FunctionDef | cst.ClassDef:
            name = ".".join(self.scope)
            self.scope.pop()
            ids = [oid for oid in tests.get(name, ()) if oid not in _existing_ids(original.decorators)]
            if not ids:
                return updated
            added[name] = ids
            return updated.with_changes(decorators=[_decorator(ids), *updated.decorators])

        def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
            result = self._mark(original, updated)
            assert isinstance(result, cst.ClassDef)
            return result

        def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.FunctionDef:
            result = self._mark(original, updated)
            assert isinstance(result, cst.FunctionDef)
            return result

    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise InputError(f"cannot parse: {exc.message}", line=exc.raw_line) from exc
    changed = module.visit(AddMarkers())
    if not added:
        return source, {}
    context = CodemodContext()
    AddImportsVisitor.add_needed_import(context, "pytest")
    changed = AddImportsVisitor(context).transform_module(changed)
    return changed.code, added


def suggest_markers(kb: Knowledge, path: str | Path, *, min_confidence: float = 0.0,
                    apply: bool = False, workers: int | None = None) -> MarkerPatch:
    """Mine ``path`` (nothing stored), and propose (or, with ``apply``, write) obligation markers."""
    from poetkb.learn.runner import learn

    root = Path(path)
    if not root.exists():
        raise InputError("no such file or directory", file=root, hint="pass the suite's directory or a test file")
    report = learn(kb, [root], workers=workers, store=False, write_file=False)
    base = root if root.is_dir() else root.parent
    wanted = _wanted(report.patterns, min_confidence)
    confidence = {(p.file, p.test): min((m.confidence for m in p.obligations), default=0.0)
                  for p in report.patterns}
    unmarkable = sorted(f"{p.file}::{p.test or '(file)'}" for p in report.patterns
                        if p.obligations and p.kind not in MARKABLE)
    suggestions: list[MarkerSuggestion] = []
    lines = {(p.file, p.test): p.line for p in report.patterns}
    chunks: list[str] = []
    writes: list[tuple[Path, str]] = []
    for rel in sorted(wanted):
        target = base / rel
        try:
            old = read_text(target, limit=SOURCE_FILE_LIMIT, root=base, display=rel)
            new, added = rewrite(old, wanted[rel])
        except InputError as exc:
            raise InputError(exc.message, file=rel, line=exc.line, hint=exc.hint) from exc
        if not added:
            continue
        suggestions.extend(MarkerSuggestion(file=rel, test=name, line=lines.get((rel, name), 1), obligations=ids,
                                            confidence=round(confidence.get((rel, name), 0.0), 3))
                           for name, ids in sorted(added.items()))
        chunks.append("".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                                   fromfile=f"a/{rel}", tofile=f"b/{rel}")))
        writes.append((target, new))
    if apply:
        for target, new in writes:
            tmp = target.with_name(f".{target.name}.poet-markers-{os.getpid()}")
            tmp.write_text(new, encoding="utf-8")
            shutil.copymode(target, tmp)
            os.replace(tmp, target)
    return MarkerPatch(root=str(base), suggestions=suggestions, patch="".join(chunks), files_changed=len(writes),
                       unmarkable=unmarkable, applied=apply and bool(writes))


__all__ = ["MarkerPatch", "MarkerSuggestion", "rewrite", "suggest_markers"]
