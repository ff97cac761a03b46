"""Parse one test file (statically) into test units and their features.

Two parsers, each for what it does best:

- :func:`ast.parse` first. It is about ten times faster than libcst, refuses
  input nested too deeply with an exception (libcst's native parser can crash
  the process on such input instead), and gives the line range of every
  function and class for free (libcst's ``PositionProvider`` costs several
  times the parse itself, see docs/learn.md).
- libcst second, for the features: it keeps comments, which ``ast`` drops, and
  the exact literals. The tree is walked once per unit by a small iterative
  walker over the node fields (no ``CSTVisitor`` dispatch, no metadata
  wrapper), and dropped as soon as the unit records are built: only the
  features, a few hundred short strings per unit, outlive the parse.

The result depends on the file's text only (not its path), so it can be cached
by content hash. Nothing here imports or runs the mined code. This module
imports libcst: load it only where files are mined (workers), never from the
CLI or the package's import path.
"""

from __future__ import annotations

import ast
import dataclasses
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import libcst as cst

from poetkb.learn.features import ExtractedUnit, ExtractFailure, Extraction, FieldBag, looks_like_data_path

if TYPE_CHECKING:
    from poetkb.types import UnitKind

#: Base classes whose subclasses are unittest test cases.
_TESTCASE_SUFFIXES = ("TestCase", "TestBase", "AioHTTPTestCase")


class ExtractError(Exception):
    """A file that cannot be mined, with the reason reported to the user."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# -- ast pass: guard and line ranges ----------------------------------------------------------------
def _ast_guard(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except RecursionError as exc:
        raise ExtractError("nests too deeply", "the syntax tree exceeds the parser's recursion limit") from exc
    except MemoryError as exc:
        raise ExtractError("nests too deeply", "the parser ran out of memory") from exc
    except SyntaxError as exc:
        message = exc.msg or "invalid syntax"
        if "too many" in message and ("nested" in message or "indentation" in message):
            raise ExtractError("nests too deeply", f"line {exc.lineno}: {message}") from exc
        raise ExtractError("does not parse", f"line {exc.lineno}: {message}") from exc
    except ValueError as exc:  # null bytes
        raise ExtractError("does not parse", str(exc)) from exc


def _ast_blocks(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements of a body, descending into if/try/with blocks as libcst's walk below does."""
    for stmt in body:
        if isinstance(stmt, ast.If | ast.With | ast.AsyncWith):
            yield from _ast_blocks(stmt.body)
            yield from _ast_blocks(getattr(stmt, "orelse", []))
        elif isinstance(stmt, ast.Try | ast.TryStar):
            yield from _ast_blocks(stmt.body)
            for handler in stmt.handlers:
                yield from _ast_blocks(handler.body)
            yield from _ast_blocks(stmt.orelse)
            yield from _ast_blocks(stmt.finalbody)
        else:
            yield stmt


def _ast_positions(module: ast.Module) -> dict[str, list[tuple[int, int]]]:
    """qualified name -> [(line, end line), ...] of every def and class, in source order."""
    found: dict[str, list[tuple[int, int]]] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for stmt in _ast_blocks(body):
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                qual = f"{prefix}{stmt.name}"
                found.setdefault(qual, []).append((stmt.lineno, stmt.end_lineno or stmt.lineno))
                if isinstance(stmt, ast.ClassDef):
                    visit(stmt.body, f"{qual}.")

    visit(module.body, "")
    return found


# -- libcst pass: units and features ----------------------------------------------------------------
_FIELDS_OF: dict[type, tuple[str, ...]] = {}


def _fields_of(node_type: type) -> tuple[str, ...]:
    """The dataclass fields of a node type, last first (the walker pushes them on a stack)."""
    names = _FIELDS_OF.get(node_type)
    if names is None:
        names = tuple(reversed([f.name for f in dataclasses.fields(node_type)]))
        _FIELDS_OF[node_type] = names
    return names


def _dotted(node: Any) -> str | None:
    """``a.b.c`` for a Name/Attribute chain (calls included: ``a.b().c`` -> ``a.b.c``), else None."""
    parts: list[str] = []
    while True:
        if isinstance(node, cst.Name):
            parts.append(node.value)
            return ".".join(reversed(parts))
        if isinstance(node, cst.Attribute):
            parts.append(node.attr.value)
            node = node.value
        elif isinstance(node, cst.Call):
            node = node.func
        else:
            return ".".join(reversed(parts)) if parts else None


def _string_value(node: Any) -> str:
    if isinstance(node, cst.SimpleString):
        try:
            return str(node.raw_value)
        except Exception:  # noqa: BLE001 - odd prefixes: keep the text as written
            return str(node.value)
    if isinstance(node, cst.ConcatenatedString):
        return _string_value(node.left) + _string_value(node.right)
    if isinstance(node, cst.FormattedString):
        return "".join(p.value for p in node.parts if isinstance(p, cst.FormattedStringText))
    return ""


def _docstring(body: Any, skip: set[int] | None = None) -> str:
    """The docstring of a body; its statement's id is added to ``skip`` so walkers do not count it twice."""
    statements = getattr(body, "body", ())
    if not statements or not isinstance(statements[0], cst.SimpleStatementLine):
        return ""
    first = statements[0].body[0] if statements[0].body else None
    if isinstance(first, cst.Expr) and isinstance(first.value, cst.SimpleString | cst.ConcatenatedString):
        if skip is not None:
            skip.add(id(statements[0]))
        return _string_value(first.value)
    return ""


# What a field value is, by its type: decided once per type, because isinstance on libcst's abstract
# node classes is slow and a file has hundreds of thousands of values.
_OTHER, _NODE, _LEAF, _SEQUENCE = 0, 1, 2, 3
_KINDS: dict[type, int] = {tuple: _SEQUENCE, list: _SEQUENCE}
_LEAF_TYPES = (cst.SimpleWhitespace, cst.Newline, cst.MaybeSentinel)  # never hold a feature


def _classify(value_type: type) -> int:
    what = _OTHER
    if issubclass(value_type, cst.CSTNode):
        what = _LEAF if issubclass(value_type, _LEAF_TYPES) else _NODE
    _KINDS[value_type] = what
    return what


#: Fields of a test object through which script-style suites describe a test (``Test.Summary = "..."``):
#: what they say is the test's own description, so it counts as its docstring.
DESCRIPTION_ATTRS = frozenset({"Summary", "summary", "Description", "description"})
#: Calls that start a described test run in script-style suites (``Test.AddTestRun("cache hit after PUSH")``):
#: their first string argument is a description too.
RUN_CALLS = frozenset({"AddTestRun", "add_test_run", "AddTestRunSet"})


def _description(node: Any) -> str | None:
    """The text of a string literal, implicitly concatenated strings included; None for anything else."""
    if isinstance(node, cst.SimpleString):
        return _string_value(node)
    if isinstance(node, cst.ConcatenatedString):
        left, right = _description(node.left), _description(node.right)
        return None if left is None or right is None else left + right
    return None


class _Walker:
    """Collects the features of one subtree into a FieldBag (iteratively: deep trees raise nothing)."""

    __slots__ = ("bag", "refs", "skip")

    def __init__(self, bag: FieldBag, refs: list[str], skip: set[int] | None = None) -> None:
        self.bag = bag
        self.refs = refs
        self.skip = skip if skip is not None else set()

    def walk(self, root: Any) -> None:
        simple_string, formatted_text, comment = cst.SimpleString, cst.FormattedStringText, cst.Comment
        call, attribute, integer, name = cst.Call, cst.Attribute, cst.Integer, cst.Name
        assert_, assign, kinds, fields_of = cst.Assert, cst.Assign, _KINDS, _FIELDS_OF
        bag, refs, skip = self.bag, self.refs, self.skip
        stack: list[tuple[Any, bool]] = [(root, False)]
        pop, push = stack.pop, stack.append
        while stack:
            node, in_assert = pop()
            kind = type(node)
            if kind is simple_string or kind is formatted_text:
                text = _string_value(node) if kind is simple_string else node.value
                bag.add("asserts" if in_assert else "strings", text)
                if kind is simple_string and looks_like_data_path(text):
                    refs.append(text)
                continue
            if kind is comment:
                bag.add("comments", node.value.lstrip("#"))
                continue
            if kind is integer:
                if in_assert:
                    bag.add("asserts", node.value)
                continue
            if kind is name:
                if in_assert:
                    bag.add("asserts", node.value)
                continue
            if kind is call:
                dotted = _dotted(node.func)
                if dotted:
                    bag.add("calls", dotted)
                    last = dotted.rsplit(".", 1)[-1]
                    if last.startswith("assert") or dotted in ("pytest.raises", "raises"):
                        in_assert = True
                    elif last in RUN_CALLS and node.args:
                        text = _description(node.args[0].value)
                        if text:
                            bag.add("doc", text)
                _join_path_args(node, refs)
                for arg in reversed(node.args):
                    push((arg, in_assert))
                if dotted is None:
                    push((node.func, False))
                else:
                    inner: Any = node.func
                    while type(inner) is attribute or type(inner) is call:
                        if type(inner) is call:
                            push((inner, False))  # a.b(x).c(): walk the inner call for its own features
                            break
                        inner = getattr(inner, "value", None)
                continue
            if kind is attribute:
                dotted = _dotted(node)
                if dotted:
                    bag.add("asserts" if in_assert else "calls", dotted)
                push((node.value, in_assert))
                continue
            if kind is assert_:
                in_assert = True
            elif kind is assign:
                target = node.targets[0].target if node.targets else None
                if type(target) is attribute and target.attr.value in DESCRIPTION_ATTRS:
                    text = _description(node.value)
                    if text:
                        bag.add("doc", text)
            names = fields_of.get(kind)
            if names is None:
                names = _fields_of(kind)
            for field in names:
                value = getattr(node, field)
                what = kinds.get(type(value))
                if what is None:
                    what = _classify(type(value))
                if what == _NODE:
                    if id(value) not in skip:
                        push((value, in_assert))
                elif what == _SEQUENCE:
                    for child in reversed(value):
                        child_what = kinds.get(type(child))
                        if child_what is None:
                            child_what = _classify(type(child))
                        if child_what == _NODE and id(child) not in skip:
                            push((child, in_assert))


def _join_path_args(node: Any, refs: list[str]) -> None:
    """``os.path.join(HERE, "data", "vary.yaml")`` or ``HERE / "data" / ...``: consecutive literals as one path."""
    parts = [_string_value(a.value) for a in node.args if isinstance(a.value, cst.SimpleString)]
    if len(parts) >= 2:
        joined = "/".join(p.strip("/") for p in parts if p)
        if looks_like_data_path(joined):
            refs.append(joined)


def _decorator_names(decorators: Any) -> list[str]:
    names = []
    for deco in decorators:
        dotted = _dotted(deco.decorator)
        if dotted:
            names.append(dotted)
    return names


def _markers(names: list[str]) -> list[str]:
    """Marker words: ``pytest.mark.slow`` -> slow; other decorators by their dotted name."""
    found = []
    for dotted in names:
        if ".mark." in dotted:
            found.append(dotted.split(".mark.", 1)[1])
        elif dotted not in ("staticmethod", "classmethod", "property"):
            found.append(dotted)
    return found


def _is_parametrized(names: list[str]) -> bool:
    return any(n.rsplit(".", 1)[-1] in ("parametrize", "parameterized", "expand") for n in names)


def _is_fixture(names: list[str]) -> bool:
    return any(n.rsplit(".", 1)[-1] in ("fixture", "yield_fixture") for n in names)


def _param_names(params: Any) -> list[str]:
    names = [p.name.value for p in (*params.posonly_params, *params.params, *params.kwonly_params)]
    return [n for n in names if n not in ("self", "cls")]


class _FileMiner:
    """Finds the test units of one parsed module and builds their records."""

    def __init__(self, positions: dict[str, list[tuple[int, int]]]) -> None:
        self.positions = positions
        self.units: list[ExtractedUnit] = []
        self.fixtures: list[str] = []
        self.test_classes: set[str] = set()

    def position(self, qual: str) -> tuple[int, int]:
        spots = self.positions.get(qual)
        if spots:
            return spots.pop(0)
        return (1, 1)  # unreachable for files ast also parsed; a safe default otherwise

    def blocks(self, body: Any) -> Iterator[Any]:
        """Statements of a block, descending into if/try/with like _ast_blocks does."""
        for stmt in body:
            if isinstance(stmt, cst.If):
                yield from self.blocks(stmt.body.body)
                orelse = stmt.orelse
                if isinstance(orelse, cst.If):
                    yield from self.blocks([orelse])
                elif orelse is not None:
                    yield from self.blocks(orelse.body.body)
            elif isinstance(stmt, cst.With):
                yield from self.blocks(stmt.body.body)
            elif isinstance(stmt, cst.Try | cst.TryStar):
                yield from self.blocks(stmt.body.body)
                for handler in stmt.handlers:
                    yield from self.blocks(handler.body.body)
                if stmt.orelse is not None:
                    yield from self.blocks(stmt.orelse.body.body)
                if stmt.finalbody is not None:
                    yield from self.blocks(stmt.finalbody.body.body)
            else:
                yield stmt

    def is_test_class(self, node: Any) -> bool:
        name = node.name.value
        if name.startswith("Test"):
            return True
        for base in node.bases:
            dotted = _dotted(base.value) or ""
            last = dotted.rsplit(".", 1)[-1]
            if last.endswith(_TESTCASE_SUFFIXES) or last in self.test_classes:
                return True
        return False

    def mine(self, module: Any) -> None:
        self.scan(module.body, prefix="", in_class=None)

    def scan(self, body: Any, prefix: str, in_class: str | None) -> None:
        for stmt in self.blocks(body):
            if isinstance(stmt, cst.FunctionDef):
                qual = f"{prefix}{stmt.name.value}"
                line, end = self.position(qual)
                decorators = _decorator_names(stmt.decorators)
                if _is_fixture(decorators):
                    self.fixtures.append(stmt.name.value)
                elif stmt.name.value.startswith("test"):
                    self.add_function(stmt, qual, line, end, decorators, in_class)
            elif isinstance(stmt, cst.ClassDef):
                qual = f"{prefix}{stmt.name.value}"
                line, end = self.position(qual)
                if self.is_test_class(stmt):
                    self.test_classes.add(stmt.name.value)
                    self.add_class(stmt, qual, line, end)
                else:
                    self.skip_positions(stmt, f"{qual}.")

    def skip_positions(self, node: Any, prefix: str) -> None:
        """Consume the ast positions of a non-test class's members so later names line up."""
        for stmt in self.blocks(node.body.body):
            if isinstance(stmt, cst.FunctionDef | cst.ClassDef):
                qual = f"{prefix}{stmt.name.value}"
                self.position(qual)
                if isinstance(stmt, cst.ClassDef):
                    self.skip_positions(stmt, f"{qual}.")

    def add_function(
        self, node: Any, qual: str, line: int, end: int, decorators: list[str], in_class: str | None
    ) -> None:
        bag, refs, skip = FieldBag(), list[str](), set[int]()
        bag.add("name", node.name.value)
        if in_class:
            bag.add("cls", in_class)
        doc = _docstring(node.body, skip)
        bag.add("doc", doc)
        bag.extend("markers", _markers(decorators))
        bag.extend("fixtures", _param_names(node.params))
        walker = _Walker(bag, refs, skip)
        for deco in node.decorators:
            walker.walk(deco.decorator)
        for comment_line in (*node.leading_lines, *node.lines_after_decorators):
            if comment_line.comment is not None:
                bag.add("comments", comment_line.comment.value.lstrip("#"))
        walker.walk(node.body)
        kind: UnitKind = "parametrized" if _is_parametrized(decorators) else ("method" if in_class else "function")
        self.units.append(_record(qual, kind, line, end, bag, refs, doc))

    def add_class(self, node: Any, qual: str, line: int, end: int) -> None:
        class_name = node.name.value
        bag, refs, members = FieldBag(), list[str](), set[int]()
        bag.add("name", class_name)
        doc = _docstring(node.body, members)
        bag.add("doc", doc)
        decorators = _decorator_names(node.decorators)
        bag.extend("markers", _markers(decorators))
        prefix = f"{qual}."
        start = len(self.units)
        for stmt in self.blocks(node.body.body):
            if isinstance(stmt, cst.FunctionDef):
                member_qual = f"{prefix}{stmt.name.value}"
                m_line, m_end = self.position(member_qual)
                member_decorators = _decorator_names(stmt.decorators)
                if stmt.name.value.startswith("test") and not _is_fixture(member_decorators):
                    members.add(id(stmt))
                    bag.add("members", stmt.name.value)
                    self.add_function(stmt, member_qual, m_line, m_end, member_decorators, class_name)
                elif _is_fixture(member_decorators):
                    self.fixtures.append(stmt.name.value)
            elif isinstance(stmt, cst.ClassDef):
                members.add(id(stmt))
                member_qual = f"{prefix}{stmt.name.value}"
                m_line, m_end = self.position(member_qual)
                if self.is_test_class(stmt):
                    self.add_class(stmt, member_qual, m_line, m_end)
                else:
                    self.skip_positions(stmt, f"{member_qual}.")
        # the class itself: its name, docstring, set-up and helpers (test methods are units of their own)
        _Walker(bag, refs, skip=members).walk(node.body)
        self.units.insert(start, _record(qual, "class", line, end, bag, refs, doc))


def _record(
    qual: str | None, kind: UnitKind, line: int, end: int, bag: FieldBag, refs: list[str], doc: str
) -> ExtractedUnit:
    summary = next((ln.strip() for ln in doc.splitlines() if ln.strip()), "")
    return ExtractedUnit(test=qual, kind=kind, line=line, end_line=end, summary=summary[:160], fields=bag.render(),
                         refs=tuple(sorted(set(refs))[:20]))


def _no_validation(self: Any) -> None:
    """Stands in for ``CSTNode.__post_init__`` (which only calls ``_validate``) while a tree is parsed."""


@contextmanager
def _unvalidated() -> Iterator[None]:
    """Parse without libcst's per-node validation; restored on exit, also on errors.

    Every libcst node checks its own invariants as it is constructed (a ``Name``
    holds an identifier, parentheses pair up, whitespace nodes hold whitespace):
    that protects code that *builds* trees by hand and renders them back to
    source. Here the parser builds the tree from text that CPython's own parser
    (:func:`_ast_guard`) has just accepted, and the tree is only read, never
    rendered or changed, and dropped at once; so the checks can find nothing we
    rely on, yet cost a quarter of the parse (measured in docs/learn.md; libcst's
    own source notes that validation could move out of parsing for this reason).
    The switch is ``CSTNode.__post_init__``, the one hook all nodes share (no
    node class overrides it); it is process-wide while the ``with`` lasts, so a
    thread of the same process building libcst trees by hand at that moment
    would build them unchecked. Mining processes build none; an in-process
    ``kb.learn`` call parses on the calling thread.
    """
    node = cst.CSTNode
    saved = node.__dict__.get("__post_init__")
    if saved is None or getattr(saved, "__qualname__", "") != "CSTNode.__post_init__":
        yield  # a libcst whose hook is not the one described above: leave validation on
        return
    node.__post_init__ = _no_validation  # type: ignore[method-assign]
    try:
        yield
    finally:
        node.__post_init__ = saved  # type: ignore[method-assign]


def extract(source: str, *, script_style: bool = False) -> Extraction:
    """Mine one file's text into its units, the fixtures it defines and its module docstring.

    ``script_style`` says the file is a test on its own when it holds no test
    function or class (``*.test.py`` and the like): it then becomes one unit of
    kind ``file``. Raises :class:`ExtractError` with the reason for files that
    cannot be mined (do not parse, nest too deeply).
    """
    positions = _ast_positions(_ast_guard(source))
    # The tree is acyclic and freed by reference counting once the records are built; the
    # garbage collector's scans of its many live nodes only cost time, so it is paused here.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            with _unvalidated():
                module = cst.parse_module(source)
        except cst.ParserSyntaxError as exc:
            raise ExtractError("does not parse", f"line {exc.raw_line}: {exc.message}") from exc
        except RecursionError as exc:
            raise ExtractError("nests too deeply", "the syntax tree exceeds the parser's recursion limit") from exc
        miner = _FileMiner(positions)
        try:
            miner.mine(module)
            skip: set[int] = set()
            module_doc = _docstring(module, skip)
            if not miner.units and script_style:
                bag, refs = FieldBag(), list[str]()
                bag.add("doc", module_doc)
                _Walker(bag, refs, skip).walk(module)
                lines = source.count("\n") + (0 if source.endswith("\n") else 1)
                miner.units.append(_record(None, "file", 1, max(lines, 1), bag, refs, module_doc))
        except RecursionError as exc:
            raise ExtractError("nests too deeply", "the syntax tree exceeds the walker's limits") from exc
        del module
    finally:
        if was_enabled:
            gc.enable()
    return Extraction(tuple(miner.units), tuple(sorted(set(miner.fixtures))), module_doc)


def mine_job(job: tuple[int, str, bool]) -> tuple[int, Extraction | ExtractFailure]:
    """Worker entry point: ``(index, text, script_style)`` -> ``(index, result)``.

    The result is the file's :class:`Extraction`, or an :class:`ExtractFailure`
    for a file that cannot be mined. Both are cached by the caller. An unexpected
    exception from the parsers is such an error too (``parser error``, named in the
    report): a suite is untrusted input, and one file must not end the run.
    """
    index, text, script_style = job
    try:
        return index, extract(text, script_style=script_style)
    except ExtractError as exc:
        return index, ExtractFailure(exc.reason, exc.detail)
    except Exception as exc:  # noqa: BLE001 - one hostile file must not end the whole run
        return index, ExtractFailure("parser error", f"{type(exc).__name__}: {str(exc)[:200]}")


def worker_init(parent_pid: int | None = None) -> None:
    """Start of a mining process: die with the parent, ignore Ctrl-C, hide inherited objects from the collector.

    A parser process must not outlive the run that started it, even when that run
    is killed with ``kill -9`` (it cannot clean up then): :func:`die_with_parent`
    arranges for the kernel to kill this process when its parent goes.

    ``gc.freeze()`` puts every object alive now (the modules and whatever the
    forked parent held) into the permanent generation, so the collections that
    still happen between files neither scan them again and again nor touch
    (and so copy) the pages shared with the parent.
    """
    import signal

    if parent_pid is not None:
        die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    gc.collect()
    gc.freeze()


#: prctl option: the signal this process gets when its parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` (its parent) ends, however it ends.

    On Linux the kernel does it: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``. The parent
    may have died before the call took effect, so the parent is checked once more
    after it. Elsewhere (or if prctl fails) a daemon thread watches the parent id
    and ends the process when it changes (the process was re-parented).
    """
    import os
    import signal
    import sys

    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent is already gone
    if not armed:
        import threading
        import time

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="poetkb-parent-watch", daemon=True).start()
