"""`poet learn from-tests` and `poet learn review` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from learn_support import materialise_suite

from poetkb.cli import main


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return materialise_suite(tmp_path / "sample")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_from_tests_json_lists_each_unit_with_its_obligations(kb_path: Path, suite: Path, tmp_path: Path) -> None:
    """--json prints per unit: file relative to PATH, test (null for a file), line and {id, confidence} pairs."""
    code, out, _ = run("learn", "from-tests", str(suite / "tests"), "--source", "sample", "--out",
                       str(tmp_path / "out"), "--workers", "1", "--json")
    assert code == 0
    data = json.loads(out)
    units = {(u["file"], u["test"]): u for u in data["units"]}
    smoke = units[("smoke.test.py", None)]
    assert smoke["line"] == 1 and smoke["kind"] == "file"
    vary = units[("test_cache_vary.py", "test_vary_variants_are_isolated")]
    assert vary["line"] == 12
    assert vary["obligations"][0]["id"] == "cache.vary.honored"
    assert 0.6 <= vary["obligations"][0]["confidence"] <= 1.0
    assert data["summary"]["skipped_by_reason"]["not UTF-8"] == 1
    assert data["out_file"] == str(tmp_path / "out" / "sample.json")
    assert (tmp_path / "out" / "sample.json").is_file()


def test_from_tests_text_reports_counts_skips_and_gaps(kb_path: Path, suite: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The human report names skipped files with reasons, mapped counts, gaps and where the file went."""
    monkeypatch.chdir(tmp_path)
    code, out, _ = run("learn", "from-tests", str(suite), "--workers", "1")
    assert code == 0
    assert "skipped 3 files: 1 does not parse, 1 nests too deeply, 1 not UTF-8" in out
    assert "tests/unit/test_latin1.py: not UTF-8" in out
    assert "gaps:" in out
    assert (tmp_path / "knowledge" / "learned" / "sample.json").is_file()  # the default --out


def test_mapped_only_keeps_the_files_small(kb_path: Path, suite: Path, tmp_path: Path) -> None:
    """--mapped-only writes only mapped units; the summary still counts every unit."""
    code, out, _ = run("learn", "from-tests", str(suite), "--out", str(tmp_path / "out"), "--workers", "1",
                       "--mapped-only", "--json")
    assert code == 0
    data = json.loads(out)
    assert all(u["obligations"] for u in data["units"])
    assert data["summary"]["units"] > len(data["units"])


def test_review_accept_and_reject_from_the_command_line(kb_path: Path, suite: Path, tmp_path: Path) -> None:
    """review lists unsure mappings; --accept/--reject store decisions and say so."""
    assert run("learn", "from-tests", str(suite), "--out", str(tmp_path / "out"), "--workers", "1")[0] == 0
    code, out, _ = run("learn", "review", "--threshold", "1", "--json")
    items = json.loads(out)
    assert code == 0 and items
    first = items[0]
    pair = f"{first['pattern_id']}:{first['obligation_id']}"
    code, out, _ = run("learn", "review", "--reject", pair)
    assert code == 0
    assert f"rejected  {first['pattern_id']} -> {first['obligation_id']}" in out
    code, out, _ = run("learn", "review", "--decided", "--threshold", "0")
    assert "[reject]" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["learn", "from-tests", "/nonexistent/suite"], "/nonexistent/suite: does not exist or cannot be read"),
        (["learn", "from-tests", ".", "--source", "Bad Name!"], "[--source] source name 'Bad Name!' is not usable"),
        (["learn", "review", "--accept", "nocolon"], "[--accept] expected PATTERN_ID:OBLIGATION_ID"),
        (["learn", "review", "--accept", "x:test.py::t:cache.nope"], "unknown obligation id 'cache.nope'"),
    ],
)
def test_bad_input_exits_2_with_a_message(kb_path: Path, args: list[str], message: str) -> None:
    """Bad paths, names and pairs exit with code 2 and a one-line reason, never a traceback."""
    code, out, err = run(*args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out


def test_train_model_trains_on_labelled_suites_and_reports_held_out_figures(tmp_path: Path) -> None:
    """Three labelled copies of the sample suite: a model file the mapper loads, trained on every labelled pair,
    its threshold chosen leave-one-suite-out; bad input is exit 2 naming the option."""
    from poetkb.learn.learned import PairModel

    labels = tmp_path / "labels"
    labels.mkdir()
    fixture = Path(__file__).resolve().parent / "fixtures" / "learn" / "loso" / "fixture.yaml"
    for name in ("alpha", "beta", "gamma"):
        (labels / f"{name}.yaml").write_text(fixture.read_text(encoding="utf-8"), encoding="utf-8")
        materialise_suite(tmp_path / "suites" / name)
    output = tmp_path / "model.json"
    code, out, _ = run("learn", "train-model", "--suites", str(tmp_path / "suites"), "--labels", str(labels),
                       "--output", str(output), "--workers", "1", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert [s["suite"] for s in data["suites"]] == ["alpha", "beta", "gamma"]
    assert all(s["labelled_units"] > 0 and s["held_out"] is not None for s in data["suites"])
    model = PairModel.from_json(output.read_text(encoding="utf-8"))
    assert model is not None and model.pairs == data["pairs"] > 0
    assert sorted(model.trained_on) == ["alpha", "beta", "gamma"] and model.threshold == data["threshold"]
    code, out, _ = run("learn", "train-model", f"delta={tmp_path / 'suites' / 'alpha'}", "--labels", str(labels),
                       "--output", str(tmp_path / "other.json"))
    assert code == 2 and "delta" in out + _ and not (tmp_path / "other.json").exists()
