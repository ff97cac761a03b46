"""Public results of mining a test suite: the run report and the review items.

The mined units themselves are :class:`poetkb.models.LearnedPattern` objects
(the same model the catalog's ``knowledge/learned/*.json`` files hold).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from poetkb.models import LearnedPattern, PoetModel


class SkippedFile(PoetModel):
    """A file the run did not mine, and why (too large, not UTF-8, does not parse, symlink loop, ...)."""

    path: str
    reason: str
    detail: str = ""


class SuiteRoot(PoetModel):
    """One PATH that was mined: its name and the git commit it was at (when inside a repository)."""

    name: str
    commit: str | None = None


class LearnSummary(PoetModel):
    """What a mining run covered. Deterministic: it is written into the learned file."""

    roots: list[SuiteRoot] = Field(default_factory=list)
    files_mined: int = 0
    files_skipped: int = 0
    skipped_by_reason: dict[str, int] = Field(default_factory=dict)
    skipped: list[SkippedFile] = Field(default_factory=list)
    units: int = 0
    units_mapped: int = 0
    units_by_kind: dict[str, int] = Field(default_factory=dict)
    candidates: int = Field(default=0, description="near-miss mappings kept for review")
    covered: dict[str, int] = Field(default_factory=dict, description="obligation id -> units mapped to it")
    gaps: list[str] = Field(default_factory=list, description="obligations no mined unit covers")


class LearnRunStats(PoetModel):
    """How a run went (not written into the learned file: it differs between runs)."""

    files_parsed: int = 0
    files_cached: int = 0
    data_files: int = 0
    workers: int = 1
    seconds: float = 0.0


class LearnReport(PoetModel):
    """The result of ``poet learn from-tests`` / ``kb.learn``: summary, run statistics and the patterns."""

    source: str
    role: Literal["own", "reference"] = Field(
        default="own", description="own: the user's suite (coverage); reference: a public suite (examples only)")
    out_file: str | None = None
    stored_in_kb: bool = False
    summary: LearnSummary
    run: LearnRunStats
    patterns: list[LearnedPattern] = Field(default_factory=list)


class ReviewItem(PoetModel):
    """A low-confidence mapping, a candidate, or a decision already taken, shown by ``poet learn review``."""

    pattern_id: str
    obligation_id: str
    confidence: float
    file: str
    test: str | None = None
    line: int
    reasons: list[str] = Field(default_factory=list)
    status: Literal["mapped", "candidate"] = "mapped"
    decision: str | None = None
