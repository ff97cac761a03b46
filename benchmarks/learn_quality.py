"""Precision and recall of `poet learn` against the labelled test units in tests/fixtures/learn/labels/.

Usage (the suites must already be checked out; this script fetches nothing):

    .venv/bin/python benchmarks/learn_quality.py httpx=/tmp/suites/httpx urllib3=/tmp/suites/urllib3 ...
    .venv/bin/python benchmarks/learn_quality.py /tmp/suites/*  --errors loso

Each argument is NAME=PATH or a PATH whose directory name is the label file's name. With
--write-learned knowledge/learned it also writes the committed mined knowledge of those suites (mapped units
only, so the files stay small) from the same scratch knowledge base, so they do not depend on each other.

The mapping runs against a temporary knowledge base built from this checkout's catalog *without*
knowledge/learned, so the committed mined knowledge of the same suites cannot leak into the evaluation.

Scoring is over (unit, obligation) pairs: precision = correct mapped pairs / mapped pairs, recall =
correct mapped pairs / labelled pairs, on the labelled units only. Three figures per suite:

- **leave-one-suite-out** (the headline): everything the benchmark fits or tunes (today: the map threshold,
  chosen as the highest recall with pooled precision >= TARGET_PRECISION, else the best F1) is chosen on the
  *other* suites' labels only, then that suite is scored. The rules in mappings/test_patterns.yaml are fixed
  text written by people; which suites they were written while looking at is recorded in docs/learn.md.
- **as shipped**: the mapper at its shipped threshold (poetkb.learn.mapping.MAP_THRESHOLD), which was chosen
  looking at every suite's tuning part: what in-sample tuning reports.
- **keyword grep** (the baseline): a unit maps to every obligation one of whose keywords or test-rule terms
  occurs, as a whole-word phrase, in the unit's own source lines.

Pooled figures add up the pairs of all suites (micro average).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from poetkb import store  # noqa: E402
from poetkb.catalog import load_catalog  # noqa: E402
from poetkb.kb import KnowledgeBase  # noqa: E402
from poetkb.learn import mapping  # noqa: E402
from poetkb.learn.runner import learn  # noqa: E402
from poetkb.text import has_phrase, normalise  # noqa: E402

LABELS = ROOT / "tests" / "fixtures" / "learn" / "labels"


def split_of(source: str, file: str, test: str | None) -> str:
    """'holdout' for about a third of the units (by a hash of their id), else 'tune'."""
    digest = hashlib.sha1(f"{source}:{file}::{test}".encode()).digest()
    return "holdout" if digest[0] % 3 == 0 else "tune"


def load_labels(path: Path) -> dict[tuple[str, str | None], set[str]]:
    """(file, test) -> the obligations a label file says the unit exercises (empty for `none`)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    labels: dict[tuple[str, str | None], set[str]] = {}
    for unit in data["units"]:
        obligations = unit["obligations"]
        labels[(unit["file"], unit.get("test"))] = set() if obligations in ("none", None) else set(obligations)
    return labels


def label_style(path: Path) -> str:
    """The suite's style as its label file records it (pytest, unittest, script, data), else 'pytest'."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return str(data.get("style", "pytest"))


def scratch_kb(workdir: Path) -> KnowledgeBase:
    """A knowledge base from this checkout's catalog, minus the committed learned knowledge."""
    catalog = workdir / "catalog"
    for part in ("obligations", "knowledge", "mappings"):
        shutil.copytree(ROOT / part, catalog / part, ignore=shutil.ignore_patterns("learned"))
    target = workdir / "kb.sqlite"
    store.build(load_catalog(catalog), target, source=str(catalog))
    return KnowledgeBase(target)



#: Threshold choice in leave-one-suite-out: the highest recall whose pooled precision reaches this.
TARGET_PRECISION = 0.85
#: The thresholds tried.
GRID = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


class Score:
    """Counts of correct, wrong and missed (unit, obligation) pairs."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0
        self.units = 0

    def add(self, expected: set[str], predicted: set[str]) -> None:
        self.units += 1
        self.tp += len(expected & predicted)
        self.fp += len(predicted - expected)
        self.fn += len(expected - predicted)

    def merge(self, other: Score) -> None:
        self.tp, self.fp, self.fn = self.tp + other.tp, self.fp + other.fp, self.fn + other.fn
        self.units += other.units

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def pr(self) -> str:
        return f"{self.precision:.2f} / {self.recall:.2f}"

    def line(self, name: str) -> str:
        return (f"{name:<16} units {self.units:>4}  pairs {self.tp + self.fn:>4}  precision {self.precision:.3f}  "
                f"recall {self.recall:.3f}  (tp {self.tp}, fp {self.fp}, fn {self.fn})")


@dataclass
class UnitResult:
    """One labelled unit: what it exercises, what the mapper scored (obligation -> confidence), what grep finds."""

    suite: str
    key: tuple[str, str | None]
    expected: set[str]
    scored: dict[str, float] = field(default_factory=dict)
    baseline: set[str] = field(default_factory=set)
    reasons: dict[str, list[str]] = field(default_factory=dict)


def predict(scored: dict[str, float], threshold: float, limit: int = mapping.MAX_OBLIGATIONS) -> set[str]:
    """The obligations mapped at a threshold: at least that confident, the most confident `limit`."""
    kept = sorted(((c, oid) for oid, c in scored.items() if c >= threshold), key=lambda t: (-t[0], t[1]))
    return {oid for _, oid in kept[:limit]}


def score_at(units: list[UnitResult], threshold: float) -> Score:
    score = Score()
    for unit in units:
        score.add(unit.expected, predict(unit.scored, threshold))
    return score


def choose_threshold(units: list[UnitResult], grid: tuple[float, ...] = GRID,
                     target: float = TARGET_PRECISION) -> float:
    """The threshold with the highest recall at precision >= target on these units (else the best F1)."""
    scores = [(t, score_at(units, t)) for t in grid]
    good = [(s.recall, s.precision, t) for t, s in scores if s.precision >= target]
    if good:
        return max(good)[2]
    return max((s.f1, t) for t, s in scores)[1]


def leave_one_suite_out(results: dict[str, list[UnitResult]]) -> dict[str, tuple[float, Score]]:
    """Per suite: the threshold chosen on the other suites' labels, and the suite's score at it."""
    out: dict[str, tuple[float, Score]] = {}
    for held in sorted(results):
        others = [u for name, units in results.items() if name != held for u in units]
        threshold = choose_threshold(others) if others else mapping.MAP_THRESHOLD
        out[held] = (threshold, score_at(results[held], threshold))
    return out


def grep_terms(kb: KnowledgeBase) -> dict[str, list[str]]:
    """Obligation -> its keywords and the terms of the test rules that point at it, normalised."""
    terms: dict[str, set[str]] = {}
    for ob in kb.obligations():
        terms.setdefault(ob.id, set()).update(normalise(k) for k in ob.keywords)
    for rule in kb.rules(kind="test_pattern"):
        for oid in rule.obligations:
            terms.setdefault(oid, set()).update(normalise(t) for t in rule.terms)
    return {oid: sorted(t for t in found if t) for oid, found in terms.items()}


def grep_baseline(source: str, terms: dict[str, list[str]]) -> set[str]:
    """Every obligation one of whose terms occurs in the source text as a whole-word phrase."""
    padded = f" {normalise(source)} "
    return {oid for oid, phrases in terms.items() if any(has_phrase(padded, p) for p in phrases)}


def unit_source(root: Path, file: str, line: int, end_line: int, cache: dict[str, list[str]]) -> str:
    if file not in cache:
        try:
            cache[file] = (root / file).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            cache[file] = []
    return "\n".join(cache[file][max(line - 1, 0):end_line])


def mine_suite(kb: KnowledgeBase, name: str, path: Path, labels: dict[tuple[str, str | None], set[str]],
               terms: dict[str, list[str]], workers: int | None) -> list[UnitResult]:
    """Mine a suite and collect, per labelled unit, the mapper's scores and the grep baseline."""
    report = learn(kb, [path], source=name, workers=workers, store=False, write_file=False)
    mined = {(p.file, p.test): p for p in report.patterns}
    sources: dict[str, list[str]] = {}
    results = []
    for key, expected in sorted(labels.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        pattern = mined.get(key)
        if pattern is None:
            print(f"warning: {name}: labelled unit {key[0]}::{key[1]} was not mined", file=sys.stderr)
            continue
        matches = [*pattern.obligations, *pattern.candidates]
        unit = UnitResult(name, key, expected, {m.id: m.confidence for m in matches},
                          grep_baseline(unit_source(path, pattern.file, pattern.line, pattern.end_line, sources),
                                        terms),
                          {m.id: m.reasons for m in matches})
        results.append(unit)
    return results


def table(results: dict[str, list[UnitResult]], styles: dict[str, str]) -> list[str]:
    """The headline table: per suite and pooled, leave-one-suite-out, as shipped, and the keyword grep."""
    loso = leave_one_suite_out(results)
    rows = [f"{'suite':<16} {'style':<8} {'units':>5} {'pairs':>5}   {'LOSO P / R':<12} {'thr':>4}   "
            f"{'shipped P / R':<13}   {'grep P / R':<11}"]
    pooled = {k: Score() for k in ("loso", "shipped", "grep")}
    by_style: dict[str, dict[str, Score]] = {}
    for name in sorted(results):
        threshold, held = loso[name]
        shipped = score_at(results[name], mapping.MAP_THRESHOLD)
        grep = Score()
        for unit in results[name]:
            grep.add(unit.expected, unit.baseline)
        style = styles.get(name, "pytest")
        for kind, score in (("loso", held), ("shipped", shipped), ("grep", grep)):
            pooled[kind].merge(score)
            by_style.setdefault(style, {k: Score() for k in pooled})[kind].merge(score)
        rows.append(f"{name:<16} {style:<8} {held.units:>5} {held.tp + held.fn:>5}   {held.pr():<12} "
                    f"{threshold:>4.2f}   {shipped.pr():<13}   {grep.pr():<11}")
    for style, scores in sorted(by_style.items()):
        rows.append(f"{'style ' + style:<16} {'':<8} {scores['loso'].units:>5} "
                    f"{scores['loso'].tp + scores['loso'].fn:>5}   {scores['loso'].pr():<12} {'':>4}   "
                    f"{scores['shipped'].pr():<13}   {scores['grep'].pr():<11}")
    rows.append(f"{'pooled':<16} {'':<8} {pooled['loso'].units:>5} {pooled['loso'].tp + pooled['loso'].fn:>5}   "
                f"{pooled['loso'].pr():<12} {'':>4}   {pooled['shipped'].pr():<13}   {pooled['grep'].pr():<11}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="+", help="NAME=PATH or PATH of a checked-out suite with a label file")
    parser.add_argument("--labels", type=Path, default=LABELS, help="directory of <name>.yaml label files")
    parser.add_argument("--errors", choices=["loso", "shipped", "grep"],
                        help="list the wrong or missed mappings (of the leave-one-suite-out or shipped mapper, "
                             "or of the grep baseline)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--write-learned", type=Path, metavar="DIR",
                        help="also write each suite's mapped units to DIR/<name>.json (how knowledge/learned/ is made)")
    parser.add_argument("--sweep", action="store_true", help="also print pooled precision and recall per threshold")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the per-unit results as JSON")
    args = parser.parse_args()

    results: dict[str, list[UnitResult]] = {}
    styles: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        kb = scratch_kb(Path(tmp))
        terms = grep_terms(kb)
        for spec in args.suites:
            name, _, path = spec.rpartition("=") if "=" in spec else (Path(spec).name, "", spec)
            label_file = args.labels / f"{name}.yaml"
            if not label_file.is_file():
                print(f"skip {name}: no label file {label_file}", file=sys.stderr)
                continue
            if args.write_learned:
                learn(kb, [Path(path)], source=name, workers=args.workers, store=False, out_dir=args.write_learned,
                      mapped_only=True)
            # every confidence from the lowest threshold tried is needed to choose thresholds
            saved = mapping.CANDIDATE_THRESHOLD, mapping.MAX_CANDIDATES
            mapping.CANDIDATE_THRESHOLD, mapping.MAX_CANDIDATES = min(GRID), 8
            try:
                results[name] = mine_suite(kb, name, Path(path), load_labels(label_file), terms, args.workers)
            finally:
                mapping.CANDIDATE_THRESHOLD, mapping.MAX_CANDIDATES = saved
            styles[name] = label_style(label_file)
        kb.close()

    print("learn mapping quality, pairs of (unit, obligation): precision / recall")
    print(f"LOSO: threshold chosen on the other suites (highest recall at P >= {TARGET_PRECISION}); "
          f"shipped: threshold {mapping.MAP_THRESHOLD}; grep: keyword baseline")
    print("\n".join(table(results, styles)))
    everything = [u for units in results.values() for u in units]
    per_obligation: dict[str, Score] = {}
    for unit in everything:
        predicted = predict(unit.scored, mapping.MAP_THRESHOLD)
        for oid in unit.expected | predicted:
            per_obligation.setdefault(oid, Score()).add({oid} & unit.expected, {oid} & predicted)
    print("\nper obligation, as shipped:")
    counts = Counter({oid: s.tp + s.fn for oid, s in per_obligation.items()})
    for oid, _ in counts.most_common():
        print(per_obligation[oid].line(oid[:16]), oid)
    if args.sweep:
        print()
        for t in GRID:
            print(f"threshold {t:.2f}:  pooled P {score_at(everything, t).precision:.3f} "
                  f"R {score_at(everything, t).recall:.3f}")
    if args.errors:
        loso = leave_one_suite_out(results)
        print()
        for unit in everything:
            if args.errors == "grep":
                predicted = unit.baseline
            else:
                threshold = loso[unit.suite][0] if args.errors == "loso" else mapping.MAP_THRESHOLD
                predicted = predict(unit.scored, threshold)
            where = f"{unit.suite}:{unit.key[0]}::{unit.key[1]}"
            for oid in sorted(predicted - unit.expected):
                print(f"FP {where} -> {oid}  {unit.reasons.get(oid, [])}")
            for oid in sorted(unit.expected - predicted):
                print(f"FN {where} -> {oid}  (scored {unit.scored.get(oid, 0.0):.2f})")
    if args.json:
        args.json.write_text(json.dumps([
            {"suite": u.suite, "file": u.key[0], "test": u.key[1], "expected": sorted(u.expected),
             "scored": u.scored, "baseline": sorted(u.baseline)} for u in everything], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
