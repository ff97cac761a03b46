"""Time `poet` commands side by side with `sqlite-utils tables` on the same knowledge-base file, as ratios.

Usage: python benchmarks/cli_speed.py [--rounds N] [--db KB]

Every command runs as a fresh process, N rounds, interleaved (one of each per round) so a busy machine slows
them alike; the figure is the median wall time and its ratio to `sqlite-utils tables FILE` (a small CLI that opens
the same SQLite file and lists its tables). Targets (issue 16): read commands at or below 1.0x, `poet rank`
warm at most 1.3x, and the first `poet rank` after `poet kb build` as fast as a warm one (the ranking model is
fitted at build time, not by the first query). Without --db it builds the shipped catalog into a temporary file.
poetkb's bytecode is compiled first, as an installed package has it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
CHANGE = "raise the proxy read timeout and retry on another upstream"

#: (label, arguments after `poet --db FILE`, target ratio)
READS = [
    ("obligations list", ["obligations", "list"], 1.0),
    ("obligations show", ["obligations", "show", "cache.vary.honored"], 1.0),
    ("search", ["search", "retry storm"], 1.0),
    ("related", ["related", "cache.vary.honored"], 1.0),
    ("kb stats", ["kb", "stats"], 1.0),
    ("rank (warm)", ["rank", "--change", CHANGE], 1.3),
]


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env, timeout=300)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--db", type=Path, help="knowledge base file (default: a fresh one from the shipped catalog)")
    args = parser.parse_args()
    # Bytecode as an installed package has it (pip compiles it): without it, every `poet` run would compile
    # poetkb's modules from source while `sqlite-utils` loads its cached bytecode.
    env = {k: v for k, v in os.environ.items() if k not in ("POET_DB", "POET_DEBUG", "PYTHONDONTWRITEBYTECODE")}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parent.parent / "poetkb")],
                   check=False, capture_output=True, env=env, timeout=600)
    poet, sqlite_utils = str(BIN / "poet"), str(BIN / "sqlite-utils")
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "kb.sqlite"
        if args.db is None:
            subprocess.run([poet, "--db", str(db), "kb", "build"], check=True, capture_output=True, env=env,
                           timeout=600)
        base = [sqlite_utils, "tables", str(db)]
        commands = {label: [poet, "--db", str(db), *argv] for label, argv, _ in READS}
        for argv in [base, *commands.values()]:  # warm the file cache and the stored model once
            subprocess.run(argv, check=True, capture_output=True, env=env, timeout=600)
        times: dict[str, list[float]] = {"sqlite-utils tables": [], **{label: [] for label in commands},
                                         "rank (first after a build)": []}
        fresh = Path(tmp) / "fresh.sqlite"
        for _ in range(args.rounds):
            times["sqlite-utils tables"].append(timed(base, env))
            for label, argv in commands.items():
                times[label].append(timed(argv, env))
            fresh.unlink(missing_ok=True)
            subprocess.run([poet, "--db", str(fresh), "kb", "build"], check=True, capture_output=True, env=env,
                           timeout=600)
            times["rank (first after a build)"].append(timed([poet, "--db", str(fresh), "rank", "--change", CHANGE],
                                                             env))
    reference = statistics.median(times["sqlite-utils tables"])
    targets = {label: target for label, _, target in READS}
    targets["rank (first after a build)"] = 1.3
    print(f"{'command':<28} {'median':>9} {'ratio':>7}  target")
    failed = 0
    for label, values in times.items():
        median = statistics.median(values)
        ratio = median / reference
        target = targets.get(label)
        verdict = "" if target is None else f"<= {target:.1f}x {'ok' if ratio <= target else 'OVER'}"
        failed += bool(target is not None and ratio > target)
        print(f"{label:<28} {median * 1000:7.0f} ms {ratio:6.2f}x  {verdict}")
    print(f"(median of {args.rounds} interleaved rounds; first rank after a build vs warm: "
          f"{statistics.median(times['rank (first after a build)']) / statistics.median(times['rank (warm)']):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
