"""Leave-one-suite-out comparison of learned-combiner variants (what docs/learn.md's "what was tried" table shows).

Usage, after `benchmarks/learn_quality.py <suites> --reuse DIR` has mined the labelled suites into DIR:

    .venv/bin/python benchmarks/learn_variants.py --reuse DIR [VARIANT ...]

For each variant, every labelled suite is scored by a model fitted on the *other* suites only, and the pooled
(unit, obligation) pairs are swept over thresholds. Printed per variant: the best recall at precision >= 0.82 (what
the rules reach leave-one-suite-out), the best F1 and the highest precision reached. The sweep pools held-out
scores, so its threshold is not chosen on other suites (learn_quality.py does that, nested); it compares
variants, it is not a headline figure. Class units are scored as units (no aggregation of their methods).

Variants (the shipped model is `shipped`):

- shipped: the pair features of poetkb.learn.learned, logistic regression, at most one obligation per unit;
- four: the same, up to four obligations per unit;
- relational: without the file-context and rank features (the combiner as it was before), up to four;
- balanced: class-balanced weights instead of the plain (calibrated) fit, one per unit;
- group-words: + the unit's words per field crossed with the obligation's group (domain), one per unit;
- obligation-words: + the unit's words per field crossed with the obligation, one per unit;
- nearest: + the Jaccard similarity of the unit's primary words to the nearest labelled unit of the training
  suites that exercises the obligation, and to the nearest one that does not, one per unit.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import learn_quality  # noqa: E402
from learn_quality import MinedSuite, Score  # noqa: E402

from poetkb.learn import mapping  # noqa: E402
from poetkb.learn.features import PRIMARY_FIELDS, STOP_WORDS  # noqa: E402
from poetkb.learn.learned import feature_names  # noqa: E402

NEW_FEATURES = ("file_rule_mean", "file_rule_best", "file_domain_mapped", "rule_gap", "rule_top")
VARIANTS = ("shipped", "four", "relational", "balanced", "group-words", "obligation-words", "nearest")
Pair = tuple[int, str, dict[str, float], int]  # (unit index, obligation, features, label)


def words(text: str) -> set[str]:
    return {w for w in text.split() if w != "|" and w not in STOP_WORDS and len(w) > 2 and not w.isdigit()}


def suite_pairs(suite: MinedSuite, variant: str) -> list[Pair]:
    """Every (labelled unit, obligation with evidence) pair of a suite, with the variant's features."""
    names = feature_names()
    out: list[Pair] = []
    for i, _, expected in suite.labelled:
        fields = suite.units[i].fields
        crossed = set()
        if variant in ("group-words", "obligation-words"):
            for fname, text in fields.items():
                kind = "primary" if fname in PRIMARY_FIELDS else fname
                crossed.update(f"{kind}:{w}" for w in words(text))
        for oid, vector in suite.vectors[i].items():
            features = {n: v for n, v in zip(names, vector, strict=True) if v}
            if variant == "relational":
                for name in NEW_FEATURES:
                    features.pop(name, None)
            owner = oid.split(".", 1)[0] if variant == "group-words" else oid
            for word in crossed:
                features[f"{owner}|{word}"] = 1.0
            out.append((i, oid, features, 1 if oid in expected else 0))
    return out


def primary_words(suite: MinedSuite, i: int) -> frozenset[str]:
    fields = suite.units[i].fields
    return frozenset(w for f in PRIMARY_FIELDS for w in words(fields.get(f, "")))


def nearest_features(suites: dict[str, MinedSuite], bank_of: list[str], name: str,
                     pairs: list[Pair]) -> list[dict[str, float]]:
    """Each pair's features plus its Jaccard similarity to the nearest labelled units of `bank_of`."""
    positive: dict[str, list[frozenset[str]]] = {}
    negative: dict[str, list[frozenset[str]]] = {}
    for other in bank_of:
        for i, _, expected in suites[other].labelled:
            unit_words = primary_words(suites[other], i)
            for oid in suites[other].vectors[i]:
                (positive if oid in expected else negative).setdefault(oid, []).append(unit_words)
    out = []
    for i, oid, features, _ in pairs:
        mine = primary_words(suites[name], i)

        def best(bank: list[frozenset[str]], mine: frozenset[str] = mine) -> float:
            return max((len(mine & b) / len(mine | b) for b in bank if mine | b), default=0.0)

        extra = {"nearest_positive": best(positive.get(oid, [])), "nearest_negative": best(negative.get(oid, []))}
        out.append({**features, **extra})
    return out


def held_out_scores(suites: dict[str, MinedSuite], variant: str) -> dict[str, dict[int, dict[str, float]]]:
    """Suite -> unit -> obligation -> probability, each suite scored by a model fitted on the others."""
    from sklearn.feature_extraction import DictVectorizer  # heavy: only here
    from sklearn.linear_model import LogisticRegression

    pairs = {name: suite_pairs(suite, variant) for name, suite in suites.items()}
    names = sorted(suites)

    def rows(name: str, bank_of: list[str]) -> list[dict[str, float]]:
        if variant == "nearest":
            return nearest_features(suites, bank_of, name, pairs[name])
        return [features for _, _, features, _ in pairs[name]]

    out: dict[str, dict[int, dict[str, float]]] = {}
    for held in names:
        others = [n for n in names if n != held]
        # a training suite's nearest-example features come from the other training suites (no self-match)
        train = [row for n in others for row in rows(n, [m for m in others if m != n])]
        targets = [label for n in others for *_, label in pairs[n]]
        vectorizer = DictVectorizer()
        regression = LogisticRegression(C=1.0, max_iter=5000,
                                        class_weight="balanced" if variant == "balanced" else None)
        regression.fit(vectorizer.fit_transform(train), targets)
        probabilities = regression.predict_proba(vectorizer.transform(rows(held, others)))[:, 1]
        scored: dict[int, dict[str, float]] = {}
        for (i, oid, _, _), p in zip(pairs[held], probabilities, strict=True):
            scored.setdefault(i, {})[oid] = float(p)
        out[held] = scored
    return out


def sweep(suites: dict[str, MinedSuite], scores: dict[str, dict[int, dict[str, float]]],
          limit: int) -> list[tuple[float, Score]]:
    out = []
    for step in range(5, 100):
        threshold = step / 100
        total = Score()
        for name, suite in suites.items():
            for i, _, expected in suite.labelled:
                total.add(expected, learn_quality.predict(scores[name].get(i, {}), threshold, limit))
        out.append((threshold, total))
    return out


def summary(variant: str, swept: list[tuple[float, Score]], precision: float = 0.82) -> str:
    reached = [(s.recall, s.precision, t) for t, s in swept if s.precision >= precision and s.tp]
    at = "P {1:.2f} / R {0:.2f} (threshold {2:.2f})".format(*max(reached)) if reached else "not reached"
    best_t, best = max(swept, key=lambda ts: ts[1].f1)
    top = max(swept, key=lambda ts: (ts[1].precision, ts[1].recall))[1]
    return (f"{variant:<17} at P >= {precision}: {at}; best F1 {best.f1:.3f} ({best.pr()} at {best_t:.2f}); "
            f"highest P {top.pr()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", default=list(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--reuse", type=Path, required=True, metavar="DIR",
                        help="the directory learn_quality.py --reuse DIR wrote the mined suites to")
    args = parser.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; one of {', '.join(VARIANTS)}")
    sys.modules["__main__"].MinedSuite = MinedSuite  # type: ignore[attr-defined]  # pickles name it so
    suites: dict[str, MinedSuite] = {}
    for path in sorted(args.reuse.glob("*.pickle")):
        suite = learn_quality.load_reused(path)
        if suite is None:
            parser.error(f"{path}: kept by an older learn_quality.py; run it again with --reuse {args.reuse}")
        suites[path.stem] = suite
    if len(suites) < 2:
        parser.error(f"{args.reuse}: fewer than two mined suites")
    with tempfile.TemporaryDirectory() as tmp:
        kb = learn_quality.scratch_kb(Path(tmp))
        mapper = mapping.Mapper(kb.obligations(), kb.rules(), kb.failure_modes(), model=None)
        kb.close()
    for suite in suites.values():  # the pair features of this checkout (the pickles may be older)
        suite.vectors = learn_quality.featurise(mapper, suite.units, suite.rule_rows)
    limits: dict[str, int] = {"four": mapping.MAX_OBLIGATIONS, "relational": mapping.MAX_OBLIGATIONS}
    run: Callable[[str], str] = lambda v: summary(  # noqa: E731
        v, sweep(suites, held_out_scores(suites, v), limits.get(v, mapping.LEARNED_LIMIT)))
    print(f"{len(suites)} suites, pooled leave-one-suite-out sweep")
    for variant in args.variants:
        print(run(variant), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
