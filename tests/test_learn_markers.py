"""`poet learn suggest-markers`: the miner's mappings as a reviewable libcst patch, applied only on request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from learn_support import materialise_suite

from poetkb.cli import main
from poetkb.learn.markers import rewrite

MODULE = '''"""Cache tests."""
from __future__ import annotations

import httpx


class TestVary:
    def test_accept_language(self):
        assert True

    def helper(self):
        def test_inner():
            pass


@pytest.mark.obligation("cache.vary.honored")
def test_already_marked():
    assert True
'''


def test_rewrite_adds_markers_and_the_import() -> None:
    """Methods get their own decorator, `import pytest` is added once, existing ids are not repeated."""
    new, added = rewrite(MODULE, {"TestVary.test_accept_language": ["cache.vary.honored"],
                                  "test_already_marked": ["cache.vary.honored", "cache.key.complete"],
                                  "TestVary.helper.test_inner": ["cache.key.complete"]})
    assert added == {"TestVary.test_accept_language": ["cache.vary.honored"],
                     "test_already_marked": ["cache.key.complete"]}
    assert '    @pytest.mark.obligation("cache.vary.honored")\n    def test_accept_language(self):' in new
    assert ('@pytest.mark.obligation("cache.key.complete")\n@pytest.mark.obligation("cache.vary.honored")\n'
            'def test_already_marked():') in new
    assert new.count("import pytest\n") == 1
    assert new.startswith('"""Cache tests."""\nfrom __future__ import annotations\n')
    compile(new, "m.py", "exec")


def test_rewrite_leaves_a_module_without_suggestions_byte_identical() -> None:
    """No suggestion, no change: not even the import."""
    assert rewrite(MODULE, {"test_missing": ["cache.vary.honored"]}) == (MODULE, {})


def test_suggest_prints_a_patch_and_changes_nothing(tmp_path: Path, kb_path: Path) -> None:
    """Without --apply the CLI prints a unified diff and the suite is untouched."""
    suite = materialise_suite(tmp_path / "suite")
    before = {p: p.read_bytes() for p in suite.rglob("*.py")}
    result = CliRunner().invoke(main, ["learn", "suggest-markers", str(suite / "tests"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "+++ b/test_cache_vary.py" in result.stdout
    assert "+    @pytest.mark.obligation(\"cache.vary.honored\"" in result.stdout or \
           "+@pytest.mark.obligation(\"cache.vary.honored\"" in result.stdout
    assert "would mark" in result.stderr
    assert {p: p.read_bytes() for p in suite.rglob("*.py")} == before


def test_applied_markers_feed_the_pytest_plugin(tmp_path: Path, kb_path: Path) -> None:
    """--apply rewrites the suite; the patched file stays valid Python and the plugin links its tests."""
    suite = materialise_suite(tmp_path / "suite") / "tests"
    result = CliRunner().invoke(main, ["learn", "suggest-markers", str(suite), "--workers", "1", "--apply",
                                       "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["applied"] is True and data["files_changed"] >= 1
    vary = [s for s in data["suggestions"] if s["file"] == "test_cache_vary.py"]
    assert vary and all("cache.vary.honored" in s["obligations"] for s in vary[:1])
    text = (suite / "test_cache_vary.py").read_text(encoding="utf-8")
    assert "@pytest.mark.obligation(" in text
    compile(text, "test_cache_vary.py", "exec")
    again = CliRunner().invoke(main, ["learn", "suggest-markers", str(suite), "--workers", "1", "--json"])
    assert json.loads(again.stdout)["suggestions"] == []  # idempotent: nothing left to add
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "--poet-strict",
         "--rootdir", str(suite), str(suite / "test_cache_vary.py")],
        cwd=suite, env={**os.environ, "POET_DB": str(kb_path)}, capture_output=True, text=True, timeout=120)
    assert "unknown obligation" not in proc.stdout + proc.stderr
    assert proc.returncode in (0, 5), proc.stdout + proc.stderr


def test_missing_path_is_bad_input(tmp_path: Path, kb_path: Path) -> None:
    """A PATH that does not exist exits 2 naming it."""
    result = CliRunner().invoke(main, ["learn", "suggest-markers", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "nope" in result.stderr
