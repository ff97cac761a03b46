"""Mapping units to obligations: rules by field, similarity, suite context, classes; with confidence and reasons."""

from __future__ import annotations

import pytest

from poetkb.learn import mapping
from poetkb.learn.mapping import (
    CANDIDATE_THRESHOLD,
    MAP_THRESHOLD,
    SIM_MAX,
    Mapper,
    aggregate_classes,
    similarity_confidence,
    split,
)
from poetkb.models import MappingRule, ObligationMatch


@pytest.fixture(scope="module")
def mapper(built_kb_file: object) -> Mapper:
    import poetkb

    with poetkb.open(built_kb_file, create=False) as kb:  # type: ignore[arg-type]
        return Mapper(kb.obligations(), kb.rules(), kb.failure_modes())


def ids(matches: list[ObligationMatch]) -> list[str]:
    return [m.id for m in matches]


def mapped(mapper: Mapper, units: list[dict[str, str]]) -> list[list[ObligationMatch]]:
    """What the mapper maps (candidates left out)."""
    return [split(m)[0] for m in mapper.map(units)]


def test_a_test_named_for_vary_maps_with_its_reasons(mapper: Mapper) -> None:
    """The rule, the term and the field that fired are the reasons; confidence is in [threshold, 1]."""
    [matches] = mapped(mapper, [{"name": "test vary header keeps variants apart", "doc": "each language its own variant"}])
    assert ids(matches)[0] == "cache.vary.honored"
    vary = matches[0]
    assert MAP_THRESHOLD <= vary.confidence <= 1.0
    assert any(r.startswith("rule test.cache.vary: 'vary") and r.endswith("in name") for r in vary.reasons)


def test_a_test_that_only_mentions_a_header_does_not_map(mapper: Mapper) -> None:
    """Vary in string literals, calls and asserted values (context) never maps on its own."""
    fields = {
        "name": "test post json",
        "strings": "vary | accept | vary header",
        "calls": "response headers vary",
        "asserts": "vary | 201",
        "comments": "the vary header is echoed",
    }
    [matches] = mapped(mapper, [fields])
    assert "cache.vary.honored" not in ids(matches)


def test_units_that_match_nothing_stay_unmapped(mapper: Mapper) -> None:
    """A unit about something no obligation covers gets an empty list (it is kept as an unmapped pattern)."""
    assert mapper.map([{"name": "test url quoting of unicode paths", "calls": "url quote"}]) == [[]]


def test_near_misses_are_candidates_not_mappings(mapper: Mapper) -> None:
    """A weak hint alone ('expires' in a name) lands between the thresholds: offered for review, not mapped."""
    [matches] = mapper.map([{"name": "test expires header in the past"}])
    confident, candidates = split(matches)
    assert confident == []
    assert ids(candidates) == ["cache.ttl.honored"]
    assert CANDIDATE_THRESHOLD <= candidates[0].confidence < MAP_THRESHOLD


def test_similarity_alone_never_reaches_the_map_threshold() -> None:
    """Similarity counts at most SIM_MAX, below the threshold: it supports rules, never maps alone."""
    assert SIM_MAX < MAP_THRESHOLD
    assert similarity_confidence(0.9, 0.9) == pytest.approx(SIM_MAX)
    assert similarity_confidence(0.02, 0.9) == 0.0
    assert similarity_confidence(0.05, 0.1) < similarity_confidence(0.1, 0.1)


def test_ambiguous_words_lean_on_the_suite_context(mapper: Mapper) -> None:
    """'expires' maps to cache TTLs in a suite about caching, not in a suite about cookies."""
    probe = {"name": "test expires header in the past"}
    cache_suite = [{"name": f"test vary variant {i}", "doc": "vary header"} for i in range(8)]
    cookie_suite = [{"name": f"test cookie jar {i}", "doc": "cookie attributes"} for i in range(8)]
    in_cache = mapped(mapper, [*cache_suite, probe])[-1]
    in_cookies = mapped(mapper, [*cookie_suite, probe])[-1]
    assert "cache.ttl.honored" in ids(in_cache)
    assert any(r.startswith("context:") for r in in_cache[0].reasons)
    assert "cache.ttl.honored" not in ids(in_cookies)


def test_only_test_pattern_rules_are_used(built_kb_file: object) -> None:
    """Keyword and directive rules (written for change texts and configs) do not fire on tests."""
    import poetkb

    with poetkb.open(built_kb_file, create=False) as kb:  # type: ignore[arg-type]
        obligations = kb.obligations()
    rule = MappingRule(id="kw.only", kind="keyword", terms=["zebra"], obligations=["cache.vary.honored"])
    own = Mapper(obligations, [rule])
    assert own.map([{"name": "test zebra crossing"}]) == [[]]
    pattern = rule.model_copy(update={"kind": "test_pattern"})
    assert ids(mapped(Mapper(obligations, [pattern]), [{"name": "test zebra crossing"}])[0]) == [
        "cache.vary.honored"]


def test_mapping_is_deterministic(mapper: Mapper) -> None:
    """The same units give the same matches, confidences and reasons."""
    units = [{"name": "test retries are bounded"}, {"name": "test read timeout fires", "asserts": "read timeout error"},
             {"name": "test stale if error window"}]
    assert mapper.map(units) == mapper.map(list(units))


def test_a_class_exercises_what_its_tests_exercise() -> None:
    """A class unit gets the obligations enough of its methods map to, with a counting reason."""
    units = [{"file": "t.py", "test": "TestX", "kind": "class"}] + [
        {"file": "t.py", "test": f"TestX.test_{i}", "kind": "method"} for i in range(4)
    ]
    vary = ObligationMatch(id="cache.vary.honored", confidence=0.8, reasons=["r"])
    ttl = ObligationMatch(id="cache.ttl.honored", confidence=0.9, reasons=["r"])
    matches = [[], [vary], [vary], [ttl], []]
    result = aggregate_classes(units, matches)
    assert ids(result[0]) == ["cache.vary.honored"]  # ttl: only 1 of 4 methods
    assert result[0][0].reasons == ["2 of 4 tests in the class map to it"]
    assert result[1:] == matches[1:]


def test_the_threshold_decides_what_is_mapped(mapper: Mapper, monkeypatch: pytest.MonkeyPatch) -> None:
    """Raising the map threshold above a match's confidence drops it."""
    fields = {"name": "test vary header"}
    [before] = mapped(mapper, [fields])
    monkeypatch.setattr(mapping, "MAP_THRESHOLD", min(1.0, before[0].confidence + 0.001))
    [after] = mapped(mapper, [fields])
    assert "cache.vary.honored" in ids(before) and "cache.vary.honored" not in ids(after)
