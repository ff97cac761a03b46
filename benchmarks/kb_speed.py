"""Print the cost of the foundation: `import poetkb`, a knowledge-base build, opening it and reading it.

    .venv/bin/python benchmarks/kb_speed.py

Each figure is the median of several runs in fresh processes where start-up matters.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 5


def median_subprocess(code: str, env_db: Path | None = None) -> float:
    env = None
    if env_db is not None:
        import os

        env = {**os.environ, "POET_DB": str(env_db)}
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import poetkb
    from poetkb import store
    from poetkb.catalog import load_catalog

    baseline = median_subprocess("pass")
    print(f"python start-up                      {baseline * 1000:7.1f} ms")
    print(f"import poetkb (over start-up)        {(median_subprocess('import poetkb') - baseline) * 1000:7.1f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "kb.sqlite"
        start = time.perf_counter()
        catalog = load_catalog()
        loaded = time.perf_counter()
        store.build(catalog, target, source="shipped")
        built = time.perf_counter()
        print(f"load + validate the shipped catalog  {(loaded - start) * 1000:7.1f} ms "
              f"({len(catalog.obligations)} obligations, {len(catalog.patterns)} learned patterns)")
        print(f"write the knowledge base             {(built - loaded) * 1000:7.1f} ms "
              f"({target.stat().st_size / 1e6:.1f} MB)")
        reads = []
        for _ in range(RUNS):
            start = time.perf_counter()
            with poetkb.open(target) as kb:
                kb.obligations()
                kb.obligation("cache.vary.honored")
                kb.search("retry storm")
            reads.append(time.perf_counter() - start)
        print(f"open + list + get + search (warm)    {statistics.median(reads) * 1000:7.1f} ms")
        with poetkb.open(target) as kb:
            start = time.perf_counter()
            kb.related("cache.vary.honored", depth=2)
            print(f"graph view + related, depth 2        {(time.perf_counter() - start) * 1000:7.1f} ms")
        code = "import poetkb; kb = poetkb.open(); kb.obligations()"
        print(f"process: import, open, list          {median_subprocess(code, target) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
