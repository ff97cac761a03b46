"""`poet rank --git`: changes read from real git repositories (config, code, migrations, dependencies, mixed)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import poetkb
from poetkb.cli import main
from poetkb.errors import InputError
from poetkb.rank.evaluate import GitScenario, build_git_scenario, evaluate_git, load_git_scenarios
from poetkb.rank.gitchange import read_git

SCENARIOS = Path(__file__).resolve().parent / "fixtures" / "rank" / "git_scenarios.yaml"
FLOOR = 0.9

NGINX_BEFORE = """server {
    listen 8080;
    location /api/ {
        proxy_pass http://api;
        proxy_read_timeout 10s;
    }
}
"""
NGINX_AFTER = NGINX_BEFORE.replace("proxy_read_timeout 10s;", "proxy_read_timeout\n            600s;")


def _repo(tmp_path: Path, **kw: object) -> Path:
    spec = {"id": "r", "expect": ["x"], **kw}
    return build_git_scenario(GitScenario.model_validate(spec), tmp_path / "repo")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          timeout=30).stdout


def test_the_git_scenarios_are_broad_and_name_real_obligations(kb: poetkb.KnowledgeBase) -> None:
    """At least 20 scenarios over config, code, migration, dependency and mixed changes, expecting known ids."""
    scenarios = load_git_scenarios(SCENARIOS)
    assert len(scenarios) >= 20 and len({s.id for s in scenarios}) == len(scenarios)
    assert {"config", "code", "migration", "mixed"} <= {s.area for s in scenarios}
    known = {o.id for o in kb.obligations()}
    assert {oid for s in scenarios for oid in s.expect} <= known


def test_rank_git_puts_an_expected_obligation_in_the_top_3(kb: poetkb.KnowledgeBase, tmp_path: Path) -> None:
    """Over the git scenarios, an expected obligation is in the top 3 for at least 90% of them."""
    result = evaluate_git(kb, load_git_scenarios(SCENARIOS), tmp_path)
    misses = [(r.id, r.ranked[:3]) for r in result.results if not (r.first_hit and r.first_hit <= 3)]
    assert result.hit_at_3 >= FLOOR, misses


def test_branch_range_reads_config_through_the_model_with_context(tmp_path: Path) -> None:
    """On a branch, main...HEAD is read; a directive split over two lines is seen with its block context."""
    repo = _repo(tmp_path, branch="ops/slow-reports", message="Reports need longer\n\nThey render for minutes.",
                 before={"deploy/nginx/api.conf": NGINX_BEFORE}, after={"deploy/nginx/api.conf": NGINX_AFTER})
    change = read_git(repo)
    assert change.origin == "git diff main...HEAD"
    assert "Branch ops/slow-reports (ops slow reports)." in change.text and "They render for minutes." in change.text
    with poetkb.open(tmp_path / "kb.sqlite") as base:
        ranking = base.rank(None, git=change, top=3)
    [directive] = ranking.change.directives
    assert (directive.name, directive.old, directive.new) == ("proxy_read_timeout", "10s", "600s")
    assert directive.context == ["server", "location /api/"] and directive.line == 5
    assert "Read from git diff main...HEAD" in ranking.change.describe()
    assert ranking.obligations[0].id == "resilience.timeout.enforced"


def test_working_tree_changes_and_untracked_files_are_read(tmp_path: Path) -> None:
    """Uncommitted edits are ranked against HEAD, and a new untracked migration is read too."""
    repo = _repo(tmp_path, branch="main", uncommitted=True, before={"app/x.py": "X = 1\n"},
                 after={"app/x.py": "X = 2\n", "db/migrations/0002.sql": "CREATE INDEX i ON orders (c);\n"})
    change = read_git(repo)
    assert change.origin == "uncommitted changes against HEAD (with 1 untracked files)"
    with poetkb.open(tmp_path / "kb.sqlite") as base:
        summary = base.rank(None, git=change).change
    assert [f.path for f in summary.files] == ["app/x.py", "db/migrations/0002.sql"]
    [statement] = summary.migrations
    assert statement.lock == "SHARE" and statement.line == 1 and statement.table == "orders"


def test_clean_main_ranks_the_last_commit_and_an_explicit_range(tmp_path: Path) -> None:
    """On a clean default branch the last commit is read; A..B and a single revision are honoured."""
    repo = _repo(tmp_path, branch="main", message="Longer timeout", before={"deploy/nginx/api.conf": NGINX_BEFORE},
                 after={"deploy/nginx/api.conf": NGINX_AFTER})
    assert read_git(repo).origin == "git diff HEAD~1..HEAD"
    assert "Longer timeout" in read_git(repo).text
    assert read_git(repo, "HEAD~1..HEAD").diff == read_git(repo).diff
    assert read_git(repo, "HEAD~1").origin == "git diff HEAD~1"


def test_python_changes_are_read_from_the_syntax_tree(tmp_path: Path) -> None:
    """Touched functions and the retry, timeout and SQL calls inside them are recognised, with file and line."""
    before = "import requests\n\n\ndef charge(order):\n    return requests.post(URL, json=order)\n\n\n" \
             "def unrelated():\n    return 1\n"
    after = "import requests\nfrom tenacity import retry\n\n\n@retry\ndef charge(order):\n" \
            "    return requests.post(URL, json=order, timeout=3)\n\n\ndef unrelated():\n    return 1\n"
    repo = _repo(tmp_path, before={"app/pay.py": before}, after={"app/pay.py": after})
    with poetkb.open(tmp_path / "kb.sqlite") as base:
        summary = base.rank(None, git=read_git(repo)).change
    assert "charge" in summary.functions and "unrelated" not in summary.functions
    kinds = {(s.kind, s.function, s.line) for s in summary.code_signals}
    assert ("retry", "charge", 5) in kinds and ("timeout", "charge", 7) in kinds
    assert any(line.startswith("Code: timeout in charge (app/pay.py:7)") for line in summary.describe())


@pytest.mark.parametrize(
    ("sql", "lock", "rewrites", "compatible"),
    [
        ("ALTER TABLE t ADD COLUMN c int;", "ACCESS EXCLUSIVE", False, True),
        ("ALTER TABLE t ADD COLUMN c boolean NOT NULL DEFAULT false;", "ACCESS EXCLUSIVE", False, True),
        ("ALTER TABLE t ADD COLUMN c timestamptz NOT NULL DEFAULT now();", "ACCESS EXCLUSIVE", True, True),
        ("ALTER TABLE t ADD COLUMN c int NOT NULL;", "ACCESS EXCLUSIVE", False, False),
        ("CREATE INDEX i ON t (c);", "SHARE", False, True),
        ("CREATE UNIQUE INDEX CONCURRENTLY i ON t (c);", "SHARE UPDATE EXCLUSIVE", False, True),
        ("ALTER TABLE t VALIDATE CONSTRAINT t_fk;", "SHARE UPDATE EXCLUSIVE", False, True),
        ("ALTER TABLE t ADD CONSTRAINT t_fk FOREIGN KEY (c) REFERENCES u (id) NOT VALID;", "SHARE ROW EXCLUSIVE",
         False, True),
        ("ALTER TABLE t ALTER COLUMN c TYPE bigint;", "ACCESS EXCLUSIVE", True, False),
        ("ALTER TABLE t RENAME COLUMN c TO d;", "ACCESS EXCLUSIVE", False, False),
        ("ALTER TABLE t DROP COLUMN c;", "ACCESS EXCLUSIVE", False, False),
        ("DROP INDEX CONCURRENTLY i;", "SHARE UPDATE EXCLUSIVE", False, True),
    ],
)
def test_migration_statements_carry_their_lock_level(sql: str, lock: str, rewrites: bool, compatible: bool) -> None:
    """Each DDL statement gets PostgreSQL's lock level, whether it rewrites the table, and compatibility."""
    from poetkb.rank.migration import read_statements

    [statement] = read_statements(f"-- migration\n{sql}\n", "db/migrations/0001.sql")
    assert (statement.lock, statement.rewrites_table, statement.backward_compatible) == (lock, rewrites, compatible)
    assert statement.line == 2


def test_dependency_bumps_and_binary_files(tmp_path: Path) -> None:
    """A pinned version change is a bump; a binary file is listed and skipped with a warning, not refused."""
    repo = _repo(tmp_path, before={"requirements.txt": "httpx==0.23.3\nrich==13.0\n", "logo.png": "x"},
                 after={"requirements.txt": "httpx==0.28.1\nrich==13.0\n"})
    (repo / "logo.png").write_bytes(b"\x89PNG\x00\x01\x02")
    _git(repo, "commit", "-qam", "logo")
    with poetkb.open(tmp_path / "kb.sqlite") as base:
        summary = base.rank(None, git=read_git(repo)).change
    assert [(d.name, d.old, d.new) for d in summary.dependencies] == [("httpx", "0.23.3", "0.28.1")]
    assert "logo.png" in [f.path for f in summary.files]
    assert "logo.png: a binary file; only its name is read" in summary.warnings


def test_cli_rank_git_prints_what_it_read_and_refuses_bad_input(tmp_path: Path, kb_path: Path) -> None:
    """`poet rank --git` works from a repository; a bad range or a directory outside git is exit 2."""
    repo = _repo(tmp_path, branch="fix/timeouts", before={"deploy/nginx/api.conf": NGINX_BEFORE},
                 after={"deploy/nginx/api.conf": NGINX_AFTER})
    runner = CliRunner()
    result = runner.invoke(main, ["--db", str(kb_path), "rank", "--git", "--repo", str(repo), "--top", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["id"] == "resilience.timeout.enforced"
    result = runner.invoke(main, ["--db", str(kb_path), "rank", "--git", "main...HEAD", "--repo", str(repo)])
    assert result.exit_code == 0 and "Read from git diff main...HEAD" in result.output
    result = runner.invoke(main, ["--db", str(kb_path), "rank", "--git", "HEAD; rm -rf x", "--repo", str(repo)])
    assert result.exit_code == 2 and "is not a revision range" in result.output
    with pytest.raises(InputError, match="is not a revision range"):
        read_git(repo, "--output=/tmp/x")  # never handed to git as an option
    result = runner.invoke(main, ["--db", str(kb_path), "rank", "--git", "nosuch..HEAD", "--repo", str(repo)])
    assert result.exit_code == 2 and "git diff failed" in result.output
    outside = tmp_path / "plain"
    outside.mkdir()
    result = runner.invoke(main, ["--db", str(kb_path), "rank", "--git", "--repo", str(outside)])
    assert result.exit_code == 2 and "is not inside a git repository" in result.output
    result = runner.invoke(main, ["--db", str(kb_path), "plan", "test", "--git", "--repo", str(repo), "--top", "1"])
    assert result.exit_code == 0 and "resilience.timeout.enforced" in result.output


def test_a_hand_edited_diff_is_read_with_a_warning_naming_the_line(tmp_path: Path, kb_path: Path) -> None:
    """Hunk counts that do not match are read leniently (warning with file:line); a non-diff is still refused."""
    diff = tmp_path / "edited.diff"
    diff.write_text("--- a/haproxy.cfg\n+++ b/haproxy.cfg\n@@ -1,2 +1,2 @@\n defaults\n-    retries 2\n"
                    "+    retries 9\n+    option redispatch\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--db", str(kb_path), "rank", "--diff", str(diff), "--top", "3"])
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "edited.diff:3: hunk for haproxy.cfg promises 2 old and 2 new lines " \
                                               "but holds 2 and 3" in result.output
    assert "option redispatch added" in result.output and "resilience.retry.bounded" in result.output
    short = tmp_path / "short.diff"
    short.write_text("--- a/x.conf\n+++ b/x.conf\n@@ -1,9 +1,9 @@\n-    retries 2\n+    retries 9\n"
                     "--- a/y.conf\n+++ b/y.conf\n@@ -1 +1 @@\n-a\n+b\n", encoding="utf-8")
    with poetkb.open(tmp_path / "kb.sqlite") as base:
        summary = base.rank(None, diff=short).change
    assert [f.path for f in summary.files] == ["x.conf", "y.conf"]  # the next file header ends the short hunk
    assert summary.warnings and summary.warnings[0].startswith(f"{short}:3: hunk for x.conf promises 9")
    with pytest.raises(InputError, match="not a unified diff"):
        poetkb.open(tmp_path / "kb.sqlite").rank(None, diff="just some words\n+ and a plus\n")


def test_syntax_tree_signals_need_a_specific_name() -> None:
    """A common word alone is no signal (requests.Session is not SQL); cursor.execute and lru_cache are."""
    from poetkb.rank.pycode import signals

    source = ("import requests\nfrom functools import lru_cache\n\n\ndef client():\n    return requests.Session()\n\n\n"
              "@lru_cache(maxsize=128)\ndef load(cursor, key):\n    cursor.execute('SELECT v FROM kv WHERE k = %s', (key,))\n"
              "    return cursor.fetchone()\n")
    names: list[str] = []
    found = {(s.kind, s.function) for s in signals(source, "app/db.py", [6, 9, 11], function_names=names)}
    assert names == ["client", "load"]
    assert ("sql", "client") not in found
    assert {("cache", "load"), ("sql", "load")} <= found
    assert signals("def broken(:\n", "x.py", [1]) == []
