"""Print hit@1, hit@3 and MRR of `poet rank` over the evaluation scenarios, and each scenario's answer.

Usage: python benchmarks/rank_eval.py [--db KB] [--scenarios FILE] [--verbose]

Without --db it builds a knowledge base from the shipped catalog in a temporary directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCENARIOS = REPO / "tests" / "fixtures" / "rank" / "scenarios.yaml"
#: the last scenarios of the set were written after the scoring was settled (see the set's comments)
HELD_OUT = 12


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="knowledge base file (default: a fresh one from the shipped catalog)")
    parser.add_argument("--scenarios", type=Path, default=DEFAULT_SCENARIOS)
    parser.add_argument("--verbose", "-v", action="store_true", help="print every scenario's top three")
    args = parser.parse_args()

    import poetkb
    from poetkb.rank.evaluate import evaluate, load_scenarios

    scenarios, diffs = load_scenarios(args.scenarios)
    with tempfile.TemporaryDirectory() as tmp:
        kb = poetkb.open(args.db or Path(tmp) / "kb.sqlite")
        with kb:
            result = evaluate(kb, scenarios, diffs)
    for r in result.results:
        mark = "ok " if r.first_hit and r.first_hit <= 3 else "MISS"
        if args.verbose or mark == "MISS":
            rank = r.first_hit or "-"
            print(f"{mark} {r.id:<36} rank {rank!s:<3} expected {', '.join(r.expected)}")
            print(f"     got {', '.join(r.ranked[:3]) or '(nothing)'}")
    areas = sorted({r.area for r in result.results})
    for area in areas:
        rows = [r for r in result.results if r.area == area]
        hits = sum(1 for r in rows if r.first_hit and r.first_hit <= 3)
        print(f"{area:<11} {hits}/{len(rows)} hit@3")
    print(f"scenarios {result.scenarios}  hit@1 {result.hit_at_1:.3f}  hit@3 {result.hit_at_3:.3f}  "
          f"MRR {result.mrr:.3f}")
    held = result.results[-HELD_OUT:]
    print(f"held out  {len(held)}  hit@1 {sum(1 for r in held if r.first_hit == 1) / len(held):.3f}  "
          f"hit@3 {sum(1 for r in held if r.first_hit and r.first_hit <= 3) / len(held):.3f}  "
          f"MRR {sum(r.reciprocal_rank for r in held) / len(held):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
