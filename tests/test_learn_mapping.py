"""Mapping units to obligations: rules by field, similarity, suite context, classes; with confidence and reasons."""

from __future__ import annotations

import math
import re

import pytest

from poetkb.learn import mapping
from poetkb.learn.features import MinedUnit
from poetkb.learn.learned import PairModel, feature_names, train
from poetkb.learn.mapping import (
    CANDIDATE_THRESHOLD,
    MAP_THRESHOLD,
    MATCH_QUOTE_CHARS,
    SIM_MAX,
    Mapper,
    aggregate_classes,
    learned_confidence,
    similarity_confidence,
    split,
)
from poetkb.models import MappingRule, ObligationMatch


@pytest.fixture(scope="module")
def mapper(built_kb_file: object) -> Mapper:
    import poetkb

    with poetkb.open(built_kb_file, create=False) as kb:  # type: ignore[arg-type]
        return Mapper(kb.obligations(), kb.rules(), kb.failure_modes(), model=None)


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
    units = [MinedUnit(id="s:t.py::TestX", file="t.py", test="TestX", kind="class", line=1, end_line=20,
                       fields={})] + [
        MinedUnit(id=f"s:t.py::TestX.test_{i}", file="t.py", test=f"TestX.test_{i}", kind="method", line=2 + i,
                  end_line=2 + i, fields={}) for i in range(4)
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


def _name_model(weight: float = 8.0, intercept: float = -4.0) -> PairModel:
    """A combiner that believes one thing: an obligation's own term in a unit's name."""
    coef = {name: 0.0 for name in feature_names()}
    coef["in_name"] = weight
    return PairModel(intercept=intercept, coef=coef)


def test_obligation_terms_are_its_keywords_and_its_test_rule_terms(mapper: Mapper) -> None:
    """The combiner's terms of an obligation: its keywords and the terms of test rules pointing at it, normalised."""
    terms = mapper.terms.hits({"name": "test vary header", "strings": "accept language"})
    assert terms["cache.vary.honored"] == {"name": "vary", "strings": "accept language"}


def test_the_learned_combiner_scores_pairs_and_says_why(built_kb_file: object,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """In 'score' mode the model's probability is the confidence, with the term and field it saw as the reason."""
    import poetkb

    with poetkb.open(built_kb_file, create=False) as kb:  # type: ignore[arg-type]
        own = Mapper(kb.obligations(), kb.rules(), kb.failure_modes(), model=_name_model())
    monkeypatch.setattr(mapping, "LEARNED_MODE", "score")
    [matches] = own.map([{"name": "test vary header"}])
    vary = next(m for m in matches if m.id == "cache.vary.honored")
    # the model's threshold (0.5) lands on the map threshold: log-odds 4 + logit(0.65)
    expected = 1 / (1 + math.exp(-(4.0 + math.log(MAP_THRESHOLD / (1 - MAP_THRESHOLD)))))
    assert vary.confidence == pytest.approx(expected, abs=1e-3)
    assert vary.reasons[-1] == "learned (0.98): 'vary' in name; weighed most: in_name"
    [nothing] = own.map([{"name": "test url quoting", "strings": "vary"}])
    assert "cache.vary.honored" not in ids(nothing)  # a term in a string only: p = sigmoid(-4) < floor


def test_by_default_the_combiner_only_proposes(built_kb_file: object) -> None:
    """In 'propose' mode what the rules map stays as it is; a pair only the model likes becomes a candidate."""
    import poetkb

    with poetkb.open(built_kb_file, create=False) as kb:  # type: ignore[arg-type]
        obligations, failure_modes = kb.obligations(), kb.failure_modes()
    rule = MappingRule(id="t.zebra", kind="test_pattern", terms=["zebra"], obligations=["cache.vary.honored"])
    plain = Mapper(obligations, [rule], failure_modes, model=None)
    learned = Mapper(obligations, [rule], failure_modes, model=_name_model())
    assert mapping.LEARNED_MODE == "propose"
    units = [{"name": "test zebra crossing"}, {"name": "test accept language negotiation"}]
    before, after = plain.map(units), learned.map(units)
    assert split(after[0])[0] == split(before[0])[0]  # mapped by the rules: unchanged
    assert ids(split(before[1])[0]) == [] and ids(split(after[1])[0]) == []  # the model alone never maps
    [candidate] = [m for m in split(after[1])[1] if m.id == "cache.vary.honored"]
    assert CANDIDATE_THRESHOLD <= candidate.confidence < MAP_THRESHOLD
    assert candidate.reasons == ["learned (0.98): 'accept language' in name; weighed most: in_name"]


def test_the_learned_confidence_modes() -> None:
    """propose: rules decide mappings, likely rule-less pairs become candidates; score: the probability."""
    assert learned_confidence(0.9, 0.1, "propose") == 0.9
    assert learned_confidence(0.55, 0.99, "propose") == 0.55
    assert CANDIDATE_THRESHOLD <= learned_confidence(0.1, 0.99, "propose") < MAP_THRESHOLD
    assert learned_confidence(0.1, 0.3, "propose") == 0.1
    assert learned_confidence(0.9, 0.3, "score") == 0.3


def test_a_pair_model_round_trips_and_refuses_other_versions() -> None:
    """The stored model is plain JSON; a file of another version or other features is not loaded."""
    model = _name_model()
    again = PairModel.from_json(model.to_json())
    assert again is not None and again.coef == model.coef and again.intercept == model.intercept
    assert PairModel.from_json(model.to_json().replace('"version": 3', '"version": 1')) is None
    assert PairModel.from_json(model.to_json().replace('"in_name"', '"in_elsewhere"')) is None
    assert PairModel.from_json("not json") is None


def test_training_learns_which_evidence_predicts_a_label() -> None:
    """scikit-learn fits the combiner: on pairs where only a name hit predicts the label, that feature weighs most."""
    names = feature_names()
    vectors, targets = [], []
    for i in range(60):
        vector = [0.0] * len(names)
        label = i % 2
        vector[names.index("in_name")] = float(label)
        vector[names.index("in_strings")] = float(i % 3 == 0)  # noise
        vectors.append(vector)
        targets.append(label)
    model = train(vectors, targets, sources=["s"])
    assert max(model.coef, key=lambda n: model.coef[n]) == "in_name"
    positive = [0.0] * len(names)
    positive[names.index("in_name")] = 1.0
    assert model.probability(positive) > 0.8 > 0.2 > model.probability([0.0] * len(names))


def test_the_shipped_model_is_read_from_its_file_once(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The default model comes from the package's model file; a missing or foreign file means no model."""
    from poetkb.learn import learned

    path = tmp_path / "learned_model.json"
    monkeypatch.setattr(learned, "DEFAULT_PATH", path)
    monkeypatch.setattr(learned, "_DEFAULT", [])
    assert learned.default_model() is None  # no file: the rules alone
    path.write_text(_name_model().to_json(), encoding="utf-8")
    monkeypatch.setattr(learned, "_DEFAULT", [])
    assert learned.default_model() == _name_model()
    path.write_text('{"version": 99}', encoding="utf-8")
    monkeypatch.setattr(learned, "_DEFAULT", [])
    assert learned.default_model() is None


def test_in_score_mode_the_model_maps_one_obligation_per_unit(built_kb_file: object,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring, the unit's most probable pair may be mapped; its other likely pairs stay candidates."""
    import poetkb

    with poetkb.open(built_kb_file, create=False) as kb:  # type: ignore[arg-type]
        own = Mapper(kb.obligations(), kb.rules(), kb.failure_modes(), model=_name_model())
    monkeypatch.setattr(mapping, "LEARNED_MODE", "score")
    [matches] = own.map([{"name": "test vary header and retry after"}])
    mapped, candidates = split(matches)
    assert len(mapped) == 1
    assert {m.id for m in matches} >= {"cache.vary.honored"}
    assert all(m.confidence < MAP_THRESHOLD for m in matches if m not in mapped)
    assert candidates  # the other name hit is offered for review


def test_the_pair_model_threshold_lands_on_the_map_threshold() -> None:
    """confidence() is monotone and puts the model's own threshold at the mapper's."""
    model = _name_model()
    model.threshold = 0.3
    assert model.confidence(0.3, MAP_THRESHOLD) == pytest.approx(MAP_THRESHOLD)
    assert model.confidence(0.2, MAP_THRESHOLD) < MAP_THRESHOLD < model.confidence(0.4, MAP_THRESHOLD)
    assert model.confidence(0.0, MAP_THRESHOLD) == 0.0


def test_the_regex_prefilter_only_skips_searches_that_cannot_match(built_kb_file: object) -> None:
    """Every rule regex of the catalog: a text it matches holds one literal of each required set, and the
    mapper finds the same regex hits with the pre-filter as by searching every text."""
    import random

    import poetkb
    from poetkb.learn.mapping import flat_needs, may_match, required_literals

    with poetkb.open(built_kb_file, create=False) as kb:  # type: ignore[arg-type]
        rules = [r for r in kb.rules() if r.regex]
        texts = [" ".join(r.terms) for r in kb.rules()] + [o.title + " " + o.statement for o in kb.obligations()]
    assert len(rules) >= 4
    rnd = random.Random(5)
    words = " ".join(texts).lower().split()
    texts += [" ".join(rnd.choices(words, k=rnd.randint(2, 40))) for _ in range(3000)]
    texts += ["private", "bad chunked", "chunk is invalid", "auth bypass", "authorization is not cached",
              "set x = x + 1", "load test", "alter table t drop c", "content length and transfer encoding",
              "malformed content length", "40001"]
    assert required_literals(r"\b(set cookie|auth)\b.*\b(bypass|not stored)\b") == [
        (["set cookie"], ["auth"]), (["bypass"], ["not stored"])]
    assert required_literals(r"a?b*|c") == []  # nothing every match holds: always searched
    matched = 0
    for rule in rules:
        regex = re.compile(rule.regex, re.IGNORECASE)
        needs = required_literals(rule.regex)
        for text in texts:
            if regex.search(text):
                matched += 1
                assert may_match(needs, text.lower()), (rule.id, text)
                assert all(any(s in text.lower() for s in alts) for alts in flat_needs(needs)), (rule.id, text)
    assert matched > 20  # the texts exercise the rules


def test_regex_hits_are_the_same_with_and_without_the_prefilter(mapper: Mapper) -> None:
    texts = ["the private cache keeps nothing", "private key loading", "bad chunked body is rejected",
             "authorization header responses are not cached", "content length is invalid", "plain words"]
    mapper.rule_evidence({"name": "x"})  # builds the index
    with_filter = [mapper._field_hits(t) for t in texts]
    mapper._hit_memo.clear()
    saved = [(r.needs, r.quick) for r in mapper.rules]
    try:
        for r in mapper.rules:
            r.needs, r.quick = [], []
        without = [mapper._field_hits(t) for t in texts]
    finally:
        for r, (needs, quick) in zip(mapper.rules, saved, strict=True):
            r.needs, r.quick = needs, quick
        mapper._hit_memo.clear()
    assert with_filter == without
    assert any(mapper.rules[r].regex is not None for hits in with_filter for r, _ in hits)


def test_a_regex_hit_quotes_what_it_matched_and_content_length_yields_to_bad_framing(mapper: Mapper) -> None:
    mapper.rule_evidence({"name": "x"})  # builds the index

    def hits(text: str) -> dict[str, str]:
        return {mapper.rules[r].rule.id: hit for r, hit in mapper._field_hits(text)}

    assert hits("test invalid content length")["test.protocol.smuggling"] == "invalid content length"
    assert "test.protocol.content_length" not in hits("test invalid content length")
    # a look-ahead match has no width: the reason quotes the group it captured
    assert hits("test content length matches the body")["test.protocol.content_length"] == "content length"
    long_field = "bad " + "word " * 40 + "chunked"
    quoted = hits(long_field)["test.protocol.smuggling"]
    assert quoted.startswith("bad word") and quoted.endswith("…") and len(quoted) == MATCH_QUOTE_CHARS
