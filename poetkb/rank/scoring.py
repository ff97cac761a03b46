"""Score every obligation for an understood change, keeping the evidence for the explanation.

Each obligation collects strength (0 to 1) on independent channels:

``rule``
    a mapping rule fired on the change and maps to the obligation, directly or
    through a failure mode it guards (strength x rule weight x path strength);
``text``
    TF-IDF cosine similarity between the change and the obligation's own text;
``failure_mode``
    similarity with a failure mode the obligation guards against;
``recipe``
    similarity with a recipe that exercises the obligation;
``pattern``
    similarity with a learned test pattern mapped to the obligation
    (x the pattern's confidence);
``related``
    a fraction of the text match of a related obligation.

Graph channels use the spread table of :mod:`poetkb.rank.model` (networkx
paths change -> failure mode / rule / pattern / recipe -> obligation). The
channels add up to an *evidence* total (see :func:`evidence`: repeated rules
and the word-based channels count with diminishing returns), multiplied by a
risk factor (high-risk obligations first among equals) and a component factor
(obligations that do not apply to the change's component fall back). The
score shown is ``1 - exp(-evidence)``: 0 for no evidence, about 0.6 for one
reviewed directive rule, near 1 when rules and words agree. Obligations sort
on the evidence itself, so scores that round alike still order; ties break on
the obligation id. Everything is deterministic.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from poetkb.rank.change import ChangeSummary
from poetkb.rank.matching import Matcher, RuleHit
from poetkb.rank.model import SPREAD, RankModel
from poetkb.text import analyze, analyze_with_surface
from poetkb.types import RISK_WEIGHT, NodeId

Fit = Literal["applies", "generic", "off", "unknown"]

#: channel weights in the evidence total
WEIGHTS = {"rule": 1.0, "text": 0.75, "failure_mode": 0.6, "recipe": 0.4, "pattern": 0.5, "related": 0.8}
#: channels that see the same words (combined as the strongest plus a share of the others)
LEXICAL = ("text", "failure_mode", "recipe", "pattern")
AGREEMENT = 0.5
#: words alone never count for more than this: a reviewed rule that fires is stronger evidence
LEXICAL_CAP = 0.75
#: cosine similarity below SIM_FLOOR is noise; at SIM_FULL and above a text channel is at full strength
SIM_FLOOR = 0.04
SIM_FULL = 0.3
#: a rule term found in at most SPEC_DOCS catalog documents is fully specific; a common word counts SPEC_FLOOR
SPEC_DOCS = 3
SPEC_FLOOR = 0.5
#: how many of the most similar learned patterns lend their match to obligations
TOP_PATTERNS = 40
#: obligations scoring below this are not reported
MIN_SCORE = 0.08
#: factor for an obligation that does not apply to the change's component
OFF_COMPONENT = 0.55
#: components for which obligations of any HTTP intermediary apply
HTTP_INTERMEDIARIES = {"nginx", "haproxy", "varnish", "envoy"}


@dataclass
class Contribution:
    """One piece of evidence for an obligation: a channel, its strength, the graph path, matched terms."""

    channel: str
    strength: float
    path: list[str]
    terms: list[str] = field(default_factory=list)
    rule_hit: RuleHit | None = None


@dataclass
class Scored:
    """An obligation's score and the evidence behind it."""

    id: str
    score: float
    channels: dict[str, float]
    contributions: list[Contribution]
    risk: str
    component_fit: Fit
    evidence: float = 0.0  # the unbounded total behind ``score`` (sorting uses it, so saturated scores still order)


def similarities(model: RankModel, query: str) -> tuple[dict[int, float], dict[int, list[tuple[float, str]]]]:
    """Cosine similarity of ``query`` with every document it shares a term with, and the shared terms."""
    vector = model.vectorize(query)
    sims: dict[int, float] = defaultdict(float)
    shared: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for term, q_weight in vector.items():
        docs, weights = model.postings(term)
        for doc, weight in zip(docs, weights, strict=True):
            part = q_weight * weight
            sims[doc] += part
            shared[doc].append((part, term))
    return sims, shared


def text_strength(cosine: float) -> float:
    if cosine <= SIM_FLOOR:
        return 0.0
    return min(1.0, (cosine - SIM_FLOOR) / (SIM_FULL - SIM_FLOOR))


def _key(words: str) -> str:
    return re.sub(r"[\s_\-]+", " ", words.lower()).strip()


def _terms(model: RankModel, shared: list[tuple[float, str]], written: dict[str, str], limit: int = 6) -> list[str]:
    """The shared terms that weigh most, as the change wrote them; phrases first, no word shown twice."""
    ordered = sorted(shared, key=lambda pt: (-(pt[0] * (1.5 if " " in pt[1] or "_" in pt[1] else 1.0)), pt[1]))
    out: list[str] = []
    keys: list[str] = []
    for _, term in ordered:
        shown = written.get(term) or model.surface.get(term, term)
        key = _key(shown)
        if any(key == k or f" {key} " in f" {k} " for k in keys):
            continue
        covered = [i for i, k in enumerate(keys) if f" {k} " in f" {key} "]
        for i in reversed(covered):  # a phrase replaces the single words it contains
            del out[i], keys[i]
        out.append(shown)
        keys.append(key)
        if len(out) == limit:
            break
    return out


def specificity(model: RankModel, terms: list[str]) -> float:
    """How telling the words a rule matched are: 1 for rare ones, down to SPEC_FLOOR for words all over the catalog.

    Uses the fitted idf: a term found in at most SPEC_DOCS documents counts in
    full; one found everywhere counts SPEC_FLOOR. A term the catalog never uses
    counts in full (the rule's author knew it mattered).
    """
    if not model.docs:
        return 1.0
    full = math.log((len(model.docs) + 1) / (SPEC_DOCS + 1)) + 1.0
    best = 0.0
    for term in terms:
        idfs = [idf for t in analyze(term) if (idf := model.idf_of(t)) is not None]
        if not idfs:
            return 1.0
        best = max(best, min(1.0, (max(idfs) - 1.0) / (full - 1.0)) if full > 1.0 else 1.0)
    return SPEC_FLOOR + (1.0 - SPEC_FLOOR) * best


def component_fit(applies_to: list[str], components: list[str]) -> Fit:
    """Whether an obligation applies to the change's components."""
    if not components:
        return "unknown"
    if not applies_to:
        return "generic"
    if set(applies_to) & set(components):
        return "applies"
    if "generic-http" in applies_to and set(components) & HTTP_INTERMEDIARIES:
        return "generic"
    return "off"


def diminishing(values: list[float], share: float) -> float:
    """Sum of ``values`` where each next-strongest one counts ``share`` times less than the one before."""
    total, factor = 0.0, 1.0
    for value in sorted(values, reverse=True):
        total += factor * value
        factor *= share
    return total


def evidence(channels: dict[str, float]) -> float:
    """The total evidence for an obligation, from its channel strengths (0 and up).

    Rules that fired count in full for the strongest and half as much for each
    next one (several rules on one change are partly the same evidence). The
    lexical channels (text, failure mode, recipe, pattern) see the same words:
    the strongest counts in full, the others ``AGREEMENT`` of theirs, up to
    ``LEXICAL_CAP``. A related obligation's match adds a little.
    """
    lexical = sorted((WEIGHTS[c] * min(s, 1.0) for c, s in channels.items() if c in LEXICAL), reverse=True)
    words = min(LEXICAL_CAP, lexical[0] + AGREEMENT * sum(lexical[1:])) if lexical else 0.0
    return (WEIGHTS["rule"] * channels.get("rule", 0.0) + words
            + WEIGHTS["related"] * min(channels.get("related", 0.0), 1.0))


def score(model: RankModel, matcher: Matcher, change: ChangeSummary) -> list[Scored]:
    """Score every obligation with any evidence, best first (ties on id); scores below MIN_SCORE are dropped."""
    found: dict[str, list[Contribution]] = defaultdict(list)
    for hit in matcher.match(change):
        strength = hit.strength if hit.exact else hit.strength * specificity(model, hit.terms)
        for obligation, factor, path in model.reach(NodeId.of("rule", hit.rule_id)):
            found[obligation].append(Contribution("rule", strength * factor, ["change", *path],
                                                  list(hit.terms), hit))
    query = change.query_text()
    sims, shared = similarities(model, query)
    written: dict[str, str] = {}
    for term, surface in analyze_with_surface(query):
        written.setdefault(term, surface)
    patterns = sorted((-s, d) for d, s in sims.items() if model.doc(d)[0] == "pattern")
    keep = {d for _, d in patterns[:TOP_PATTERNS]}
    for doc, cosine in sims.items():
        kind, key = model.doc(doc)
        if kind == "pattern" and doc not in keep:
            continue
        strength = text_strength(cosine)
        if strength <= 0:
            continue
        terms = _terms(model, shared[doc], written)
        if kind == "obligation":
            found[key].append(Contribution("text", strength, ["change", NodeId.of("obligation", key)], terms))
            for other in model.obligations[key].related:
                path = ["change", NodeId.of("obligation", key), NodeId.of("obligation", other)]
                found[other].append(Contribution("related", strength * SPREAD["related_to"], path, terms))
            continue
        for obligation, factor, path in model.reach(NodeId.of(kind, key)):
            channel = "related" if path[-2].startswith("obligation:") else kind
            found[obligation].append(Contribution(channel, strength * factor, ["change", *path], terms))
    results = []
    for obligation, contributions in found.items():
        meta = model.obligations.get(obligation)
        if meta is None:
            continue
        channels: dict[str, float] = {}
        for c in contributions:
            if c.channel == "rule":
                continue  # rules are summed below, once per matched wording
            channels[c.channel] = max(channels.get(c.channel, 0.0), c.strength)
        best_rule: dict[str, float] = {}
        for c in contributions:
            if c.rule_hit is not None:
                # rules that fired on the same words are one piece of evidence, not several
                key = " ".join(sorted(_key(t) for t in c.rule_hit.terms))
                best_rule[key] = max(best_rule.get(key, 0.0), c.strength)
        if best_rule:
            channels["rule"] = diminishing(list(best_rule.values()), 0.5)
        total = evidence(channels) * (0.85 + 0.15 * RISK_WEIGHT.get(meta.risk, 0.6))
        fit = component_fit(meta.applies_to, change.components)
        if fit == "off":
            total *= OFF_COMPONENT
        value = 1.0 - math.exp(-total)
        if value < MIN_SCORE:
            continue
        contributions.sort(key=lambda c: (c.channel != "rule", -c.strength, c.channel, c.path))
        results.append(Scored(obligation, round(value, 4), {k: round(v, 4) for k, v in sorted(channels.items())},
                              contributions, meta.risk, fit, round(total, 9)))
    results.sort(key=lambda s: (-s.evidence, s.id))
    return results
