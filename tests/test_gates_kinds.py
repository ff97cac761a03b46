"""The check-kind registry: catalog validation with file and line, fault shorthands, edge coverage."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from poetkb.catalog import check_catalog, load_catalog
from poetkb.gates.kinds import KINDS, describe_kinds, is_edge_check, kind_spec
from poetkb.gates.params import FaultSpec
from poetkb.models import Check

BAD = Path(__file__).resolve().parent / "fixtures" / "gates" / "catalog_bad"
EDGE_FILES = ("routing", "cache", "protocol", "security", "resilience_edge", "observability", "state")


@pytest.fixture(scope="module")
def problems() -> list[str]:
    """Every problem `poet kb check` finds in the bad-checks catalog, as printed."""
    _, found = check_catalog(BAD)
    return [str(p) for p in found]


@pytest.mark.parametrize(("where", "says"), [
    ("edge.yaml:9: [demo.kind.unknown.checks[0].kind]", "unknown check kind 'same_key_same_backends'"),
    ("edge.yaml:20: [demo.param.type.checks[0].params.requests]", "valid integer"),
    ("edge.yaml:28: [demo.param.unknown.checks[0].params.max_age]", "Extra inputs are not permitted"),
    ("edge.yaml:36: [demo.fault.unknown.checks[0].params.fault]", "unknown fault 'explode'"),
    ("edge.yaml:44: [demo.bounds.exceeded.checks[0].params.requests]", "less than or equal to 500"),
])
def test_bad_checks_are_reported_with_file_and_line(problems: list[str], where: str, says: str) -> None:
    """Each mistake is one problem naming the file, the line of the check or parameter, the field and why."""
    matching = [p for p in problems if where in p]
    assert len(matching) == 1, problems
    assert says in matching[0]


def test_valid_checks_raise_no_problem(problems: list[str]) -> None:
    """Only the five broken obligations are reported: valid and manual checks pass validation."""
    assert len(problems) == 5
    assert not any("demo.valid.check" in p for p in problems)


def test_cli_kb_check_exits_2_on_bad_checks(tmp_path: Path) -> None:
    """`poet kb check --from` prints the check problems and exits 2."""
    from click.testing import CliRunner

    from poetkb.cli import main

    result = CliRunner().invoke(main, ["kb", "check", "--from", str(BAD)])
    assert result.exit_code == 2
    assert "unknown check kind 'same_key_same_backends'" in result.output


@pytest.mark.parametrize(("text", "expected"), [
    ("reset", {"action": "reset", "target": "faulty"}),
    ("hang", {"action": "hang"}),
    ("all_down", {"action": "reset", "target": "all"}),
    ("status_503", {"status": 503, "action": "none"}),
    ("slow_1500", {"latency_ms": 1500}),
])
def test_fault_shorthands(text: str, expected: dict[str, object]) -> None:
    """A fault may be written as a word in the catalog; it means the same as the mapping."""
    spec = FaultSpec.model_validate(text)
    assert {k: getattr(spec, k) for k in expected} == expected


@pytest.mark.parametrize(("value", "says"), [
    ("explode", "unknown fault 'explode'"),
    ({"action": "melt"}, "Input should be 'none', 'reset', 'close' or 'hang'"),
    ({"status": 99}, "greater than or equal to 100"),
    ({"error_rate": 2}, "less than or equal to 1"),
])
def test_bad_faults_are_refused(value: object, says: str) -> None:
    """A fault the upstreams cannot take is refused with the reason."""
    with pytest.raises(ValidationError, match=says):
        FaultSpec.model_validate(value)


def test_fault_admin_body_is_what_the_upstream_takes() -> None:
    """The admin body carries the fault fields and never the target (which picks upstreams, not a fault)."""
    body = FaultSpec(target="all", status=500, paths=["/flaky/echo"]).admin_body()
    assert body == {"latency_ms": 0, "error_rate": 1.0, "action": "none", "hang_s": 5.0,
                    "paths": ["/flaky/echo"], "status": 500}


def test_every_edge_obligation_has_a_traffic_check() -> None:
    """The 27 edge obligations of the shipped catalog each carry a check a gate run can drive."""
    catalog = load_catalog()
    root = Path(__file__).resolve().parent.parent / "obligations"
    from poetkb.yamlfile import load_with_lines

    ids = [item["id"] for name in EDGE_FILES for item in load_with_lines(root / f"{name}.yaml")["obligations"]]
    assert len(ids) == 27
    for oid in ids:
        assert any(is_edge_check(c) for c in catalog.obligations[oid].checks), oid


def test_kind_spec_names_the_known_kinds() -> None:
    """An unknown kind is a LookupError that lists the known kinds."""
    with pytest.raises(LookupError, match="same_key_same_backend"):
        kind_spec("no_such_kind")
    assert kind_spec("manual").traffic is False
    assert not is_edge_check(Check(kind="tests_pass"))


def test_describe_kinds_covers_the_registry() -> None:
    """`poet gate kinds` lists every kind once, sorted, with its evidence."""
    described = describe_kinds()
    assert [d.kind for d in described] == sorted(KINDS)
    assert all(d.summary and d.evidence == list(KINDS[d.kind].evidence) for d in described)


def test_each_kind_is_declared_once_with_its_collector_and_evaluator() -> None:
    """Every kind is declared in exactly one checks module with an evaluator (manual alone has none) and a
    collector unless it is judged from other tools' evidence; the catalog's light table is generated from
    those declarations and must not be stale."""
    from poetkb.gates.checks import registry
    from poetkb.gates.checks.base import Kind, declare

    declared = registry.declared()
    assert set(declared) == set(KINDS)
    for name, (area, kind) in declared.items():
        assert KINDS[name].area == area and KINDS[name].params is kind.params, name
        assert callable(kind.evaluate) or name == "manual", f"{name} has no evaluator"
        assert callable(kind.collect) or not (kind.traffic or kind.service), f"{name} has no collector"
        assert registry.implementation(name) is kind
    table = Path(__file__).resolve().parent.parent / "poetkb" / "gates" / "kind_table.py"
    assert table.read_text(encoding="utf-8") == registry.table_source(), \
        "stale: run `python -m poetkb.gates.checks.registry > poetkb/gates/kind_table.py`"
    one = Kind("ttl_honored", KINDS["ttl_honored"].params, (), collect=None, evaluate=None)
    with pytest.raises(ValueError, match="declared twice"):
        declare(one, one)
    with pytest.raises(TypeError):
        Kind("ttl_honored", KINDS["ttl_honored"].params, ())  # type: ignore[call-arg]


def test_loading_the_catalog_imports_no_check_module() -> None:
    """The kind vocabulary the catalog validates against stays light: no collector or evaluator is imported."""
    import subprocess
    import sys

    code = ("import sys, poetkb.catalog, poetkb.gates.kinds; "
            "print(sorted(m for m in sys.modules if m.startswith('poetkb.gates.checks')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
