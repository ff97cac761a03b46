"""Print hit@1, hit@3 and MRR of `poet rank` over the evaluation scenarios, and each scenario's answer.

Usage: python benchmarks/rank_eval.py [--db KB] [--scenarios FILE] [--git-scenarios FILE] [--verbose]

The text and diff scenarios come first; then the git scenarios, each built as a repository and ranked
the way `poet rank --git` ranks it.

Without --db it builds a knowledge base from the shipped catalog in a temporary directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCENARIOS = REPO / "tests" / "fixtures" / "rank" / "scenarios.yaml"
DEFAULT_GIT_SCENARIOS = REPO / "tests" / "fixtures" / "rank" / "git_scenarios.yaml"
#: the last scenarios of the set were written after the scoring was settled (see the set's comments)
HELD_OUT = 12


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="knowledge base file (default: a fresh one from the shipped catalog)")
    parser.add_argument("--scenarios", type=Path, default=DEFAULT_SCENARIOS)
    parser.add_argument("--git-scenarios", type=Path, default=DEFAULT_GIT_SCENARIOS)
    parser.add_argument("--verbose", "-v", action="store_true", help="print every scenario's top three")
    args = parser.parse_args()

    import poetkb
    from poetkb.rank.evaluate import evaluate, evaluate_git, load_git_scenarios, load_scenarios

    scenarios, diffs = load_scenarios(args.scenarios)
    git_scenarios = load_git_scenarios(args.git_scenarios)
    with tempfile.TemporaryDirectory() as tmp:
        kb = poetkb.open(args.db or Path(tmp) / "kb.sqlite")
        with kb:
            result = evaluate(kb, scenarios, diffs)
            git_result = evaluate_git(kb, git_scenarios, Path(tmp) / "repos")
    report(result, args.verbose)
    held = result.results[-HELD_OUT:]
    print(f"held out  {len(held)}  hit@1 {sum(1 for r in held if r.first_hit == 1) / len(held):.3f}  "
          f"hit@3 {sum(1 for r in held if r.first_hit and r.first_hit <= 3) / len(held):.3f}  "
          f"MRR {sum(r.reciprocal_rank for r in held) / len(held):.3f}")
    print("git scenarios (poet rank --git):")
    report(git_result, args.verbose)
    return 0


def report(result: object, verbose: bool) -> None:
    """Misses (every answer with verbose), hit@3 per area, then the totals."""
    for r in result.results:  # type: ignore[attr-defined]
        mark = "ok " if r.first_hit and r.first_hit <= 3 else "MISS"
        if verbose or mark == "MISS":
            rank = r.first_hit or "-"
            print(f"{mark} {r.id:<36} rank {rank!s:<3} expected {', '.join(r.expected)}")
            print(f"     got {', '.join(r.ranked[:3]) or '(nothing)'}")
    areas = sorted({r.area for r in result.results})  # type: ignore[attr-defined]
    for area in areas:
        rows = [r for r in result.results if r.area == area]  # type: ignore[attr-defined]
        hits = sum(1 for r in rows if r.first_hit and r.first_hit <= 3)
        print(f"{area:<11} {hits}/{len(rows)} hit@3")
    print(f"scenarios {result.scenarios}  hit@1 {result.hit_at_1:.3f}  "  # type: ignore[attr-defined]
          f"hit@3 {result.hit_at_3:.3f}  MRR {result.mrr:.3f}")  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
