"""Speed of `poet learn`: the whole pipeline beside libcst's bare parse of the same files, and a cached re-run.

Usage:

    .venv/bin/python benchmarks/learn_speed.py                       # a generated suite (2,000 files)
    .venv/bin/python benchmarks/learn_speed.py --files 5000
    .venv/bin/python benchmarks/learn_speed.py /tmp/suites/aiohttp /tmp/suites/urllib3 ...

It prints, for the same files in the same run:

- libcst's bare parse (one process, as libcst is used), then the pipeline in one process (read, hash,
  ast guard, libcst parse, feature walk, data files, mapping, writing the file and the KB), so the two are
  comparable; then the pipeline over --workers processes (default: the CPU count) with an empty cache, and the
  re-run over an unchanged suite (everything from the cache);
- where one process's time goes: the ast guard, the libcst parse with the garbage collector on and paused,
  the feature walk, and, on a sample, what libcst's PositionProvider would add.

Nothing is fetched and the user's knowledge base is not touched (a temporary copy of the shipped one is used).
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


def timed(label: str, seconds: float, files: int, megabytes: float, base: float | None = None,
          cpu: float | None = None, cpu_base: float | None = None) -> None:
    ratio = f"  {seconds / base:.2f}x" if base else ""
    cpu_text = f"  cpu {cpu:6.2f} s" + (f" {cpu / cpu_base:.2f}x" if cpu_base else "") if cpu is not None else ""
    print(f"  {label:<44} {seconds:7.2f} s {files / seconds:7.1f} files/s {megabytes / seconds:5.2f} MB/s"
          f"{ratio}{cpu_text}")


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="suites to mine (default: generate one)")
    parser.add_argument("--files", type=int, default=2000, help="files in the generated suite")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sample", type=int, default=100, help="files for the PositionProvider comparison")
    parser.add_argument("--no-breakdown", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = args.paths or [generate_suite(work / "generated", args.files)]
        found = discover(paths)
        texts = [f.text for f in found.files]
        megabytes = sum(len(t.encode()) for t in texts) / 1e6
        from importlib.metadata import version

        print(f"{len(texts)} test files, {megabytes:.1f} MB, {len(found.skipped)} skipped by discovery; "
              f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, libcst {version('libcst')}")

        template = work / "template.sqlite"
        store.build(load_catalog(shipped_catalog_root()), template, source=SHIPPED)

        def fresh_kb(name: str) -> KnowledgeBase:
            target = work / f"{name}.sqlite"
            shutil.copyfile(template, target)
            return KnowledgeBase(target)

        bare, bare_cpu = bare_parse(texts)
        print("wall time, files/s, MB/s, times the bare parse; CPU time of this process where comparable:")
        timed("libcst bare parse (1 process)", bare, len(texts), megabytes, cpu=bare_cpu)
        with fresh_kb("one") as kb:
            cpu = time.process_time()
            report = learn(kb, paths, source="bench", out_dir=work / "out1", workers=1)
            cpu = time.process_time() - cpu
        timed("pipeline, 1 process, empty cache", report.run.seconds, len(texts), megabytes, bare, cpu, bare_cpu)
        with fresh_kb("many") as kb:
            report = learn(kb, paths, source="bench", out_dir=work / "out", workers=args.workers)
            timed(f"pipeline, {report.run.workers} processes, empty cache", report.run.seconds, len(texts), megabytes,
                  bare)
            cpu = time.process_time()
            again = learn(kb, paths, source="bench", out_dir=work / "out", workers=args.workers)
            cpu = time.process_time() - cpu
            timed(f"re-run, unchanged suite ({again.run.files_parsed} parsed)", again.run.seconds, len(texts),
                  megabytes, bare, cpu, bare_cpu)
        print(f"  {report.summary.units} units, {report.summary.units_mapped} mapped; "
              f"learned file {(work / 'out' / 'bench.json').stat().st_size / 1e6:.2f} MB")
        if not args.no_breakdown:
            breakdown(texts, args.sample)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
