"""Check every cited RFC section and documentation anchor against a stored index, offline.

``knowledge/references.yaml`` lists, per document, its base URLs, the names a
reference title uses for it ("RFC 9110", "HAProxy 2.6 configuration"), its
section numbers and titles, and its anchors. A catalog reference that points at
an indexed document is checked:

- a section named in the title ("RFC 9111 section 3.5, ...") or the URL
  (``#section-3.5``, ``#8.2.6``, ``#field.vary``) must exist, the two must agree,
  and the title given after the comma must be the section's title;
- an HAProxy keyword anchor (``#4.2-retry-on``) must name a keyword of that section;
- a page anchor (``ngx_http_proxy_module.html#proxy_cache_key``) must be one the page has.

References to documents the index does not hold are counted as unindexed, not guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urldefrag

from pydantic import Field, ValidationError

from poetkb.errors import InputError, Problem
from poetkb.models import PoetModel, Reference
from poetkb.types import NonEmptyStr
from poetkb.yamlfile import load_with_lines, problems_from_validation

if TYPE_CHECKING:
    from poetkb.catalog import Catalog

INDEX_FILE = "knowledge/references.yaml"
_SECTION_IN_TITLE = re.compile(r"\bsection\s+(\d+(?:\.\d+)*)\s*,?\s*(.*)$", re.IGNORECASE)
_NUMBER = re.compile(r"^\d+(?:\.\d+)*$")
_PARENS = re.compile(r"\s*\([^)]*\)")


class IndexedDocument(PoetModel):
    """One document of the index: where it lives, what references call it, its sections and anchors."""

    id: NonEmptyStr
    title: NonEmptyStr
    urls: list[NonEmptyStr] = Field(min_length=1)
    names: list[NonEmptyStr] = Field(default_factory=list)
    sections: dict[str, str] = Field(default_factory=dict)
    #: named anchor -> the section it opens (RFC field anchors), or None for a page anchor
    anchors: dict[str, str | None] = Field(default_factory=dict)
    #: section -> keywords documented in it (HAProxy ``#4.2-retry-on`` anchors)
    keywords: dict[str, list[str]] = Field(default_factory=dict)
    #: true when ``sections`` is the document's whole table of contents, not only the sections cited
    complete: bool = False

    def missing(self, what: str) -> str:
        """How to say that ``what`` (a section or an anchor) is not known for this document."""
        if self.complete:
            return f"{what} does not exist in {self.title}"
        return (f"{what} is not in the index of {self.title}; check the document and add it to "
                f"{INDEX_FILE} if it exists")


class ReferenceIndex(PoetModel):
    documents: list[IndexedDocument] = Field(default_factory=list)


@dataclass
class ReferenceCheck:
    """The outcome of checking a catalog's references."""

    checked: int = 0
    unindexed: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def load_index(root: Path) -> tuple[ReferenceIndex | None, list[Problem]]:
    """The index below ``root``; None (and no problem) when the catalog has none."""
    path = root / INDEX_FILE
    if not path.is_file():
        return None, []
    try:
        data = load_with_lines(path, display=INDEX_FILE)
    except InputError as exc:
        return None, [Problem(INDEX_FILE, exc.line, None, exc.message)]
    try:
        return ReferenceIndex.model_validate(data), []
    except ValidationError as exc:
        return None, problems_from_validation(exc, data, file=INDEX_FILE)


def _norm(text: str) -> str:
    return " ".join(_PARENS.sub("", text).lower().replace("\u2011", "-").split()).strip(" ,.")


def _titles_agree(cited: str, indexed: str) -> bool:
    a, b = _norm(cited), _norm(indexed)
    return bool(a) and (a == b or b.startswith(a) or a.startswith(b))


def _find(index: ReferenceIndex, ref: Reference) -> IndexedDocument | None:
    base = urldefrag(ref.url)[0].rstrip("/") if ref.url else ""
    for doc in index.documents:
        if base and any(base == u.rstrip("/") for u in doc.urls):
            return doc
    for doc in index.documents:
        if any(ref.title.lower().startswith(name.lower()) for name in doc.names):
            return doc
    return None


def check_reference(doc: IndexedDocument, ref: Reference) -> list[str]:
    """What is wrong with one reference to an indexed document (an empty list when nothing is)."""
    wrong: list[str] = []
    fragment = unquote(urldefrag(ref.url)[1]) if ref.url else ""
    cited_section: str | None = None
    cited_title = ""
    match = _SECTION_IN_TITLE.search(ref.title)
    if match:
        cited_section, cited_title = match.group(1), match.group(2)
    elif "," in ref.title:
        cited_title = ref.title.split(",", 1)[1]
    url_section: str | None = None
    if fragment:
        if fragment.startswith("section-"):
            url_section = fragment[len("section-"):]
        elif _NUMBER.match(fragment) and doc.sections:
            url_section = fragment
        elif "-" in fragment and _NUMBER.match(fragment.split("-", 1)[0]) and doc.keywords:
            number, keyword = fragment.split("-", 1)
            if keyword not in doc.keywords.get(number, []):
                known = doc.keywords.get(number)
                hint = f"section {number} has no keyword {keyword!r}" if known is not None else \
                    f"section {number} holds no keywords in the index"
                wrong.append(f"{doc.missing(f'anchor #{fragment}')}: {hint}")
        elif fragment in doc.anchors:
            url_section = doc.anchors[fragment]
        else:
            wrong.append(doc.missing(f"anchor #{fragment}"))
    for cited in (cited_section, url_section, ref.section):
        if cited and doc.sections and cited not in doc.sections:
            wrong.append(doc.missing(f"section {cited}"))
    if cited_section and url_section and cited_section != url_section:
        wrong.append(f"the title cites section {cited_section} but the link opens section {url_section}")
    shown = cited_section or url_section
    if shown and shown in doc.sections and cited_title and not wrong:
        indexed = doc.sections[shown]
        if not _titles_agree(cited_title, indexed):
            wrong.append(f"section {shown} of {doc.title} is {indexed!r}, not {cited_title.strip()!r}")
    return list(dict.fromkeys(wrong))


def _references(catalog: Catalog) -> list[tuple[str, str, Reference]]:
    found: list[tuple[str, str, Reference]] = []
    for kind, items in (("obligation", catalog.obligations), ("failure_mode", catalog.failure_modes),
                        ("recipe", catalog.recipes)):
        for item_id in sorted(items):
            for ref in items[item_id].references:  # type: ignore[attr-defined]
                found.append((kind, item_id, ref))
    return found


def check_references(catalog: Catalog, index: ReferenceIndex | None = None) -> ReferenceCheck:
    """Check every reference of ``catalog`` against the index (loaded from the catalog when not given)."""
    result = ReferenceCheck()
    if index is None:
        index, problems = load_index(catalog.root)
        result.problems.extend(problems)
        if index is None:
            return result
    for kind, item_id, ref in _references(catalog):
        doc = _find(index, ref)
        if doc is None:
            result.unindexed.append(ref.url or ref.title)
            continue
        result.checked += 1
        src = catalog.sources.get((kind, item_id))
        for message in check_reference(doc, ref):
            result.problems.append(Problem(src.file if src else "?", src.line if src else None,
                                           f"{item_id}.references({ref.title})", message))
    return result


def reference_problems(catalog: Catalog) -> list[Problem]:
    """The problems of :func:`check_references`, for catalog validation."""
    return check_references(catalog).problems
