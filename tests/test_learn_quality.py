"""The quality benchmark's leave-one-suite-out code paths, on poetkb's own labelled sample suite."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from learn_support import materialise_suite

ROOT = Path(__file__).resolve().parent.parent
LABELS = ROOT / "tests" / "fixtures" / "learn" / "loso" / "fixture.yaml"


@pytest.fixture(scope="module")
def quality():  # type: ignore[no-untyped-def]
    """benchmarks/learn_quality.py imported as a module."""
    spec = importlib.util.spec_from_file_location("learn_quality", ROOT / "benchmarks" / "learn_quality.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["learn_quality"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def suites(tmp_path_factory: pytest.TempPathFactory, quality, built_kb_file: Path):  # type: ignore[no-untyped-def]
    """Three copies of the sample suite, mined once each with the fixture labels."""
    from poetkb.kb import KnowledgeBase

    root = tmp_path_factory.mktemp("loso")
    kb_file = root / "kb.sqlite"
    shutil.copy(built_kb_file, kb_file)
    kb = KnowledgeBase(kb_file)
    labels = quality.load_labels(LABELS)
    terms = quality.grep_terms(kb)
    mined = {}
    for name in ("alpha", "beta", "gamma"):
        path = materialise_suite(root / name)
        mined[name] = quality.mine_suite(kb, name, path, labels, terms, workers=1)
    kb.close()
    return mined


def test_the_grep_baseline_maps_every_obligation_whose_terms_occur(quality) -> None:  # type: ignore[no-untyped-def]
    """A unit's source containing an obligation's term maps to it, as a whole-word phrase only."""
    terms = {"cache.vary.honored": ["vary"], "resilience.retry.bounded": ["max retries"]}
    assert quality.grep_baseline("resp.headers['Vary'] == 'Accept'", terms) == {"cache.vary.honored"}
    assert quality.grep_baseline("MAX_RETRIES = 3", terms) == {"resilience.retry.bounded"}
    assert quality.grep_baseline("variance = 2", terms) == set()


def test_the_threshold_is_the_highest_recall_at_the_target_precision(quality) -> None:  # type: ignore[no-untyped-def]
    """Among thresholds reaching the target precision the one with the best recall wins; else the best F1."""
    unit = quality.UnitResult
    units = [unit("s", ("f", "a"), {"x"}, {"x": 0.9}), unit("s", ("f", "b"), {"y"}, {"y": 0.5}),
             unit("s", ("f", "c"), set(), {"z": 0.45})]
    assert quality.choose_threshold(units, grid=(0.4, 0.5, 0.6), target=0.9) == 0.5
    assert quality.choose_threshold(units, grid=(0.4, 0.5, 0.6), target=1.01) == 0.5  # best F1


def test_each_suite_is_scored_with_what_the_other_suites_chose(quality, suites) -> None:  # type: ignore[no-untyped-def]
    """Changing a held-out suite's labels changes its score, never its own threshold or model."""
    before = quality.leave_one_suite_out(suites, use_model=True)
    assert set(before.results) == {"alpha", "beta", "gamma"}
    assert all(len(units) == 7 for units in before.results.values())
    spoiled = dict(suites)
    gamma = suites["gamma"]
    spoiled["gamma"] = quality.MinedSuite(
        gamma.name, gamma.units, gamma.rule_rows, gamma.vectors,
        [(i, key, set()) for i, key, _ in gamma.labelled], gamma.baseline, gamma.needed)
    after = quality.leave_one_suite_out(spoiled, use_model=True)
    assert after.threshold["gamma"] == before.threshold["gamma"]
    assert after.models["gamma"] == before.models["gamma"]
    held = quality.score_at(before.results["gamma"], before.threshold["gamma"])
    assert held.tp > 0 and quality.score_at(after.results["gamma"], after.threshold["gamma"]).tp == 0


def test_the_benchmark_prints_the_table_per_suite_and_pooled(tmp_path: Path) -> None:
    """The command mines each suite, and prints leave-one-suite-out, shipped and grep figures per suite and pooled."""
    labels = tmp_path / "labels"
    labels.mkdir()
    specs = []
    for name in ("alpha", "beta"):
        (labels / f"{name}.yaml").write_text(LABELS.read_text(encoding="utf-8"), encoding="utf-8")
        specs.append(f"{name}={materialise_suite(tmp_path / name)}")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "learn_quality.py"), *specs, "--labels", str(labels),
         "--workers", "1", "--errors", "grep"],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("suite"))
    assert "mapped LOSO" in header and "shipped" in header and "grep" in header
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in ("alpha", "beta", "pooled")}
    assert set(rows) == {"alpha", "beta", "pooled"}
    assert " 7     7 " in rows["alpha"]  # 7 units, 7 labelled pairs


def test_the_markdown_table_replaces_only_what_lies_between_its_markers(quality, suites, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--update-doc rewrites the table in docs/learn.md from the same scores the text table prints."""
    loso = quality.leave_one_suite_out(suites, use_model=True)
    rules = quality.leave_one_suite_out(suites, use_model=False)
    rows = quality.markdown(suites, loso, rules, {})
    assert rows[0].startswith("| suite |") and len(rows) == 2 + 3 + 1 + 1  # head, 3 suites, 1 style, pooled
    assert rows[-1].startswith("| **pooled** |")
    doc = tmp_path / "learn.md"
    doc.write_text(f"before\n{quality.BEGIN_MARK}\nold table\n{quality.END_MARK}\nafter\n", encoding="utf-8")
    quality.update_doc(doc, rows)
    text = doc.read_text(encoding="utf-8")
    assert "old table" not in text and text.startswith("before\n") and text.endswith("after\n")
    assert "\n".join(rows) in text
    doc.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="markers"):
        quality.update_doc(doc, rows)


def test_suites_labelled_after_the_rules_changed_are_pooled_in_a_row_of_their_own(quality, suites) -> None:  # type: ignore[no-untyped-def]
    """`unseen_by_rules: true` suites get a pooled row beside the styles, with their own pairs only."""
    loso = quality.leave_one_suite_out(suites, use_model=True)
    rules = quality.leave_one_suite_out(suites, use_model=False)
    rows = {name: sc for name, _, sc, _, _ in quality.table_rows(suites, loso, rules, {}, frozenset({"beta"}))}
    assert rows[quality.UNSEEN_ROW]["shipped"].pr() == rows["beta"]["shipped"].pr()
    assert rows[quality.UNSEEN_ROW]["grep"].units == rows["beta"]["grep"].units
    assert quality.UNSEEN_ROW not in {name for name, *_ in quality.table_rows(suites, loso, rules, {})}
    markdown = quality.markdown(suites, loso, rules, {}, frozenset({"beta"}))
    assert any(row.startswith(f"| *{quality.UNSEEN_ROW}* |") for row in markdown)


def test_a_label_file_says_whether_the_rules_saw_its_suite(tmp_path: Path) -> None:
    """`unseen_by_rules` is read as a boolean; anything else is bad input naming the field."""
    from poetkb.errors import InputError
    from poetkb.learn.training import load_label_file

    base = "source: s\nstyle: pytest\nunits:\n  - {file: t.py, test: test_x, obligations: none, why: w}\n"
    plain = tmp_path / "plain.yaml"
    plain.write_text(base, encoding="utf-8")
    marked = tmp_path / "marked.yaml"
    marked.write_text(base + "unseen_by_rules: true\n", encoding="utf-8")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(base + "unseen_by_rules: maybe\n", encoding="utf-8")
    assert not load_label_file(plain).unseen_by_rules
    assert load_label_file(marked).unseen_by_rules
    with pytest.raises(InputError, match="unseen_by_rules"):
        load_label_file(wrong)


def test_every_label_names_known_obligations_and_says_why() -> None:
    """Each labelled unit of the public suites carries a one-line rationale and only catalog obligation ids."""
    import yaml

    from poetkb.catalog import load_catalog

    known = set(load_catalog(ROOT).obligations)
    files = sorted((ROOT / "tests" / "fixtures" / "learn" / "labels").glob("*.yaml"))
    assert len(files) >= 12
    for file in files:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
        assert data["style"] in {"pytest", "unittest", "script", "data"}, file.name
        for unit in data["units"]:
            why = unit.get("why")
            assert isinstance(why, str) and why.strip() and "\n" not in why, (file.name, unit)
            obligations = unit["obligations"]
            assert obligations == "none" or (obligations and set(obligations) <= known), (file.name, unit)
