"""Hostile catalogs, profiles, metrics, diffs and crashes: every one is refused by name, quickly, with its exit code.

Each test feeds poetkb a file it did not write, crafted the way an attacker or a broken tool would, and asserts
the exit code (2 for bad input, 3 for a crash), that the message names the file and the line or field, and that
nothing hangs, recurses or grows without bound.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from poetkb import store
from poetkb.catalog import check_catalog, load_catalog
from poetkb.cli import main
from poetkb.errors import CatalogError, InputError
from poetkb.load.metrics import read_metrics
from poetkb.load.profile import load_profile
from poetkb.yamlfile import MAX_DEPTH, MAX_EXPANDED_NODES, load_with_lines, loads_json

TESTS = Path(__file__).resolve().parent.parent
MINI_CATALOG = TESTS / "fixtures" / "catalog" / "mini"
PROFILE = TESTS / "fixtures" / "load" / "profiles" / "small.yaml"
POET = [sys.executable, "-m", "poetkb"]
GOOD_SUMMARY = {"p50_ms": 30, "p90_ms": 200, "p95_ms": 300, "p99_ms": 600, "error_rate": 0.001,
                "throughput_rps": 10, "requests": 7200}

#: a kilobyte of YAML that expands to 10**9 strings if aliases are followed naively
BILLION_LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)]
) + "\n"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_poet(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*POET, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


def copy_catalog(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    shutil.copytree(MINI_CATALOG, root)
    return root


# -- YAML and JSON: depth and aliases ------------------------------------------------------------------------------
def test_deeply_nested_yaml_profile_is_exit_2_naming_file_and_line(tmp_path: Path) -> None:
    """A profile nested 5000 levels deep is bad input naming the file and line, not a RecursionError."""
    profile = tmp_path / "deep.yaml"
    profile.write_text("service: x\nendpoints: " + "[" * 5000 + "]" * 5000 + "\n")
    code, _, err = invoke("plan", "load", "--profile", str(profile), "--no-log")
    assert code == 2
    assert f"{profile}:2:" in err and f"nesting deeper than {MAX_DEPTH} levels" in err
    assert "Traceback" not in err and "RecursionError" not in err


def test_deeply_nested_json_is_refused_with_the_line(tmp_path: Path) -> None:
    """JSON nested thousands of levels deep (metrics summary, profile, learned catalog file) names file and line."""
    summary = tmp_path / "deep.json"
    summary.write_text('{\n"p95_ms": 1,\n"phases": ' + "[" * 4000 + "]" * 4000 + "}\n")
    with pytest.raises(InputError) as caught:
        read_metrics(summary)
    assert caught.value.file == str(summary) and caught.value.line == 3
    assert f"nested deeper than {MAX_DEPTH} levels" in str(caught.value)
    profile = tmp_path / "deep-profile.json"
    profile.write_text('{"service": "x", "data": ' + "{\"a\": " * 3000 + "1" + "}" * 3000 + "}")
    with pytest.raises(InputError, match="nested deeper"):
        load_profile(profile)


def test_nesting_just_inside_the_limit_still_loads(tmp_path: Path) -> None:
    """The depth limit is a limit, not a ban: nesting a little under it parses in YAML and JSON alike."""
    depth = MAX_DEPTH - 2
    yaml_file = tmp_path / "ok.yaml"
    yaml_file.write_text("v: " + "[" * depth + "1" + "]" * depth + "\n")
    value = load_with_lines(yaml_file)["v"]
    for _ in range(depth):
        value = value[0]
    assert value == 1
    assert loads_json("[" * (depth + 2) + "]" * (depth + 2), file="x") is not None


def test_billion_laughs_in_a_catalog_is_refused_quickly(tmp_path: Path) -> None:
    """A 1 KB catalog file of nested aliases is a catalog problem naming file and line, found in well under a second."""
    root = copy_catalog(tmp_path)
    bomb = root / "knowledge" / "packs" / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    assert bomb.stat().st_size < 1024
    started = time.monotonic()
    _, problems = check_catalog(root)
    assert time.monotonic() - started < 5
    [problem] = [p for p in problems if p.file.endswith("bomb.yaml")]
    assert problem.line == 2 and "aliases (*name) are not allowed" in problem.message


def test_billion_laughs_in_a_profile_hits_the_expansion_bound(tmp_path: Path) -> None:
    """Outside catalogs aliases are allowed but bounded: the same bomb in a profile stops at the node budget."""
    profile = tmp_path / "bomb.yaml"
    profile.write_text(BILLION_LAUGHS)
    started = time.monotonic()
    code, _, err = invoke("plan", "load", "--profile", str(profile), "--no-log")
    assert time.monotonic() - started < 10
    assert code == 2
    assert str(profile) in err and f"expands to more than {MAX_EXPANDED_NODES:,} nodes" in err


def test_modest_aliases_in_a_profile_still_work(tmp_path: Path) -> None:
    """An anchor reused a few times in a profile is ordinary YAML and keeps working."""
    profile = tmp_path / "anchors.yaml"
    text = PROFILE.read_text().replace("body: {name: load-test}", "body: &b {name: load-test}")
    text = text.replace('- {path: "/items/{id}", critical: true}', '- {path: "/items/{id}", critical: true, body: *b}')
    profile.write_text(text)
    loaded = load_profile(profile)
    assert loaded.endpoints[2].body == {"name": "load-test"}


# -- catalog directory: empty files, FIFOs, dangling links -------------------------------------------------------
def test_empty_fifo_and_dangling_link_in_a_catalog_are_named(tmp_path: Path) -> None:
    """An empty file, a FIFO and a dangling link in a catalog directory are each a problem naming the file."""
    root = copy_catalog(tmp_path)
    (root / "obligations" / "empty.yaml").write_text("")
    (root / "mappings" / "comments.yaml").write_text("# nothing here yet\n")
    os.mkfifo(root / "knowledge" / "packs" / "pipe.yaml")
    (root / "obligations" / "gone.yaml").symlink_to(tmp_path / "does-not-exist.yaml")
    started = time.monotonic()
    _, problems = check_catalog(root)
    assert time.monotonic() - started < 10
    by_file = {Path(p.file).name: p.message for p in problems}
    assert by_file == {
        "empty.yaml": "file is empty",
        "comments.yaml": "file holds no YAML document (only comments?)",
        "pipe.yaml": "not a regular file (a FIFO)",
        "gone.yaml": "file does not exist (or is a dangling link)",
    }
    with pytest.raises(CatalogError):
        load_catalog(root)


def test_kb_check_on_a_catalog_with_a_fifo_exits_2_without_hanging(tmp_path: Path) -> None:
    """`poet kb check` over a catalog holding a FIFO finishes with exit 2 naming it (the process would hang before)."""
    root = copy_catalog(tmp_path)
    os.mkfifo(root / "obligations" / "pipe.yaml")
    proc = run_poet("kb", "check", "--from", str(root), timeout=60)
    assert proc.returncode == 2
    assert "pipe.yaml" in proc.stderr and "not a regular file (a FIFO)" in proc.stderr


def test_kb_build_refuses_a_catalog_with_an_empty_file(tmp_path: Path) -> None:
    """`poet kb build` does not build from a catalog with an empty file: exit 2 naming it, no knowledge base written."""
    root = copy_catalog(tmp_path)
    (root / "obligations" / "empty.yaml").write_text("\n\n")
    db = tmp_path / "new.sqlite"
    code, _, err = invoke("--db", str(db), "kb", "build", "--from", str(root))
    assert code == 2
    assert "empty.yaml" in err and "file is empty" in err
    assert not db.exists()


# -- non-finite numbers ------------------------------------------------------------------------------------------
def test_profile_with_infinite_peak_is_exit_2_naming_the_field(tmp_path: Path) -> None:
    """`peak_rps: .inf` is bad input naming traffic.peak_rps and its line; no plan or k6 script is written."""
    profile = tmp_path / "inf.yaml"
    profile.write_text(PROFILE.read_text().replace("peak_rps: 20", "peak_rps: .inf"))
    out = tmp_path / "plan.js"
    code, _, err = invoke("plan", "load", "--profile", str(profile), "--format", "k6", "--out", str(out), "--no-log")
    assert code == 2
    assert f"{profile}:2: [traffic.peak_rps]" in err and "finite" in err
    assert not out.exists()


def test_profile_with_a_rate_beyond_any_service_is_exit_2(tmp_path: Path) -> None:
    """`peak_rps: 1e308` (finite, but a burst of it overflows) is bad input naming the field, not a crash."""
    profile = tmp_path / "huge.yaml"
    profile.write_text(PROFILE.read_text().replace("peak_rps: 20", "peak_rps: 1e308"))
    code, _, err = invoke("plan", "load", "--profile", str(profile), "--format", "k6", "--no-log")
    assert code == 2
    assert f"{profile}:2: [traffic.peak_rps]" in err and "beyond any service" in err


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_json_profile_with_non_finite_numbers_is_refused(tmp_path: Path, value: str) -> None:
    """NaN, Infinity and numbers beyond a double in a JSON profile are refused naming the file and line."""
    profile = tmp_path / "profile.json"
    profile.write_text('{"service": "x",\n "traffic": {"baseline_rps": 1, "peak_rps": ' + value + "}}")
    with pytest.raises(InputError) as caught:
        load_profile(profile)
    assert caught.value.file == str(profile) and caught.value.line == 2


def test_infinite_throughput_summary_never_passes_nor_becomes_a_baseline(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`throughput_rps: Infinity` is exit 2 naming the field; the stored baselines stay empty (a good run is kept)."""
    db = tmp_path / "mini.sqlite"
    store.build(load_catalog(MINI_CATALOG), db, source=str(MINI_CATALOG))
    monkeypatch.setenv("POET_DB", str(db))
    bad = tmp_path / "inf.json"
    bad.write_text(json.dumps(GOOD_SUMMARY).replace('"throughput_rps": 10', '"throughput_rps": Infinity'))
    code, out, err = invoke("interpret", "--profile", str(PROFILE), "--metrics", str(bad), "--baseline", "auto",
                            "--no-log")
    assert code == 2
    assert f"{bad}:1: [throughput_rps] Infinity is not a number poetkb accepts" in err and "pass" not in out
    import poetkb

    with poetkb.open(db) as kb:
        assert kb.load_baseline("small-api", "steady") is None
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GOOD_SUMMARY))
    code, out, _ = invoke("interpret", "--profile", str(PROFILE), "--metrics", str(good), "--baseline", "auto",
                          "--no-log")
    assert code == 0 and "now the baseline" in out


@pytest.mark.parametrize(("name", "content", "where"), [
    ("summary.json", '{"p95_ms": NaN, "error_rate": 0}', "NaN"),
    ("summary.json", '{"p95_ms": 10, "throughput_rps": 1e400}', "1e400"),
    ("summary.csv", "p95_ms,throughput_rps\n120,inf\n", "[throughput_rps] 'inf' is not a finite number"),
    ("summary.csv", "p95_ms,requests\n120,nan\n", "[requests] 'nan' is not a finite number"),
    ("samples.txt", "12\n15\nnan\n", ":3:"),
    ("samples.json", "[12, 15, Infinity]", "'Infinity' is not a usable latency"),
    ("k6.json", '{"metrics": {"http_req_duration": {"p(95)": NaN}}}', "NaN"),
    ("stats.csv", "Type,Name,Request Count,Failure Count,Requests/s,95%\n,Aggregated,10,0,inf,5\n",
     "[Requests/s] 'inf' is not a finite number"),
])
def test_non_finite_metrics_are_refused_everywhere(tmp_path: Path, name: str, content: str, where: str) -> None:
    """NaN and Infinity are refused in every metrics format, with the file and the line or field named."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as caught:
        read_metrics(path)
    assert str(path) in str(caught.value) and where in str(caught.value)


def test_k6_stream_with_nan_point_is_refused_with_its_line(tmp_path: Path) -> None:
    """A k6 --out json stream whose third line holds NaN is refused naming line 3."""
    point = {"type": "Point", "metric": "http_req_duration", "data": {"time": "2024-06-01T10:00:00Z", "value": 12.5}}
    lines = [json.dumps(point), json.dumps(point), json.dumps(point).replace("12.5", "NaN")]
    path = tmp_path / "k6.ndjson"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as caught:
        read_metrics(path)
    assert caught.value.line == 3


# -- sense: negative samples, inverted percentiles, negative counts -----------------------------------------------
@pytest.mark.parametrize(("name", "content", "where", "message"), [
    ("samples.txt", "12\n-3\n15\n", ":2:", "not a usable latency"),
    ("summary.json", '{"samples_ms": [1, 2, -5]}', "[samples_ms.2]", "greater than or equal to 0"),
    ("summary.json", '{"p95_ms": -1}', "[p95_ms]", "greater than or equal to 0"),
    ("summary.json", '{"p50_ms": 10, "p95_ms": 900, "p99_ms": 300}', "p99_ms (300) is below p95_ms (900)",
     "percentiles out of order"),
    ("summary.json", '{"phases": {"steady": {"p90_ms": 50, "p95_ms": 40}}}', "[phases.steady]",
     "p95_ms (40) is below p90_ms (50)"),
    ("summary.csv", "p50_ms,p95_ms\n500,100\n", ":2:", "percentiles out of order"),
    ("summary.csv", "p95_ms,requests\n100,-7\n", "[requests]", "greater than or equal to 0"),
    ("summary.json", '{"p95_ms": 10, "series": [{"t_s": -1, "p95_ms": 3}]}', "[series.0.t_s]",
     "greater than or equal to 0"),
])
def test_metrics_that_make_no_sense_are_refused(tmp_path: Path, name: str, content: str, where: str,
                                                message: str) -> None:
    """Negative latencies and counts and percentiles out of order are refused, naming the line or field."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as caught:
        read_metrics(path)
    text = str(caught.value)
    assert str(path) in text and where in text and message in text


def test_interpret_refuses_inverted_percentiles_with_exit_2(tmp_path: Path) -> None:
    """`poet interpret` with p99 below p95 exits 2 naming the field, so an impossible run never passes an SLO."""
    bad = tmp_path / "inverted.json"
    bad.write_text(json.dumps({**GOOD_SUMMARY, "p99_ms": 100}))
    code, _, err = invoke("interpret", "--profile", str(PROFILE), "--metrics", str(bad), "--no-log")
    assert code == 2
    assert f"{bad}" in err and "p99_ms (100) is below p95_ms (300)" in err


# -- sizes checked before reading --------------------------------------------------------------------------------
def test_diff_from_dev_zero_is_exit_2_at_once(tmp_path: Path) -> None:
    """`--diff /dev/zero` is refused before reading (exit 2 in seconds, memory untouched)."""
    started = time.monotonic()
    proc = run_poet("--db", str(tmp_path / "kb.sqlite"), "rank", "--diff", "/dev/zero", timeout=60)
    assert proc.returncode == 2
    assert "/dev/zero: not a regular file (a device)" in proc.stderr
    assert time.monotonic() - started < 30


def test_diff_fifo_and_endless_stdin_are_refused(tmp_path: Path) -> None:
    """A FIFO as --diff is refused without waiting for a writer; an endless --diff - stops at the size limit."""
    fifo = tmp_path / "change.diff"
    os.mkfifo(fifo)
    proc = run_poet("--db", str(tmp_path / "kb.sqlite"), "rank", "--diff", str(fifo), timeout=60)
    assert proc.returncode == 2 and "not a regular file (a FIFO)" in proc.stderr
    with subprocess.Popen([*POET, "--db", str(tmp_path / "kb.sqlite"), "rank", "--diff", "-"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        chunk = b"+" * (1 << 20)
        try:
            for _ in range(64):  # at most 64 MB: the reader must stop long before
                assert child.stdin is not None
                child.stdin.write(chunk)
        except BrokenPipeError:
            pass
        _, err = child.communicate(timeout=60)
    assert child.returncode == 2 and b"the diff is larger than" in err


def test_oversized_diff_file_is_refused_by_its_size(tmp_path: Path) -> None:
    """A sparse 1 GB diff file is refused from its size alone (no reading), naming the limit."""
    big = tmp_path / "huge.diff"
    with big.open("wb") as fh:
        fh.truncate(1 << 30)
    started = time.monotonic()
    code, _, err = invoke("rank", "--diff", str(big))
    assert code == 2 and "over the limit of" in err and str(big) in err
    assert time.monotonic() - started < 10


def test_metrics_fifo_and_device_are_refused(tmp_path: Path) -> None:
    """A metrics 'file' that is a FIFO or a device is refused at once by name."""
    fifo = tmp_path / "metrics.json"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        read_metrics(fifo)
    with pytest.raises(InputError, match=r"/dev/zero: not a regular file \(a device\)"):
        read_metrics("/dev/zero")


def test_endless_line_in_a_metrics_file_is_refused(tmp_path: Path) -> None:
    """A samples file whose line runs on for megabytes is refused at the line limit, not read into one string."""
    path = tmp_path / "samples.txt"
    path.write_text("12\n" + "1" * (3 << 20) + "\n")
    with pytest.raises(InputError) as caught:
        read_metrics(path)
    assert caught.value.line == 2 and "longer than" in str(caught.value)


# -- exit codes ----------------------------------------------------------------------------------------------------
CRASHING_CLI = """
import sys
import click
from poetkb.cli import main
from poetkb.errors import CheckFailed

@main.command("crash-for-test")
@click.option("--kind", default="internal")
def crash_for_test(kind):
    if kind == "internal":
        {}["no such key"]
    raise CheckFailed("the check failed")

main(prog_name="poet")
"""


def run_crashing(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "crashing_cli.py"
    script.write_text(CRASHING_CLI)
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "POET_DEBUG": "", **(env or {})}, check=False)


def test_internal_error_exits_3_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    """A crash inside a command exits 3 with one 'internal error' line and a hint, never a traceback."""
    proc = run_crashing(tmp_path, "crash-for-test")
    assert proc.returncode == 3
    lines = proc.stderr.splitlines()
    assert lines[0] == "internal error: KeyError: 'no such key'"
    assert len(lines) == 2 and "--debug" in lines[1]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("args", "env"), [(("--debug", "crash-for-test"), {}),
                                            (("crash-for-test",), {"POET_DEBUG": "1"})])
def test_internal_error_shows_the_traceback_under_debug(tmp_path: Path, args: tuple[str, ...],
                                                        env: dict[str, str]) -> None:
    """With --debug or POET_DEBUG=1 the same crash prints its traceback and still exits 3."""
    proc = run_crashing(tmp_path, *args, env=env)
    assert proc.returncode == 3
    assert "Traceback (most recent call last)" in proc.stderr and "KeyError" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-2].startswith("internal error: KeyError")


def test_poet_errors_keep_their_codes_and_usage_errors_stay_2(tmp_path: Path) -> None:
    """A failed check is 1, bad input 2 and click usage errors 2, through both `poet` and `python -m poetkb`."""
    assert run_crashing(tmp_path, "crash-for-test", "--kind", "check").returncode == 1
    poet = Path(sys.executable).parent / "poet"
    for launcher in ([str(poet)], POET):
        missing = subprocess.run([*launcher, "rank", "--diff", str(tmp_path / "nope.diff")], capture_output=True,
                                 text=True, timeout=60, check=False)
        assert missing.returncode == 2 and "no such diff file" in missing.stderr
        usage = subprocess.run([*launcher, "rank", "--top", "0", "--change", "x"], capture_output=True, text=True,
                               timeout=60, check=False)
        assert usage.returncode == 2 and "Invalid value for '--top'" in usage.stderr
        unknown = subprocess.run([*launcher, "no-such-command"], capture_output=True, text=True, timeout=60,
                                 check=False)
        assert unknown.returncode == 2 and "No such command" in unknown.stderr
        assert "Traceback" not in missing.stderr + usage.stderr + unknown.stderr


def test_output_reader_going_away_is_not_a_crash(tmp_path: Path) -> None:
    """`poet ... | head` closing the pipe early exits 141 (as SIGPIPE would) without an 'internal error' line."""
    with subprocess.Popen([*POET, "schema", "service-profile"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env={**os.environ, "POET_DEBUG": ""}) as child:
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()  # before the interpreter has even started writing
        err = child.stderr.read().decode()
        child.wait(timeout=60)
    assert child.returncode == 141
    assert "internal error" not in err and "Traceback" not in err


def test_every_command_routes_through_the_error_handling_group() -> None:
    """Every `poet` command hangs below the one PoetGroup, and both entry points run that group."""
    from poetkb.cli.common import PoetGroup

    assert isinstance(main, PoetGroup)
    assert "poetkb.cli:main" in (TESTS.parent / "pyproject.toml").read_text()
    assert "from poetkb.cli import main" in (TESTS.parent / "poetkb" / "__main__.py").read_text()

    def walk(group: object) -> int:
        count = 0
        for command in getattr(group, "commands", {}).values():
            count += 1 + walk(command)
        return count

    assert walk(main) > 10


# -- access logs -------------------------------------------------------------------------------------------------
def test_access_log_lines_that_are_deep_or_non_finite_become_problems() -> None:
    """Deep nesting, NaN and overflowing numbers in an access log are problems with their line, never a crash."""
    from poetkb.gates import accesslog

    data = (b'{"status": 200, "request_time": 0.01}\n' + b"[" * 5000 + b"\n"
            + b'{"status": 200, "request_time": NaN}\n{"status": 200, "request_time": 1e999}\n'
            + b'{"status": 200, "request_time": "inf"}\n')
    parsed = accesslog.parse(data)
    assert [p.line for p in parsed.problems] == [2, 3, 4]
    assert "nested deeper" in parsed.problems[0].message
    assert [r.line for r in parsed.records] == [1, 5]
    assert parsed.records[1].request_time is None


def test_har_that_is_deep_or_not_a_mapping_is_input_error(tmp_path: Path) -> None:
    """A HAR file nested thousands deep, or whose top level is a list, is an InputError naming it, not a crash."""
    from poetkb.gates.foreign import load_foreign

    deep = tmp_path / "deep.har"
    deep.write_text('{"log": {"entries": ' + "[" * 5000)
    with pytest.raises(InputError, match="nested deeper"):
        load_foreign([deep])
    listed = tmp_path / "list.har"
    listed.write_text('{"log": [], "entries": 1}')
    with pytest.raises(InputError, match="HAR file has no log.entries list"):
        load_foreign([listed])
