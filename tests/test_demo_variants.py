"""Every seeded-fault variant for real: it starts, its config is valid, it is healthy, listed, and breaks what it says."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from demo_probes import PROBES, Edge

from poetkb import demo
from poetkb.cli import main
from poetkb.demo.edge_config import RunPaths, validate_command
from poetkb.demo.layout import demo_root
from poetkb.demo.overlays import EDGE_OBLIGATIONS, all_variants
from poetkb.environment import find_binary
from poetkb.errors import InputError

pytestmark = pytest.mark.proxy

BROKEN = [v for v in all_variants() if v.name != "good"]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "demo"








@pytest.mark.parametrize("variant", BROKEN, ids=[f"{v.proxy}-{v.name}" for v in BROKEN])
def test_variant_starts_and_breaks_what_it_declares(variant: demo.Variant, home: Path, base_port: int) -> None:
    """The variant starts healthy with a config its proxy accepts, and each obligation it names fails."""
    state = demo.up(proxy=variant.proxy, variant=variant.name, base_port=base_port)
    assert (state.proxy, state.variant, state.breaks) == (variant.proxy, variant.name, variant.breaks)
    binary = find_binary(variant.proxy)
    assert binary is not None
    checked = subprocess.run(validate_command(variant.proxy, binary, RunPaths(Path(state.run_dir))),
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    report = demo.status()
    assert report.healthy, [c for c in report.checks if not c.ok]
    edge = Edge(state)
    try:
        edge.clear()
        for obligation in variant.breaks:
            holds, detail = PROBES[obligation](edge)
            assert not holds, f"{variant.proxy}/{variant.name} should break {obligation}: {detail}"
            edge.clear()
    finally:
        edge.close()


def test_cli_lists_every_variant_with_what_it_breaks() -> None:
    """`poet demo variants --json` lists good and every variant of both proxies with its obligation ids."""
    result = CliRunner().invoke(main, ["demo", "variants", "--json"])
    assert result.exit_code == 0, result.output
    listed = {(v["proxy"], v["name"]): v for v in json.loads(result.output)}
    assert ("nginx", "good") in listed and ("haproxy", "good") in listed
    for variant in BROKEN:
        entry = listed[(variant.proxy, variant.name)]
        assert entry["breaks"] == variant.breaks and entry["description"] and entry["outage"]


def test_every_breakable_obligation_has_a_variant_per_proxy() -> None:
    """Each edge obligation is broken by a variant on each proxy, except those documented as unbreakable there."""
    unbreakable = {("nginx", "protocol.framing.strict"), ("haproxy", "protocol.framing.strict"),
                   ("haproxy", "protocol.content.length"), ("haproxy", "cache.stale.bounded")}
    readme = (demo_root() / "faults" / "README.md").read_text()
    for proxy in ("nginx", "haproxy"):
        covered = {oid for v in BROKEN if v.proxy == proxy for oid in v.breaks}
        for oid in EDGE_OBLIGATIONS:
            if (proxy, oid) in unbreakable:
                assert oid in covered or oid in readme
            else:
                assert oid in covered, f"no {proxy} variant breaks {oid}"
    for variant in BROKEN:
        assert f"`{variant.name}`" in readme, f"demo/faults/README.md does not describe {variant.name}"


@pytest.mark.parametrize(("fixture", "message"), [
    ("unknown_knob.yaml", "[variants[0].knobs.shuffle] nginx has no knob 'shuffle'"),
    ("unknown_obligation.yaml", "'cache.made.up' is not an edge obligation id"),
    ("no_breaks.yaml", "a broken variant must name what it breaks"),
    ("duplicate.yaml", "duplicate variant 'twice' for nginx"),
    ("no_proxy.yaml", "name a proxy (nginx, haproxy) or a list"),
])
def test_bad_variant_files_are_refused_with_file_and_line(tmp_path: Path, fixture: str, message: str) -> None:
    """A broken variants.yaml is refused, naming the file, the line and the field."""
    (tmp_path / "variants.yaml").write_text((FIXTURES / fixture).read_text())
    with pytest.raises(InputError) as caught:
        all_variants(tmp_path)
    text = str(caught.value)
    assert message in text
    assert f"{tmp_path / 'variants.yaml'}:" in text


def test_unknown_variant_names_the_known_ones(home: Path) -> None:
    """Asking for a variant that does not exist lists the proxy's variants."""
    result = CliRunner().invoke(main, ["demo", "up", "--proxy", "haproxy", "--variant", "nope"])
    assert result.exit_code == 2
    assert "unknown haproxy variant 'nope'" in result.output and "round-robin" in result.output
