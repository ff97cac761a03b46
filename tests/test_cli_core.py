"""The `poet` CLI's core commands: output, JSON, exit codes and messages without tracebacks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from poetkb.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def poet(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (as a user would)."""
    return subprocess.run([sys.executable, "-m", "poetkb", *args], capture_output=True, text=True, timeout=120)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_obligations_list_json_has_every_obligation(kb_path: Path) -> None:
    """`poet obligations list --json` prints a JSON list of full obligation objects."""
    code, out, _ = invoke("obligations", "list", "--json")
    assert code == 0
    data = json.loads(out)
    ids = [o["id"] for o in data]
    assert "cache.vary.honored" in ids and ids == sorted(ids)
    assert {"statement", "rationale", "checks", "evidence"} <= set(data[0])


def test_obligations_list_filters(kb_path: Path) -> None:
    """Filters narrow the text listing; an unknown component is exit 2 with the known ones."""
    code, out, _ = invoke("obligations", "list", "--domain", "cache")
    assert code == 0 and all(line.startswith("cache.") for line in out.splitlines())
    code, _, err = invoke("obligations", "list", "--component", "nginks")
    assert code == 2 and "unknown component 'nginks'" in err and "nginx" in err


def test_show_renders_and_unknown_id_suggests(kb_path: Path) -> None:
    """`show` prints statement, rationale and source; a typo'd id exits 2 with a suggestion."""
    code, out, _ = invoke("obligations", "show", "cache.vary.honored")
    assert code == 0 and "Statement:" in out and "Defined at: " in out and "cache.yaml" in out
    code, _, err = invoke("obligations", "show", "cache.vary.honoured")
    assert code == 2 and "did you mean cache.vary.honored" in err


def test_kb_check_passes_on_the_shipped_catalog() -> None:
    """`poet kb check` on the shipped catalog reports it ok with exit 0 (no knowledge base built yet: nothing to check)."""
    code, out, _ = invoke("kb", "check")
    assert code == 0 and out.startswith("catalog ok:") and "knowledge base: none at" in out


def test_kb_check_also_checks_the_knowledge_base_file(kb_path: Path, tmp_path: Path) -> None:
    """`poet kb check` runs the integrity check on the knowledge base; a foreign file is exit 2 naming it."""
    code, out, _ = invoke("kb", "check")
    assert code == 0 and f"knowledge base ok: {kb_path}" in out
    other = tmp_path / "notes.txt"
    other.write_text("not a knowledge base")
    code, out, err = invoke("kb", "check", "--db-only", "--db", str(other))
    assert code == 2 and f"{other}: the file is not an SQLite file" in err and "catalog ok" not in out


def test_kb_check_lists_duplicate_and_typo_with_file_and_line(tmp_path: Path) -> None:
    """On a catalog with a duplicate id and a typo'd field, `kb check` exits 2 listing both with file:line."""
    root = tmp_path / "cat"
    shutil.copytree(FIXTURES / "catalog" / "mini", root)
    (root / "obligations" / "more.yaml").write_text(
        "obligations:\n"
        "  - id: demo.retry.bounded\n    title: T\n    statement: S\n    rationale: R\n    risk: low\n"
        "  - id: demo.typo\n    title: T\n    statement: S\n    rationale: R\n    risk: low\n    asumptions: [x]\n"
    )
    result = poet("kb", "check", "--from", str(root))
    assert result.returncode == 2
    assert "more.yaml:2" in result.stderr and "duplicate obligation id 'demo.retry.bounded'" in result.stderr
    assert "more.yaml:12" in result.stderr and "asumptions" in result.stderr
    assert "Traceback" not in result.stderr


def test_kb_build_to_a_path_then_stats(tmp_path: Path) -> None:
    """`kb build --from DIR --db PATH` writes a file that `kb stats --json` describes."""
    target = tmp_path / "out" / "mini.sqlite"
    code, out, _ = invoke("kb", "build", "--from", str(FIXTURES / "catalog" / "mini"), "--db", str(target))
    assert code == 0 and "2 obligations" in out
    code, out, _ = invoke("--db", str(target), "kb", "stats", "--json")
    stats = json.loads(out)
    assert code == 0 and stats["counts"]["obligations"] == 2 and stats["path"] == str(target)


def test_kb_build_with_bad_catalog_keeps_old_file_and_exits_2(tmp_path: Path) -> None:
    """A failed build exits 2 with the problems and leaves the previous file byte for byte."""
    target = tmp_path / "kb.sqlite"
    assert invoke("kb", "build", "--from", str(FIXTURES / "catalog" / "mini"), "--db", str(target))[0] == 0
    before = target.read_bytes()
    root = tmp_path / "cat"
    shutil.copytree(FIXTURES / "catalog" / "mini", root)
    (root / "obligations" / "mini.yaml").write_text("obligations: [\n")
    result = poet("kb", "build", "--from", str(root), "--db", str(target))
    assert result.returncode == 2 and "malformed YAML" in result.stderr and "Traceback" not in result.stderr
    assert target.read_bytes() == before


def test_corrupted_db_is_a_clear_error(tmp_path: Path) -> None:
    """A corrupted knowledge base file gives exit 2 and a rebuild hint, no traceback, file untouched."""
    target = tmp_path / "kb.sqlite"
    target.write_bytes(b"garbage" * 50)
    result = poet("--db", str(target), "obligations", "list")
    assert result.returncode == 2
    assert "not a poetkb knowledge base" in result.stderr and "poet kb build" in result.stderr
    assert "Traceback" not in result.stderr
    assert target.read_bytes() == b"garbage" * 50


@pytest.mark.parametrize("name", ["obligation", "failure-mode", "check", "learned-pattern", "mapping-rule"])
def test_schema_prints_json_schema(name: str) -> None:
    """`poet schema NAME` prints a JSON Schema that forbids unknown properties."""
    code, out, _ = invoke("schema", name)
    schema = json.loads(out)
    assert code == 0 and schema["type"] == "object" and schema["additionalProperties"] is False


def test_schema_unknown_name_lists_known() -> None:
    """An unknown schema name exits 2 and lists the known names."""
    code, _, err = invoke("schema", "obligaton")
    assert code == 2 and "known schemas" in err and "obligation" in err


def test_init_reports_tools_and_db(kb_path: Path) -> None:
    """`poet init --json` reports each tool with found/version/install hint and the knowledge base path."""
    code, out, _ = invoke("init", "--json")
    report = json.loads(out)
    names = {t["name"] for t in report["tools"]}
    assert code == 0 and {"nginx", "haproxy", "varnishd", "tcpdump"} <= names
    assert report["db_path"] == str(kb_path) and report["db_exists"] is True
    for tool in report["tools"]:
        assert tool["found"] == (tool["path"] is not None)
        assert tool["install_hint"].startswith("apt-get install -y ")


def test_search_and_related(kb_path: Path) -> None:
    """`search` finds obligations by words; `related --json` lists neighbours with edge kinds."""
    code, out, _ = invoke("search", "retries", "amplify", "load")
    assert code == 0 and "resilience.retry.bounded" in out
    code, out, _ = invoke("related", "cache.vary.honored", "--json")
    edges = {n["edge"] for n in json.loads(out)}
    assert code == 0 and "guards_against" in edges


def test_usage_error_exits_2() -> None:
    """A usage error (unknown option) exits 2."""
    result = CliRunner().invoke(main, ["obligations", "list", "--colour"])
    assert result.exit_code == 2
