"""Say why an obligation ranks for a change, in data and in sentences a person can check.

Every :class:`RankedObligation` carries a :class:`Why`: the mapping rules that
fired (with the directive, file and line or the words they matched), the words
the change shares with the obligation, the graph paths that led to it
(change -> failure mode -> obligation, change -> rule -> obligation, ...), the
learned tests (the user's own, as coverage; public ones, as examples), and the same facts as plain sentences.
A reviewer should be able to read the sentences and agree, or see exactly
which rule or word to fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from poetkb.models import PoetModel
from poetkb.rank.change import ChangeSummary
from poetkb.rank.scoring import Contribution, Scored
from poetkb.types import NodeId

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge
    from poetkb.rank.model import RankModel

#: how many learned tests a why lists by name
LEARNED_SHOWN = 5
#: at most this many evidence sentences; evidence weaker than WEAK is kept in the data, not told
MAX_SENTENCES = 4
WEAK = 0.25
NO_MATCH = "no obligation matched"


class RuleMatch(PoetModel):
    """A mapping rule that fired on the change."""

    rule: str
    kind: str
    terms: list[str] = Field(default_factory=list)
    where: list[str] = Field(default_factory=list)
    strength: float
    why: str = ""


class GraphPath(PoetModel):
    """A path through the knowledge graph from the change to the obligation."""

    channel: str
    nodes: list[str]
    labels: list[str]
    strength: float


class LearnedTest(PoetModel):
    """A test mined from a suite that exercises the obligation.

    ``role`` says what it proves: ``own`` tests come from the user's suites and are
    coverage; ``reference`` tests come from public suites and only show how others
    test the obligation (``link`` points at the example when the repository is known).
    """

    pattern: str
    source: str
    role: Literal["own", "reference"] = "own"
    file: str
    line: int
    test: str | None = None
    confidence: float
    link: str | None = None

    @property
    def name(self) -> str:
        return f"{self.file}::{self.test}" if self.test else self.file


class Why(PoetModel):
    """Why an obligation ranks: rules, shared words, graph paths, learned tests, and sentences saying so."""

    sentences: list[str]
    rules: list[RuleMatch] = Field(default_factory=list)
    terms: list[str] = Field(default_factory=list)
    paths: list[GraphPath] = Field(default_factory=list)
    #: the user's own tests mapped to the obligation (coverage), most confident first
    own_tests: list[LearnedTest] = Field(default_factory=list)
    own_tests_total: int = 0
    #: tests from public suites mapped to it: how others test it, never coverage
    reference_examples: list[LearnedTest] = Field(default_factory=list)
    reference_examples_total: int = 0
    channels: dict[str, float] = Field(default_factory=dict)
    component_fit: Literal["applies", "generic", "off", "unknown"] = "unknown"


class RankedObligation(PoetModel):
    """An obligation a change puts at risk, its score (0 to 1, higher first) and why."""

    id: str
    title: str
    score: float
    risk: str
    domain: str
    why: Why


class Ranking(PoetModel):
    """The answer to "what must I prove before this change ships?": what was understood, and the obligations."""

    change: ChangeSummary
    obligations: list[RankedObligation] = Field(default_factory=list)
    message: str = ""

    @property
    def matched(self) -> bool:
        return bool(self.obligations)


def learned_tests(kb: Knowledge, obligation_id: str, limit: int = LEARNED_SHOWN, *,
                  role: str = "own") -> list[LearnedTest]:
    """The learned tests of one role (``own`` or ``reference``) mapped to an obligation, most confident first."""
    out = []
    for pattern, weight in kb.learned_tests(obligation_id, role=role, limit=limit):
        out.append(LearnedTest(pattern=pattern.id, source=pattern.source, role=pattern.role, file=pattern.file,
                               line=pattern.line, test=pattern.test, confidence=round(weight, 3),
                               link=pattern.link))
    return out


def learned_counts(kb: Knowledge, obligation_id: str) -> dict[str, int]:
    """How many learned tests of each role are mapped to an obligation."""
    return kb.learned_counts(obligation_id)


def coverage_sentences(own: list[LearnedTest], own_total: int, examples: list[LearnedTest],
                       examples_total: int) -> list[str]:
    """What the learned tests say, keeping coverage (the user's tests) apart from public examples."""
    out = []
    if own:
        more = f" and {own_total - len(own)} more" if own_total > len(own) else ""
        out.append(f"Your tests that exercise it: {', '.join(t.name for t in own)}{more}.")
    else:
        out.append("No test of yours exercises it: a gap to close.")
    if examples:
        more = f" and {examples_total - len(examples)} more" if examples_total > len(examples) else ""
        shown = ", ".join(f"{t.name} ({t.source})" for t in examples[:3])
        out.append(f"How others test it (public examples, not coverage): {shown}{more}.")
    return out


def _label(model: RankModel, kb: Knowledge, node: str) -> str:
    if node == "change":
        return "the change"
    kind, key = NodeId(node).kind, NodeId(node).key
    if kind == "obligation":
        entry = model.obligations.get(key)
        return entry.title if entry is not None else key
    if kind == "pattern":
        return kb.pattern_label(key) or key
    return model.labels.get(node, key)


def _step(model: RankModel, kb: Knowledge, node: str) -> str:
    kind, key = NodeId(node).kind, NodeId(node).key
    if kind == "obligation":
        return f"related obligation {key} ('{_label(model, kb, node)}')"
    return f"{kind.replace('_', ' ')} '{_label(model, kb, node)}'"


def _quote(words: list[str]) -> str:
    return ", ".join(f"'{w}'" for w in words)


def _sentence(model: RankModel, kb: Knowledge, c: Contribution, change: ChangeSummary) -> str:
    target = c.path[-1]
    via = c.path[1:-1]
    if c.channel == "rule" and c.rule_hit is not None:
        hit = c.rule_hit
        where = "; ".join(hit.where[:3])
        said = hit.rule.why
        text = f"Rule {hit.rule_id} ({hit.rule.kind}) matched {_quote(hit.terms[:4])} {where}"
        text += f": {said.rstrip('.')}." if said else "."
        steps = [n for n in via if not n.startswith("rule:")]
        if steps:
            text += " It reaches this obligation through " + " -> ".join(_step(model, kb, n) for n in steps) + "."
        return text
    terms = f" ({_quote(c.terms[:5])})" if c.terms else ""
    if c.channel == "text":
        return f"The change shares words with this obligation{terms}."
    seed = via[0] if via else target
    label = _label(model, kb, seed)
    if c.channel == "failure_mode":
        return f"The change reads like failure mode '{label}'{terms}, which this obligation guards against."
    if c.channel == "recipe":
        return f"The change touches what recipe '{label}' exercises{terms}."
    if c.channel == "pattern":
        return f"The change resembles learned test '{label}'{terms}, which is mapped to this obligation."
    if c.channel == "related":
        source = next((n for n in reversed(via) if n.startswith("obligation:")), seed)
        return (f"It is related to obligation {source.split(':', 1)[1]} ('{_label(model, kb, source)}'), "
                f"which the change matches{terms}.")
    return f"Matched through {c.channel}{terms}."


def _display_order(c: Contribution) -> tuple[int, float, str, list[str]]:
    """Direct evidence first (rules, then words), evidence through a related obligation last."""
    via_related = any(n.startswith("obligation:") for n in c.path[1:-1])
    tier = 2 if via_related or c.channel == "related" else (0 if c.channel == "rule" else 1)
    return tier, -c.strength, c.channel, c.path


def explain(kb: Knowledge, model: RankModel, scored: Scored, change: ChangeSummary) -> RankedObligation:
    """Build the :class:`RankedObligation` for one scored obligation."""
    meta = model.obligations[scored.id]
    rules: dict[str, RuleMatch] = {}
    paths: list[GraphPath] = []
    sentences: list[str] = []
    terms: list[str] = []
    told: set[tuple[str, str]] = set()
    for c in sorted(scored.contributions, key=_display_order):
        if c.rule_hit is not None and c.rule_hit.rule_id not in rules:
            hit = c.rule_hit
            rules[hit.rule_id] = RuleMatch(rule=hit.rule_id, kind=hit.rule.kind, terms=hit.terms, where=hit.where,
                                           strength=round(hit.strength * hit.weight, 4), why=hit.rule.why)
        if c.channel == "text":
            terms.extend(t for t in c.terms if t not in terms)
        if len(paths) < 4 and not any(p.nodes == c.path for p in paths):
            paths.append(GraphPath(channel=c.channel, nodes=c.path, labels=[_label(model, kb, n) for n in c.path],
                                   strength=round(c.strength, 4)))
        if c.rule_hit is not None:
            about = ("rule", c.rule_hit.rule_id)
        elif c.channel == "related":
            about = ("related", next(n for n in reversed(c.path[1:-1]) if n.startswith("obligation:")))
        else:
            about = (c.channel, c.path[1])
        if len(sentences) < MAX_SENTENCES and about not in told and (c.channel == "rule" or c.strength >= WEAK
                                                                     or not sentences):
            told.add(about)
            sentences.append(_sentence(model, kb, c, change))
    counts = learned_counts(kb, scored.id) if model.coverage.get(scored.id, 0) else {}
    own = learned_tests(kb, scored.id, role="own") if counts.get("own") else []
    examples = learned_tests(kb, scored.id, role="reference") if counts.get("reference") else []
    sentences += coverage_sentences(own, counts.get("own", 0), examples, counts.get("reference", 0))
    if scored.component_fit == "off":
        sentences.append(f"It does not list {', '.join(change.components)} among the components it applies to, "
                         "so it ranks lower.")
    sentences.insert(0, f"{meta.risk.capitalize()}-risk {meta.domain} obligation: {meta.title}.")
    return RankedObligation(
        id=scored.id, title=meta.title, score=scored.score, risk=meta.risk, domain=meta.domain,
        why=Why(sentences=sentences, rules=list(rules.values()), terms=terms[:8], paths=paths, own_tests=own,
                own_tests_total=counts.get("own", 0), reference_examples=examples,
                reference_examples_total=counts.get("reference", 0), channels=scored.channels,
                component_fit=scored.component_fit),
    )


def no_match_message(change: ChangeSummary) -> str:
    """The honest answer when nothing matched: say so, and say what was understood."""
    understood = "; ".join(change.describe()) or "nothing"
    return (f"{NO_MATCH}: understood {understood}. Describe the change in words (what it alters and why), "
            "or add a mapping rule for it under mappings/.")
