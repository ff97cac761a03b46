"""Extraction: test units, their line ranges and features, from the syntax tree (never by running the code)."""

from __future__ import annotations

from pathlib import Path

import pytest
from learn_support import materialise_suite

from poetkb.learn.extract import ExtractError, extract, mine_job
from poetkb.learn.features import ExtractedUnit, ExtractFailure, Extraction, looks_like_data_path, summary_terms, words


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialise_suite(tmp_path_factory.mktemp("learn") / "suite")


def units_of(suite: Path, rel: str, *, script_style: bool = False) -> dict[str | None, ExtractedUnit]:
    result = extract((suite / rel).read_text(encoding="utf-8"), script_style=script_style)
    return {u.test: u for u in result.units}


def test_pytest_functions_and_parametrized_tests_are_units(suite: Path) -> None:
    """Module-level test functions are units; a parametrized one is marked so; helpers are not units."""
    units = units_of(suite, "tests/test_cache_vary.py")
    assert [(u.test, u.kind) for u in extract((suite / "tests/test_cache_vary.py").read_text()).units] == [
        ("test_vary_variants_are_isolated", "function"),
        ("test_each_language_is_served", "parametrized"),
        ("test_replayed_exchanges", "function"),
    ]
    assert "load_replay" not in units


def test_line_ranges_come_from_the_source(suite: Path) -> None:
    """Each unit carries the line of its def and the last line of its body."""
    units = units_of(suite, "tests/test_cache_vary.py")
    lines = (suite / "tests/test_cache_vary.py").read_text().splitlines()
    vary = units["test_vary_variants_are_isolated"]
    assert lines[vary.line - 1].startswith("def test_vary_variants_are_isolated")
    assert "second.status_code == 200" in lines[vary.end_line - 1]


def test_unittest_classes_methods_and_inherited_test_cases(suite: Path) -> None:
    """A TestCase subclass is a class unit, its test methods are method units, a subclass of it is a test class."""
    units = units_of(suite, "tests/test_retry_unittest.py")
    assert {k: u.kind for k, u in units.items()} == {
        "RetryPolicyTests": "class",
        "RetryPolicyTests.test_retries_are_bounded": "method",
        "RetryPolicyTests.test_post_is_not_retried": "method",
        "SlowRetryPolicyTests": "class",
        "SlowRetryPolicyTests.test_backoff_grows": "method",
    }
    method = units["RetryPolicyTests.test_retries_are_bounded"]
    assert method.fields["cls"] == "retry policy tests"
    assert "retries are bounded" in units["RetryPolicyTests"].fields["members"]
    assert "setUp" not in units


def test_nested_pytest_classes_and_markers(suite: Path) -> None:
    """Test classes nest with qualified names; pytest markers become marker words."""
    units = units_of(suite, "tests/test_forwarding.py")
    assert "TestForwardedFor.TestTrustedProxies.test_untrusted_hop_is_ignored" in units
    assert units["TestForwardedFor.test_appends_client_address"].fields["markers"] == "slow"


def test_script_style_file_is_one_unit(suite: Path) -> None:
    """A *.test.py file without test functions is a single unit with no test name, spanning the file."""
    units = units_of(suite, "tests/smoke.test.py", script_style=True)
    assert list(units) == [None]
    unit = units[None]
    assert (unit.kind, unit.line, unit.end_line) == ("file", 1, 8)
    assert "read timeout" in unit.fields["doc"]


def test_conftest_yields_fixtures_not_units(suite: Path) -> None:
    """conftest.py defines fixtures; they are recorded, and it has no test units."""
    result = extract((suite / "tests/conftest.py").read_text())
    assert result.units == ()
    assert result.fixtures == ("client", "vary_origin")


def test_features_are_kept_per_field(suite: Path) -> None:
    """Name, docstring, comments, fixtures, asserted values, calls and strings are split into words per field."""
    fields = units_of(suite, "tests/test_cache_vary.py")["test_vary_variants_are_isolated"].fields
    assert fields["name"] == "test vary variants are isolated"
    assert fields["doc"] == "each accept language value gets its own stored variant"
    assert fields["comments"] == "fill the cache with the english variant first"
    assert fields["fixtures"] == "vary origin | client"
    assert "content language" in fields["asserts"] and "200" in fields["asserts"]
    assert fields["calls"] == "client get | client get"
    assert "accept language" in fields["strings"]


def test_docstrings_are_not_counted_twice(suite: Path) -> None:
    """The docstring is the doc field, not also a string literal."""
    fields = units_of(suite, "tests/test_cache_vary.py")["test_vary_variants_are_isolated"].fields
    assert "stored variant" not in fields["strings"]


def test_data_files_named_by_a_test_are_references(suite: Path) -> None:
    """A string literal that looks like a data file path is kept as a reference to resolve beside the test."""
    unit = units_of(suite, "tests/test_cache_vary.py")["test_replayed_exchanges"]
    assert unit.refs == ("data/vary_replay.yaml",)


@pytest.mark.parametrize(
    ("rel", "reason", "detail"),
    [
        ("tests/unit/test_broken.py", "does not parse", "line 1"),
        ("tests/unit/test_deep.py", "nests too deeply", "too many nested parentheses"),
    ],
)
def test_files_that_cannot_be_mined_raise_with_a_reason(suite: Path, rel: str, reason: str, detail: str) -> None:
    """Syntax errors and nesting past the parser's limits are reasons to skip, never a crash."""
    with pytest.raises(ExtractError) as info:
        extract((suite / rel).read_text(encoding="utf-8"))
    assert info.value.reason == reason
    assert detail in info.value.detail


@pytest.mark.parametrize(
    "source",
    [
        "x = " + " + ".join(["1"] * 5000) + "\n",  # a long operator chain: deep in any syntax tree
        "x = " + "[" * 150 + "]" * 150 + "\ndef test_x():\n    pass\n",  # nesting the walker must survive
    ],
)
def test_deep_trees_never_crash_the_process(source: str) -> None:
    """Input that overflows recursive parsers or walkers is refused or mined, and the process lives on."""
    index, result = mine_job((7, source, False))
    assert index == 7
    assert isinstance(result, ExtractFailure) and result.reason == "nests too deeply" or isinstance(result, Extraction)


def test_mined_code_is_never_executed(tmp_path: Path) -> None:
    """Top-level code of a mined file does not run (it would create a file here)."""
    marker = tmp_path / "ran"
    source = f"open({str(marker)!r}, 'w').write('x')\n\ndef test_x():\n    pass\n"
    assert [u.test for u in extract(source).units] == ["test_x"]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("test_x_forwarded_for", ["test", "x", "forwarded", "for"]),
        ("X-Forwarded-For", ["x", "forwarded", "for"]),
        ("XForwardedFor", ["x", "forwarded", "for"]),
        ("HTTPServer", ["http", "server"]),
        ("TLSv1_2", ["tls", "v", "1", "2"]),
        ("max-age=3600", ["max", "age", "3600"]),
    ],
)
def test_identifiers_and_strings_split_into_the_same_words(text: str, expected: list[str]) -> None:
    """snake_case, header names and CamelCase all read as the same words."""
    assert words(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("data/vary.yaml", True), ("gold.http", True), ("fixtures/replay", True), ("https://x/a.json", False),
     ("/etc/passwd", False), ("hello world", False), ("module.py", False), ("a.b", False)],
)
def test_which_strings_look_like_data_files(value: str, expected: bool) -> None:
    """Relative paths with a data extension (or a directory) count; URLs, absolute paths and code do not."""
    assert looks_like_data_path(value) is expected


def test_summary_terms_put_the_name_first_and_drop_noise() -> None:
    """A unit's terms start with its name words and leave out stop words."""
    terms = summary_terms({"name": "test vary variants", "strings": "accept language | the | accept language"})
    assert terms[:2] == ["vary", "variants"]
    assert "the" not in terms and "test" not in terms


def test_an_unexpected_parser_exception_is_one_files_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception the parsers were not expected to raise becomes that file's `parser error`, not the run's end."""
    from poetkb.learn import extract as module

    def explode(source: str, *, script_style: bool = False) -> Extraction:
        raise ValueError("libcst disliked this file")

    monkeypatch.setattr(module, "extract", explode)
    assert mine_job((3, "def test_x():\n    pass\n", False)) == (
        3, ExtractFailure("parser error", "ValueError: libcst disliked this file"))


def test_script_style_descriptions_count_as_the_docstring() -> None:
    """A script-style file's Test.Summary and AddTestRun descriptions land in its primary `doc` field."""
    source = (
        "Test.Summary = '''\n"
        "Verify negative responses are cached\n"
        "'''\n"
        "tr = Test.AddTestRun('Stale ' 'while revalidate')\n"
        "tr.Processes.Default.Command = 'curl -v http://127.0.0.1/'\n"
        "other.description = name_from_elsewhere\n"
    )
    [unit] = extract(source, script_style=True).units
    assert unit.kind == "file"
    doc = unit.fields["doc"]
    assert "verify negative responses are cached" in doc
    assert "stale while revalidate" in doc
    assert "curl" not in doc  # a command is a string of the file, not its description
    assert "curl v http" in unit.fields["strings"]


def test_parsing_without_node_validation_gives_the_same_tree_and_restores_validation(suite: Path) -> None:
    """Trees parsed with validation paused equal validated ones; afterwards, and after errors, it is on again."""
    import libcst as cst

    from poetkb.learn import extract as extract_module

    for path in sorted((suite / "tests").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        checked = cst.parse_module(text)
        with extract_module._unvalidated():  # noqa: SLF001 - the switch itself is what is tested
            unchecked = cst.parse_module(text)
            with extract_module._unvalidated():  # noqa: SLF001 - nested use leaves the outer one in charge
                pass
            assert cst.Name("not an identifier")  # unchecked while paused
        assert unchecked.deep_equals(checked) and unchecked.code == text
    with pytest.raises(cst.CSTValidationError):
        cst.Name("not an identifier")
    with pytest.raises(ExtractError):
        extract("def broken(:\n")
    assert mine_job((0, "x = " + "(" * 50 + "1" + ")" * 50 + "\ndef test_x():\n    pass\n", False))[1].units
    with pytest.raises(cst.CSTValidationError):
        cst.Name("not an identifier")
