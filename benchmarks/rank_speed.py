"""Print how fast `poet rank` answers: on the shipped knowledge base and with 10,000 learned patterns.

Usage: python benchmarks/rank_speed.py [--patterns N] [--rounds R]

For each knowledge base it prints:
- fit: fitting the TF-IDF model and walking the graph, then storing the model (done by every build);
- first: the first query of a new KnowledgeBase after the build (reads the stored model, fits nothing);
- warm: the median and worst in-process latency of `kb.rank()` over R queries once the model is loaded
  (the targets: under 100 ms on the shipped knowledge base, under 0.5 s with 10,000 patterns);
- process: the wall time of a whole `poet rank` process started afresh, reading the stored model
  (includes Python start-up and imports, which no query can avoid).
The synthetic patterns are generated with a fixed seed from the catalog's own words, so runs compare.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUERIES = [
    ("switch the cache key to include Accept-Language", None),
    ("raise the proxy read timeout and retry on another upstream", None),
    ("jwt validation skips the audience check", None),
    ("add an index to the orders table in a migration", None),
    (None, REPO / "docs" / "examples" / "cache-change.diff"),
]


def synthetic_catalog(target: Path, count: int, seed: int = 7) -> None:
    """Copy the shipped catalog to ``target`` and add ``count`` learned patterns made from its words."""
    from poetkb.catalog import load_catalog, shipped_catalog_root

    root = shipped_catalog_root()
    for part in ("obligations", "knowledge", "mappings"):
        shutil.copytree(root / part, target / part)
    catalog = load_catalog(root)
    rng = random.Random(seed)
    obligations = sorted(catalog.obligations.values(), key=lambda o: o.id)
    filler = ["handles", "returns", "rejects", "after", "when", "under", "load", "with", "without", "twice"]
    patterns = []
    for index in range(count):
        ob = obligations[rng.randrange(len(obligations))]
        words = [w.replace(" ", "_").replace("-", "_") for w in ob.keywords] or ob.id.split(".")
        picked = rng.sample(words, k=min(3, len(words))) + rng.sample(filler, k=2)
        rng.shuffle(picked)
        name = "test_" + "_".join(picked).lower()
        module = f"tests/{ob.domain}/test_{ob.id.split('.')[-1]}_{index // 50}.py"
        patterns.append({
            "id": f"synthetic:{module}::{name}_{index}", "source": "synthetic", "file": module,
            "test": f"{name}_{index}", "line": 1 + (index % 50) * 12,
            "summary": " ".join(picked).replace("_", " "), "terms": picked,
            "obligations": [{"id": ob.id, "confidence": round(rng.uniform(0.5, 0.95), 2), "reasons": ["synthetic"]}],
        })
    learned = target / "knowledge" / "learned"
    learned.mkdir(parents=True, exist_ok=True)
    (learned / "synthetic.json").write_text(json.dumps({"patterns": patterns}), encoding="utf-8")


def measure(db: Path, rounds: int) -> dict[str, float]:
    import poetkb
    from poetkb.rank import model_store

    with poetkb.open(db) as kb:
        start = time.perf_counter()
        model_store.prepare(kb)
        fit = time.perf_counter() - start
    with poetkb.open(db) as kb:
        start = time.perf_counter()
        kb.rank(QUERIES[0][0])
        first = time.perf_counter() - start
        timings = []
        for index in range(rounds):
            text, diff = QUERIES[index % len(QUERIES)]
            start = time.perf_counter()
            kb.rank(text, diff=diff)
            timings.append(time.perf_counter() - start)
    env = {**os.environ, "POET_DB": str(db)}
    process = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "poetkb", "rank", "--change", QUERIES[1][0], "--json"], env=env,
                       check=True, capture_output=True, timeout=300)
        process.append(time.perf_counter() - start)
    return {"fit": fit, "first": first, "warm_median": statistics.median(timings), "warm_max": max(timings),
            "process": statistics.median(process)}


def report(name: str, numbers: dict[str, float], target: float) -> None:
    verdict = "ok" if numbers["warm_median"] < target else "SLOW"
    print(f"{name:<28} fit {numbers['fit'] * 1000:8.0f} ms   first {numbers['first'] * 1000:6.0f} ms   "
          f"warm median {numbers['warm_median'] * 1000:7.1f} ms (max {numbers['warm_max'] * 1000:6.1f})   "
          f"process {numbers['process'] * 1000:6.0f} ms   target {target * 1000:.0f} ms: {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()

    from poetkb import store
    from poetkb.catalog import load_catalog, shipped_catalog_root

    with tempfile.TemporaryDirectory() as tmp:
        shipped = Path(tmp) / "shipped.sqlite"
        store.build(load_catalog(shipped_catalog_root()), shipped, source="shipped")
        report("shipped knowledge base", measure(shipped, args.rounds), 0.100)
        root = Path(tmp) / "catalog"
        synthetic_catalog(root, args.patterns)
        big = Path(tmp) / "big.sqlite"
        start = time.perf_counter()
        store.build(load_catalog(root), big, source=str(root))
        print(f"(built a knowledge base with {args.patterns} synthetic learned patterns in "
              f"{time.perf_counter() - start:.1f} s)")
        report(f"with {args.patterns} patterns", measure(big, args.rounds), 0.500)
    return 0


if __name__ == "__main__":
    sys.exit(main())
