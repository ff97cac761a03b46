"""`poet learn from-tests` on hostile suites: FIFOs, devices, links out, loops, huge files, bad git data, kill -9.

Every run goes through the real CLI in a subprocess, bounded by a timeout (so a
regression that hangs fails instead of hanging the test run) and, where memory
is at stake, by an address-space limit (so a regression that reads without
bound fails with an internal error instead of eating the machine).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from learn_support import materialise_suite

from poetkb.learn.discover import MAX_DEPTH, MAX_FILE_BYTES

POET = str(Path(sys.executable).parent / "poet")
#: Generous for a handful of files on a busy machine; a hang shows up as a timeout.
RUN_TIMEOUT = 120
#: Address-space ceiling for runs that meet endless files: a normal run needs well under half of it.
MEMORY_LIMIT = 768 * 1024 * 1024
SECRET = "OUTSIDE_SECRET_7f3a9c"
GOOD_TEST = 'import os\n\n\ndef test_retry_budget_is_bounded(client):\n    """Retries stop."""\n    ' \
            'os.path.join("data", "replay.yaml")\n    assert client.retries <= 3\n'


def poet(kb_path: Path, *args: str, limit_memory: bool = False, env: dict[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `poet --db KB ARGS` in a subprocess with a timeout (and optionally an address-space limit)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run(
        [POET, "--db", str(kb_path), *args], capture_output=True, text=True, timeout=RUN_TIMEOUT,
        preexec_fn=limit if limit_memory else None, env=env, cwd=cwd,
    )


def mine_json(kb_path: Path, path: Path, out: Path, **kwargs: object) -> tuple[dict, subprocess.CompletedProcess[str]]:
    """Mine ``path`` with --json; return the parsed result and the process."""
    proc = poet(kb_path, "learn", "from-tests", str(path), "--source", "hostile", "--out", str(out),
                "--workers", "1", "--json", **kwargs)  # type: ignore[arg-type]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout), proc


def small_suite(root: Path) -> Path:
    """A suite with one ordinary test file and the data file it names."""
    tests = root / "tests"
    (tests / "data").mkdir(parents=True)
    (tests / "test_ok.py").write_text(GOOD_TEST)
    (tests / "data" / "replay.yaml").write_text("retry: bounded budget\n")
    return root


def skipped(result: dict) -> dict[str, dict]:
    return {s["path"]: s for s in result["summary"]["skipped"]}


def mined_files(result: dict) -> set[str]:
    return {u["file"] for u in result["units"]}


def test_a_fifo_named_like_a_test_is_skipped_and_the_run_completes(kb_path: Path, tmp_path: Path) -> None:
    """A FIFO named test_x.py (and one a test names as data) is reported, never opened for reading; the run ends."""
    suite = small_suite(tmp_path / "suite")
    os.mkfifo(suite / "tests" / "test_x.py")
    os.unlink(suite / "tests" / "data" / "replay.yaml")
    os.mkfifo(suite / "tests" / "data" / "replay.yaml")
    started = time.monotonic()
    result, _ = mine_json(kb_path, suite, tmp_path / "out")
    assert time.monotonic() - started < RUN_TIMEOUT
    entry = skipped(result)["tests/test_x.py"]
    assert entry["reason"] == "not a regular file" and "FIFO" in entry["detail"]
    assert mined_files(result) == {"tests/test_ok.py"}
    assert (tmp_path / "out" / "hostile.json").is_file()


def test_a_link_to_dev_zero_named_like_a_test_keeps_memory_bounded(kb_path: Path, tmp_path: Path) -> None:
    """test_zero.py -> /dev/zero (and a data file -> /dev/urandom) under an address-space limit: skipped, exit 0."""
    suite = small_suite(tmp_path / "suite")
    os.symlink("/dev/zero", suite / "tests" / "test_zero.py")
    os.unlink(suite / "tests" / "data" / "replay.yaml")
    os.symlink("/dev/urandom", suite / "tests" / "data" / "replay.yaml")
    result, _ = mine_json(kb_path, suite, tmp_path / "out", limit_memory=True)
    assert skipped(result)["tests/test_zero.py"]["reason"] == "link leaves PATH"
    assert mined_files(result) == {"tests/test_ok.py"}


def test_a_device_given_as_the_path_is_bad_input(kb_path: Path, tmp_path: Path) -> None:
    """`poet learn from-tests /dev/zero` is exit 2 naming the device, under an address-space limit."""
    proc = poet(kb_path, "learn", "from-tests", "/dev/zero", "--out", str(tmp_path / "out"), limit_memory=True)
    assert proc.returncode == 2, proc.stderr
    assert "/dev/zero" in proc.stderr and "a device" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_links_out_of_the_path_are_skipped_and_their_text_never_copied(kb_path: Path, tmp_path: Path) -> None:
    """File, directory and data links leaving PATH are reported and not read; a link inside PATH is followed."""
    outside = tmp_path / "outside"
    (outside / "shared").mkdir(parents=True)
    secret_test = f'def test_{SECRET.lower()}():\n    """{SECRET} retry timeout cache vary."""\n    assert "{SECRET}"\n'
    (outside / "test_secret.py").write_text(secret_test)
    (outside / "shared" / "test_shared.py").write_text(secret_test)
    (outside / "replay.yaml").write_text(f"{SECRET}: stale while revalidate\n")
    suite = small_suite(tmp_path / "suite")
    tests = suite / "tests"
    os.symlink(outside / "test_secret.py", tests / "test_out.py")
    os.symlink("../../outside/shared", tests / "shared")
    os.unlink(tests / "data" / "replay.yaml")
    os.symlink(outside / "replay.yaml", tests / "data" / "replay.yaml")
    (suite / "lib").mkdir()
    (suite / "lib" / "inner_cases.py").write_text("def test_inner_timeout():\n    pass\n")
    os.symlink("../lib/inner_cases.py", tests / "test_inner.py")

    out = tmp_path / "out"
    result, proc = mine_json(kb_path, suite, out)
    reasons = {path: s["reason"] for path, s in skipped(result).items()}
    assert reasons["tests/test_out.py"] == "link leaves PATH"
    assert reasons["tests/shared"] == "link leaves PATH"
    assert mined_files(result) == {"tests/test_ok.py", "tests/test_inner.py"}
    assert SECRET not in proc.stdout and SECRET.lower() not in proc.stdout
    learned = (out / "hostile.json").read_text()
    assert SECRET not in learned and SECRET.lower() not in learned
    with sqlite3.connect(kb_path) as conn:
        stored = [row[0] for row in conn.execute("select data from patterns union all select features "
                                                 "from learn_cache")]
    assert stored and not [text for text in stored if SECRET in text or SECRET.lower() in text]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: _link(root / "loop", "loop"), "is a symlink loop"),
        (lambda root: _link(root / "a", "b") and _link(root / "b", "a"), "is a symlink loop"),
        (lambda root: root / "missing", "does not exist or cannot be read"),
        (lambda root: _fifo(root / "pipe"), "FIFO"),
    ],
    ids=["self-loop", "two-link-loop", "missing", "fifo"],
)
def test_an_unusable_path_is_exit_2_with_a_message(kb_path: Path, tmp_path: Path,
                                                  make: Callable[[Path], Path], message: str) -> None:
    """A PATH that loops, is missing or is a FIFO: exit 2, one message naming it, no traceback, nothing written."""
    path = make(tmp_path)
    proc = poet(kb_path, "learn", "from-tests", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and str(path) in proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert not (tmp_path / "out").exists()


def _link(path: Path, target: str) -> Path:
    os.symlink(target, path)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_oversize_files_are_skipped_and_named(kb_path: Path, tmp_path: Path) -> None:
    """A test file and a tests/ module over the limit are skipped as too large and named in the report."""
    suite = small_suite(tmp_path / "suite")
    (suite / "tests" / "test_huge.py").write_bytes(b"X = 1\n" * (MAX_FILE_BYTES // 6 + 1))
    (suite / "tests" / "generated_cases.py").write_bytes(b"def test_a():\n    pass\n" * (MAX_FILE_BYTES // 20))
    proc = poet(kb_path, "learn", "from-tests", str(suite), "--out", str(tmp_path / "out"), "--workers", "1",
                limit_memory=True)
    assert proc.returncode == 0, proc.stderr
    assert "skipped 2 files: 2 too large" in proc.stdout
    assert f"tests/test_huge.py: too large ({MAX_FILE_BYTES + 2} bytes, limit {MAX_FILE_BYTES})" in proc.stdout
    assert "tests/generated_cases.py: too large" in proc.stdout
    assert "1 test files mined" in proc.stdout


def test_directories_nested_beyond_the_limit_are_reported_not_recursed(kb_path: Path, tmp_path: Path) -> None:
    """A directory chain deeper than MAX_DEPTH is cut there and reported; the rest of the suite is mined."""
    suite = small_suite(tmp_path / "suite")
    deep = suite / "tests"
    for _ in range(MAX_DEPTH + 5):
        deep = deep / "d"
    deep.mkdir(parents=True)
    (deep / "test_deep_down.py").write_text("def test_x():\n    pass\n")
    result, _ = mine_json(kb_path, suite, tmp_path / "out")
    assert [s["reason"] for s in result["summary"]["skipped"]] == ["too deep"]
    assert mined_files(result) == {"tests/test_ok.py"}


PACKED = "d" * 40


def _replace_with_fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _replace_with_link(path: Path, target: str) -> None:
    path.unlink(missing_ok=True)
    os.symlink(target, path)


@pytest.mark.parametrize(
    ("spoil", "commit"),
    [
        (lambda git: None, PACKED),
        (lambda git: _replace_with_fifo(git / "HEAD"), None),
        (lambda git: (git / "HEAD").write_text("ref: refs/heads/../../../../outside\n"), None),
        (lambda git: (git / "HEAD").write_bytes(b"\xff\xfe garbage \x00" * 10), None),
        (lambda git: _replace_with_link(git / "packed-refs", "/dev/zero"), None),
        (lambda git: _replace_with_fifo(git / "refs" / "heads" / "main"), PACKED),
        (lambda git: (git / "commondir").write_text("/dev/zero\n"), None),
    ],
    ids=["control", "head-fifo", "ref-climbs-out", "head-garbage", "packed-refs-dev-zero", "ref-fifo",
         "commondir-device"],
)
def test_hostile_git_metadata_gives_no_commit_and_no_hang(kb_path: Path, tmp_path: Path,
                                                          spoil: Callable[[Path], object], commit: str | None) -> None:
    """HEAD, refs, packed-refs, commondir as FIFOs, devices, garbage or climbing out: no hang, no commit from them."""
    suite = small_suite(tmp_path / "repo")
    git = suite / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{PACKED} refs/heads/main\n")
    (tmp_path / "outside").write_text("c" * 40 + "\n")  # what the climbing ref would find
    spoil(git)
    result, _ = mine_json(kb_path, suite, tmp_path / "out", limit_memory=True)
    assert result["summary"]["roots"] == [{"name": "repo", "commit": commit}]
    assert mined_files(result) == {"tests/test_ok.py"}


# -- kill -9 ------------------------------------------------------------------------------------------
def big_suite(root: Path, files: int = 24, tests: int = 20) -> Path:
    """Generated test modules: enough that a run parses for about a second (with two workers)."""
    (root / "tests").mkdir(parents=True, exist_ok=True)
    touch_big_suite(root, 0, files, tests)
    return root


def touch_big_suite(root: Path, run: int, files: int = 24, tests: int = 20) -> dict[str, str]:
    """(Re)write every generated module with a header naming ``run`` (new hashes: all parsed again)."""
    body = "".join(f"def test_case_{i}(client):\n    \"\"\"Retry budget {i} is bounded.\"\"\"\n"
                   f"    assert client.get('/x/{i}').status == 200\n\n" for i in range(tests))
    hashes = {}
    for n in range(files):
        data = f'"""Generated test module {n}, revision {run}."""\n{body}'.encode()
        (root / "tests" / f"test_generated_{n}.py").write_bytes(data)
        hashes[f"tests/test_generated_{n}.py"] = hashlib.sha256(data).hexdigest()
    return hashes


def marked_processes(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose environment holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() not in (entry / "environ").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


def wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def state_of(kb_path: Path) -> dict[str, object]:
    """What must survive: the KB's integrity, the sample source's patterns, the decisions, the big patterns."""
    import poetkb

    with poetkb.open(kb_path) as kb:
        db = kb.db
        return {
            "integrity": db.execute("pragma integrity_check").fetchone()[0],
            "sample": [tuple(r) for r in db.execute("select id, data from patterns where source = 'sample' "
                                                    "order by id")],
            "decisions": [tuple(r) for r in db.execute("select * from learn_decisions order by 1, 2")],
            "big": {r[0]: json.loads(r[1])["content_hash"]
                    for r in db.execute("select id, data from patterns where source = 'big'")},
        }


@pytest.mark.slow
def test_kill_9_at_random_points_loses_nothing_and_leaves_nothing(kb_path: Path, tmp_path: Path) -> None:
    """`poet learn` killed with SIGKILL at random points: KB intact, files whole, no process or temp file left."""
    import poetkb

    out = tmp_path / "out"
    with poetkb.open(kb_path) as kb:
        kb.learn([materialise_suite(tmp_path / "sample")], source="sample", out_dir=out, workers=1)
        kb.learn_decide([("sample:tests/test_api_client.py::test_sends_json", "cache.vary.honored")], "accept")
    suite = big_suite(tmp_path / "big")
    marker = f"POETKB_HOSTILE_MARK={uuid.uuid4().hex}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    args = ["learn", "from-tests", str(suite), "--source", "big", "--out", str(out), "--workers", "2"]

    started = time.monotonic()
    proc = poet(kb_path, *args, env=env)
    duration = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    before = state_of(kb_path)
    assert before["integrity"] == "ok" and before["decisions"] and len(before["big"]) == 24 * 20
    sample_file = (out / "sample.json").read_bytes()
    seed = int(os.environ.get("POETKB_KILL_SEED", time.time_ns() % 2**32))  # set it to replay a failure
    rng = random.Random(seed)
    # A kill between renaming the file and committing the KB leaves each whole but from different runs.
    revisions = [set(touch_big_suite(suite, 0).values())]
    killed: list[int] = []
    for run in range(1, 5):
        revisions.append(set(touch_big_suite(suite, run).values()))
        child = subprocess.Popen([POET, "--db", str(kb_path), *args], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            delay = rng.uniform(0.2, duration)
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
        killed.append(child.pid)
        where = f"run {run}, killed after {delay:.2f}s of {duration:.2f}s (POETKB_KILL_SEED={seed})"
        assert wait_for(lambda: not marked_processes(marker), 10), f"{where}: parser processes outlived poet"

        after = state_of(kb_path)
        assert after["integrity"] == "ok", where
        assert (after["sample"], after["decisions"]) == (before["sample"], before["decisions"]), where
        assert set(after["big"]) == set(before["big"]), where  # the same units: all of one run or of another
        assert set(after["big"].values()) in revisions, f"{where}: the KB holds a mix of two runs"
        assert (out / "sample.json").read_bytes() == sample_file
        learned = json.loads((out / "big.json").read_text())  # whole: it parses, and holds every unit
        assert len(learned["patterns"]) == learned["summary"]["units"] == 24 * 20
        assert {p["content_hash"] for p in learned["patterns"]} in revisions, f"{where}: a mixed file"
        leftovers = sorted(p.name for p in out.iterdir() if p.name not in {"sample.json", "big.json"})
        # only temporaries of killed runs (a run killed before it writes cannot clean an earlier one's)
        assert set(leftovers) <= {f".big.json.{pid}.tmp" for pid in killed}, f"{where}: {leftovers}"

    proc = poet(kb_path, *args, env=env)  # a complete run afterwards cleans what the killed ones left
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["big.json", "sample.json"]
    assert not marked_processes(marker)
    assert state_of(kb_path)["integrity"] == "ok"
    assert not [p.name for p in kb_path.parent.iterdir() if p.name.startswith(kb_path.name + "-")]


def test_kill_9_while_parsing_takes_the_parser_processes_down(kb_path: Path, tmp_path: Path) -> None:
    """SIGKILL to `poet learn` once its parser processes run: they die with it (parent-death signal)."""
    suite = big_suite(tmp_path / "big", files=60)
    marker = uuid.uuid4().hex
    env = {**os.environ, "POETKB_HOSTILE_MARK": marker}
    child = subprocess.Popen([POET, "--db", str(kb_path), "learn", "from-tests", str(suite), "--out",
                              str(tmp_path / "out"), "--workers", "2"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: len(marked_processes(marker)) >= 3, 60), "the parser processes never started"
        workers = [pid for pid in marked_processes(marker) if pid != child.pid]
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    assert workers
    assert wait_for(lambda: not marked_processes(marker), 10), "parser processes outlived poet"
