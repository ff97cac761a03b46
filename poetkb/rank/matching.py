"""Match the catalog's mapping rules against an understood change.

Rules are the interpretable half of ranking: a reviewer wrote "a change to
``proxy_cache_key`` puts ``cache.vary.honored`` at risk", and when the change
touches that directive the rule fires with the directive's file and line as
its evidence. Three kinds of rule take part (``test_pattern`` rules are for
mining test suites and are ignored here):

- ``directive`` rules match the names of directives a configuration diff
  added, removed or changed (full strength), a term found in a changed
  directive's value (weaker), or a directive named in the description: always
  for unmistakable names (``proxy_cache_key``, ``option redispatch``), and for
  plain words (``hash``, ``retries``) only when the change is about that
  rule's component;
- ``keyword`` rules match the description (full strength) and the changed
  lines and identifiers of a diff (weaker);
- ``identifier`` rules match code identifiers, their parts and imports (full
  strength), and the description (weaker).

Terms match case-insensitively as whole words (:func:`poetkb.text.term_pattern`):
a space in a term also matches ``_`` or ``-``, a trailing ``*`` matches any
ending, and a one-word term also matches its plural. A rule's ``regex`` is
searched in the same texts.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from poetkb.rank.change import ChangeSummary
from poetkb.text import literal, match_term, split_identifier, term_pattern

if TYPE_CHECKING:
    from poetkb.rank.model import RuleEntry

#: strength of a match by where it was found
DIRECTIVE_NAME = 1.0
DIRECTIVE_VALUE = 0.7
DIRECTIVE_IN_TEXT = 0.85
KEYWORD_IN_TEXT = 1.0
KEYWORD_IN_DIFF = 0.75
IDENTIFIER_IN_CODE = 1.0
IDENTIFIER_IN_TEXT = 0.8


@dataclass
class RuleHit:
    """A rule that fired: how strongly (before the rule's own weight), on which terms, and where."""

    rule: RuleEntry
    strength: float
    terms: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    exact: bool = False  # a directive the diff changed, named by the rule (not just a word in some text)

    @property
    def rule_id(self) -> str:
        return self.rule.id

    @property
    def weight(self) -> float:
        return self.rule.weight


@functools.lru_cache(maxsize=1024)
def _rule_regex(source: str) -> re.Pattern[str]:
    return re.compile(source, re.I)


def _unmistakable(term: str) -> bool:
    """A directive term nobody writes by accident in prose: it has an underscore, a dash or two words."""
    return bool(re.search(r"[_\-\s]", term.strip().rstrip("*")))


class Matcher:
    """The rules, ready to match changes; a term's regex is compiled only when its text could match."""

    def __init__(self, rules: list[RuleEntry]) -> None:
        self.rules = [(rule, [(term, literal(term)) for term in rule.terms], rule.regex)
                      for rule in rules]

    def match(self, change: ChangeSummary) -> list[RuleHit]:
        """Every rule that fires on ``change``, strongest first, then by rule id."""
        texts = _Texts(change)
        hits = []
        for rule, terms, regex in self.rules:
            hit = RuleHit(rule=rule, strength=0.0)
            kind = rule.kind
            if kind == "directive":
                self._directive(hit, terms, regex, change, texts)
            elif kind == "keyword":
                self._search(hit, terms, regex, texts.description, KEYWORD_IN_TEXT, "in the description")
                self._search(hit, terms, regex, texts.diff, KEYWORD_IN_DIFF, "in the changed lines")
            elif kind == "identifier":
                self._search(hit, terms, regex, texts.code, IDENTIFIER_IN_CODE, "in the changed code")
                self._search(hit, terms, regex, texts.description, IDENTIFIER_IN_TEXT, "in the description")
            if hit.strength > 0:
                hits.append(hit)
        hits.sort(key=lambda h: (-h.strength * h.weight, h.rule_id))
        return hits

    @staticmethod
    def _note(hit: RuleHit, strength: float, term: str, where: str) -> None:
        hit.strength = max(hit.strength, strength)
        if term not in hit.terms:
            hit.terms.append(term)
        if where not in hit.where:
            hit.where.append(where)

    def _search(self, hit: RuleHit, terms: list[tuple[str, str]], regex: str | None, text: str, strength: float,
                where: str) -> None:
        if not text:
            return
        lowered = text.lower()
        for term, piece in terms:
            if piece not in lowered:
                continue
            matched = match_term(term, text)
            if matched:
                self._note(hit, strength, matched, where)
        if regex is not None:
            found = _rule_regex(regex).search(text)
            if found:
                self._note(hit, strength, found.group(0), where)

    def _directive(self, hit: RuleHit, terms: list[tuple[str, str]], regex: str | None, change: ChangeSummary,
                   texts: _Texts) -> None:
        component = hit.rule.component
        for d in change.directives:
            if component and d.component != component:
                continue
            where = f"{d.file}:{d.line} ({d.name} {d.action})"
            value = " ".join(v for v in (d.old, d.new) if v)
            statement = f"{d.name} {d.new if d.new is not None else d.old or ''}"
            for term, piece in terms:
                if piece in d.name.lower() and term_pattern(term).fullmatch(d.name):
                    self._note(hit, DIRECTIVE_NAME, d.name, where)
                    hit.exact = True
                elif value and piece in value.lower():
                    found = term_pattern(term).search(value)
                    if found:
                        self._note(hit, DIRECTIVE_VALUE, found.group(0), f"{where}, in its value")
            if regex is not None and _rule_regex(regex).search(statement):
                self._note(hit, DIRECTIVE_NAME, d.name, where)
                hit.exact = True
        if not texts.description:
            return
        about_component = not change.components or component is None or component in change.components
        lowered = texts.description.lower()
        for term, piece in terms:
            if piece not in lowered or not (_unmistakable(term) or about_component and change.components):
                continue
            found = term_pattern(term).search(texts.description)
            if found:
                self._note(hit, DIRECTIVE_IN_TEXT, found.group(0), "in the description")


class _Texts:
    """The texts of a change that rules search, prepared once per match."""

    def __init__(self, change: ChangeSummary) -> None:
        self.description = change.text
        self.diff = change.changed_lines
        words = []
        for ident in [*change.identifiers, *change.imports]:
            parts = split_identifier(ident.replace(".", "_").replace("/", "_"))
            words.append(f"{ident} {' '.join(parts)}")
        self.code = "\n".join(words)
        if self.code and self.diff:
            self.code += "\n" + self.diff
