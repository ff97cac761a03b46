"""A mining run end to end: the learned file, the knowledge base, the cache, determinism and atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from learn_support import materialise_suite

from poetkb.catalog import load_catalog
from poetkb.errors import StoreError
from poetkb.learn import runner
from poetkb.learn.runner import learn


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return materialise_suite(tmp_path / "sample")


def by_test(report: object) -> dict[tuple[str, str | None], object]:
    return {(p.file, p.test): p for p in report.patterns}  # type: ignore[attr-defined]


def kb_state(kb: object) -> tuple[list[dict], list[dict], int, int]:
    db = kb.db  # type: ignore[attr-defined]
    return (
        [dict(r) for r in db.query("select id, data from patterns order by id")],
        [dict(r) for r in db.query("select * from edges where kind = 'learned_from' order by src, dst")],
        db.table("learn_cache").count,
        db.table("nodes").count,
    )


def test_a_run_mines_units_maps_them_and_reports_skips(kb: object, suite: Path, tmp_path: Path) -> None:
    """Units of every kind are mined and mapped; skipped files are counted with reasons; gaps are listed."""
    report = learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    summary = report.summary
    assert report.source == "sample"
    assert summary.files_mined == 7
    assert summary.skipped_by_reason == {"does not parse": 1, "nests too deeply": 1, "not UTF-8": 1}
    assert summary.units_by_kind == {"class": 4, "file": 1, "function": 5, "method": 5, "parametrized": 1}
    units = by_test(report)
    assert units[("tests/test_cache_vary.py", "test_vary_variants_are_isolated")].obligations[0].id == \
        "cache.vary.honored"
    assert units[("tests/test_api_client.py", "test_sends_json")].obligations == []  # mentions Vary, no more
    assert [m.id for m in units[("tests/smoke.test.py", None)].obligations] == ["resilience.timeout.enforced"]
    assert units[("tests/test_retry_unittest.py", "RetryPolicyTests.test_retries_are_bounded")].obligations[0].id == \
        "resilience.retry.bounded"
    assert "security.client.ip.preserved" in [
        m.id for m in units[("tests/test_forwarding.py", "TestForwardedFor.test_appends_client_address")].obligations]
    assert "auth.jwt.signature.verified" in summary.gaps and "cache.vary.honored" not in summary.gaps
    assert summary.covered["cache.vary.honored"] >= 1


def test_ids_are_stable_and_redefinitions_are_kept_apart(kb: object, suite: Path, tmp_path: Path) -> None:
    """Ids come from source, path and qualified name; a redefined test gets #2."""
    report = learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    ids = [p.id for p in report.patterns]
    assert "sample:tests/test_api_client.py::test_sends_json" in ids
    assert "sample:tests/test_api_client.py::test_sends_json#2" in ids
    assert "sample:tests/smoke.test.py" in ids
    assert ids == sorted(ids)


def test_data_files_named_by_a_test_feed_its_features(kb: object, suite: Path, tmp_path: Path) -> None:
    """The text of a data file a test names (found beside it) counts among its features."""
    report = learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    assert report.run.data_files == 1
    rows = list(kb.db.query("select path, features from learn_cache where key like 'data:%'"))  # type: ignore
    assert [r["path"] for r in rows] == ["tests/data/vary_replay.yaml"]
    assert "stale while revalidate" in rows[0]["features"]  # the words of the data file, cached by its hash
    units = [{"file": "t.py", "test": "x", "kind": "function", "line": 1, "end_line": 2, "summary": "",
              "fields": {"name": "test replay", "data": rows[0]["features"].strip('"')}}]
    from poetkb.learn.mapping import Mapper

    [matches] = Mapper(kb.obligations(), kb.rules()).map([u["fields"] for u in units])  # type: ignore
    assert any(r.endswith("in data") for m in matches for r in m.reasons)


def test_the_learned_file_is_deterministic_and_loads_as_catalog(kb: object, suite: Path, tmp_path: Path) -> None:
    """A re-run writes byte-identical output; the file is valid catalog input with provenance."""
    out = tmp_path / "out"
    learn(kb, [suite], out_dir=out, workers=1)
    first = (out / "sample.json").read_bytes()
    learn(kb, [suite], out_dir=out, workers=2)
    assert (out / "sample.json").read_bytes() == first
    data = json.loads(first)
    assert data["summary"]["files_mined"] == 7
    pattern = next(p for p in data["patterns"] if p["id"].endswith("::test_vary_variants_are_isolated"))
    assert (pattern["file"], pattern["line"], pattern["end_line"]) == ("tests/test_cache_vary.py", 12, 18)
    assert pattern["content_hash"]
    catalog_root = tmp_path / "catalog"
    for part in ("obligations", "knowledge/packs", "knowledge/probes", "knowledge/references.yaml", "mappings"):
        (catalog_root / part).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(Path(runner.__file__).resolve().parents[2] / part, catalog_root / part)
    (catalog_root / "knowledge" / "learned").mkdir()
    (catalog_root / "knowledge" / "learned" / "sample.json").write_bytes(first)
    assert len(load_catalog(catalog_root).patterns) == len(data["patterns"])


def test_git_commit_is_recorded_when_the_suite_is_a_repository(kb: object, suite: Path, tmp_path: Path) -> None:
    """Patterns carry the commit checked out where the suite lives."""
    subprocess.run(["git", "init", "-q", str(suite)], check=True)
    subprocess.run(["git", "-C", str(suite), "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run(["git", "-C", str(suite), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    report = learn(kb, [suite / "tests"], out_dir=tmp_path / "out", workers=1)
    assert report.source == "sample"  # the repository's name, not "tests"
    assert {p.commit for p in report.patterns} == {head}
    assert report.summary.roots[0].commit == head


def test_a_second_run_parses_nothing(kb: object, suite: Path, tmp_path: Path) -> None:
    """The content-hash cache answers every file of an unchanged suite; an edited file is parsed again."""
    first = learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    assert first.run.files_parsed == 9
    second = learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    assert (second.run.files_parsed, second.run.files_cached) == (0, 9)
    assert second.patterns == first.patterns
    (suite / "tests" / "test_forwarding.py").write_text("def test_only_one():\n    pass\n")
    third = learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    assert third.run.files_parsed == 1


def test_patterns_are_stored_as_linked_nodes_and_replaced_by_a_rerun(kb: object, suite: Path, tmp_path: Path) -> None:
    """Patterns, pattern nodes and learned_from edges are in the KB; a rerun replaces the source's set."""
    report = learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    stored = kb.patterns(source="sample")  # type: ignore[attr-defined]
    assert [p.id for p in stored] == [p.id for p in report.patterns]
    vary = kb.patterns(obligation="cache.vary.honored")  # type: ignore[attr-defined]
    assert any(p.test == "test_vary_variants_are_isolated" for p in vary)
    related = kb.related("cache.vary.honored", edge_kinds=["learned_from"])  # type: ignore[attr-defined]
    assert any(n.id.startswith("pattern:sample:") for n in related)
    (suite / "tests" / "test_cache_vary.py").unlink()
    learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    assert not [p for p in kb.patterns(source="sample") if p.file == "tests/test_cache_vary.py"]  # type: ignore
    assert not list(kb.db.query(  # type: ignore[attr-defined]
        "select 1 from nodes where id like 'pattern:sample:tests/test_cache_vary.py%'"))


def test_a_failed_write_leaves_the_kb_and_the_file_as_they_were(kb: object, suite: Path, tmp_path: Path) -> None:
    """When the learned file cannot be put in place, the KB transaction rolls back and no temp file stays."""
    out = tmp_path / "out"
    learn(kb, [suite], out_dir=out, workers=1)
    before = kb_state(kb)
    old_file = (out / "sample.json").read_bytes()
    (suite / "tests" / "test_forwarding.py").write_text("def test_changed():\n    pass\n")
    blocked = tmp_path / "blocked"
    (blocked / "sample.json").mkdir(parents=True)  # a directory where the file should go
    with pytest.raises(StoreError, match="cannot write"):
        learn(kb, [suite], out_dir=blocked, workers=1)
    assert kb_state(kb) == before
    assert sorted(p.name for p in blocked.iterdir()) == ["sample.json"]
    assert (out / "sample.json").read_bytes() == old_file


def test_a_killed_runs_temporary_file_is_removed_by_the_next_run(kb: object, suite: Path, tmp_path: Path) -> None:
    """A .<name>.<pid>.tmp of a process that is gone is removed; one of a live process is left alone."""
    out = tmp_path / "out"
    out.mkdir()
    dead = out / ".sample.json.4194305.tmp"  # above any pid_max: no such process
    live = out / ".sample.json.1.tmp"  # init is alive: maybe a concurrent run's
    dead.write_text("{half")
    live.write_text("{half")
    learn(kb, [suite], out_dir=out, workers=1)
    assert sorted(p.name for p in out.iterdir()) == [".sample.json.1.tmp", "sample.json"]


def test_an_interrupt_while_storing_rolls_everything_back(kb: object, suite: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyboardInterrupt after the old patterns were deleted, before the new ones land, changes nothing."""
    out = tmp_path / "out"
    learn(kb, [suite], out_dir=out, workers=1)
    before = kb_state(kb)
    real = runner.store_patterns

    def interrupted(kb_: object, source: str, patterns: object) -> None:
        kb_.db.execute("delete from patterns where source = ?", [source])  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "store_patterns", interrupted)
    (suite / "tests" / "test_forwarding.py").write_text("def test_changed():\n    pass\n")
    with pytest.raises(KeyboardInterrupt):
        learn(kb, [suite], out_dir=out, workers=1)
    monkeypatch.setattr(runner, "store_patterns", real)
    assert kb_state(kb) == before
    assert sorted(p.name for p in out.iterdir()) == ["sample.json"]


def test_ctrl_c_during_parsing_stops_the_workers_and_leaves_the_kb_intact(kb_path: Path, tmp_path: Path) -> None:
    """A real SIGINT to `poet learn` while its workers parse: exit 130, no file, KB unchanged, no workers left."""
    big = tmp_path / "big" / "tests"
    big.mkdir(parents=True)
    body = "".join(f"def test_case_{i}(client):\n    assert client.get('/x/{i}').status == 200\n\n" for i in range(150))
    for n in range(300):
        (big / f"test_generated_{n}.py").write_text(f'"""Generated test module {n}."""\n' + body)
    import poetkb

    with poetkb.open(kb_path) as base:
        before = kb_state(base)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "poet"), "--db", str(kb_path), "learn", "from-tests", str(big.parent),
         "--out", str(out), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C as a terminal delivers it, even when this test runs where SIGINT is ignored (a background job)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _children(proc.pid):
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert workers, "the parser processes never started"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists() or not list(out.iterdir())
    with poetkb.open(kb_path) as base:
        assert kb_state(base) == before
    time.sleep(0.2)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(c) for c in path.read_text().split()]
    except OSError:
        return []


def test_damaged_cache_rows_are_misses_not_crashes(kb: object, suite: Path, tmp_path: Path) -> None:
    """Cache rows that are not JSON, or not the shape their key promises, are parsed again and replaced."""
    first = learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    db = kb.db  # type: ignore[attr-defined]
    keys = [r["key"] for r in db.query("select key from learn_cache where key like 'test:%' order by key")]
    spoilt = ["{not json", json.dumps({"units": [{"fields": 3}]}), json.dumps([1, 2]), json.dumps({"error": 5}),
              json.dumps({"units": [{"test": "t", "kind": "bogus", "line": 1, "end_line": 2, "fields": {}}]})]
    for key, text in zip(keys, spoilt, strict=False):
        db.execute("update learn_cache set features = ? where key = ?", [text, key])
    db.conn.commit()
    second = learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    assert second.run.files_parsed == len(spoilt)
    assert second.patterns == first.patterns
    assert learn(kb, [suite], out_dir=tmp_path / "out", workers=1).run.files_parsed == 0


def test_an_unchanged_rerun_reuses_the_mapping_and_an_edit_maps_again(kb: object, suite: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Same units, catalog and mapper code: the stored result is used (no mapper runs); any edit maps again."""
    from poetkb.learn import mapping

    out = tmp_path / "out"
    first = learn(kb, [suite], out_dir=out, workers=1)
    text = (out / "sample.json").read_bytes()
    before = kb_state(kb)
    real_map = mapping.Mapper.map

    def must_not_map(*_args: object, **_kwargs: object) -> object:
        raise AssertionError("the mapper ran on an unchanged suite")

    monkeypatch.setattr(mapping.Mapper, "map", must_not_map)
    again = learn(kb, [suite], out_dir=out, workers=1)
    assert again.patterns == first.patterns and again.run.files_parsed == 0
    assert (out / "sample.json").read_bytes() == text and kb_state(kb) == before
    assert kb.db.execute("select count(*) from learn_cache where key like 'map:%'").fetchone()[0] == 1  # type: ignore

    (suite / "tests" / "test_forwarding.py").write_text("def test_x_forwarded_for_is_appended():\n    pass\n")
    with pytest.raises(AssertionError, match="mapper ran"):
        learn(kb, [suite], out_dir=out, workers=1)
    monkeypatch.setattr(mapping.Mapper, "map", real_map)
    edited = learn(kb, [suite], out_dir=out, workers=1)
    assert edited.patterns != first.patterns
    assert kb.db.execute("select count(*) from learn_cache where key like 'map:%'").fetchone()[0] == 1  # type: ignore
    # the knowledge base follows the edit: the stored patterns are the new run's
    assert [p.id for p in kb.patterns(source="sample")] == [p.id for p in edited.patterns]  # type: ignore


def test_a_data_file_edited_behind_an_unchanged_mtime_is_read_again(kb: object, suite: Path, tmp_path: Path) -> None:
    """Unchanged data files are not read again (stat + hash), but an edit that keeps size and mtime is still seen."""
    data = suite / "tests" / "data" / "vary_replay.yaml"
    old = data.stat()
    os.utime(data, ns=(old.st_atime_ns, old.st_mtime_ns - 10_000_000_000))  # hashed long after its last change
    stamp = data.stat()
    learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    assert kb.db.execute("select count(*) from learn_cache where key like 'stat:%' and key not like '%.py'"  # type: ignore
                         ).fetchone()[0] == 1
    text = data.read_text()
    edited = text.replace("stale", "qwxyz", 1)
    assert len(edited) == len(text) and edited != text
    data.write_text(edited)
    os.utime(data, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # the same size and mtime: only ctime tells
    assert data.stat().st_mtime_ns == stamp.st_mtime_ns and data.stat().st_size == stamp.st_size
    again = learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    words = [r[0] for r in kb.db.execute("select features from learn_cache where key like 'data:%'")]  # type: ignore
    assert any("qwxyz" in w for w in words)
    replay = next(p for p in again.patterns if p.test == "test_replayed_exchanges")
    assert replay.content_hash  # the unit is still mined with its data file


def test_unchanged_test_files_are_not_read_again_and_edits_behind_their_stat_are_seen(
        kb: object, suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-run skips reading test files whose (size, mtime, ctime, inode, device) is the one recorded when they
    were hashed; an edit keeping size and mtime changes ctime and is re-mined; a file whose extraction is no longer
    cached is read after all."""
    from poetkb.learn import discover as discover_module

    files = sorted((suite / "tests").rglob("*.py"))
    for path in files:  # hashed long after their last change (a file changed within RACY_NS is read again)
        info = path.stat()
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns - 10_000_000_000))
    first = learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    reads: list[str] = []
    real_read = discover_module.read_bytes

    def counting(path: Path, *args: object, **kwargs: object) -> bytes:
        reads.append(Path(path).name)
        return real_read(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(discover_module, "read_bytes", counting)
    second = learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    mined = {Path(p.file).name for p in first.patterns}
    assert "test_forwarding.py" in mined and not mined & set(reads)  # only files mined no tests from are read
    assert second.patterns == first.patterns and second.run.files_parsed == 0
    target = suite / "tests" / "test_forwarding.py"
    stamp = target.stat()
    text = target.read_text()
    edited = text.replace("def test_", "def tezt_", 1)
    assert len(edited) == len(text) and edited != text
    target.write_text(edited)
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # the same size and mtime: only ctime tells
    third = learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    assert third.run.files_parsed == 1 and "test_forwarding.py" in reads
    assert {p.test for p in third.patterns} != {p.test for p in first.patterns}
    kb.db.execute("delete from learn_cache where key like 'test:%'")  # type: ignore[attr-defined]
    reads.clear()
    fourth = learn(kb, [suite], out_dir=tmp_path / "out", workers=1)
    assert fourth.run.files_parsed == third.run.files_parsed + third.run.files_cached
    assert mined <= set(reads)  # extraction gone from the cache: every test file is read after all
    assert fourth.patterns == third.patterns


def test_data_files_through_links_are_read_inside_the_suite_only(kb: object, tmp_path: Path) -> None:
    """A data file reached through a directory link inside the suite is read; one whose link leaves it is not."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text("zzoutsideword\n")
    tests = tmp_path / "suite" / "tests"
    (tests / "real").mkdir(parents=True)
    (tests / "real" / "inside.yaml").write_text("zzinsideword\n")
    (tests / "shared").symlink_to(tests / "real", target_is_directory=True)
    (tests / "away").symlink_to(outside, target_is_directory=True)
    (tests / "test_links.py").write_text(
        'def test_inside():\n    load("shared/inside.yaml")\n\n\ndef test_outside():\n    load("away/secret.yaml")\n')
    for _ in range(2):  # the first run reads and hashes, the re-run takes the words by stat
        report = learn(kb, [tmp_path / "suite"], out_dir=tmp_path / "out", workers=1)
        words = {p.test: " ".join(p.terms) for p in report.patterns}
        assert "zzinsideword" in words["test_inside"] and "zzoutsideword" not in words["test_outside"]
        assert report.run.data_files == 1
