"""A learned combiner: how much the evidence for a (unit, obligation) pair says, fitted on labelled suites.

The rules of ``mappings/test_patterns.yaml`` say what people know test names
mean, and hand-set weights say how much each place a word is found in counts.
On suites the weights were not set on, both miss: a test named
``test_ContentLengthReader`` or ``test_expired_cert`` fires no rule, a file of
``X-Forwarded-For`` tests that only pass the header along fires one. This
model learns, from the labelled suites in ``tests/fixtures/learn/labels/``,
how the evidence of a pair turns into the chance that the unit exercises the
obligation. Its features describe the *relation* between a unit and an
obligation, never a suite's own vocabulary, so what it learns on eleven suites
carries over to a twelfth:

- the rules' confidence for the pair (:mod:`poetkb.learn.mapping`), and whether
  it reaches the map threshold;
- for each feature field (name, class, docstring, path, strings, calls, asserted
  values, data files, ...): whether one of the obligation's own terms (its
  keywords and the terms of the rules that point at it) occurs there;
- how many fields hold one, whether a primary field does, whether only context
  fields do;
- the share of the other units of the same file, and of the suite, whose
  primary fields hold one (units of one file share their subject);
- the obligation's domain (``cache``, ``protocol``, ``security``, ...), alone and
  with the primary-field hit: obligations of one group share how their tests
  are named.

A logistic regression (scikit-learn, L2) over these is trained on every pair
of a labelled unit and an obligation that has any evidence. Training imports
scikit-learn; applying the model does not: the coefficients are plain data
(:meth:`PairModel.to_json`), applied by a dot product. The shipped model
(:data:`DEFAULT_PATH`) is trained by ``poet learn train-model``
(:mod:`poetkb.learn.training`) from the labelled suites; the benchmark's
leave-one-suite-out figures train one per held-out suite on the other suites only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from poetkb.learn.features import FIELDS, PRIMARY_FIELDS
from poetkb.text import has_phrase

#: Where the shipped model lives (package data, next to this module).
DEFAULT_PATH = Path(__file__).with_name("learned_model.json")
#: Format version of the model file; another version is not loaded.
MODEL_VERSION = 3
#: Inverse regularisation strength of the logistic regression.
C = 1.0
#: Domains with a feature of their own; others share "other".
DOMAINS = ("cache", "protocol", "security", "resilience", "observability", "routing", "data", "auth", "perf", "state")
#: The least cosine for which a unit's most similar obligation is a pair of its own.
SIM_MIN = 0.03
#: A rule confidence from which the pair counts as mapped by the rules alone.
RULE_MAPPED = 0.65


def feature_names() -> list[str]:
    """The names of the pair features, in order (also the keys of the stored coefficients)."""
    names = ["rule", "rule_mapped", *(f"in_{f}" for f in FIELDS), "fields_hit", "primary_hit", "context_only",
             "file_share", "suite_share", "similarity", "similarity_relative", "most_similar",
             "file_rule_mean", "file_rule_best", "file_domain_mapped", "rule_gap", "rule_top"]
    for domain in (*DOMAINS, "other"):
        names += [f"domain_{domain}", f"domain_{domain}_primary"]
    return names


class TermIndex:
    """Each obligation's own terms (keywords and rule terms, normalised), indexed by their first word."""

    def __init__(self, terms: Mapping[str, Sequence[str]]) -> None:
        self.by_first: dict[str, list[tuple[str, str]]] = {}
        for oid, phrases in sorted(terms.items()):
            for phrase in sorted(set(phrases)):
                if phrase:
                    self.by_first.setdefault(phrase.split(" ", 1)[0], []).append((oid, phrase))
        self._memo: dict[str, dict[str, str]] = {}

    def hits(self, fields: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """Obligation -> {field: the first term of the obligation found in that field}."""
        out: dict[str, dict[str, str]] = {}
        for name in FIELDS:
            text = fields.get(name)
            if not text:
                continue
            for oid, phrase in self._field_hits(text).items():
                out.setdefault(oid, {})[name] = phrase
        return out

    def _field_hits(self, text: str) -> dict[str, str]:
        cached = self._memo.get(text)
        if cached is not None:
            return cached
        padded = f" {text} "
        found: dict[str, str] = {}
        for word in dict.fromkeys(text.split(" ")):  # in text order: the first term found is the same every run
            for oid, phrase in self.by_first.get(word, ()):
                if oid not in found and has_phrase(padded, phrase):
                    found[oid] = phrase
        if len(self._memo) > 50_000:
            self._memo.clear()
        self._memo[text] = found
        return found


def pair_features(
    rule_confidences: Sequence[Mapping[str, float]],
    hits: Sequence[Mapping[str, Mapping[str, str]]],
    groups: Sequence[str],
    similarities: Sequence[Mapping[str, float]] | None = None,
) -> list[dict[str, list[float]]]:
    """For each unit of one run: obligation -> its feature vector, for every obligation with any evidence.

    ``similarities`` gives each unit's TF-IDF cosine to each obligation (see
    :meth:`poetkb.learn.mapping.Mapper.similarity`); the unit's most similar
    obligation is a pair even without a rule or a term.
    """
    primary_by_unit = [{oid for oid, where in h.items() if PRIMARY_FIELDS & where.keys()} for h in hits]
    per_group: dict[str, dict[str, int]] = {}
    group_size: dict[str, int] = {}
    suite_counts: dict[str, int] = {}
    for group, primary in zip(groups, primary_by_unit, strict=True):
        counts = per_group.setdefault(group, {})
        group_size[group] = group_size.get(group, 0) + 1
        for oid in primary:
            counts[oid] = counts.get(oid, 0) + 1
            suite_counts[oid] = suite_counts.get(oid, 0) + 1
    n = len(hits)
    # file context from the siblings' rule confidences (what the rules predict for them, never a label)
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    rule_sum: dict[str, dict[str, float]] = {}
    rule_top: dict[str, dict[str, list[float]]] = {}
    domain_mapped: dict[str, dict[str, int]] = {}
    unit_domains: list[set[str]] = []
    for i, rules in enumerate(rule_confidences):
        group = groups[i]
        sums, tops = rule_sum.setdefault(group, {}), rule_top.setdefault(group, {})
        for oid, c in rules.items():
            sums[oid] = sums.get(oid, 0.0) + c
            two = tops.setdefault(oid, [0.0, 0.0])  # the best two confidences of the file for the obligation
            if c > two[0]:
                two[0], two[1] = c, two[0]
            elif c > two[1]:
                two[1] = c
        mapped = {oid.split(".", 1)[0] for oid, c in rules.items() if c >= RULE_MAPPED}
        unit_domains.append(mapped)
        counts = domain_mapped.setdefault(group, {})
        for domain in mapped:
            counts[domain] = counts.get(domain, 0) + 1
    out: list[dict[str, list[float]]] = []
    for i, (rules, where_by_oid, group) in enumerate(zip(rule_confidences, hits, groups, strict=True)):
        pairs: dict[str, list[float]] = {}
        sims = similarities[i] if similarities is not None else {}
        top = max(sims.values(), default=0.0)
        best = {oid for oid, v in sims.items() if v == top and top >= SIM_MIN}
        top_rule = max(rules.values(), default=0.0)
        siblings = group_size[group] - 1
        for oid in sorted(set(rules) | set(where_by_oid) | best):
            where = where_by_oid.get(oid, {})
            rule = float(rules.get(oid, 0.0))
            in_primary = bool(PRIMARY_FIELDS & where.keys())
            own = 1 if oid in primary_by_unit[i] else 0
            others = group_size[group] - 1
            file_share = (per_group[group].get(oid, 0) - own) / others if others > 0 else 0.0
            suite_share = (suite_counts.get(oid, 0) - own) / (n - 1) if n > 1 else 0.0
            vector = [rule, 1.0 if rule >= RULE_MAPPED else 0.0, *(1.0 if f in where else 0.0 for f in FIELDS),
                      len(where) / len(FIELDS), 1.0 if in_primary else 0.0, 1.0 if where and not in_primary else 0.0,
                      file_share, suite_share]
            sim = float(sims.get(oid, 0.0))
            vector += [sim, sim / top if top > 0 else 0.0, 1.0 if oid in best else 0.0]
            domain = oid.split(".", 1)[0]
            if siblings > 0:
                first, second = rule_top[group].get(oid, [0.0, 0.0])
                file_best = second if rule == first else first
                file_mean = (rule_sum[group].get(oid, 0.0) - rule) / siblings
                own_domain = 1 if domain in unit_domains[i] else 0
                file_domain = (domain_mapped[group].get(domain, 0) - own_domain) / siblings
            else:
                file_best = file_mean = file_domain = 0.0
            vector += [file_mean, file_best, file_domain, top_rule - rule,
                       1.0 if rule == top_rule and rule > 0 else 0.0]
            domain = domain if domain in DOMAINS else "other"
            for d in (*DOMAINS, "other"):
                vector += [1.0 if d == domain else 0.0, 1.0 if d == domain and in_primary else 0.0]
            pairs[oid] = vector
        out.append(pairs)
    return out


@dataclass
class PairModel:
    """A fitted logistic regression over :func:`pair_features`."""

    intercept: float = 0.0
    coef: dict[str, float] = field(default_factory=dict)
    trained_on: list[str] = field(default_factory=list)
    pairs: int = 0
    #: The probability from which the model's pairs are mapped, chosen leave-one-suite-out on the suites it
    #: was trained on (``benchmarks/learn_quality.py --write-model``); :meth:`confidence` puts it at the
    #: mapper's map threshold.
    threshold: float = 0.5

    def probability(self, vector: Sequence[float]) -> float:
        names = feature_names()
        z = self.intercept + sum(self.coef.get(n, 0.0) * v for n, v in zip(names, vector, strict=True))
        return 1.0 / (1.0 + math.exp(-z)) if z > -30 else 0.0

    def confidence(self, p: float, map_threshold: float) -> float:
        """The probability on the mapper's scale: shifted in log-odds so that :attr:`threshold` lands on
        ``map_threshold`` (monotone; 0 and 1 stay where they are)."""
        if p <= 0.0 or p >= 1.0:
            return p
        z = math.log(p / (1 - p)) - _logit(self.threshold) + _logit(map_threshold)
        return 1.0 / (1.0 + math.exp(-z)) if z > -30 else 0.0

    def weighed_most(self, vector: Sequence[float], limit: int = 2) -> list[str]:
        """The features that pushed this pair's probability up the most (coefficient x value), best first."""
        parts = [(self.coef.get(n, 0.0) * v, n) for n, v in zip(feature_names(), vector, strict=True) if v]
        return [n for w, n in sorted(parts, key=lambda t: (-t[0], t[1]))[:limit] if w > 0]

    def to_json(self) -> str:
        """Deterministic JSON: features in order, rounded numbers."""
        data = {
            "version": MODEL_VERSION,
            "trained_on": sorted(self.trained_on),
            "pairs": self.pairs,
            "threshold": round(self.threshold, 4),
            "intercept": round(self.intercept, 4),
            "coef": {n: round(self.coef.get(n, 0.0), 4) for n in feature_names()},
        }
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PairModel | None:
        """The model in ``text``, or None when it is not a model of this version and these features."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("version") != MODEL_VERSION:
            return None
        try:
            coef = {str(n): float(w) for n, w in data["coef"].items()}
            if set(coef) != set(feature_names()):
                return None
            return cls(float(data["intercept"]), coef, [str(s) for s in data.get("trained_on", [])],
                       int(data.get("pairs", 0)), float(data.get("threshold", 0.5)))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


_DEFAULT: list[PairModel | None] = []


def default_model() -> PairModel | None:
    """The shipped model (read once per process), or None when there is none."""
    if not _DEFAULT:
        try:
            text = DEFAULT_PATH.read_text(encoding="utf-8")
        except OSError:
            text = ""
        _DEFAULT.append(PairModel.from_json(text) if text else None)
    return _DEFAULT[0]


def train(vectors: Sequence[Sequence[float]], targets: Sequence[int], *, sources: Sequence[str] = (),
          c: float = C) -> PairModel:
    """Fit the model on pairs (their feature vectors, and 1 where the label says the unit exercises it)."""
    from sklearn.linear_model import LogisticRegression  # heavy: only when training

    regression = LogisticRegression(C=c, max_iter=5000)
    regression.fit([list(v) for v in vectors], list(targets))
    coef = {n: float(w) for n, w in zip(feature_names(), regression.coef_[0], strict=True)}
    return PairModel(float(regression.intercept_[0]), coef, list(sources), len(targets))
