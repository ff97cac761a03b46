"""Map test units to obligations: interpretable rules, TF-IDF similarity and suite context, with reasons.

Evidence, combined per (unit, obligation):

1. **Rules** (``mappings/*.yaml``): a ``test_pattern`` rule's terms (whole-word
   phrases after :func:`~poetkb.learn.features.normalise`) or regex (searched in
   the normalised text) fire in some field of the unit, for ``rule weight x field
   weight`` (:data:`~poetkb.learn.features.FIELD_WEIGHT`). Fields are *primary*
   (the test's name, class, docstring, markers, file path: what the test says it
   is about) or *context* (comments, fixtures, asserted values, calls, strings,
   the module docstring, data files: what it happens to touch). Distinct rules
   firing in primary fields add up (noisy-or; one rule repeated in the name, the
   class and the path is one piece of evidence); context counts once, from a rule
   silent in the primary fields, at most :data:`CONTEXT_CAP`, so a test that only
   mentions a header never maps to the obligation about it. Only ``test_pattern`` rules are used
   (:data:`KIND_FACTOR`): the ``keyword``, ``identifier`` and ``directive``
   rules are written for change descriptions, code and configuration, and on test
   suites they cost far more precision than they add recall (see docs/learn.md).
   A rule naming failure modes maps to the obligations guarding them.
2. **Similarity**: TF-IDF vectors (as :class:`poetkb.text.TfidfIndex` weighs them, words and
   pairs of neighbouring words, :func:`poetkb.text.analyze_code`) of the unit's words (name words
   counted thrice, see :func:`~poetkb.learn.features.document`) against each
   obligation's text: title, statement, keywords, its failure modes, the terms of
   its ``test_pattern`` rules, and known examples (terms of tests already mapped
   to it in other sources). Cosine similarity, relative to the unit's most similar
   obligation, becomes at most :data:`SIM_MAX` (see :func:`similarity_confidence`).
3. **Suite context**: ambiguous words (``expires``, ``stale``, ``timeout``) mean
   different things in a cookie jar and in an HTTP cache. When a unit already has
   some primary evidence for an obligation, the share of the other units of its
   file or suite that map confidently to the same domain (``cache``,
   ``protocol``, ...) adds up to :data:`CONTEXT_BONUS` (from
   :data:`CONTEXT_SHARE_MIN`, full at :data:`CONTEXT_SHARE_FULL`). Context alone
   never maps a unit.
The parts combine as a noisy-or, ``1 - prod(1 - p)``. Obligations at or above
:data:`MAP_THRESHOLD` are mapped (at most :data:`MAX_OBLIGATIONS` per unit); those from
:data:`CANDIDATE_THRESHOLD` are kept as candidates that ``poet learn review`` offers a
person (see :func:`split`). Each carries the reasons that fired: rule ids, the terms and fields, the shared words, the
context. The result is deterministic for the same catalog and units.

**Learned combiner** (:mod:`poetkb.learn.learned`): with a model (the shipped one
by default), every pair with any evidence (a rule, one of the obligation's own
terms in any field, :func:`obligation_terms`, or being the unit's most similar
obligation) gets the model's probability over that evidence: the rules'
confidence, which fields hold the obligation's terms, how much of the file and
suite do, the similarity, the obligation's domain. It is fitted on labelled
suites and measured leave-one-suite-out (``benchmarks/learn_quality.py``). By
default (:data:`LEARNED_MODE` ``propose``) it only proposes: pairs it finds
likely that the rules missed become candidates for ``poet learn review``, with
the learned probability, the terms and fields it saw and the features that weighed most as the reason.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from poetkb.learn.features import FIELD_WEIGHT, FIELDS, PRIMARY_FIELDS, STOP_WORDS, MinedUnit, document
from poetkb.learn.learned import PairModel, TermIndex, default_model, pair_features
from poetkb.models import FailureMode, MappingRule, Obligation, ObligationMatch
from poetkb.text import analyze_code, has_phrase, idf_weight, normalise

#: Confidence at or above which a unit is mapped to an obligation.
MAP_THRESHOLD = 0.65
#: Below the map threshold but at least this confident: kept as candidates for review (not mapped).
CANDIDATE_THRESHOLD = 0.5
#: At most this many candidates per unit.
MAX_CANDIDATES = 2
#: Mappings below this confidence are listed by ``poet learn review``.
REVIEW_THRESHOLD = 0.8
#: At most this many obligations per unit (the most confident).
MAX_OBLIGATIONS = 4
#: How much a rule of each kind counts; kinds not listed are not used on test suites.
KIND_FACTOR: dict[str, float] = {"test_pattern": 1.0}
#: A rule that names a failure mode counts this much for the obligations guarding it.
FAILURE_MODE_FACTOR = 0.8
#: The most that context fields (comments, strings, calls, ...) add up to.
CONTEXT_CAP = 0.4
#: Suite context: nothing below CONTEXT_SHARE_MIN of a file's or suite's units mapping to the domain, then
#: growing to CONTEXT_BONUS at CONTEXT_SHARE_FULL.
CONTEXT_BONUS = 0.4
CONTEXT_SHARE_MIN = 0.05
CONTEXT_SHARE_FULL = 0.3
#: A unit counts for the suite context when its best mapping is at least this confident.
CONTEXT_STRONG = 0.7
#: Suite context applies only to a unit with at least this much primary rule evidence.
CONTEXT_MIN_PRIMARY = 0.4
#: Similarity: cosines of short tests against long obligation texts are small, but the obligation a test is
#: most similar to is usually the right one (measured, docs/learn.md). So similarity counts relative to the
#: unit's best match, squared, times a ramp on its absolute value from SIM_FLOOR to SIM_FULL; at most SIM_MAX,
#: below the map threshold: similarity alone never maps, it supports or outweighs an ambiguous rule hit.
SIM_FLOOR = 0.03
SIM_FULL = 0.09
SIM_MAX = 0.3
#: A class maps to an obligation when at least this share of its test methods do.
CLASS_MIN_SHARE = 0.2
#: Known examples kept per obligation (terms of already-mapped tests of other sources).
MAX_EXAMPLES = 40
_MAX_REASONS = 4
#: How the learned combiner's probability is used (see :func:`learned_confidence`): "propose" or "score".
#: Measured leave-one-suite-out, "score" traded precision for recall (docs/learn.md), so it proposes.
LEARNED_MODE = "propose"
#: In "score" mode, how many obligations of one unit the model may map (the most probable); its other likely
#: pairs become candidates. Measured leave-one-suite-out, one per unit kept precision (docs/learn.md).
LEARNED_LIMIT = 1
#: Passed as ``model`` to use the shipped model (:func:`poetkb.learn.learned.default_model`).
SHIPPED = "shipped"


#: What a match of a rule regex must contain (see :func:`required_literals`): every item of the list holds;
#: an item is a literal (lower case) the text must contain, or a tuple of alternatives (one must hold), each
#: alternative a list of items again.
Needs = list[Any]


@dataclass
class _Rule:
    rule: MappingRule
    phrases: list[tuple[str, str]]
    regex: re.Pattern[str] | None
    factor: float
    targets: dict[str, float]
    needs: Needs = field(default_factory=list)  # see required_literals
    quick: list[frozenset[str]] = field(default_factory=list)  # see flat_needs


def required_literals(pattern: str) -> Needs:
    """What every match of ``pattern`` contains, as literals (lower case) and alternatives of them.

    A cheap pre-filter (:func:`may_match`): a text that lacks what every match
    holds cannot match, so the regular expression is not searched in it (most rule
    regexes need words that most fields, and nearly all data-file text, never
    hold). Derived from the pattern's parse tree: runs of printable ASCII literal
    characters in what every match goes through (not optional repeats, not
    negative look-arounds); an alternation needs what one of its branches needs.
    Anything not understood adds no requirement, so the filter only ever skips
    searches that could not match; an empty list means "always search".
    """
    try:
        from re import _parser as sre  # type: ignore[attr-defined]  # Python 3.11+
    except ImportError:  # pragma: no cover - older Pythons
        import sre_parse as sre  # type: ignore[no-redef]
    try:
        tree = sre.parse(pattern)
    except (re.error, RecursionError, ValueError, TypeError):
        return []
    return _needs(list(tree), 0)


def _needs(items: list[Any], depth: int) -> Needs:
    """The requirements of a sequence of parse-tree items (see :func:`required_literals`)."""
    try:
        from re import _constants as c  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - older Pythons
        import sre_constants as c  # type: ignore[no-redef]

    out: Needs = []
    run: list[str] = []

    def flush() -> None:
        if run:
            out.append("".join(run).lower())
            run.clear()

    if depth > 20:
        return out
    for op, value in items:
        if op is c.LITERAL and 32 <= value < 127:
            run.append(chr(value))
            continue
        flush()
        if op is c.SUBPATTERN or op is getattr(c, "ATOMIC_GROUP", None) or op is c.ASSERT and value[0] == 1:
            out.extend(_needs(list(value[-1]), depth + 1))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)) and value[0] >= 1:
            out.extend(_needs(list(value[2]), depth + 1))
        elif op is c.BRANCH:
            branches = [_needs(list(branch), depth + 1) for branch in value[1]]
            if all(branches):  # a branch that needs nothing lets everything through
                out.append(tuple(branches))
    flush()
    return out


def flat_needs(needs: Needs) -> list[frozenset[str]]:
    """A looser, cheaper form of ``needs``: for each item, a set of literals one of which the text holds.

    An alternative's set holds, per branch, the branch's most telling literal set (the one whose
    shortest literal is longest). Checked first; :func:`may_match` only when it passes.
    """
    out: list[frozenset[str]] = []
    for need in needs:
        flat = _flat(need)
        if flat:
            out.append(flat)
    return out


def _flat(need: Any) -> frozenset[str]:
    if isinstance(need, str):
        return frozenset({need})
    union: set[str] = set()
    for branch in need:
        options = [f for f in (_flat(item) for item in branch) if f]
        if not options:
            return frozenset()
        union |= max(options, key=lambda f: (min(len(s) for s in f), -len(f)))
    return frozenset(union)


def may_match(needs: Needs, lowered: str) -> bool:
    """Whether ``lowered`` (a lower-case text) holds what :func:`required_literals` says every match holds."""
    for need in needs:
        if isinstance(need, str):
            if need not in lowered:
                return False
        elif not any(may_match(branch, lowered) for branch in need):
            return False
    return True


@dataclass
class _Evidence:
    """Evidence gathered for one (unit, obligation) pair: per rule, its best primary and context hits."""

    primary_hits: dict[str, tuple[float, str]] = field(default_factory=dict)  # rule id -> (p, reason)
    context_hits: dict[str, tuple[float, str]] = field(default_factory=dict)
    similarity: float = 0.0
    top_similarity: float = 0.0  # the unit's similarity to its most similar obligation

    def add(self, rule_id: str, fname: str, p: float, reason: str) -> None:
        hits = self.primary_hits if fname in PRIMARY_FIELDS else self.context_hits
        if p > hits.get(rule_id, (0.0, ""))[0]:
            hits[rule_id] = (p, reason)

    def primary(self) -> float:
        """Noisy-or over distinct rules (one rule repeated in several fields is one piece of evidence)."""
        miss = 1.0
        for p, _ in self.primary_hits.values():
            miss *= 1.0 - min(p, 0.99)
        return 1.0 - miss

    def context(self) -> float:
        """The best context hit of a rule that said nothing in the primary fields, capped."""
        best = max((p for rid, (p, _) in self.context_hits.items() if rid not in self.primary_hits), default=0.0)
        return min(best, CONTEXT_CAP)

    def reasons(self) -> list[str]:
        ranked = sorted(self.primary_hits.items(), key=lambda kv: (-kv[1][0], kv[0]))
        reasons = [reason for _, (_, reason) in ranked]
        extra = sorted(((p, r) for rid, (p, r) in self.context_hits.items() if rid not in self.primary_hits),
                       key=lambda t: (-t[0], t[1]))
        return reasons + [r for _, r in extra[:1]]


#: The longest matched text a reason quotes (a regex may match across a long field).
MATCH_QUOTE_CHARS = 60


def _matched(found: re.Match[str]) -> str:
    """What a rule regex matched, as a reason quotes it: the matched text, or for a match of zero width (a
    look-ahead rule such as ``^(?!...)(?=.*(content length))``) the last group it captured."""
    text = found.group(0)
    if not text and found.lastindex:
        text = found.group(found.lastindex) or ""
    text = text or f"/{found.re.pattern}/"
    return text if len(text) <= MATCH_QUOTE_CHARS else text[:MATCH_QUOTE_CHARS - 1] + "…"


def _compile(rule: MappingRule, targets: dict[str, float]) -> _Rule | None:
    factor = KIND_FACTOR.get(rule.kind)
    if factor is None or not targets:
        return None
    phrases = [(term, normalise(term)) for term in rule.terms]
    regex = re.compile(rule.regex, re.IGNORECASE) if rule.regex else None
    needs = required_literals(rule.regex) if rule.regex else []
    return _Rule(rule, [(t, p) for t, p in phrases if p], regex, factor, targets, needs, flat_needs(needs))


def obligation_document(
    ob: Obligation, failure_modes: Mapping[str, FailureMode], rules: Sequence[MappingRule], examples: Sequence[str]
) -> str:
    """The text an obligation is compared with: its words, its failure modes', its rules' terms, known examples."""
    parts = [ob.title, ob.statement, " ".join(ob.keywords), " ".join(ob.keywords), ob.id.replace(".", " ")]
    for fid in ob.failure_modes:
        fm = failure_modes.get(fid)
        if fm is not None:
            parts.extend([fm.title, " ".join(fm.keywords)])
    for rule in rules:
        if rule.kind == "test_pattern" and ob.id in rule.obligations:
            parts.extend([" ".join(rule.terms)] * 2)
    parts.extend(examples)
    text = normalise(" ".join(parts))
    return " ".join(w for w in text.split() if w not in STOP_WORDS and not w.isdigit())


class Mapper:
    """Maps units' feature fields to obligations. Build once per run; :meth:`map` is pure."""

    def __init__(
        self,
        obligations: Sequence[Obligation],
        rules: Sequence[MappingRule],
        failure_modes: Sequence[FailureMode] = (),
        examples: Mapping[str, Sequence[str]] | None = None,
        model: PairModel | str | None = SHIPPED,
    ) -> None:
        self.model = default_model() if model == SHIPPED else model if isinstance(model, PairModel) else None
        self.obligations = sorted(obligations, key=lambda o: o.id)
        known = {o.id for o in self.obligations}
        modes = {fm.id: fm for fm in failure_modes}
        guards: dict[str, set[str]] = {}
        for ob in self.obligations:
            for fid in ob.failure_modes:
                guards.setdefault(fid, set()).add(ob.id)
        for fm in failure_modes:
            guards.setdefault(fm.id, set()).update(o for o in fm.guarded_by if o in known)
        self.rules: list[_Rule] = []
        for rule in sorted(rules, key=lambda r: r.id):
            targets = {o: 1.0 for o in rule.obligations if o in known}
            for fid in rule.failure_modes:
                for oid in guards.get(fid, ()):
                    targets.setdefault(oid, FAILURE_MODE_FACTOR)
            compiled = _compile(rule, targets)
            if compiled is not None:
                self.rules.append(compiled)
        self.terms = TermIndex(obligation_terms(self.obligations, rules))
        examples = examples or {}
        self.documents = [
            obligation_document(ob, modes, rules, list(examples.get(ob.id, ()))[:MAX_EXAMPLES])
            for ob in self.obligations
        ]

    # -- rules ----------------------------------------------------------------------------------
    def _build_index(self) -> None:
        """First word of every rule phrase -> (rule index, term index, phrase): a field is scanned once."""
        self._by_first_word: dict[str, list[tuple[int, int, str]]] = {}
        self._regex_rules: list[int] = []
        self._hit_memo: dict[str, list[tuple[int, str]]] = {}
        for r, compiled in enumerate(self.rules):
            for t, (_, phrase_text) in enumerate(compiled.phrases):
                self._by_first_word.setdefault(phrase_text.split(" ", 1)[0], []).append((r, t, phrase_text))
            if compiled.regex is not None:
                self._regex_rules.append(r)

    def rule_evidence(self, fields: Mapping[str, str]) -> dict[str, _Evidence]:
        """Per obligation: each rule's best hit in the primary fields and in the context fields of the unit."""
        if not hasattr(self, "_by_first_word"):
            self._build_index()
        found: dict[str, _Evidence] = {}
        for fname in FIELDS:
            text = fields.get(fname)
            if not text:
                continue
            weight = FIELD_WEIGHT[fname]
            for r, hit in self._field_hits(text):
                compiled = self.rules[r]
                base = compiled.rule.weight * compiled.factor * weight
                reason = f"rule {compiled.rule.id}: {hit!r} in {fname}"
                for oid, target_factor in compiled.targets.items():
                    found.setdefault(oid, _Evidence()).add(compiled.rule.id, fname, base * target_factor, reason)
        return found

    def _field_hits(self, text: str) -> list[tuple[int, str]]:
        """(rule index, the term or regex that fired) for one field's text, sorted; memoised per text.

        Units of one file share their path and module text, methods of a class their class name:
        the memo makes those free after the first unit.
        """
        memo = self._hit_memo
        cached = memo.get(text)
        if cached is not None:
            return cached
        padded = f" {text} "
        hits: dict[int, str] = {}
        first: dict[int, int] = {}
        for word in set(text.split(" ")):
            for r, t, phrase_text in self._by_first_word.get(word, ()):
                if t < first.get(r, 1 << 30) and has_phrase(padded, phrase_text):
                    first[r] = t
                    hits[r] = self.rules[r].phrases[t][0]
        # Lower case for the literal pre-filter; only on ASCII text, where case folding is plain (a non-ASCII
        # text is searched without it: IGNORECASE also folds e.g. the Kelvin sign, str.lower does not).
        lowered = text.lower() if text.isascii() else None
        for r in self._regex_rules:
            compiled = self.rules[r]
            regex = compiled.regex
            if r in hits or regex is None:
                continue
            if lowered is not None and not (all(any(s in lowered for s in alts) for alts in compiled.quick)
                                            and may_match(compiled.needs, lowered)):
                continue  # a literal every match holds is missing: the search could not match
            found = regex.search(text)
            if found is not None:
                hits[r] = _matched(found)
        result = sorted(hits.items())
        if len(memo) > 50_000:
            memo.clear()
        memo[text] = result
        return result

    # -- similarity -----------------------------------------------------------------------------
    def similarity(
        self, units: Sequence[Mapping[str, str]]
    ) -> tuple[list[list[float]], list[dict[str, float]], list[dict[str, float]]]:
        """(unit x obligation cosine matrix, unit vectors, obligation vectors) of TF-IDF fitted over both."""
        # TF-IDF as TfidfIndex.fit computes it (the same floats: same operations, same order), without sorting
        # the vocabulary or keeping the weights of a unit's terms no obligation has: they count in the unit's
        # norm only, and the cosines and shared terms need the rest.
        counts = [Counter(analyze_code(text)) for text in [*self.documents, *(document(u) for u in units)]]
        frequency: Counter[str] = Counter()
        for doc in counts:
            frequency.update(doc.keys())
        n = len(counts)
        idf = {term: idf_weight(n, df) for term, df in frequency.items()}
        ob_vectors = [_tfidf(doc, idf) for doc in counts[: len(self.documents)]]
        vocabulary = {term for vector in ob_vectors for term in vector}
        unit_vectors = [_tfidf(doc, idf, vocabulary) for doc in counts[len(self.documents):]]
        by_term: dict[str, list[tuple[int, float]]] = {}
        for j, vector in enumerate(ob_vectors):
            for term, weight in vector.items():
                by_term.setdefault(term, []).append((j, weight))
        sims = []
        for vector in unit_vectors:
            row = [0.0] * len(ob_vectors)
            for term, weight in vector.items():
                for j, ob_weight in by_term.get(term, ()):
                    row[j] += weight * ob_weight
            sims.append(row)
        return sims, unit_vectors, ob_vectors

    def similarity_rows(
        self, units: Sequence[Mapping[str, str]], sims: Sequence[Sequence[float]] | None = None
    ) -> list[dict[str, float]]:
        """Per unit: obligation -> cosine, for the cosines above zero."""
        if sims is None:
            sims = self.similarity(units)[0]
        return [{ob.id: v for ob, v in zip(self.obligations, row, strict=True) if v > 0.0} for row in sims]

    @staticmethod
    def _shared_terms(unit_vector: Mapping[str, float], ob_vector: Mapping[str, float], limit: int = 4) -> list[str]:
        """The words that weigh most in both vectors (ties in vocabulary order)."""
        scored = sorted((weight * ob_vector[term], term) for term, weight in unit_vector.items() if term in ob_vector)
        scored.sort(key=lambda t: -t[0])
        return [term for _, term in scored[:limit]]

    # -- combined -------------------------------------------------------------------------------
    def map(
        self, units: Sequence[Mapping[str, str]], groups: Sequence[str] | None = None, *, floor: float | None = None
    ) -> list[list[ObligationMatch]]:
        """For each unit (its rendered feature fields), every obligation at least a candidate, best first.

        ``groups`` names each unit's file, for the file part of the suite context.
        :func:`split` separates the mapped obligations from the candidates. ``floor``
        (default :data:`CANDIDATE_THRESHOLD`) is the least confidence kept.
        """
        floor = CANDIDATE_THRESHOLD if floor is None else floor
        if not units:
            return []
        sims, unit_vectors, ob_vectors = self.similarity(units)
        evidence: list[dict[str, _Evidence]] = []
        for i, fields in enumerate(units):
            found = self.rule_evidence(fields)
            cosines = sims[i]
            top = max(cosines, default=0.0)
            # similarity only supports rule evidence (alone it stays below every threshold): attach it there
            for oid, ev in found.items():
                j = self._index(oid)
                if cosines[j] > SIM_FLOOR:
                    ev.similarity, ev.top_similarity = float(cosines[j]), top
            evidence.append(found)
        groups = list(groups) if groups is not None else [""] * len(units)
        context = _SuiteContext(evidence, groups)
        scored: list[dict[str, tuple[float, list[str]]]] = []
        for i, found in enumerate(evidence):
            row: dict[str, tuple[float, list[str]]] = {}
            for oid, ev in found.items():
                confidence = confidence_of(ev)
                why = ""
                if confidence < 1.0 and ev.primary() >= CONTEXT_MIN_PRIMARY:
                    bonus, why = context.bonus(i, oid)
                    confidence = 1.0 - (1.0 - confidence) * (1.0 - bonus)
                reasons = ev.reasons() + ([why] if why else [])
                if similarity_confidence(ev.similarity, ev.top_similarity) > 0.05:
                    shared = self._shared_terms(unit_vectors[i], ob_vectors[self._index(oid)])
                    reasons.append(f"similar to the obligation ({ev.similarity:.2f}): {', '.join(shared)}")
                row[oid] = (confidence, reasons)
            scored.append(row)
        if self.model is not None:
            scored = self.learned(units, groups, scored, sims=sims)
        results: list[list[ObligationMatch]] = []
        for row in scored:
            matches = [ObligationMatch(id=oid, confidence=round(c, 3), reasons=r[:_MAX_REASONS])
                       for oid, (c, r) in row.items() if c >= floor]
            matches.sort(key=lambda m: (-m.confidence, m.id))
            results.append(matches)
        return results

    def learned(
        self,
        units: Sequence[Mapping[str, str]],
        groups: Sequence[str],
        scored: Sequence[Mapping[str, tuple[float, list[str]]]],
        model: PairModel | None = None,
        sims: Sequence[Sequence[float]] | None = None,
    ) -> list[dict[str, tuple[float, list[str]]]]:
        """The rules' results re-scored by the learned combiner (``model``, else the mapper's own).

        ``sims`` is the unit x obligation cosine matrix of :meth:`similarity` (computed when not given).
        """
        model = model or self.model
        if model is None:
            return [dict(row) for row in scored]
        hits = [self.terms.hits(fields) for fields in units]
        vectors = pair_features([{o: c for o, (c, _) in row.items()} for row in scored], hits, groups,
                                self.similarity_rows(units, sims))
        out: list[dict[str, tuple[float, list[str]]]] = []
        for row, where_by_oid, pairs in zip(scored, hits, vectors, strict=True):
            new: dict[str, tuple[float, list[str]]] = {}
            probabilities = {oid: model.probability(vector) for oid, vector in pairs.items()}
            confidences = learned_scores({oid: row.get(oid, (0.0, []))[0] for oid in pairs}, probabilities, model)
            for oid, vector in pairs.items():
                p, confidence = probabilities[oid], confidences[oid]
                rule, rule_reasons = row.get(oid, (0.0, []))
                if confidence == rule:
                    if oid in row:
                        new[oid] = row[oid]
                    continue
                where = where_by_oid.get(oid, {})
                seen = ", ".join(f"{term!r} in {f}" for f, term in list(where.items())[:3])
                reason = f"learned ({p:.2f})" + (f": {seen}" if seen else "")
                weighed = model.weighed_most(vector)
                if weighed:
                    reason += f"; weighed most: {', '.join(weighed)}"
                new[oid] = (confidence, [*list(rule_reasons)[:_MAX_REASONS - 1], reason])
            out.append(new)
        return out

    def _index(self, oid: str) -> int:
        if not hasattr(self, "_positions"):
            self._positions = {ob.id: j for j, ob in enumerate(self.obligations)}
        return self._positions[oid]


def _tfidf(counts: Mapping[str, int], idf: Mapping[str, float],
           keep: set[str] | frozenset[str] | None = None) -> dict[str, float]:
    """A document's l2-normalised TF-IDF vector (sublinear tf), computed as :func:`poetkb.text.weigh` does (the
    same floats); with ``keep``, only those terms are returned (the norm still counts every term)."""
    log = math.log
    weights = {term: (1.0 + log(count)) * idf[term] for term, count in counts.items()}
    norm = math.sqrt(sum(w * w for w in weights.values()))
    if not norm:
        return {}
    if keep is None:
        return {t: w / norm for t, w in weights.items()}
    return {t: w / norm for t, w in weights.items() if t in keep}


def learned_confidence(rule: float, p: float, mode: str | None = None) -> float:
    """A pair's confidence from the rules' and the learned combiner's probability, by :data:`LEARNED_MODE`.

    ``propose``: the rules decide what is mapped; a pair the combiner finds more
    likely than not (p >= CANDIDATE_THRESHOLD) and the rules leave below the
    candidate threshold becomes a candidate for review (never mapped by the model
    alone, never lowered). ``score``: the confidence is the probability.
    """
    if (mode or LEARNED_MODE) == "score":
        return p
    if rule >= CANDIDATE_THRESHOLD or p < CANDIDATE_THRESHOLD:
        return rule
    return min(p, round(MAP_THRESHOLD - 0.001, 3))


def learned_scores(rules: Mapping[str, float], probabilities: Mapping[str, float], model: PairModel,
                   mode: str | None = None) -> dict[str, float]:
    """One unit's confidences from the rules' and the model's (:func:`learned_confidence`, by mode).

    In "score" mode the probability is put on the mapper's scale (:meth:`PairModel.confidence`: the model's
    own threshold lands on :data:`MAP_THRESHOLD`) and only the unit's :data:`LEARNED_LIMIT` most probable
    pairs may stay mapped; its other pairs are kept as candidates at most.
    """
    if (mode or LEARNED_MODE) != "score":
        return {oid: learned_confidence(rules.get(oid, 0.0), p, mode) for oid, p in probabilities.items()}
    ranked = sorted(probabilities, key=lambda oid: (-probabilities[oid], oid))
    out = {}
    for rank, oid in enumerate(ranked):
        confidence = round(model.confidence(probabilities[oid], MAP_THRESHOLD), 3)
        out[oid] = confidence if rank < LEARNED_LIMIT else min(confidence, round(MAP_THRESHOLD - 0.001, 3))
    return out


def obligation_terms(obligations: Sequence[Obligation], rules: Sequence[MappingRule]) -> dict[str, list[str]]:
    """Obligation -> its own terms, normalised: its keywords and the terms of the test rules that point at it."""
    terms: dict[str, set[str]] = {ob.id: {normalise(k) for k in ob.keywords} for ob in obligations}
    for rule in rules:
        if rule.kind != "test_pattern":
            continue
        for oid in rule.obligations:
            if oid in terms:
                terms[oid].update(normalise(t) for t in rule.terms)
    return {oid: sorted(t for t in found if t) for oid, found in terms.items()}


def confidence_of(ev: _Evidence) -> float:
    """Rule evidence (distinct primary rules add up, context capped) and similarity, as a noisy-or."""
    sim = similarity_confidence(ev.similarity, ev.top_similarity)
    return 1.0 - (1.0 - ev.primary()) * (1.0 - ev.context()) * (1.0 - sim)


class _SuiteContext:
    """Shares of units (per file and in the whole run) whose confident first-pass mapping is in each domain."""

    def __init__(self, evidence: Sequence[Mapping[str, _Evidence]], groups: Sequence[str]) -> None:
        self.groups = list(groups)
        self.domains: list[set[str]] = []
        for found in evidence:
            strong = {oid.split(".", 1)[0] for oid, ev in found.items() if confidence_of(ev) >= CONTEXT_STRONG}
            self.domains.append(strong)
        self.suite = _shares(self.domains)
        by_group: dict[str, list[set[str]]] = {}
        for group, domains in zip(self.groups, self.domains, strict=True):
            by_group.setdefault(group, []).append(domains)
        self.files = {group: _shares(members) for group, members in by_group.items()}
        self.sizes = {group: len(members) for group, members in by_group.items()}

    def bonus(self, index: int, oid: str) -> tuple[float, str]:
        domain = oid.split(".", 1)[0]
        group = self.groups[index]
        # the unit's own first-pass result does not count for itself
        own = 1 if domain in self.domains[index] else 0
        file_n, suite_n = self.sizes[group] - 1, len(self.domains) - 1
        file_share = (self.files[group].get(domain, 0) - own) / file_n if file_n >= 3 else 0.0
        suite_share = (self.suite.get(domain, 0) - own) / suite_n if suite_n >= 1 else 0.0
        share, where = max((file_share, "file"), (suite_share, "suite"))
        if share <= CONTEXT_SHARE_MIN:
            return 0.0, ""
        bonus = CONTEXT_BONUS * min(1.0, (share - CONTEXT_SHARE_MIN) / (CONTEXT_SHARE_FULL - CONTEXT_SHARE_MIN))
        return bonus, f"context: {share:.0%} of the tests in this {where} map to {domain} obligations"


def _shares(members: Sequence[set[str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for domains in members:
        for domain in domains:
            counts[domain] = counts.get(domain, 0) + 1
    return counts


def split(matches: Sequence[ObligationMatch]) -> tuple[list[ObligationMatch], list[ObligationMatch]]:
    """(mapped, candidates) of one unit's matches, by the thresholds, each capped and best first."""
    mapped = [m for m in matches if m.confidence >= MAP_THRESHOLD][:MAX_OBLIGATIONS]
    candidates = [m for m in matches if m.confidence < MAP_THRESHOLD][:MAX_CANDIDATES]
    return mapped, candidates


def aggregate_classes(
    units: Sequence[MinedUnit], matches: list[list[ObligationMatch]]
) -> list[list[ObligationMatch]]:
    """A test class exercises what its tests exercise: add its methods' mappings to each class unit.

    Units are paired by their ``file`` and ``test`` (``TestX.test_y`` belongs to ``TestX``). For each obligation that at
    least :data:`CLASS_MIN_SHARE` of a class's methods (and at least two, in classes
    of more than two) map to, the class gets the best method confidence, with the
    reason "k of n tests in the class map to it"; its own evidence is kept.
    """
    members: dict[tuple[str, str], list[int]] = {}
    for i, unit in enumerate(units):
        test = unit.test
        if test and "." in test and unit.kind != "class":
            members.setdefault((unit.file, test.rsplit(".", 1)[0]), []).append(i)
    result = [list(m) for m in matches]
    for i, unit in enumerate(units):
        if unit.kind != "class" or unit.test is None:
            continue
        found = members.get((unit.file, unit.test), [])
        if not found:
            continue
        best: dict[str, float] = {}
        count: dict[str, int] = {}
        for j in found:
            for match in matches[j]:
                best[match.id] = max(best.get(match.id, 0.0), match.confidence)
                count[match.id] = count.get(match.id, 0) + 1
        own = {m.id: m for m in result[i]}
        needed = max(min(2, len(found)), CLASS_MIN_SHARE * len(found))
        for oid in (o for o in best if count[o] >= needed):
            reason = f"{count[oid]} of {len(found)} tests in the class map to it"
            if oid in own:
                old = own[oid]
                own[oid] = ObligationMatch(id=oid, confidence=max(old.confidence, best[oid]),
                                           reasons=[*old.reasons, reason][:_MAX_REASONS])
            else:
                own[oid] = ObligationMatch(id=oid, confidence=best[oid], reasons=[reason])
        ranked = sorted(own.values(), key=lambda m: (-count.get(m.id, 0), -m.confidence, m.id))
        result[i] = sorted(ranked[:MAX_OBLIGATIONS], key=lambda m: (-m.confidence, m.id))
    return result


def similarity_confidence(similarity: float, top: float) -> float:
    """How much a cosine similarity counts: relative to the unit's best (squared), ramped on its own value."""
    if similarity <= SIM_FLOOR or top <= 0.0:
        return 0.0
    ramp = min(1.0, (similarity - SIM_FLOOR) / (SIM_FULL - SIM_FLOOR))
    return SIM_MAX * ramp * (similarity / top) ** 2
