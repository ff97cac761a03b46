"""Public data types of the knowledge base.

These pydantic models are what poetkb reads from the catalog files, stores in
SQLite and hands to callers. They forbid unknown fields so that a typo in a
YAML file is an error, not a silently ignored key. Each model exports a JSON
Schema (``poet schema NAME``) for tools that exchange data with poetkb.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from poetkb.types import EntityId, EvidenceKind, NonEmptyStr, ObligationId, Risk, UnitKind


class PoetModel(BaseModel):
    """Base of the public models: strict about unknown fields, immutable once built.

    ``defer_build``: a model's validator is built the first time it is used, not when its module is imported,
    so a command that reads obligations does not pay for the schemas of gates, load tests and chaos.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False,
                              defer_build=True)


class Reference(PoetModel):
    """A public source behind an obligation: an RFC section, a vendor document."""

    title: NonEmptyStr
    url: str | None = None
    section: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"title": value}
        return value


class EvidenceRequirement(PoetModel):
    """What to capture to prove an obligation: a kind of evidence and the fields that matter."""

    kind: EvidenceKind
    fields: list[NonEmptyStr] = Field(default_factory=list)
    description: str = ""


class Check(PoetModel):
    """A machine-evaluable gate check: a general kind plus the parameters for one obligation.

    ``kind`` names an evaluator (for example ``same_key_same_backend``); ``params``
    configure it. ``manual`` marks a check a person performs, which a gate can
    never pass on its own.
    """

    kind: EntityId
    params: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    evidence: list[EvidenceKind] = Field(default_factory=list)


class Claim(PoetModel):
    """A behaviour claim about a proxy directive, with the probes that check it on the real binary.

    ``statement`` says exactly what the proxy does; ``verified_by`` names probes
    under ``knowledge/probes/`` that ``poet kb verify`` runs against NGINX or
    HAProxy on loopback. A claim with no probe is *unverified*, and says so
    wherever it is shown.
    """

    id: EntityId
    component: EntityId
    directive: NonEmptyStr
    statement: NonEmptyStr
    verified_by: list[EntityId] = Field(default_factory=list)

    @property
    def status(self) -> Literal["verified", "unverified"]:
        """``verified`` when at least one probe checks the claim, else ``unverified``."""
        return "verified" if self.verified_by else "unverified"


class Directive(PoetModel):
    """A concrete configuration directive of one component, with what it should be set to."""

    component: EntityId
    name: NonEmptyStr
    example: str = ""
    note: str = ""


class Signal(PoetModel):
    """Something to watch for a failure mode: a log field, a metric (with PromQL), a capture."""

    kind: Literal["access_log", "metric", "capture", "log", "trace", "probe"]
    name: NonEmptyStr
    query: str = ""
    description: str = ""


class Component(PoetModel):
    """A kind of system an obligation can apply to (nginx, haproxy, postgres, jwt-auth, ...)."""

    id: EntityId
    title: NonEmptyStr
    description: str = ""
    binaries: list[str] = Field(default_factory=list)


class Obligation(PoetModel):
    """A portable statement of what must be true, why, and how to prove it."""

    id: ObligationId
    title: NonEmptyStr
    statement: NonEmptyStr
    rationale: NonEmptyStr
    domain: EntityId
    risk: Risk
    applies_to: list[EntityId] = Field(default_factory=list)
    failure_modes: list[EntityId] = Field(default_factory=list)
    evidence: list[EvidenceRequirement] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    recipes: list[EntityId] = Field(default_factory=list)
    pass_criteria: list[NonEmptyStr] = Field(default_factory=list)
    references: list[Reference] = Field(default_factory=list)
    safe_in_prod: bool = False
    assumptions: list[NonEmptyStr] = Field(default_factory=list)
    related: list[ObligationId] = Field(default_factory=list)
    tags: list[EntityId] = Field(default_factory=list)
    keywords: list[NonEmptyStr] = Field(default_factory=list)
    #: behaviour claims its statement, checks or assumptions make about a proxy directive
    claims: list[Claim] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _default_domain(cls, value: Any) -> Any:
        if isinstance(value, dict) and "domain" not in value and isinstance(value.get("id"), str):
            value = {**value, "domain": value["id"].split(".", 1)[0]}
        return value

    @property
    def gate_checks(self) -> list[Check]:
        """Checks a gate can evaluate without a person."""
        return [c for c in self.checks if c.kind != "manual"]


class FailureMode(PoetModel):
    """A way systems fail in production, with how to see it, stop it and confirm it is gone."""

    id: EntityId
    title: NonEmptyStr
    description: NonEmptyStr
    components: list[EntityId] = Field(default_factory=list)
    triggers: list[NonEmptyStr] = Field(default_factory=list)
    symptoms: list[NonEmptyStr] = Field(default_factory=list)
    impact: str = ""
    signals: list[Signal] = Field(default_factory=list)
    mitigation: list[NonEmptyStr] = Field(default_factory=list)
    verification: list[NonEmptyStr] = Field(default_factory=list)
    escalation: str = ""
    guarded_by: list[ObligationId] = Field(default_factory=list)
    keywords: list[NonEmptyStr] = Field(default_factory=list)
    references: list[Reference] = Field(default_factory=list)


class Recipe(PoetModel):
    """How to exercise an obligation on a component: steps and the directives involved."""

    id: EntityId
    title: NonEmptyStr
    description: str = ""
    components: list[EntityId] = Field(default_factory=list)
    obligations: list[ObligationId] = Field(default_factory=list)
    steps: list[NonEmptyStr] = Field(default_factory=list)
    directives: list[Directive] = Field(default_factory=list)
    references: list[Reference] = Field(default_factory=list)
    #: behaviour claims its steps and directive notes make
    claims: list[Claim] = Field(default_factory=list)


class MappingRule(PoetModel):
    """An interpretable rule mapping directives, keywords, identifiers or test patterns to obligations.

    ``terms`` match case-insensitively as whole words (directive names for
    ``directive`` rules); ``regex`` is a Python regular expression searched in
    the text. At least one of the two is required.
    """

    id: EntityId
    kind: Literal["directive", "keyword", "identifier", "test_pattern"]
    component: EntityId | None = None
    terms: list[NonEmptyStr] = Field(default_factory=list)
    regex: str | None = None
    obligations: list[ObligationId] = Field(default_factory=list)
    failure_modes: list[EntityId] = Field(default_factory=list)
    weight: float = Field(default=1.0, gt=0.0, le=1.0)
    why: str = ""
    #: behaviour claims ``why`` makes about the directive (defaults, what counts, what is ignored)
    claims: list[Claim] = Field(default_factory=list)

    @model_validator(mode="after")
    def _needs_a_matcher(self) -> MappingRule:
        if not self.terms and not self.regex:
            raise ValueError("a mapping rule needs `terms` or `regex`")
        if not self.obligations and not self.failure_modes:
            raise ValueError("a mapping rule must name `obligations` or `failure_modes`")
        return self

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            import re

            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from exc
        return value


class ObligationMatch(PoetModel):
    """One obligation a learned pattern maps to, with how sure and why."""

    id: ObligationId
    confidence: float = Field(ge=0.0, le=1.0)
    reasons: list[str] = Field(default_factory=list)


class LearnedPattern(PoetModel):
    """A test unit mined from a legacy suite, with the obligations it exercises."""

    id: NonEmptyStr
    source: NonEmptyStr
    #: ``own``: mined from the user's own suite, so it is coverage; ``reference``: from a public suite, so it
    #: only shows how others test the obligation (the shipped ``knowledge/learned`` files are reference)
    role: Literal["own", "reference"] = "own"
    #: the web address of the repository the suite lives in (``https://...``), for links to the example
    repository: str | None = Field(default=None, pattern=r"^https://[^\s]+$", max_length=300)
    file: NonEmptyStr
    test: str | None = None
    kind: UnitKind = "function"
    line: int = Field(ge=1)
    end_line: int | None = None
    commit: str | None = None
    content_hash: str | None = None
    summary: str = ""
    terms: list[str] = Field(default_factory=list)
    obligations: list[ObligationMatch] = Field(default_factory=list)
    #: near misses (below the map threshold) for ``poet learn review``; never linked in the graph
    candidates: list[ObligationMatch] = Field(default_factory=list)

    @property
    def link(self) -> str | None:
        """Where to read the test: its line in the repository at the mined commit, when both are known."""
        if not self.repository or not self.commit:
            return None
        return f"{self.repository.rstrip('/')}/blob/{self.commit}/{self.file}#L{self.line}"


class KBStats(PoetModel):
    """Counts and provenance of a knowledge base file."""

    path: str
    schema_version: int
    poetkb_version: str
    built_at: str
    catalog_fingerprint: str
    counts: dict[str, int]


class SourceLocation(PoetModel):
    """Where a catalog item was defined: the file (absolute when the catalog root is known) and the line."""

    file: str
    line: int | None = None


class KBMeta(PoetModel):
    """What a knowledge base file records about itself (its ``meta`` table)."""

    schema_version: int = 0
    poetkb_version: str = "?"
    built_at: str = "?"
    catalog_fingerprint: str = ""
    catalog_source: str = Field("", description="'shipped' for the catalog inside poetkb, else the catalog directory")
    source_paths: str = ""
    other: dict[str, str] = Field(default_factory=dict, description="any other recorded key")


class RelatedNode(PoetModel):
    """A neighbour of a node in the knowledge graph and the edge that links them."""

    id: str
    kind: str
    label: str
    edge: str
    direction: Literal["out", "in"]
    distance: int = 1
    #: for a learned test: ``own`` (the user's test, coverage) or ``reference`` (a public example)
    role: Literal["own", "reference"] | None = None
