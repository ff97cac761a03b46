"""The text engine: words from prose and code, stop words, phrase matching and TF-IDF, for rank and learn.

Ranking (:mod:`poetkb.rank`) and mining (:mod:`poetkb.learn`) compare words: a
change with the catalog, a test with the obligations. Everything they need to
turn text into terms and weigh them lives here, once:

- **Splitting.** :func:`split_identifier` splits ``proxy_cache_key``,
  ``maxRetries`` or ``X-Forwarded-For`` into lower-case parts; :func:`code_words`
  is the finer split mining uses on test code (digits apart, ``HTTPError`` gives
  ``http error``), :func:`normalise` joins those words by single spaces.
- **Analyzing prose.** :func:`analyze` is the analyzer of the ranking model:
  identifier parts and the whole compound name, :data:`STOP_WORDS` dropped,
  simple English endings folded (:func:`stem`: ``retries``/``retry`` meet), and
  the bigrams of neighbouring words, so "cache key" is a term of its own.
  :func:`analyze_code` is the analyzer of the mining similarity: normalised
  words and their bigrams.
- **Stop words.** :data:`STOP_WORDS` (English filler, for prose),
  :data:`TEST_STOP_WORDS` (what every test says: ``assert``, ``fixture``,
  ``self``...) and :data:`CODE_NOISE` (language keywords and commit verbs in a
  diff).
- **Phrases.** :func:`term_pattern` is the whole-word regular expression a rule
  term matches in free text (``_``/``-``/space interchangeable, plurals,
  trailing ``*``); :func:`literal` is a piece every match contains, to skip
  regexes that cannot match; :func:`has_phrase` is the same test on text that
  is already normalised.
- **TF-IDF.** :class:`TfidfIndex` fits term weights over documents (sublinear
  tf, smoothed idf, l2-normalised vectors: the same numbers scikit-learn's
  ``TfidfVectorizer(sublinear_tf=True)`` gives) in pure Python, and vectorises
  new text against the fitted idf. Its fitted arrays are plain data: the
  ranking model stores them in the knowledge base and applies them without
  fitting anything again.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

# -- stop words -----------------------------------------------------------------------------------


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: English filler words: they say nothing about what a change or an obligation is about.
STOP_WORDS = _wordset("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing down during each either else even ever every few for from further get
gets had has have having he her here hers him his how however i if in into is it its itself just let lets like
may me might more most much must my neither no nor not now of off on once one only or other ought our ours out
over own per same she should since so some such than that the their theirs them then there these they this those
through thus to too under until up upon us very was we were what when where whether which while who whom whose
why will with within without would yet you your yours etc via eg ie use used uses using make makes made
""")

#: Words that say nothing about what a test exercises (filler, assertion and fixture vocabulary).
TEST_STOP_WORDS = _wordset("""
a an and are as at be by do does for from has have if in into is it its no not of on or so
that the then this to was when with without test tests testing self cls assert asserts equal
equals true false none def return py pytest mark unittest mock mocker monkeypatch fixture
fixtures tmp tmpdir tmp path str int bytes dict list len get set args kwargs value values
result res resp r e x y i j k n s t v assert equal is not in raises fail ok check should
data name obj object func function case cases param params parametrize expected actual
""")

#: Words of a diff that say nothing about what a change risks (language keywords and commit verbs).
CODE_NOISE = _wordset("""
a an and are as at be but by def do else for from func function if import in into is it its let new nil none
not null of on or package pass public private protected return self static that the then this to true false
try catch except finally var const void with while class struct interface type use using when where will
end begin elif fn impl pub mut async await yield lambda raise throw throws final int str bool string float
double long char byte dict list map set get our we you they them should would could can may must also just
make makes made change changes changed update updates updated add adds added remove removes removed switch
fix fixes fixed bump move moved rename renamed refactor cleanup tidy small minor some more less now
""")

# -- splitting ------------------------------------------------------------------------------------

_RAW_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[_\-][A-Za-z0-9]+)*")
_CAMEL_RE = re.compile(r"([a-z0-9])([A-Z])")
_ACRONYM_RE = re.compile(r"([A-Z]+)([A-Z][a-z])")
_SEPARATORS_RE = re.compile(r"[\s_\-.]+")
_CODE_WORD_RE = re.compile(
    r"(?<![A-Za-z])[a-z][A-Z]{2,}(?![A-Za-z])|[A-Z]+(?=[A-Z][a-z]{2})|[A-Z]?[a-z]+|[A-Z]+|\d+"
)
_CODE_TOKEN_RE = re.compile(r"(?u)\b[a-z][a-z0-9]+\b")


def split_identifier(name: str) -> list[str]:
    """The lower-case parts of an identifier: ``maxRetryCount`` / ``max_retry_count`` -> max, retry, count."""
    if name.islower() and name.isalnum():
        return [name]  # most words: nothing to split
    spaced = _ACRONYM_RE.sub(r"\1 \2", _CAMEL_RE.sub(r"\1 \2", name))
    return [p.lower() for p in _SEPARATORS_RE.split(spaced) if p]


def code_words(text: str) -> list[str]:
    """Lower-case words of code or text, digits apart: ``maxAge_cache-control`` -> max age cache control.

    One lower-case letter before an upper-case run is a word of its own (``mTLS`` -> mtls, not m tls): the way
    ``mTLS`` or ``eTLD`` are written, where the letter qualifies the acronym.
    """
    return [w.lower() for w in _CODE_WORD_RE.findall(text)]


def normalise(text: str) -> str:
    """The :func:`code_words` of ``text`` joined by single spaces (how mining stores and compares text)."""
    return " ".join(code_words(text))


# -- analyzers ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
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


def analyze_with_surface(text: str) -> list[tuple[str, str]]:
    """(term, surface form) pairs of prose: stems, whole compound names, and bigrams of neighbouring words."""
    out: list[tuple[str, str]] = []
    previous: tuple[str, str] | None = None
    end = 0
    for match in _RAW_RE.finditer(text):
        if text[end:match.start()].strip():
            previous = None  # punctuation between words ends a phrase
        end = match.end()
        raw = match.group(0)
        parts = split_identifier(raw)
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
    """The terms of prose (the analyzer of the ranking model, for catalog documents and changes alike)."""
    return [term for term, _ in analyze_with_surface(text)]


def analyze_code(text: str) -> list[str]:
    """The terms of normalised code words: each word of two characters or more, and each pair of neighbours."""
    tokens = _CODE_TOKEN_RE.findall(text)
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]


# -- phrases --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def term_pattern(term: str) -> re.Pattern[str]:
    """The regular expression a rule term matches in free text, as a whole word.

    Case does not matter; a space in the term also matches ``_`` or ``-``; a
    trailing ``*`` matches any ending; a one-word term of letters also matches
    its plural (``retry`` matches ``retries``). A term with an underscore
    (``proxy_cache_key``) matches only as written.
    """
    text = term.strip().lower()
    wildcard = text.endswith("*")
    text = text.rstrip("*")
    words = [re.escape(w) for w in re.split(r"[\s_\-]+", text) if w]
    body = r"[\s_\-]+".join(words) if len(words) > 1 else (words[0] if words else re.escape(text))
    if "_" in text and len(words) > 1:
        body = re.escape(text)
    if wildcard:
        body += r"[\w\-]*"
    elif re.fullmatch(r"[a-z]{3,}", text):
        body = f"{re.escape(text[:-1])}(?:y|ies)" if text.endswith("y") else f"{body}(?:s|es)?"
    return re.compile(rf"(?<![\w\-]){body}(?![\w\-])", re.I)


def _boundary(text: str, at: int) -> bool:
    """Whether ``text[at]`` is no word character nor dash (true past either end): the edge of a whole word."""
    if at < 0 or at >= len(text):
        return True
    char = text[at]
    return not (char.isalnum() or char in "_-")


def match_term(term: str, text: str) -> str | None:
    """The first match of :func:`term_pattern` in ``text`` (as written there), or None.

    A one-word term of ASCII letters in ASCII text (most rule terms and most changes) is found by plain string
    scanning, with the same rules and the same leftmost answer as the regular expression, so a query does not
    compile a regex per term; any other term or text goes through :func:`term_pattern`.
    """
    plain = term.strip().lower()
    if not (plain.isalpha() and plain.isascii() and text.isascii()):
        found = term_pattern(term).search(text)
        return found.group(0) if found else None
    lowered = text.lower()
    endings: tuple[str, ...]
    if len(plain) >= 3 and plain.endswith("y"):
        head, endings = plain[:-1], ("y", "ies")
    elif len(plain) >= 3:
        head, endings = plain, ("s", "es", "")
    else:
        head, endings = plain, ("",)
    at = lowered.find(head)
    while at >= 0:
        if _boundary(lowered, at - 1):
            after = at + len(head)
            for ending in endings:
                if lowered.startswith(ending, after) and _boundary(lowered, after + len(ending)):
                    return text[at:after + len(ending)]
        at = lowered.find(head, at + 1)
    return None


def literal(term: str) -> str:
    """A piece of text every match of ``term`` contains (lower case), to skip regexes that cannot match."""
    plain = term.strip().lower()
    if plain.isalpha() and plain.isascii():  # one plain word (most terms): no regex needed
        return plain[:-1] if len(plain) >= 4 and plain.endswith("y") else plain
    first = re.split(r"[\s_\-.*]+", term.strip().lower())[0]
    if re.fullmatch(r"[a-z]{3,}y", first):
        return first[:-1]  # retry also matches retries
    return first


def has_phrase(padded_text: str, phrase: str) -> bool:
    """Whether a normalised ``phrase`` occurs as whole words in normalised text given as ``f" {text} "``."""
    return bool(phrase) and f" {phrase} " in padded_text


# -- TF-IDF ---------------------------------------------------------------------------------------


def idf_weight(documents: int, frequency: int) -> float:
    """Smoothed inverse document frequency: ``ln((1 + n) / (1 + df)) + 1``."""
    return math.log((1 + documents) / (1 + frequency)) + 1.0


def weigh(counts: Counter[str] | dict[str, int], idf: Callable[[str], float | None]) -> dict[str, float]:
    """The l2-normalised TF-IDF vector of term counts (sublinear tf); terms without an idf are left out."""
    weights: dict[str, float] = {}
    for term, count in counts.items():
        value = idf(term)
        if value is not None:
            weights[term] = (1.0 + math.log(count)) * value
    norm = math.sqrt(sum(w * w for w in weights.values()))
    return {t: w / norm for t, w in weights.items()} if norm else {}


def _weigh_all(counts: Sequence[Counter[str]], idf: dict[str, float]) -> list[dict[str, float]]:
    """:func:`weigh` of every document whose terms all have an idf (the fitted ones): the same operations in
    the same order, so the same floats, without a function call per term (fitting is a hot path of mining)."""
    log, sqrt = math.log, math.sqrt
    vectors: list[dict[str, float]] = []
    for doc in counts:
        weights = {term: (1.0 + log(count)) * idf[term] for term, count in doc.items()}
        norm = sqrt(sum(w * w for w in weights.values()))
        vectors.append({t: w / norm for t, w in weights.items()} if norm else {})
    return vectors


@dataclass
class TfidfIndex:
    """TF-IDF fitted over documents: the sorted vocabulary, its idf, and each document's vector.

    ``vectors[d]`` maps the terms of document ``d`` to their weights (sublinear
    tf x smoothed idf, l2-normalised), as scikit-learn's ``TfidfVectorizer``
    with ``sublinear_tf=True`` computes them.
    """

    terms: list[str] = field(default_factory=list)
    idf: list[float] = field(default_factory=list)
    vectors: list[dict[str, float]] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def fit(cls, documents: Iterable[Sequence[str]]) -> TfidfIndex:
        """Fit over documents given as their terms (see :func:`analyze` and :func:`analyze_code`)."""
        counts = [Counter(doc) for doc in documents]
        frequency: Counter[str] = Counter()
        for doc in counts:
            frequency.update(doc.keys())
        terms = sorted(frequency)
        idf = [idf_weight(len(counts), frequency[t]) for t in terms]
        index = cls(terms=terms, idf=idf)
        index.vectors = _weigh_all(counts, dict(zip(terms, idf, strict=True)))
        return index

    def __post_init__(self) -> None:
        self._index = {t: i for i, t in enumerate(self.terms)}

    def idf_of(self, term: str) -> float | None:
        """The fitted idf of ``term``, or None for a term no document had."""
        i = self._index.get(term)
        return None if i is None else self.idf[i]

    def vectorize(self, terms: Iterable[str]) -> dict[str, float]:
        """The vector of a new document's terms (terms outside the vocabulary are ignored)."""
        return weigh(Counter(terms), self.idf_of)

    def postings(self) -> list[list[tuple[int, float]]]:
        """For each term of the vocabulary (in order), the documents holding it and its weight there."""
        out: list[list[tuple[int, float]]] = [[] for _ in self.terms]
        for d, vector in enumerate(self.vectors):
            for term, weight in vector.items():
                out[self._index[term]].append((d, weight))
        return out


def cosine(a: dict[str, float], b: dict[str, float]) -> float:
    """Dot product of two normalised sparse vectors (their cosine similarity)."""
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b[t] for t, w in a.items() if t in b)
