"""The one tokenizer that both the fitted text model and every query use.

Catalog text, learned test names and changes all pass through :func:`analyze`,
so a query is vectorised exactly as the documents were when the TF-IDF model
was fitted. It lower-cases, splits identifiers (``proxy_cache_key`` gives
``proxy``, ``cache``, ``key`` and the whole name; ``maxRetries`` gives
``max`` and ``retri``), drops filler words, folds simple English endings
(``retries``/``retry``/``retried``, ``cache``/``caching``/``cached``) and adds
the bigrams of neighbouring words, so "cache key" is a term of its own.
"""

from __future__ import annotations

import re

_RAW_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[_\-][A-Za-z0-9]+)*")
_CAMEL_RE = re.compile(r"([a-z0-9])([A-Z])")
_ACRONYM_RE = re.compile(r"([A-Z]+)([A-Z][a-z])")

_STOP_TEXT = """
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing down during each either else even ever every few for from further get
gets had has have having he her here hers him his how however i if in into is it its itself just let lets like
may me might more most much must my neither no nor not now of off on once one only or other ought our ours out
over own per same she should since so some such than that the their theirs them then there these they this those
through thus to too under until up upon us very was we were what when where whether which while who whom whose
why will with within without would yet you your yours etc via eg ie use used uses using make makes made
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())


def stem(word: str) -> str:
    """Fold common English endings so inflections of one word meet (``retries`` -> ``retri``)."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "i"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("ing") and len(word) > 5:
        word = word[:-3]
    elif len(word) > 4 and (word.endswith("ed") or word.endswith("es") and word[-3] in "hsxz"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    if word.endswith("y") and len(word) > 3:
        word = word[:-1] + "i"
    return word


def split_parts(raw: str) -> list[str]:
    """The lower-case parts of one identifier or word."""
    spaced = _ACRONYM_RE.sub(r"\1 \2", _CAMEL_RE.sub(r"\1 \2", raw))
    return [p.lower() for p in re.split(r"[\s_\-]+", spaced) if p]


def analyze_with_surface(text: str) -> list[tuple[str, str]]:
    """(term, surface form) pairs for ``text``: stems, whole compound names, and bigrams."""
    out: list[tuple[str, str]] = []
    previous: tuple[str, str] | None = None
    end = 0
    for match in _RAW_RE.finditer(text):
        if text[end:match.start()].strip():
            previous = None  # punctuation between words ends a phrase
        end = match.end()
        raw = match.group(0)
        parts = split_parts(raw)
        if len(parts) > 1:
            out.append(("_".join(parts), raw))
        for part in parts:
            if part in STOP_WORDS or len(part) < 2 or part[0].isdigit():
                previous = None
                continue
            term = stem(part)
            out.append((term, part))
            if previous is not None:
                out.append((f"{previous[0]} {term}", f"{previous[1]} {part}"))
            previous = (term, part)
    return out


def analyze(text: str) -> list[str]:
    """The terms of ``text`` (the analyzer the TF-IDF model is fitted with)."""
    return [term for term, _ in analyze_with_surface(text)]
