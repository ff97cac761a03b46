"""Ways to combine the rules' confidence with the learned combiner's probability, leave-one-suite-out.

Usage (after ``benchmarks/learn_quality.py <suites> --reuse DIR`` has kept the mined suites in DIR):

    .venv/bin/python benchmarks/learn_combine.py DIR [--target 0.85]

For each held-out suite, the combiner is trained on the other suites, and the threshold of each combination is
chosen on the other suites' scores (each of them scored by a combiner that did not see it either: nested), as
``learn_quality.py`` chooses one: the highest recall at precision >= target, else the best F1. Every unit keeps
its most confident obligation (as the learned score does). Prints pooled precision, recall and F1 per
combination; docs/learn.md records the figures. An experiment: nothing here is a shipped path.
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import re
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from poetkb.learn import training  # noqa: E402
from poetkb.learn.training import MinedSuite, Score, UnitResult, choose_threshold, predict  # noqa: E402

COMBINATIONS: dict[str, Callable[[float, float], float]] = {
    "rules alone": lambda rule, p: rule,
    "learned score alone": lambda rule, p: p,
    "mean of both": lambda rule, p: (rule + p) / 2,
    "maximum": max,
    "noisy-or": lambda rule, p: 1 - (1 - rule) * (1 - p),
    "rules, or the learned score when >= 0.7": lambda rule, p: max(rule, p if p >= 0.7 else 0.0),
    # the learned score, only where a rule fired in a primary field (name, class, docstring, markers, path)
    "learned score with primary rule evidence": lambda rule, p: p,
}
#: Combinations that keep only the pairs a rule found in a primary field (see has_primary).
NEEDS_PRIMARY = {"learned score with primary rule evidence"}
_PRIMARY_REASON = re.compile(r"^rule \S+: .* in (name|cls|doc|markers|path)$")


def has_primary(reasons: list[str]) -> bool:
    """Whether the rules' reasons for a pair name a hit in a primary field (what a mere mention never has)."""
    return any(_PRIMARY_REASON.match(r) for r in reasons)


def combined(suite: MinedSuite, model: training.PairModel | None,
             how: Callable[[float, float], float], primary_only: bool = False) -> list[UnitResult]:
    """The suite's labelled units scored by one combination of the rules and the model."""
    rules = training.results_with(suite, None)
    learned = training.results_with(suite, model) if model is not None else rules
    out = []
    for by_rules, by_model in zip(rules, learned, strict=True):
        keys = set(by_rules.scored) | set(by_model.scored)
        scored = {k: how(by_rules.scored.get(k, 0.0), by_model.scored.get(k, 0.0)) for k in keys
                  if not primary_only or has_primary(by_rules.reasons.get(k, []))}
        out.append(dataclasses.replace(by_rules, scored=scored, limit=1))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reuse", type=Path, help="the --reuse directory of benchmarks/learn_quality.py")
    parser.add_argument("--target", type=float, default=training.TARGET_PRECISION)
    args = parser.parse_args()
    suites = {p.stem: pickle.loads(p.read_bytes()) for p in sorted(args.reuse.glob("*.pickle"))}
    if len(suites) < 3:
        print(f"{args.reuse}: fewer than three kept suites; run learn_quality.py --reuse first", file=sys.stderr)
        return 2
    names = sorted(suites)
    models: dict[tuple[str, ...], training.PairModel | None] = {}
    for held in names:
        others = [n for n in names if n != held]
        models[(held,)] = training.train_on([suites[n] for n in others])
        for other in others:
            models[(held, other)] = training.train_on([suites[n] for n in others if n != other])
    print(f"{len(names)} suites, threshold for precision >= {args.target} (else best F1), nested")
    for label, how in COMBINATIONS.items():
        pooled = Score()
        for held in names:
            inner: list[UnitResult] = []
            for other in (n for n in names if n != held):
                inner.extend(combined(suites[other], models[(held, other)], how, label in NEEDS_PRIMARY))
            threshold = choose_threshold(inner, target=args.target)
            for unit in combined(suites[held], models[(held,)], how, label in NEEDS_PRIMARY):
                pooled.add(unit.expected, predict(unit.scored, threshold, unit.limit))
        print(f"  {label:42s} P {pooled.precision:.2f}  R {pooled.recall:.2f}  F1 {pooled.f1:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
