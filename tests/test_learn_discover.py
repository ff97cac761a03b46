"""Discovery of test files: which files are mined, which are skipped and why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from learn_support import materialise_suite

from poetkb.errors import InputError
from poetkb.learn.discover import MAX_FILE_BYTES, discover, git_commit, is_test_name


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return materialise_suite(tmp_path / "suite")


def test_finds_test_files_by_name_and_by_content(suite: Path) -> None:
    """test_*.py, *.test.py, conftest.py and tests/ modules defining tests are found; helpers and data are not."""
    found = discover([suite])
    assert [f.rel for f in found.files] == [
        "tests/checks_hop_headers.py",
        "tests/conftest.py",
        "tests/smoke.test.py",
        "tests/test_api_client.py",
        "tests/test_cache_vary.py",
        "tests/test_forwarding.py",
        "tests/test_retry_unittest.py",
        "tests/unit/test_broken.py",
        "tests/unit/test_deep.py",
    ]
    by_rel = {f.rel: f for f in found.files}
    assert by_rel["tests/smoke.test.py"].script_style
    assert not by_rel["tests/conftest.py"].script_style
    assert all(len(f.content_hash) == 64 for f in found.files)


def test_non_utf8_file_is_skipped_with_its_reason(suite: Path) -> None:
    """A file that is not UTF-8 is reported, not mined, and the run goes on."""
    found = discover([suite])
    assert [(s.path, s.reason) for s in found.skipped] == [("tests/unit/test_latin1.py", "not UTF-8")]
    assert "byte" in found.skipped[0].detail


def test_symlink_loops_are_reported_and_skipped(suite: Path) -> None:
    """A directory link back to a parent and a link to itself are symlink loops; the walk ends."""
    os.symlink("..", suite / "tests" / "unit" / "back_up")
    os.symlink("test_self.py", suite / "tests" / "test_self.py")
    found = discover([suite])
    reasons = {s.path: s.reason for s in found.skipped}
    assert reasons["tests/unit/back_up"] == "symlink loop"
    assert reasons["tests/test_self.py"] == "symlink loop"
    assert len(found.files) == 9


def test_a_file_reached_through_a_link_is_mined_once(suite: Path) -> None:
    """A second path to the same directory does not mine its files twice."""
    os.symlink("unit", suite / "tests" / "unit_again")
    rels = [f.rel for f in discover([suite]).files]
    assert rels.count("tests/unit/test_broken.py") + rels.count("tests/unit_again/test_broken.py") == 1


def test_huge_files_are_skipped(suite: Path) -> None:
    """A test file above the size limit is reported as too large."""
    (suite / "tests" / "test_generated.py").write_text("X = 1\n" * (MAX_FILE_BYTES // 6 + 10))
    found = discover([suite])
    skipped = {s.path: s for s in found.skipped}
    assert skipped["tests/test_generated.py"].reason == "too large"
    assert str(MAX_FILE_BYTES) in skipped["tests/test_generated.py"].detail


def test_hidden_and_virtualenv_directories_are_not_entered(suite: Path) -> None:
    """Tests inside .tox-like hidden directories or a virtualenv are not the suite's."""
    for place in (suite / ".tox" / "tests", suite / "venv" / "tests"):
        place.mkdir(parents=True)
        (place / "test_vendored.py").write_text("def test_x():\n    pass\n")
    (suite / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    assert not [f for f in discover([suite]).files if "vendored" in f.rel]


def test_a_single_file_path_is_mined_as_given(suite: Path) -> None:
    """A file passed directly is mined with its name as the relative path."""
    found = discover([suite / "tests" / "test_forwarding.py"])
    assert [f.rel for f in found.files] == ["test_forwarding.py"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing", "does not exist or cannot be read"),
        (lambda root: _self_loop(root), "is a symlink loop"),
    ],
)
def test_unusable_paths_are_input_errors(tmp_path: Path, make: object, message: str) -> None:
    """A PATH that is missing or loops fails with a message naming it."""
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(InputError, match=message) as info:
        discover([path])
    assert str(path) in str(info.value)


def _self_loop(root: Path) -> Path:
    link = root / "loop"
    os.symlink("loop", link)
    return link


def test_overlapping_relative_paths_across_roots_are_refused(tmp_path: Path) -> None:
    """Two roots holding the same relative test file would give clashing ids: refused with a hint."""
    for name in ("a", "b"):
        (tmp_path / name / "tests").mkdir(parents=True)
        (tmp_path / name / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")
    with pytest.raises(InputError, match="found under two of the given paths"):
        discover([tmp_path / "a", tmp_path / "b"])


@pytest.mark.parametrize(
    ("name", "expected"),
    [("test_a.py", True), ("a_test.py", True), ("a.test.py", True), ("conftest.py", True),
     ("testing.py", False), ("a.py", False), ("test_a.pyc", False)],
)
def test_test_file_names(name: str, expected: bool) -> None:
    """The file names that mark a test file on their own."""
    assert is_test_name(name) is expected


def test_git_commit_is_read_without_running_git(tmp_path: Path) -> None:
    """The commit comes from .git/HEAD and the ref it names (loose or packed); outside a repository: None."""
    git = tmp_path / "repo" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    sha = "a" * 40
    (git / "packed-refs").write_text(f"# pack-refs\n{sha} refs/heads/main\n")
    (tmp_path / "repo" / "tests").mkdir()
    assert git_commit(tmp_path / "repo" / "tests") == sha
    (git / "refs" / "heads" / "main").write_text("b" * 40 + "\n")
    assert git_commit(tmp_path / "repo") == "b" * 40
    assert git_commit(tmp_path) is None


def test_special_files_are_reported_not_read(suite: Path) -> None:
    """A FIFO named like a test (or a tests/ module) is skipped as not a regular file; the rest is mined."""
    os.mkfifo(suite / "tests" / "test_pipe.py")
    os.mkfifo(suite / "tests" / "helpers_pipe.py")
    found = discover([suite])
    skipped = {s.path: s for s in found.skipped}
    assert skipped["tests/test_pipe.py"].reason == "not a regular file"
    assert "FIFO" in skipped["tests/test_pipe.py"].detail
    assert skipped["tests/helpers_pipe.py"].reason == "not a regular file"
    assert len(found.files) == 9


def test_links_are_followed_only_inside_the_path(suite: Path, tmp_path: Path) -> None:
    """A file or directory link leaving PATH is reported and not read; one staying inside is mined."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "test_far.py").write_text("def test_far():\n    pass\n")
    os.symlink(tmp_path / "elsewhere" / "test_far.py", suite / "tests" / "test_far.py")
    os.symlink(tmp_path / "elsewhere", suite / "tests" / "far_dir")
    (suite / "shared").mkdir()
    (suite / "shared" / "cases.py").write_text("def test_shared():\n    pass\n")
    os.symlink("../shared/cases.py", suite / "tests" / "test_shared.py")
    found = discover([suite])
    reasons = {s.path: s.reason for s in found.skipped}
    assert reasons["tests/test_far.py"] == "link leaves PATH"
    assert reasons["tests/far_dir"] == "link leaves PATH"
    assert "tests/test_shared.py" in [f.rel for f in found.files]
    assert not [f for f in found.files if "far" in f.rel]


def test_a_path_given_through_a_link_is_mined_inside_its_target(suite: Path, tmp_path: Path) -> None:
    """A PATH that is itself a link is the user's choice: mined, confined to where it points."""
    os.symlink(suite, tmp_path / "alias")
    assert len(discover([tmp_path / "alias"]).files) == 9


def test_git_metadata_is_read_bounded_and_only_as_commit_ids(tmp_path: Path) -> None:
    """A ref that climbs out of .git, or a HEAD that is not a commit id, gives no commit."""
    git = tmp_path / "repo" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (tmp_path / "outside").write_text("c" * 40 + "\n")
    (git / "HEAD").write_text("ref: refs/heads/../../../../outside\n")
    assert git_commit(tmp_path / "repo") is None
    (git / "HEAD").write_text("not a commit\n")
    assert git_commit(tmp_path / "repo") is None
    (git / "HEAD").write_text("e" * 40 + "\n")
    assert git_commit(tmp_path / "repo") == "e" * 40


def test_a_run_reads_at_most_its_byte_budget(suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the run's byte budget is spent, further test files are skipped as `suite too large`, not read."""
    from poetkb.learn import discover as module

    total = discover([suite]).bytes_read
    monkeypatch.setattr(module, "MAX_SUITE_BYTES", total // 2)
    found = discover([suite])
    over = [s for s in found.skipped if s.reason == "suite too large"]
    assert over and found.files
    assert found.bytes_read <= total // 2
    assert len(found.files) + len(over) == 10  # the nine mined files and the latin-1 one
