"""The ranking model is fitted once per knowledge-base content, kept in the file, and refitted when it changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import poetkb
from poetkb import store
from poetkb.catalog import load_catalog
from poetkb.rank import model_store
from poetkb.rank.model import RankModel

CATALOG = Path(__file__).resolve().parent / "fixtures" / "rank" / "catalog"
QUERY = "requests hang and retries pile up"


@pytest.fixture
def small_path(tmp_path: Path) -> Path:
    """A fresh knowledge base from the ranking test catalog, with nothing cached yet."""
    path = tmp_path / "small.sqlite"
    store.build(load_catalog(CATALOG), path, source=str(CATALOG))
    model_store.forget()
    return path


def fits_in_fresh_process(path: Path) -> int:
    code = "import sys, poetkb; from poetkb.rank import model_store; poetkb.open(sys.argv[1]).rank(sys.argv[2]); print(model_store.fits)"
    out = subprocess.run([sys.executable, "-c", code, str(path), QUERY], capture_output=True, text=True, check=True,
                         timeout=120)
    return int(out.stdout.strip())


def test_fitted_once_then_served_from_memory_and_from_the_file(small_path: Path) -> None:
    """The first query fits; later ones in this process and in new processes reuse the stored model."""
    before = model_store.fits
    with poetkb.open(small_path) as kb:
        first = kb.rank(QUERY).model_dump_json()
        assert model_store.fits == before + 1
        assert kb.rank(QUERY).model_dump_json() == first
        assert model_store.fits == before + 1
        assert kb.db.execute("select count(*) from rank_cache").fetchone()[0] == 1
    model_store.forget()
    with poetkb.open(small_path) as kb:
        assert kb.rank(QUERY).model_dump_json() == first
    assert model_store.fits == before + 1
    assert fits_in_fresh_process(small_path) == 0


def test_a_pattern_written_into_the_file_invalidates_the_model(small_path: Path) -> None:
    """Adding a learned pattern straight into the knowledge base changes the digest; the next query refits."""
    with poetkb.open(small_path) as kb:
        kb.rank(QUERY)
        fitted = model_store.fits
        old_digest = model_store.digest(kb)
        pattern = {"id": "suite:tests/test_hang.py::test_upstream_hang_times_out", "source": "suite",
                   "file": "tests/test_hang.py", "test": "test_upstream_hang_times_out", "line": 3,
                   "summary": "a hanging upstream is cut off by the proxy timeout", "terms": ["hang", "timeout"],
                   "obligations": [{"id": "t.timeout.enforced", "confidence": 0.95, "reasons": ["test name"]}]}
        with kb.db.conn:
            kb.db.table("patterns").insert({"id": pattern["id"], "source": "suite", "file": pattern["file"],
                                            "test": pattern["test"], "line": 3, "summary": pattern["summary"],
                                            "data": json.dumps(pattern)})
            kb.db.table("edges").insert({"src": f"pattern:{pattern['id']}", "dst": "obligation:t.timeout.enforced",
                                         "kind": "learned_from", "weight": 0.95})
        assert model_store.digest(kb) != old_digest
        kb.changed()  # a write made around the data access: drop what was derived
        ranked = {r.id: r for r in kb.rank(QUERY).obligations}
        assert model_store.fits == fitted + 1
        timeout = ranked["t.timeout.enforced"]
        assert [t.test for t in timeout.why.own_tests] == ["test_upstream_hang_times_out"]
        assert "pattern" in timeout.why.channels


def test_remapping_a_learned_test_in_place_invalidates_the_model(small_path: Path) -> None:
    """A review that moves a learned test to another obligation (same counts, same weight) is seen as a change."""
    with poetkb.open(small_path) as kb:
        before = {r.id: r for r in kb.rank("retry only idempotent post").obligations}
        assert [t.test for t in before["t.retry.bounded"].why.own_tests] == ["test_retry_only_idempotent"]
        old_digest = model_store.digest(kb)
        with kb.db.conn:
            kb.db.execute("update edges set dst = 'obligation:t.timeout.enforced' "
                          "where src like 'pattern:%test_retry_only_idempotent' and kind = 'learned_from'")
        assert model_store.digest(kb) != old_digest
        after = {r.id: r for r in kb.rank("retry only idempotent post").obligations}
    assert after["t.retry.bounded"].why.own_tests == []
    assert [t.test for t in after["t.timeout.enforced"].why.own_tests] == ["test_retry_only_idempotent"]


def test_a_rebuild_from_a_changed_catalog_refits_and_an_unchanged_one_does_not(small_path: Path,
                                                                              tmp_path: Path) -> None:
    """Rebuilding with the same catalog keeps the stored model; a changed catalog is refitted by the build itself."""
    with poetkb.open(small_path) as kb:
        kb.rank(QUERY)
        before = model_store.fits
        kb.build(CATALOG)
        assert model_store.fits == before
    assert fits_in_fresh_process(small_path) == 0
    changed = tmp_path / "catalog"
    shutil.copytree(CATALOG, changed)
    rules = changed / "mappings" / "rules.yaml"
    rules.write_text(rules.read_text(encoding="utf-8").replace("[hang, stuck request]", "[hang, stuck, frozen]"),
                     encoding="utf-8")
    with poetkb.open(small_path) as kb:
        kb.build(changed)
        assert model_store.fits == before + 1
    assert fits_in_fresh_process(small_path) == 0
    with poetkb.open(small_path) as kb:
        assert kb.rank("the page is frozen").obligations[0].id == "t.timeout.enforced"


def test_a_damaged_cache_row_is_ignored_and_replaced(small_path: Path) -> None:
    """A cache payload that does not decode is refitted instead of failing the query."""
    with poetkb.open(small_path) as kb:
        expected = kb.rank(QUERY).model_dump_json()
        with kb.db.conn:
            kb.db.execute("update rank_cache set payload = ?", [b"not zlib at all"])
    model_store.forget()
    before = model_store.fits
    with poetkb.open(small_path) as kb:
        assert kb.rank(QUERY).model_dump_json() == expected
    assert model_store.fits == before + 1


def test_model_json_round_trips_and_refuses_other_versions(small_path: Path) -> None:
    """The model is plain JSON (no pickle); a payload of another model version is not used."""
    with poetkb.open(small_path) as kb:
        model = model_store.model_for(kb)
    again = RankModel.from_json(model.to_json())
    assert again is not None and again.to_json() == model.to_json()
    data = json.loads(model.to_json())
    data["version"] = -1
    assert RankModel.from_json(json.dumps(data)) is None
    assert RankModel.from_json("{broken") is None


@pytest.mark.parametrize("query", [
    "switch the cache key to include the Host header",
    "Retries of POST requests on another upstream",
    "token signature verify_signature jwt.decode timeouts timeout",
])
def test_query_vectors_equal_the_fitted_vectorizer(small_path: Path, query: str) -> None:
    """The model (fitted and applied without scikit-learn) vectorises a query as scikit-learn's TfidfVectorizer does."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from poetkb.rank.model import failure_mode_text, obligation_text, pattern_text, recipe_text
    from poetkb.text import analyze

    with poetkb.open(small_path) as kb:
        model = model_store.model_for(kb)
        texts = []
        for table, render in (("obligations", obligation_text), ("failure_modes", failure_mode_text),
                              ("recipes", recipe_text), ("patterns", pattern_text)):
            texts += [render(json.loads(r["data"])) for r in kb.db.query(f"select data from {table} order by id")]
    vectorizer = TfidfVectorizer(analyzer=analyze, sublinear_tf=True, norm="l2", smooth_idf=True).fit(texts)
    row = vectorizer.transform([query]).tocoo()
    terms = {column: term for term, column in vectorizer.vocabulary_.items()}
    expected = {terms[c]: v for c, v in zip(row.col, row.data, strict=True)}
    got = model.vectorize(query)
    assert got.keys() == expected.keys() and got
    assert all(abs(got[t] - expected[t]) < 1e-9 for t in got)


def test_the_first_rank_after_a_build_fits_nothing(tmp_path: Path) -> None:
    """`poet kb build` fits and stores the model, so the first `poet rank` process after it fits nothing."""
    from click.testing import CliRunner

    from poetkb.cli import main

    path = tmp_path / "built.sqlite"
    result = CliRunner().invoke(main, ["--db", str(path), "kb", "build", "--from", str(CATALOG)])
    assert result.exit_code == 0, result.output
    with poetkb.open(path) as kb:
        assert kb.db.execute("select count(*) from rank_cache where digest = ?", [model_store.digest(kb)]).fetchone()[0] == 1
    assert fits_in_fresh_process(path) == 0


def test_a_query_imports_no_scikit_learn_nor_networkx(small_path: Path) -> None:
    """Ranking with the stored model is pure Python: neither scikit-learn nor networkx is imported."""
    with poetkb.open(small_path) as kb:
        model_store.prepare(kb)
    code = ("import sys, poetkb; kb = poetkb.open(sys.argv[1]); assert kb.rank(sys.argv[2]).obligations; "
            "print(sorted(m for m in ('sklearn', 'scipy', 'networkx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(small_path), QUERY], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_each_knowledge_base_keeps_its_own_model(small_path: Path, tmp_path: Path) -> None:
    """Two knowledge bases open in one process rank with their own models; closing one drops only its state."""
    other = tmp_path / "other.sqlite"
    changed = tmp_path / "catalog"
    shutil.copytree(CATALOG, changed)
    rules = changed / "mappings" / "rules.yaml"
    rules.write_text(rules.read_text(encoding="utf-8").replace("[hang, stuck request]", "[hang, stuck, frozen]"),
                     encoding="utf-8")
    store.build(load_catalog(changed), other, source=str(changed))
    with poetkb.open(small_path) as a, poetkb.open(other) as b:
        model_a, model_b = model_store.model_for(a), model_store.model_for(b)
        assert model_a.digest != model_b.digest
        assert model_store.model_for(a) is model_a and model_store.model_for(b) is model_b
        frozen_a = [r.id for r in a.rank("the page is frozen").obligations]
        frozen_b = [r.id for r in b.rank("the page is frozen").obligations]
        assert frozen_b[0] == "t.timeout.enforced" and frozen_a != frozen_b
        model_store.forget(a)
        assert model_store.model_for(b) is model_b
