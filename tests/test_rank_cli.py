"""`poet rank`, `poet plan test` and `poet runbook` from the command line: output, JSON, files and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from poetkb import store
from poetkb.catalog import load_catalog
from poetkb.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rank"
CATALOG = FIXTURES / "catalog"
CACHE_DIFF = (
    "--- a/edge/nginx.conf\n+++ b/edge/nginx.conf\n@@ -1,3 +1,3 @@\n location / {\n"
    '-    proxy_cache_key "$host$uri";\n+    proxy_cache_key "$uri";\n }\n'
)


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A knowledge base built from the ranking test catalog."""
    path = tmp_path_factory.mktemp("rank-cli") / "kb.sqlite"
    store.build(load_catalog(CATALOG), path, source=str(CATALOG))
    return path


def invoke(db: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--db", str(db), *args], input=stdin, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_rank_json_is_a_best_first_list_with_id_score_why(small_db: Path, tmp_path: Path) -> None:
    """`poet rank --json` prints a list of {id, score, why, ...}, best first."""
    diff = tmp_path / "change.diff"
    diff.write_text(CACHE_DIFF, encoding="utf-8")
    code, out, _ = invoke(small_db, "rank", "--diff", str(diff), "--json")
    assert code == 0
    data = json.loads(out)
    assert data[0]["id"] == "t.cache.key"
    assert all({"id", "score", "why"} <= set(item) for item in data)
    assert [d["score"] for d in data] == sorted((d["score"] for d in data), reverse=True)
    assert data[0]["why"]["rules"][0]["rule"] == "t.nginx.cache_key" and data[0]["why"]["sentences"]


def test_rank_text_shows_what_was_understood_and_why(small_db: Path) -> None:
    """The text output starts with what was understood, then numbered obligations with their reasons."""
    code, out, _ = invoke(small_db, "rank", "--change", "requests hang forever", "--top", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Understood:" and "Description: requests hang forever" in lines[1]
    assert any(line.startswith(" 1. ") and "t.timeout.enforced" in line for line in lines)
    assert "Rule t.keyword.hang (keyword) matched 'hang'" in out
    assert not any(line.startswith(" 3. ") for line in lines)


def test_rank_reads_a_diff_from_stdin(small_db: Path) -> None:
    """--diff - reads the unified diff from standard input."""
    code, out, _ = invoke(small_db, "rank", "--diff", "-", "--json", stdin=CACHE_DIFF)
    assert code == 0 and json.loads(out)[0]["id"] == "t.cache.key"


def test_no_match_exits_zero_with_an_honest_message(small_db: Path) -> None:
    """A change that matches nothing exits 0; stderr says "no obligation matched" and what was understood."""
    code, out, err = invoke(small_db, "rank", "--change", "rename the marketing banner colour", "--json")
    assert code == 0 and json.loads(out) == []
    assert "no obligation matched: understood Description: rename the marketing banner colour" in err
    code, out, err = invoke(small_db, "rank", "--change", "rename the marketing banner colour")
    assert code == 0 and "no obligation matched" in err and "Understood:" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rank"], "error: [change] the change is empty"),
        (["rank", "--change", "   "], "error: [change] the change is empty"),
        (["rank", "--change", "x", "--component", "nginks"], "error: unknown component 'nginks'"),
        (["rank", "--diff", str(FIXTURES / "bad" / "binary-files.diff")], "the diff changes a binary file"),
        (["rank", "--diff", str(FIXTURES / "bad" / "missing.diff")], "missing.diff: no such diff file"),
        (["rank", "--diff", str(FIXTURES / "bad" / "empty.diff")], "empty.diff: the diff is empty"),
        (["rank", "--change", "x", "--top", "0"], "Invalid value for '--top'"),
        (["plan", "test"], "error: [change] the change is empty"),
        (["plan", "test", "--change", "x", "--format", "pdf"], "Invalid value for '--format'"),
        (["runbook"], "error: [obligation] name the obligations with --obligation ID"),
        (["runbook", "--obligation", "t.cache.kee"], "unknown obligation id 't.cache.kee'"),
        (["runbook", "--obligation", "t.cache.key", "--change", "x"], "pass either --obligation IDs or a change"),
    ],
)
def test_bad_input_exits_2_with_a_message(small_db: Path, args: list[str], message: str) -> None:
    """Empty changes, bad diffs, unknown components or obligations and bad options exit 2 without a traceback."""
    code, _, err = invoke(small_db, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_plan_test_markdown_and_json(small_db: Path, tmp_path: Path) -> None:
    """`poet plan test` prints Markdown, or writes JSON to --out; both carry the gate command."""
    code, out, _ = invoke(small_db, "plan", "test", "--diff", "-", stdin=CACHE_DIFF)
    assert code == 0 and out.startswith("# Test plan: diff of edge/nginx.conf")
    assert "poet gate run --obligation t.cache.key" in out
    target = tmp_path / "plans" / "plan.json"
    code, out, err = invoke(small_db, "plan", "test", "--change", "retries pile up on nginx", "--component", "nginx",
                            "--format", "json", "--out", str(target))
    assert code == 0 and out == "" and f"wrote {target}" in err
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["component"] == "nginx" and data["items"][0]["id"] == "t.retry.bounded"
    assert data["items"][0]["gate_command"] == "poet gate run --obligation t.retry.bounded"


def test_runbook_for_named_obligations(small_db: Path) -> None:
    """`poet runbook --obligation` covers exactly the named obligations, Markdown by default."""
    code, out, _ = invoke(small_db, "runbook", "--obligation", "t.cache.key", "--obligation", "t.timeout.enforced")
    assert code == 0 and out.startswith("# Runbook: t.cache.key, t.timeout.enforced")
    assert "### Cache entries shared across hosts" in out and "### Requests that never end" in out
    code, out, _ = invoke(small_db, "runbook", "--change", "the cache key lost the host", "--format", "json")
    assert code == 0 and json.loads(out)["obligations"][0]["id"] == "t.cache.key"


def test_the_real_cli_process_exits_2_on_a_binary_diff() -> None:
    """Run as a user would, `poet rank` on a binary diff prints one error line and exits 2."""
    result = subprocess.run([sys.executable, "-m", "poetkb", "rank", "--diff",
                             str(FIXTURES / "bad" / "git-binary.diff")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "git-binary.diff:2: the diff changes a binary file" in result.stderr
    assert "Traceback" not in result.stderr
