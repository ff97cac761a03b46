"""Round trips: catalog files -> validated models -> SQLite -> the same models (Hypothesis)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import poetkb
from poetkb import store
from poetkb.catalog import load_catalog
from poetkb.models import Check, EvidenceRequirement, FailureMode, Obligation, Reference
from poetkb.types import EvidenceKind

segment = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
obligation_ids = st.lists(segment, min_size=2, max_size=4).map(".".join)
text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=60
).map(str.strip).filter(bool)
evidence_kinds = st.sampled_from(list(EvidenceKind.__args__))  # type: ignore[attr-defined]
#: checks of kinds the gate registry knows, with parameters its models accept
checks = st.one_of(
    st.builds(Check, kind=st.just("manual"), params=st.dictionaries(segment, st.integers() | text, max_size=3),
              description=text),
    st.builds(Check, kind=st.just("tests_pass"), params=st.builds(lambda n: {"min_tests": n}, st.integers(1, 50))),
    st.builds(Check, kind=st.just("metric_threshold"),
              params=st.builds(lambda m, v: {"metric": m, "op": "<=", "value": v}, segment,
                               st.floats(-1e6, 1e6, allow_nan=False))),
)


@st.composite
def obligations(draw: st.DrawFn, oid: str, mode_ids: list[str]) -> Obligation:
    return Obligation(
        id=oid,
        title=draw(text),
        statement=draw(text),
        rationale=draw(text),
        domain=oid.split(".")[0],
        risk=draw(st.sampled_from(["high", "medium", "low"])),
        failure_modes=draw(st.lists(st.sampled_from(mode_ids), unique=True, max_size=2)) if mode_ids else [],
        evidence=draw(st.lists(st.builds(EvidenceRequirement, kind=evidence_kinds, fields=st.lists(text, max_size=3),
                                         description=text), max_size=3)),
        checks=draw(st.lists(checks, max_size=2)),
        pass_criteria=draw(st.lists(text, max_size=3)),
        references=draw(st.lists(st.builds(Reference, title=text, url=st.none() | st.just("https://example.org/x")),
                                 max_size=2)),
        safe_in_prod=draw(st.booleans()),
        assumptions=draw(st.lists(text, max_size=2)),
        keywords=draw(st.lists(text, max_size=4)),
    )


@st.composite
def catalogs(draw: st.DrawFn) -> tuple[list[Obligation], list[FailureMode]]:
    ids = draw(st.lists(obligation_ids, min_size=1, max_size=6, unique=True))
    mode_ids = [f"mode.{segment_}" for segment_ in draw(st.lists(segment, max_size=3, unique=True))]
    obs = [draw(obligations(oid, mode_ids)) for oid in ids]
    modes = [
        FailureMode(id=mid, title=draw(text), description=draw(text),
                    guarded_by=draw(st.lists(st.sampled_from(ids), unique=True, max_size=2)))
        for mid in mode_ids
    ]
    return obs, modes


def _write(root: Path, obs: list[Obligation], modes: list[FailureMode]) -> None:
    (root / "obligations").mkdir(parents=True)
    (root / "knowledge" / "packs").mkdir(parents=True)
    dump = {"obligations": [o.model_dump(mode="json", exclude_defaults=True) for o in obs]}
    (root / "obligations" / "gen.yaml").write_text(yaml.safe_dump(dump, allow_unicode=True), encoding="utf-8")
    pack = {"failure_modes": [m.model_dump(mode="json", exclude_defaults=True) for m in modes]}
    (root / "knowledge" / "packs" / "gen.yaml").write_text(yaml.safe_dump(pack, allow_unicode=True), encoding="utf-8")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalogs())
def test_catalog_round_trips_through_yaml_and_sqlite(generated: tuple[list[Obligation], list[FailureMode]]) -> None:
    """Any valid catalog written as YAML loads to equal models, and reads back equal from SQLite."""
    obs, modes = generated
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "catalog"
        _write(root, obs, modes)
        catalog = load_catalog(root)
        assert catalog.obligations == {o.id: o for o in obs}
        assert catalog.failure_modes == {m.id: m for m in modes}
        target = Path(tmp) / "kb.sqlite"
        store.build(catalog, target, source=str(root))
        with poetkb.open(target) as kb:
            assert kb.obligations() == sorted(obs, key=lambda o: o.id)
            assert kb.failure_modes() == sorted(modes, key=lambda m: m.id)
            for ob in obs:
                assert kb.obligation(ob.id) == ob
                guarded = {m.id for m in modes if ob.id in m.guarded_by} | set(ob.failure_modes)
                assert {m.id for m in kb.failure_modes(obligation=ob.id)} == guarded


@settings(max_examples=60, deadline=None)
@given(st.builds(Reference, title=text, url=st.none() | st.just("https://www.rfc-editor.org/rfc/rfc9111")))
def test_models_round_trip_through_json(ref: Reference) -> None:
    """Models dump to JSON and validate back to an equal object."""
    assert Reference.model_validate_json(ref.model_dump_json()) == ref
