"""Does a word model per obligation transfer to suites it never saw? Leave-one-suite-out, beside the rules.

The issue behind `poet learn`'s generalisation suggests TF-IDF features. This measures the plainest form of
it: per obligation, a logistic regression over TF-IDF of a unit's feature fields (words, and words tagged by
their field; unigrams and bigrams), trained on the labelled units of the other suites. Each held-out suite is
scored at a threshold chosen on the other suites' own leave-one-out predictions (nested), alone and combined
with the rules' confidence (maximum, mean, noisy-or). It reads the suites kept by
`benchmarks/learn_quality.py --reuse DIR`, so mine them that way first:

    .venv/bin/python benchmarks/learn_quality.py /tmp/suites/* --reuse /tmp/lq
    .venv/bin/python benchmarks/learn_lexical.py /tmp/lq          # about 8 minutes on 2 cores

This is a simplified harness (one precision target, at most two obligations per unit, classes not
aggregated), so its rules row is lower than the quality benchmark's; compare the rows with each other.
"""

from __future__ import annotations

import argparse
import functools
import pickle
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the pickled suites name poetkb's classes

#: thresholds tried; the precision a threshold must reach on the other suites (else the best F1 is taken)
GRID = [x / 20 for x in range(4, 20)]
TARGET = 0.85
LIMIT = 2
HOWS = ("rules", "words", "max", "mean", "noisy-or")

Row = tuple[str, set[str], dict[str, float]]  # unit text, expected obligations, rules' confidences
Pred = tuple[set[str], dict[str, float], dict[str, float]]  # expected, word model, rules


def unit_text(fields: dict[str, str]) -> str:
    return " ".join(" ".join([f"{k}_{w}" for w in v.split()] + v.split()) for k, v in fields.items() if v)


def combine(words: dict[str, float], rules: dict[str, float], how: str) -> dict[str, float]:
    keys = set(words) | set(rules)
    if how == "rules":
        return rules
    if how == "words":
        return words
    if how == "max":
        return {o: max(words.get(o, 0.0), rules.get(o, 0.0)) for o in keys}
    if how == "mean":
        return {o: (words.get(o, 0.0) + rules.get(o, 0.0)) / 2 for o in keys}
    return {o: 1 - (1 - words.get(o, 0.0)) * (1 - rules.get(o, 0.0)) for o in keys}


def counts(preds: list[Pred], how: str, threshold: float) -> tuple[int, int, int]:
    tp = fp = fn = 0
    for expected, words, rules in preds:
        scored = combine(words, rules, how)
        got = {o for c, o in sorted(((c, o) for o, c in scored.items() if c >= threshold), reverse=True)[:LIMIT]}
        tp, fp, fn = tp + len(got & expected), fp + len(got - expected), fn + len(expected - got)
    return tp, fp, fn


def pr(tp: int, fp: int, fn: int) -> tuple[float, float]:
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)


def shown(tp: int, fp: int, fn: int) -> str:
    precision, recall = pr(tp, fp, fn)
    return f"{precision:.2f} / {recall:.2f}"


def choose(preds: list[Pred], how: str) -> float:
    scored = [(t, *pr(*counts(preds, how, t))) for t in GRID]
    good = [(r, t) for t, p, r in scored if p >= TARGET]
    if good:
        return max(good)[1]
    return max((2 * p * r / (p + r) if p + r else 0.0, t) for t, p, r in scored)[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reuse", type=Path, help="the --reuse directory of benchmarks/learn_quality.py")
    args = parser.parse_args()
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    suites = {p.stem: pickle.loads(p.read_bytes()) for p in sorted(args.reuse.glob("*.pickle"))}
    if len(suites) < 3:
        print(f"{args.reuse}: fewer than three mined suites; run benchmarks/learn_quality.py --reuse first",
              file=sys.stderr)
        return 2
    rows: dict[str, list[Row]] = {
        name: [(unit_text(s.units[i].fields), expected, {o: c for o, (c, _) in s.rule_rows[i].items()})
               for i, _, expected in s.labelled] for name, s in suites.items()}
    obligations = sorted({o for r in rows.values() for _, e, _ in r for o in e})

    @functools.lru_cache(None)
    def predictions(train: tuple[str, ...], held: str) -> list[Pred]:
        vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2))
        matrix = vectorizer.fit_transform([t for n in train for t, _, _ in rows[n]])
        held_matrix = vectorizer.transform([t for t, _, _ in rows[held]])
        probs: dict[str, Any] = {}
        for o in obligations:
            y = [1 if o in e else 0 for n in train for _, e, _ in rows[n]]
            if sum(y) >= 2:
                model = LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000).fit(matrix, y)
                probs[o] = model.predict_proba(held_matrix)[:, 1]
        return [(e, {o: float(p[k]) for o, p in probs.items()}, rules)
                for k, (_, e, rules) in enumerate(rows[held])]

    names = sorted(rows)
    totals = {how: [0, 0, 0] for how in HOWS}
    print(f"{'suite':16}" + "".join(f"{how:>18}" for how in HOWS))
    for held in names:
        others = tuple(n for n in names if n != held)
        inner = [p for other in others for p in predictions(tuple(n for n in others if n != other), other)]
        outer = predictions(others, held)
        cells = []
        for how in HOWS:
            c = counts(outer, how, choose(inner, how))
            totals[how] = [a + b for a, b in zip(totals[how], c, strict=True)]
            cells.append(shown(*c))
        print(f"{held:16}" + "".join(f"{cell:>18}" for cell in cells), flush=True)
    print(f"{'pooled':16}" + "".join(f"{shown(*totals[how]):>18}" for how in HOWS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
