"""Coverage that means what it says: the user's own mined tests are coverage, public suites only examples."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import poetkb
from poetkb import store
from poetkb.catalog import load_catalog
from poetkb.cli import main
from poetkb.kb import KnowledgeBase

CATALOG = Path(__file__).resolve().parent / "fixtures" / "rank" / "catalog"
CACHE_DIFF = (
    "--- a/edge/nginx.conf\n+++ b/edge/nginx.conf\n@@ -1,3 +1,3 @@\n location / {\n"
    '-    proxy_cache_key "$host$uri";\n+    proxy_cache_key "$uri";\n }\n'
)
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PUBLIC = {
    "role": "reference",
    "source": "publiclib",
    "patterns": [{
        "id": "publiclib:tests/test_keys.py::test_key_varies_by_host", "source": "publiclib", "role": "reference",
        "repository": "https://git.example.org/public/lib", "commit": COMMIT, "file": "tests/test_keys.py",
        "test": "test_key_varies_by_host", "line": 12, "summary": "the cache key differs per host",
        "terms": ["cache", "key", "host"],
        "obligations": [{"id": "t.cache.key", "confidence": 0.85, "reasons": ["cache key assertion"]}],
    }],
}
OWN_TEST = '''
def test_cache_key_includes_host(edge):
    """Two hosts with one path must not share a cached page: the cache key includes the host."""
    first = edge.get("/page", headers={"Host": "a.example"})
    second = edge.get("/page", headers={"Host": "b.example"})
    assert first.headers["X-Cache-Status"] == "MISS"
    assert second.headers["X-Cache-Status"] == "MISS"
    assert first.text != second.text
'''


def _catalog(root: Path, *, with_suite: bool) -> Path:
    shutil.copytree(CATALOG, root)
    if not with_suite:
        (root / "knowledge" / "learned" / "suite.json").unlink()
    (root / "knowledge" / "learned" / "publiclib.json").write_text(json.dumps(PUBLIC), encoding="utf-8")
    return root


@pytest.fixture
def mined(tmp_path: Path) -> Iterator[KnowledgeBase]:
    """A knowledge base with a public example shipped in the catalog and the user's own suite mined into it."""
    catalog = _catalog(tmp_path / "catalog", with_suite=False)
    path = tmp_path / "kb.sqlite"
    store.build(load_catalog(catalog), path, source=str(catalog))
    suite = tmp_path / "shop" / "tests"
    suite.mkdir(parents=True)
    (suite / "test_edge_cache.py").write_text(OWN_TEST, encoding="utf-8")
    base = poetkb.open(path)
    report = base.learn([tmp_path / "shop"], source="shop", out_dir=tmp_path / "learned", workers=1)
    assert report.role == "own" and {p.role for p in report.patterns} == {"own"}
    # the small test catalog has too few words for the mapper to be sure: a person accepts the mapping
    base.learn_decide([("shop:tests/test_edge_cache.py::test_cache_key_includes_host", "t.cache.key")], "accept")
    yield base
    base.close()


def test_plan_lists_own_tests_as_coverage_and_public_ones_as_examples(mined: KnowledgeBase) -> None:
    """The user's mined test is under 'Your tests'; the shipped public test only under 'How others test it'."""
    item = next(i for i in mined.test_plan(None, diff=CACHE_DIFF).items if i.id == "t.cache.key")
    assert [t.test for t in item.own_tests] == ["test_cache_key_includes_host"]
    assert [t.role for t in item.own_tests] == ["own"]
    assert [t.test for t in item.reference_examples] == ["test_key_varies_by_host"]
    assert item.reference_examples[0].link == (
        f"https://git.example.org/public/lib/blob/{COMMIT}/tests/test_keys.py#L12")
    text = mined.test_plan(None, diff=CACHE_DIFF).to_markdown()
    own = text.index("**Your tests that exercise it.**")
    others = text.index("**How others test it**")
    assert own < text.index("`tests/test_edge_cache.py::test_cache_key_includes_host`") < others
    assert text.index(f"(https://git.example.org/public/lib/blob/{COMMIT}/tests/test_keys.py#L12)") > others
    assert "test_key_varies_by_host" not in text[own:others]


def test_runbook_says_which_obligations_your_tests_exercise(mined: KnowledgeBase) -> None:
    """The runbook's scope counts your tests and public examples apart, and names a gap as one."""
    book = mined.runbook(obligations=["t.cache.key", "t.retry.bounded"])
    refs = {r.id: r for r in book.obligations}
    assert (refs["t.cache.key"].own_tests, refs["t.cache.key"].reference_examples) == (1, 1)
    assert (refs["t.retry.bounded"].own_tests, refs["t.retry.bounded"].reference_examples) == (0, 0)
    text = book.to_markdown()
    assert "Your tests exercising it: 1; public examples, not coverage: 1." in text
    assert "No test of yours exercises it (a gap)." in text


def test_a_plan_without_own_tests_names_the_gap(tmp_path: Path) -> None:
    """With only public examples mapped, the plan says no test of yours exercises it, and still shows the example."""
    catalog = _catalog(tmp_path / "catalog", with_suite=False)
    path = tmp_path / "kb.sqlite"
    store.build(load_catalog(catalog), path, source=str(catalog))
    with poetkb.open(path) as base:
        ranked = next(r for r in base.rank(None, diff=CACHE_DIFF).obligations if r.id == "t.cache.key")
        text = base.test_plan(None, diff=CACHE_DIFF).to_markdown()
    assert ranked.why.own_tests == [] and ranked.why.own_tests_total == 0
    assert ranked.why.reference_examples_total == 1
    assert "No test of yours exercises it: a gap to close." in ranked.why.sentences
    assert any(s.startswith("How others test it (public examples, not coverage): tests/test_keys.py::"
                            "test_key_varies_by_host (publiclib)") for s in ranked.why.sentences)
    assert "No test of yours exercises it: a gap to close." in text and "**How others test it**" in text


def test_role_is_stored_in_its_own_column_and_said_by_related(mined: KnowledgeBase) -> None:
    """The patterns table keeps each pattern's role; `related` marks each learned test as yours or an example."""
    roles = dict(mined.db.execute("select source, role from patterns group by source").fetchall())
    assert roles == {"publiclib": "reference", "shop": "own"}
    found = {n.id: n.role for n in mined.related("t.cache.key", edge_kinds=["learned_from"])}
    assert found == {"pattern:publiclib:tests/test_keys.py::test_key_varies_by_host": "reference",
                     "pattern:shop:tests/test_edge_cache.py::test_cache_key_includes_host": "own"}
    result = CliRunner().invoke(main, ["--db", str(mined.path), "related", "t.cache.key", "--edge", "learned_from"])
    assert result.exit_code == 0, result.output
    assert "test_key_varies_by_host)  [public example, not coverage]" in result.output
    assert "test_cache_key_includes_host)  [your test]" in result.output


def test_learn_role_reference_is_written_to_the_file_and_the_kb(tmp_path: Path) -> None:
    """`poet learn from-tests --role reference` marks the file's header and every pattern as reference."""
    catalog = _catalog(tmp_path / "catalog", with_suite=False)
    path = tmp_path / "kb.sqlite"
    store.build(load_catalog(catalog), path, source=str(catalog))
    (tmp_path / "lib" / "tests").mkdir(parents=True)
    (tmp_path / "lib" / "tests" / "test_edge_cache.py").write_text(OWN_TEST, encoding="utf-8")
    result = CliRunner().invoke(main, ["--db", str(path), "learn", "from-tests", str(tmp_path / "lib"), "--role",
                                       "reference", "--repository", "https://git.example.org/lib", "--source",
                                       "lib", "--out", str(tmp_path / "out"), "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["role"] == "reference"
    written = json.loads((tmp_path / "out" / "lib.json").read_text(encoding="utf-8"))
    assert written["role"] == "reference"
    assert {p["role"] for p in written["patterns"]} == {"reference"}
    assert {p["repository"] for p in written["patterns"]} == {"https://git.example.org/lib"}
    with poetkb.open(path) as base:
        assert base.db.execute("select distinct role from patterns where source = 'lib'").fetchall() == [
            ("reference",)]
    bad = CliRunner().invoke(main, ["--db", str(path), "learn", "from-tests", str(tmp_path / "lib"), "--role",
                                    "mine"])
    assert bad.exit_code == 2 and "--role" in bad.output
    bad = CliRunner().invoke(main, ["--db", str(path), "learn", "from-tests", str(tmp_path / "lib"),
                                    "--repository", "file:///etc", "--out", str(tmp_path / "out")])
    assert bad.exit_code == 2 and "--repository" in bad.output and "https://" in bad.output


def test_shipped_learned_files_are_reference_examples() -> None:
    """Every pattern shipped in knowledge/learned comes from a public suite and is marked reference."""
    root = Path(__file__).resolve().parent.parent / "knowledge" / "learned"
    files = sorted(root.glob("*.json"))
    assert files
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["role"] == "reference", path
        assert {p.get("role") for p in data["patterns"]} == {"reference"}, path


def test_migration_012_adds_the_role_to_an_older_knowledge_base(tmp_path: Path) -> None:
    """An existing file without the role column gains it, with reference patterns recognised from their data."""
    catalog = _catalog(tmp_path / "catalog", with_suite=True)
    path = tmp_path / "kb.sqlite"
    store.build(load_catalog(catalog), path, source=str(catalog))
    conn = sqlite3.connect(path)
    conn.execute("drop index if exists idx_patterns_role")
    conn.execute("alter table patterns drop column role")
    conn.execute("delete from migrations where name = '012_pattern_role'")
    conn.commit()
    conn.close()
    with poetkb.open(path) as base:
        rows = dict(base.db.execute("select source, role from patterns").fetchall())
    assert rows == {"suite": "own", "publiclib": "reference"}
