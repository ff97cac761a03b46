"""Speed of `poet learn`: the whole pipeline beside libcst's bare parse of the same files, and a cached re-run.

Usage:

    .venv/bin/python benchmarks/learn_speed.py                       # two generated suites (pytest, script-style)
    .venv/bin/python benchmarks/learn_speed.py --files 3000
    .venv/bin/python benchmarks/learn_speed.py /tmp/suites/aiohttp /tmp/suites/urllib3 ...   # one row per suite
    .venv/bin/python benchmarks/learn_speed.py /tmp/suites/gunicorn --profile 25             # where the time goes

For each suite (each PATH is mined as a suite of its own), on the same files in the same run:

- libcst's bare parse, one process (``libcst.parse_module`` of every test file, as libcst is used by default);
- the pipeline in one process with an empty cache (read, hash, ast guard, libcst parse, feature walk,
  data files, mapping, writing the file and the knowledge base; bare parse and pipeline alternate, the best
  of --repeat rounds each is kept), then its re-run over the unchanged suite and the re-run's share of the
  first run; then the same with --workers processes;
- the pipeline's phases in one process (discovery and hashing; parsing; assembling units, data files and
  mapping; writing), and, with --breakdown, the parse's parts (ast guard, libcst with and without node
  validation, the feature walk) and what libcst's PositionProvider would add;
- with --profile N, the N functions of the one-process pipeline with the most own time (cProfile).

The ratios ("x") are wall time over the bare parse's wall time in the same run. Nothing is fetched and the
user's knowledge base is not touched (a temporary copy of the shipped one is used).
"""

from __future__ import annotations

import argparse
import ast
import gc
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import libcst  # noqa: E402

from poetkb import store  # noqa: E402
from poetkb.catalog import load_catalog, shipped_catalog_root  # noqa: E402
from poetkb.kb import SHIPPED, KnowledgeBase  # noqa: E402
from poetkb.learn import extract as extract_module  # noqa: E402
from poetkb.learn.discover import discover  # noqa: E402
from poetkb.learn.runner import learn  # noqa: E402

HEADERS = ["Vary", "Cache-Control", "X-Forwarded-For", "Content-Length", "Transfer-Encoding", "Authorization",
           "Accept-Language", "Retry-After", "X-Request-ID", "Connection"]
TOPICS = ["vary", "max_age", "private", "stale_if_error", "retry", "timeout", "chunked", "content_length",
          "forwarded_for", "tls_verify", "redirect", "cookie", "json", "query", "gzip", "keepalive"]


def generate_suite(root: Path, files: int, seed: int = 7) -> Path:
    """A synthetic legacy suite: pytest functions, parametrized tests, unittest classes, docstrings, comments."""
    rnd = random.Random(seed)
    for n in range(files):
        topic = rnd.choice(TOPICS)
        lines = [f'"""Generated tests {n} about {topic.replace("_", " ")}."""', "", "import unittest", "",
                 "import pytest", ""]
        for t in range(rnd.randint(4, 14)):
            header = rnd.choice(HEADERS)
            kind = rnd.random()
            name = f"test_{topic}_{rnd.choice(TOPICS)}_{t}"
            if kind < 0.2:
                lines += ['@pytest.mark.parametrize("value", ["en", "de", "fr", "*"])',
                          f"def {name}(client, value):",
                          f"    response = client.get('/items/{t}', headers={{'{header}': value}})",
                          "    assert response.status_code in (200, 304)", ""]
            elif kind < 0.4:
                lines += [f"class Test{topic.title().replace('_', '')}{t}(unittest.TestCase):",
                          "    def setUp(self):", "        self.client = make_client()", "",
                          f"    def {name}(self):",
                          f'        """Checks {header} on the response to request {t}."""',
                          f"        r = self.client.get('/api/{t}')",
                          f"        self.assertEqual(r.headers.get('{header}'), 'value-{t}')", ""]
            else:
                lines += [f"def {name}(client, tmp_path):",
                          f'    """The {topic.replace("_", " ")} case number {t}."""',
                          "    # first request fills the cache, the second must be a hit",
                          f"    first = client.get('/page/{t}', headers={{'{header}': 'a'}})",
                          f"    second = client.get('/page/{t}', headers={{'{header}': 'b'}})",
                          "    assert first.status_code == 200",
                          f"    assert second.headers['{header}'] != first.headers['{header}']", ""]
        directory = root / "tests" / f"group_{n % 40:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"test_generated_{n:05d}.py").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def generate_script_suite(root: Path, files: int, seed: int = 11) -> Path:
    """A synthetic script-style suite: ``*.test.py`` files describing runs through a test object's fields.

    Each test names a replay file and most also a gold file beside it (about 1.6 data files per test), as
    suites of traffic-replaying proxies do; the data files are what a cached re-run must not read again.
    """
    rnd = random.Random(seed)
    groups = ["cache", "timeout", "logging", "headers", "redirect", "tls", "chunked", "connect"]
    for n in range(files):
        group, topic = groups[n % len(groups)], rnd.choice(TOPICS)
        directory = root / "tests" / "gold_tests" / group / f"{topic}_{n:04d}"
        (directory / "replay").mkdir(parents=True, exist_ok=True)
        header = rnd.choice(HEADERS)
        replay = f"replay/{topic}_{n}.replay.yaml"
        sessions = "\n".join(
            f"  - transactions:\n    - client-request:\n        method: GET\n        url: /{topic}/{n}/{t}\n"
            f"        headers:\n          fields:\n          - [ {header}, value-{t} ]\n"
            f"      server-response:\n        status: {rnd.choice([200, 304, 404, 502])}\n"
            f"      proxy-response:\n        status: 200" for t in range(rnd.randint(3, 12)))
        (directory / replay).write_text(f"meta:\n  version: '1.0'\nsessions:\n{sessions}\n", encoding="utf-8")
        words = topic.replace("_", " ")
        lines = [f'"""Checks {words} through the proxy ({n})."""', "",
                 f"Test.Summary = 'Verify {words} handling with {header}'",
                 "Test.ContinueOnFail = True", "",
                 f"server = Test.MakeVerifierServerProcess('server', '{replay}')",
                 "proxy = Test.MakeProxyProcess('proxy')",
                 f"proxy.Disk.records_config.update({{'proxy.config.{group}.enabled': 1, "
                 f"'proxy.config.diags.debug.tags': '{group}'}})", ""]
        for run in range(rnd.randint(1, 4)):
            lines += [f"tr = Test.AddTestRun('{words} run {run}: {header} is forwarded')",
                      f"tr.Processes.Default.Command = 'curl -s -H \"{header}: x\" http://127.0.0.1/{topic}/{run}'",
                      "tr.Processes.Default.ReturnCode = 0",
                      "tr.StillRunningAfter = proxy", ""]
        if rnd.random() < 0.6:
            gold = f"gold/{topic}_{n}.gold"
            (directory / "gold").mkdir(exist_ok=True)
            (directory / gold).write_text(f"HTTP/1.1 200 OK\n{header}: ``\nContent-Length: ``\n``\n",
                                          encoding="utf-8")
            lines += [f"tr.Processes.Default.Streams.stdout = '{gold}'", ""]
        (directory / f"{topic}_{n:04d}.test.py").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def timed(label: str, seconds: float, files: int, megabytes: float, base: float | None = None,
          cpu: float | None = None, cpu_base: float | None = None, extra: str = "") -> None:
    ratio = f"  {seconds / base:.2f}x" if base else ""
    cpu_text = f"  cpu {cpu:6.2f} s" + (f" {cpu / cpu_base:.2f}x" if cpu_base else "") if cpu is not None else ""
    print(f"  {label:<44} {seconds:7.2f} s {files / seconds:7.1f} files/s {megabytes / seconds:5.2f} MB/s"
          f"{ratio}{cpu_text}{extra}")


def bare_parse(texts: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of libcst's parse of every text, in this process."""
    started, cpu = time.perf_counter(), time.process_time()
    for text in texts:
        try:
            libcst.parse_module(text)
        except Exception:  # noqa: BLE001, S112 - files the pipeline skips are timed here too
            continue
    return time.perf_counter() - started, time.process_time() - cpu


def breakdown(texts: list[str], sample: int) -> None:
    """Where one process's time goes, phase by phase, on the same files."""
    def run(label: str, func: object) -> float:
        best = float("inf")
        for _ in range(2):  # the better of two rounds: the machine may be shared
            gc.collect()
            started = time.process_time()
            for text in texts:
                try:
                    func(text)  # type: ignore[operator]
                except Exception:  # noqa: BLE001, S112
                    continue
            best = min(best, time.process_time() - started)
        print(f"  {label:<46} {best:7.2f} s cpu")
        return best

    print("where the time goes (one process, CPU seconds, best of two rounds):")
    run("ast.parse (guard and line ranges)", ast.parse)
    on = run("libcst.parse_module, collector on", libcst.parse_module)

    def paused(text: str) -> None:
        gc.disable()
        try:
            libcst.parse_module(text)
        finally:
            gc.enable()

    off = run("libcst.parse_module, collector paused", paused)
    print(f"  {'-> the collector costs':<46} {on - off:7.2f} s ({(on - off) / off:.0%} of the parse)")
    walked = run("extract (ast + libcst + walk, collector paused)", extract_module.extract)
    print(f"  {'-> extract over the bare parse':<46} {walked / on:7.2f}x")
    kept: list[object] = []

    def keep(text: str) -> None:
        kept.append(libcst.parse_module(text))
        if len(kept) >= len(texts):
            kept.clear()

    run("libcst.parse_module, every tree kept alive", keep)
    kept.clear()
    subset = texts[:sample]
    from libcst.metadata import MetadataWrapper, PositionProvider

    started = time.perf_counter()
    for text in subset:
        try:
            libcst.parse_module(text)
        except Exception:  # noqa: BLE001, S112
            continue
    parse_only = time.perf_counter() - started
    started = time.perf_counter()
    for text in subset:
        try:
            MetadataWrapper(libcst.parse_module(text)).resolve(PositionProvider)
        except Exception:  # noqa: BLE001, S112
            continue
    with_positions = time.perf_counter() - started
    print(f"  {'PositionProvider on ' + str(len(subset)) + ' files (not used)':<46} {with_positions:7.2f} s "
          f"vs {parse_only:.2f} s parse only: {with_positions / parse_only:.1f}x")


class Phases:
    """Wall time of each phase of a run, from the runner's phase callback (a phase lasts until the next)."""

    NAMES = {"start": "discover, read, hash, cache look-up", "parsing": "parse",
             "mapping": "assemble units, data files, map", "writing": "write file and knowledge base"}

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []

    def __call__(self, phase: str) -> None:
        self.marks.append((phase.split(" ", 1)[0], time.perf_counter()))

    def report(self, started: float, ended: float, base: float) -> str:
        bounds = [("start", started), *self.marks, ("end", ended)]
        spans = [(self.NAMES.get(name, name), bounds[i + 1][1] - at) for i, (name, at) in enumerate(bounds[:-1])]
        return "; ".join(f"{name} {sec:.2f} s ({sec / base:.2f}x)" for name, sec in spans)


def mine(kb: KnowledgeBase, path: Path, out: Path, workers: int) -> tuple[Any, float, float, str]:
    """One run: its report, wall and CPU seconds (this process), and its phases (a function of the base)."""
    phases = Phases()
    cpu, started = time.process_time(), time.perf_counter()
    report = learn(kb, [path], source="bench", out_dir=out, workers=workers, on_phase=phases)
    ended = time.perf_counter()
    return report, ended - started, time.process_time() - cpu, lambda base: phases.report(started, ended, base)


def suite_label(path: Path) -> str:
    """A suite's name in the table: its directory, or the directory above a ``tests``/``test`` directory."""
    return path.parent.name if path.name in ("tests", "test", "testing") and path.parent.name else path.name


def bench_suite(path: Path, args: argparse.Namespace, fresh_kb: Any, work: Path) -> dict[str, Any]:
    """Time one suite: bare parse, the pipeline and its re-run in one process and over the workers."""
    found = discover([path])
    texts = [f.text for f in found.files]
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    label = suite_label(path)
    print(f"\n{label}: {len(texts)} test files, {megabytes:.1f} MB, {len(found.skipped)} skipped by discovery")
    # Bare parse and first run alternate, best of --repeat each: on a shared machine one round can be slowed
    # by other work, and the ratio of two slowed rounds means little.
    bare = bare_cpu = wall = cpu = float("inf")
    for round_ in range(args.repeat):
        b, b_cpu = bare_parse(texts)
        bare, bare_cpu = min(bare, b), min(bare_cpu, b_cpu)
        with fresh_kb(f"round{round_}-{path.name}") as kb:
            first, w, c, p = mine(kb, path, work / f"round{round_}", 1)
        if w < wall:
            phases = p
        wall, cpu = min(wall, w), min(cpu, c)
    timed("libcst bare parse (1 process)", bare, len(texts), megabytes, cpu=bare_cpu)
    row: dict[str, Any] = {"suite": label, "files": len(texts), "mb": megabytes, "bare": bare}
    with fresh_kb(f"one-{path.name}") as kb:
        first, _, _, _ = mine(kb, path, work / "out1", 1)
        timed("pipeline, 1 process, empty cache", wall, len(texts), megabytes, bare, cpu, bare_cpu)
        print(f"    phases (fastest round): {phases(bare)}")
        again, again_wall, again_cpu, again_phases = mine(kb, path, work / "out1", 1)
        timed(f"re-run, 1 process ({again.run.files_parsed} parsed)", again_wall, len(texts), megabytes, bare,
              again_cpu, bare_cpu, extra=f"  {again_wall / wall:.1%} of the first run")
        print(f"    phases: {again_phases(bare)}")
        if again.patterns != first.patterns:
            raise SystemExit("a cached re-run gave other patterns than the first run")
        row.update(one=wall, one_cpu=cpu, bare_cpu=bare_cpu, again=again_wall, units=first.summary.units,
                   data_files=first.run.data_files, mapped=first.summary.units_mapped)
    if args.workers > 1:
        with fresh_kb(f"many-{path.name}") as kb:
            many, many_wall, _, _ = mine(kb, path, work / "out", args.workers)
            timed(f"pipeline, {many.run.workers} processes, empty cache", many_wall, len(texts), megabytes, bare)
            again, again_wall, _, _ = mine(kb, path, work / "out", args.workers)
            timed(f"re-run, {args.workers} processes ({again.run.files_parsed} parsed)", again_wall, len(texts),
                  megabytes, bare, extra=f"  {again_wall / many_wall:.1%} of the first run")
            row.update(many=many_wall, many_again=again_wall)
    print(f"  {row['units']} units, {row['mapped']} mapped, {row['data_files']} data files")
    if args.profile:  # a run of its own: the profiler's overhead stays out of the figures above
        import cProfile
        import pstats

        with fresh_kb(f"profile-{path.name}") as kb:
            profiler = cProfile.Profile()
            profiler.enable()
            learn(kb, [path], source="bench", out_dir=work / "out2", workers=1)
            profiler.disable()
        print(f"  the {args.profile} functions with the most own time (1 process, empty cache, under cProfile):")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(args.profile)
    if args.breakdown:
        breakdown(texts, args.sample)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="suites to mine, one row each (default: generate two)")
    parser.add_argument("--files", type=int, default=2000, help="files in the generated pytest suite")
    parser.add_argument("--script-files", type=int, default=565, help="files in the generated script-style suite")
    parser.add_argument("--generate", choices=["both", "pytest", "script"], default="both",
                        help="which suites to generate when no PATH is given (script: also beside PATHs)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sample", type=int, default=100, help="files for the PositionProvider comparison")
    parser.add_argument("--breakdown", action="store_true", help="time the parse's parts too")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of bare parse and first run (best is kept)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print cProfile's top N functions")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = list(args.paths)
        if not args.paths and args.generate in ("both", "pytest"):
            paths.append(generate_suite(work / "generated", args.files))
        if args.generate == "script" or (not args.paths and args.generate == "both"):
            paths.append(generate_script_suite(work / "generated-script", args.script_files))
        from importlib.metadata import version

        print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, libcst {version('libcst')}; "
              "wall seconds, files/s, MB/s, times the bare parse; CPU seconds of this process where comparable")
        template = work / "template.sqlite"
        store.build(load_catalog(shipped_catalog_root()), template, source=SHIPPED)

        def fresh_kb(name: str) -> KnowledgeBase:
            target = work / f"{name}.sqlite"
            shutil.copyfile(template, target)
            return KnowledgeBase(target)

        rows = [bench_suite(path, args, fresh_kb, work) for path in paths]
        print("\n| suite | files | MB | units | data files | bare parse | pipeline, 1 process | re-run, cached "
              "| pipeline, N processes | re-run, N processes |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            many = (f"{r['many']:.2f} s, {r['many'] / r['bare']:.2f}x | {r['many_again']:.2f} s, "
                    f"{r['many_again'] / r['many']:.1%}" if "many" in r else "- | -")
            one = f"{r['one']:.2f} s, {r['one'] / r['bare']:.2f}x (cpu {r['one_cpu'] / r['bare_cpu']:.2f}x)"
            print(f"| {r['suite']} | {r['files']} | {r['mb']:.1f} | {r['units']} | {r['data_files']} | "
                  f"{r['bare']:.2f} s | {one} | {r['again']:.2f} s, {r['again'] / r['one']:.1%} | {many} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
