"""Words from code: how identifiers, strings and data files become the terms the mapping compares.

Every feature of a test unit is kept per *field* (its name, its docstring and
comments, string literals, called names, asserted values, ...) as lowercase words
joined by spaces (:func:`poetkb.text.normalise`). Identifiers are split on ``_``,
``-``, ``.`` and camelCase, so ``test_x_forwarded_for``, ``"X-Forwarded-For"``
and ``XForwardedFor`` all read ``x forwarded for``; the words every test says
are :data:`poetkb.text.TEST_STOP_WORDS`. Separate items of one field are joined by `` | `` so a
phrase never matches across two unrelated literals.

Which field a word came from matters: a rule term in a test's name is strong
evidence of what the test exercises, the same term in a string literal only says
the test mentions it (:data:`FIELD_WEIGHT`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from poetkb.text import TEST_STOP_WORDS as STOP_WORDS
from poetkb.text import code_words as words  # noqa: F401 - the word splitter of test features, for callers
from poetkb.text import normalise

if TYPE_CHECKING:  # annotations only: mining workers import this module and need no pydantic
    from poetkb.types import UnitKind

#: The fields of a unit's features, in the order they are shown.
FIELDS = (
    "name", "cls", "doc", "markers", "path",
    "members", "comments", "fixtures", "asserts", "calls", "strings", "module", "data",
)
#: Fields that say what a test is about; the others say what it touches (see poetkb.learn.mapping).
PRIMARY_FIELDS = frozenset({"name", "cls", "doc", "markers", "path"})

#: How much a rule term found in a field says about what the test exercises.
FIELD_WEIGHT: dict[str, float] = {
    "name": 1.0,  # the test function or method name
    "cls": 0.8,  # the enclosing test class name
    "doc": 0.8,  # the docstring: says what the test is for
    "members": 0.5,  # a test class's test method names (each method is a unit of its own)
    "comments": 0.5,  # comments: often about a detail on the way
    "markers": 0.7,  # decorators and pytest markers
    "fixtures": 0.6,  # fixtures the test requests
    "asserts": 0.4,  # values the test asserts on (raw messages too: weak)
    "calls": 0.45,  # called names and attribute chains
    "strings": 0.35,  # string literals (URLs, header names, config snippets)
    "path": 0.5,  # directories and file name (test_vary.py)
    "module": 0.35,  # the module docstring (often a list of everything the file covers)
    "data": 0.35,  # text of data files the test names
}

#: How many times a field's words count in the text the similarity model sees.
DOC_REPEAT: dict[str, int] = {
    "name": 3, "cls": 2, "doc": 2, "members": 1, "comments": 1, "markers": 1, "fixtures": 1, "asserts": 1,
    "calls": 1, "strings": 1, "path": 1, "module": 1, "data": 1,
}

#: Caps that keep one unit's features (and the cache and output files) small.
MAX_ITEMS_PER_FIELD = 200
MAX_ITEM_CHARS = 300
MAX_DATA_CHARS = 20_000

SEPARATOR = " | "


#: The kinds a unit can be (:data:`poetkb.types.UnitKind`), for checking records read back from the memo.
UNIT_KINDS = frozenset({"function", "method", "class", "file", "parametrized"})


@dataclass(frozen=True, slots=True)
class ExtractedUnit:
    """One test unit as the parse of its file gives it, before the runner places it in a suite (:class:`MinedUnit`).

    The mining memo keeps these as JSON (:mod:`poetkb.learn.memo`), so its fields are plain data.
    """

    #: The qualified test name (``TestX.test_y``); None for a script-style file that is one unit.
    test: str | None
    kind: UnitKind
    line: int
    end_line: int
    #: Rendered feature fields of the unit's own code (the runner adds the file's and the data files' fields).
    fields: dict[str, str]
    #: The docstring's first line (may be empty).
    summary: str = ""
    #: Strings in the unit that could name data files beside it (at most 20, sorted).
    refs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Extraction:
    """What parsing one test file gives: its units, the fixtures it defines and its module docstring."""

    units: tuple[ExtractedUnit, ...]
    #: Names of the pytest fixtures the file defines (sorted).
    fixtures: tuple[str, ...] = ()
    module_doc: str = ""


@dataclass(frozen=True, slots=True)
class ExtractFailure:
    """A test file that cannot be mined: the reason the report names (``does not parse``) and a detail."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MinedUnit:
    """One test unit of a run as the mapper sees it: where it is, what kind it is, and its feature fields.

    Built by :mod:`poetkb.learn.runner` from a file's extraction record (which the mining memo keeps as
    JSON) and the file's own fields; read by the mapper, the training code and the benchmarks. Not stored:
    the stored forms are the learned patterns and the memo's records.
    """

    #: ``<source>:<file>::<test>`` (``#2``, ``#3`` ... for repeats), the learned pattern's id.
    id: str
    #: The test file, relative to the suite root it was found under.
    file: str
    #: The qualified test name (``TestX.test_y``); None for a script-style file that is one unit.
    test: str | None
    kind: UnitKind
    line: int
    end_line: int
    #: Rendered feature fields (see :data:`FIELDS`): field -> normalised words.
    fields: dict[str, str]
    #: The docstring's first line (may be empty).
    summary: str = ""
    #: The git commit of the suite root, when it is a checkout.
    commit: str | None = None
    #: SHA-256 of the test file's bytes.
    content_hash: str = ""


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_DATA_EXTENSIONS = _wordset(
    "yaml yml json txt http har raw cfg conf ini toml xml html htm csv log gold out expected "
    "golden snap snapshot req res response request headers md rst"
)
_PATHLIKE_RE = re.compile(r"^[\w./\-]+$")


def looks_like_data_path(value: str) -> bool:
    """Whether a string literal could name a data file beside the test (``data/vary.yaml``, ``gold.http``)."""
    if not 3 <= len(value) <= 200 or not _PATHLIKE_RE.match(value) or value.startswith(("http", "/")):
        return False
    name = value.rsplit("/", 1)[-1]
    if "." not in name:
        return "/" in value and not value.endswith("/")
    ext = name.rsplit(".", 1)[-1].lower()
    return ext in _DATA_EXTENSIONS


class FieldBag:
    """Collects the items of each field for one unit, with caps, and renders them as normalised text."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def add(self, field: str, text: str) -> None:
        if not text:
            return
        bucket = self.items.setdefault(field, [])
        if len(bucket) < MAX_ITEMS_PER_FIELD:
            normalised = normalise(text[:MAX_ITEM_CHARS])
            if normalised:
                bucket.append(normalised)

    def extend(self, field: str, texts: Iterable[str]) -> None:
        for text in texts:
            self.add(field, text)

    def render(self) -> dict[str, str]:
        return {f: SEPARATOR.join(self.items[f]) for f in FIELDS if self.items.get(f)}


def data_text(text: str) -> str:
    """The normalised words of a data file's text (capped)."""
    return normalise(text[:MAX_DATA_CHARS])


def field_words(text: str) -> list[str]:
    """The words of a rendered field, separators dropped."""
    return [w for w in text.split() if w != "|"]


def document(fields: Mapping[str, str]) -> str:
    """The text the similarity model sees for a unit: each field's words, repeated by its weight."""
    parts: list[str] = []
    for field in FIELDS:
        text = fields.get(field)
        if text:
            kept = " ".join(w for w in field_words(text) if w not in STOP_WORDS and not w.isdigit())
            parts.extend([kept] * DOC_REPEAT[field])
    return " ".join(parts)


def summary_terms(fields: Mapping[str, str], *, cap: int = 24) -> list[str]:
    """The most telling words of a unit: its name words first (in order), then the most frequent others."""
    name_words: list[str] = []
    counts: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    for field in FIELDS:
        text = fields.get(field)
        if not text:
            continue
        for word in text.split():
            if word in STOP_WORDS or len(word) < 2 or word == "|" or (word.isdigit() and len(word) != 3):
                continue
            if field == "name":
                if word not in first_seen:
                    name_words.append(word)
                    first_seen[word] = -1
            else:
                counts[word] += 1
                first_seen.setdefault(word, len(first_seen))
    others = sorted((w for w in counts if first_seen[w] >= 0), key=lambda w: (-counts[w], first_seen[w]))
    return (name_words + others)[:cap]
