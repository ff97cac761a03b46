"""Review of learned mappings: unsure ones are listed; accept and reject are stored and applied by later runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from learn_support import materialise_suite

from poetkb.errors import InputError, UnknownObligation
from poetkb.learn.review import ACCEPTED_REASON, parse_pair
from poetkb.learn.runner import learn

HOP = "sample:tests/checks_hop_headers.py::test_connection_header_is_stripped"
JSON = "sample:tests/test_api_client.py::test_sends_json"
REPLAY = "sample:tests/test_cache_vary.py::test_replayed_exchanges"


@pytest.fixture
def mined(kb: object, tmp_path: Path) -> Path:
    suite = materialise_suite(tmp_path / "sample")
    learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    return suite


def matches_of(kb: object, pattern_id: str) -> dict[str, float]:
    [pattern] = [p for p in kb.patterns(source="sample") if p.id == pattern_id]  # type: ignore[attr-defined]
    return {m.id: m.confidence for m in pattern.obligations}


def test_review_lists_mappings_and_candidates_below_the_threshold(kb: object, mined: Path) -> None:
    """Every listed item is below the threshold; a threshold of 1 lists every mapping and candidate."""
    unsure = kb.learn_review(threshold=0.8, source="sample")  # type: ignore[attr-defined]
    assert unsure and all(item.confidence < 0.8 for item in unsure)
    everything = kb.learn_review(threshold=1.0, source="sample")  # type: ignore[attr-defined]
    patterns = kb.patterns(source="sample")  # type: ignore[attr-defined]
    assert len(everything) == sum(len(p.obligations) + len(p.candidates) for p in patterns)
    assert {i.status for i in everything} == {"mapped", "candidate"}
    assert [i.confidence for i in everything] == sorted((i.confidence for i in everything), reverse=True)


def test_accepting_a_candidate_maps_it(kb: object, mined: Path) -> None:
    """A near miss offered for review becomes a mapping at confidence 1 once accepted."""
    candidate = next(i for i in kb.learn_review(threshold=1.0, source="sample")  # type: ignore[attr-defined]
                     if i.status == "candidate" and i.pattern_id == REPLAY)
    kb.learn_decide([(REPLAY, candidate.obligation_id)], "accept")  # type: ignore[attr-defined]
    assert matches_of(kb, REPLAY)[candidate.obligation_id] == 1.0
    [pattern] = [p for p in kb.patterns(source="sample") if p.id == REPLAY]  # type: ignore[attr-defined]
    assert candidate.obligation_id not in [c.id for c in pattern.candidates]


def test_reject_drops_the_mapping_now_and_in_later_runs(kb: object, mined: Path, tmp_path: Path) -> None:
    """A rejected mapping leaves the stored pattern and its edge at once, and stays out after a re-mine."""
    assert "protocol.hop_by_hop.stripped" in matches_of(kb, HOP)
    [item] = kb.learn_decide([(HOP, "protocol.hop_by_hop.stripped")], "reject")  # type: ignore[attr-defined]
    assert item.decision == "reject"
    assert "protocol.hop_by_hop.stripped" not in matches_of(kb, HOP)
    assert not list(kb.db.query(  # type: ignore[attr-defined]
        "select 1 from edges where src = ? and dst = 'obligation:protocol.hop_by_hop.stripped'", [f"pattern:{HOP}"]))
    report = learn(kb, [mined], out_dir=tmp_path / "out", workers=1)
    [again] = [p for p in report.patterns if p.id == HOP]
    assert "protocol.hop_by_hop.stripped" not in [m.id for m in again.obligations]
    assert report.run.files_parsed == 0  # the decision applies to cached results too


def test_accept_adds_a_mapping_at_full_confidence(kb: object, mined: Path, tmp_path: Path) -> None:
    """Accepting a pair the mapper missed adds it with confidence 1 and says why, now and later."""
    assert matches_of(kb, JSON) == {}
    kb.learn_decide([(JSON, "protocol.content.length")], "accept", note="sends a body")  # type: ignore[attr-defined]
    assert matches_of(kb, JSON) == {"protocol.content.length": 1.0}
    report = learn(kb, [mined], out_dir=tmp_path / "out", workers=1)
    [again] = [p for p in report.patterns if p.id == JSON]
    assert [(m.id, m.confidence, m.reasons) for m in again.obligations] == [
        ("protocol.content.length", 1.0, [ACCEPTED_REASON])]
    decided = kb.learn_review(threshold=0.0, decided=True, source="sample")  # type: ignore[attr-defined]
    assert [(i.pattern_id, i.decision) for i in decided] == [(JSON, "accept")]


def test_decisions_survive_a_rebuild_of_the_knowledge_base(kb: object, mined: Path) -> None:
    """learn_decisions is state: `poet kb build` keeps it."""
    kb.learn_decide([(HOP, "protocol.hop_by_hop.stripped")], "reject")  # type: ignore[attr-defined]
    kb.build()  # type: ignore[attr-defined]
    rows = list(kb.db.query("select pattern_id, decision from learn_decisions"))  # type: ignore[attr-defined]
    assert rows == [{"pattern_id": HOP, "decision": "reject"}]


@pytest.mark.parametrize(
    ("pair", "error", "message"),
    [
        ((HOP, "cache.vary.honore"), UnknownObligation, "unknown obligation id 'cache.vary.honore'"),
        (("sample:tests/nope.py::test_x", "cache.vary.honored"), InputError,
         "unknown learned pattern 'sample:tests/nope.py::test_x'"),
    ],
)
def test_unknown_ids_are_refused_before_anything_is_written(
    kb: object, mined: Path, pair: tuple[str, str], error: type[Exception], message: str
) -> None:
    """A typo in either id fails with a message naming it, and no decision is stored."""
    with pytest.raises(error, match=message):
        kb.learn_decide([(HOP, "protocol.hop_by_hop.stripped"), pair], "reject")  # type: ignore[attr-defined]
    assert kb.db.table("learn_decisions").count == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("httpx:tests/test_a.py::TestX.test_y:cache.vary.honored",
         ("httpx:tests/test_a.py::TestX.test_y", "cache.vary.honored")),
        ("s:smoke.test.py:resilience.timeout.enforced", ("s:smoke.test.py", "resilience.timeout.enforced")),
    ],
)
def test_pairs_split_at_the_last_colon(text: str, expected: tuple[str, str]) -> None:
    """Pattern ids hold colons; obligation ids never do."""
    assert parse_pair(text) == expected


@pytest.mark.parametrize("text", ["no-colon", ":cache.vary.honored", "pattern:"])
def test_malformed_pairs_are_input_errors(text: str) -> None:
    """A pair without both parts names the option and shows the expected form."""
    with pytest.raises(InputError, match=r"\[--reject\] expected PATTERN_ID:OBLIGATION_ID"):
        parse_pair(text, option="--reject")
