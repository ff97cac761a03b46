"""Ranking quality on the shipped knowledge base: hit@3 and MRR over the evaluation scenarios stay above floor."""

from __future__ import annotations

from pathlib import Path

import pytest

import poetkb
from poetkb.errors import InputError
from poetkb.rank.evaluate import evaluate, load_scenarios

SCENARIOS = Path(__file__).resolve().parent / "fixtures" / "rank" / "scenarios.yaml"

#: just under what the shipped catalog achieves (docs/rank.md has the figures); raise them when ranking improves
HIT_AT_3_FLOOR = 0.96
MRR_FLOOR = 0.94


def test_the_evaluation_set_is_broad() -> None:
    """At least 30 scenarios, covering edge, perf, auth, data and resilience, free text and every diff kind."""
    scenarios, diffs = load_scenarios(SCENARIOS)
    assert len(scenarios) >= 30
    assert {s.area for s in scenarios} == {"edge", "perf", "auth", "data", "resilience"}
    assert sum(1 for s in scenarios if s.diff is None) >= 10
    kinds = {Path(s.diff).name.split("-")[0] for s in scenarios if s.diff}
    assert {"nginx", "haproxy", "py", "sql", "go"} <= kinds
    assert all((diffs / s.diff).is_file() for s in scenarios if s.diff)
    assert len({s.id for s in scenarios}) == len(scenarios)


def test_every_expected_obligation_exists(kb: poetkb.KnowledgeBase) -> None:
    """Each scenario expects obligations the shipped knowledge base holds (a renamed id fails here, not silently)."""
    scenarios, _ = load_scenarios(SCENARIOS)
    known = {o.id for o in kb.obligations()}
    missing = {oid for s in scenarios for oid in s.expect if oid not in known}
    assert not missing


def test_hit_at_3_and_mrr_stay_above_the_floor(kb: poetkb.KnowledgeBase) -> None:
    """hit@3 and mean reciprocal rank over the scenarios are at or above the floors set from the measured figures."""
    scenarios, diffs = load_scenarios(SCENARIOS)
    result = evaluate(kb, scenarios, diffs)
    misses = [f"{r.id}: expected {r.expected}, got {r.ranked[:3]}" for r in result.results
              if not r.first_hit or r.first_hit > 3]
    assert result.hit_at_3 >= HIT_AT_3_FLOOR, misses
    assert result.mrr >= MRR_FLOOR, [f"{r.id}: rank {r.first_hit}" for r in result.results if r.first_hit != 1]


def test_a_bad_scenarios_file_names_the_line(tmp_path: Path) -> None:
    """A scenario without expectations is refused with the file, line and field."""
    path = tmp_path / "scenarios.yaml"
    path.write_text("scenarios:\n  - id: one\n    change: a change\n    expect: []\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_scenarios(path)
    assert "scenarios.yaml:4: [scenarios[0].expect]" in str(caught.value)
