"""Precision and recall of `poet learn` against the labelled test units in tests/fixtures/learn/labels/.

Usage (the suites must already be checked out; this script fetches nothing):

    .venv/bin/python benchmarks/learn_quality.py httpx=/tmp/suites/httpx urllib3=/tmp/suites/urllib3 ...
    .venv/bin/python benchmarks/learn_quality.py /tmp/suites/*  --errors

Each argument is NAME=PATH or a PATH whose directory name is the label file's name. With
--write-learned knowledge/learned it also writes the committed mined knowledge of those suites (mapped units
only, so the files stay small) from the same scratch knowledge base, so they do not depend on each other.

The mapping runs against a temporary knowledge base built from this checkout's catalog *without*
knowledge/learned, so the committed mined knowledge of the same suites cannot leak into the evaluation.

Scoring is over (unit, obligation) pairs: precision = correct mapped pairs / mapped pairs, recall =
correct mapped pairs / labelled pairs, on the labelled units only. Units are split deterministically
into a tuning part and a held-out part (a hash of the unit's id; about a third held out): rules and
thresholds were tuned looking at the tuning part only, and both parts are reported.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from poetkb import store  # noqa: E402
from poetkb.catalog import load_catalog  # noqa: E402
from poetkb.kb import KnowledgeBase  # noqa: E402
from poetkb.learn import mapping  # noqa: E402
from poetkb.learn.runner import learn  # noqa: E402

LABELS = ROOT / "tests" / "fixtures" / "learn" / "labels"


def split_of(source: str, file: str, test: str | None) -> str:
    """'holdout' for about a third of the units (by a hash of their id), else 'tune'."""
    digest = hashlib.sha1(f"{source}:{file}::{test}".encode()).digest()
    return "holdout" if digest[0] % 3 == 0 else "tune"


def load_labels(path: Path) -> dict[tuple[str, str | None], set[str]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    labels: dict[tuple[str, str | None], set[str]] = {}
    for unit in data["units"]:
        obligations = unit["obligations"]
        labels[(unit["file"], unit.get("test"))] = set() if obligations in ("none", None) else set(obligations)
    return labels


def scratch_kb(workdir: Path) -> KnowledgeBase:
    """A knowledge base from this checkout's catalog, minus the committed learned knowledge."""
    catalog = workdir / "catalog"
    for part in ("obligations", "knowledge/packs", "mappings"):
        shutil.copytree(ROOT / part, catalog / part)
    target = workdir / "kb.sqlite"
    store.build(load_catalog(catalog), target, source=str(catalog))
    return KnowledgeBase(target)


class Score:
    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0
        self.units = 0

    def add(self, expected: set[str], predicted: set[str]) -> None:
        self.units += 1
        self.tp += len(expected & predicted)
        self.fp += len(predicted - expected)
        self.fn += len(expected - predicted)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    def line(self, name: str) -> str:
        return (f"{name:<16} units {self.units:>4}  pairs {self.tp + self.fn:>4}  precision {self.precision:.3f}  "
                f"recall {self.recall:.3f}  (tp {self.tp}, fp {self.fp}, fn {self.fn})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="+", help="NAME=PATH or PATH of a checked-out suite with a label file")
    parser.add_argument("--labels", type=Path, default=LABELS, help="directory of <name>.yaml label files")
    parser.add_argument("--errors", choices=["tune", "holdout", "all"],
                        help="list the wrong or missed mappings of this part (tune while looking at 'tune' only)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--write-learned", type=Path, metavar="DIR",
                        help="also write each suite's mapped units to DIR/<name>.json (how knowledge/learned/ is made)")
    parser.add_argument("--sweep", action="store_true",
                        help="also print precision and recall at other map thresholds (calibration)")
    args = parser.parse_args()

    totals = {"all": Score(), "tune": Score(), "holdout": Score()}
    reviewed = {"all": Score(), "tune": Score(), "holdout": Score()}
    per_suite: dict[str, Score] = {}
    per_obligation: dict[str, Score] = {}
    errors: list[str] = []
    thresholds = [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8]
    sweep = {(t, part): Score() for t in thresholds for part in ("tune", "holdout")}
    chosen = mapping.MAP_THRESHOLD
    if args.sweep:
        mapping.CANDIDATE_THRESHOLD = min(thresholds)
    with tempfile.TemporaryDirectory() as tmp:
        kb = scratch_kb(Path(tmp))
        for spec in args.suites:
            name, _, path = spec.rpartition("=") if "=" in spec else (Path(spec).name, "", spec)
            label_file = args.labels / f"{name}.yaml"
            if not label_file.is_file():
                print(f"skip {name}: no label file {label_file}", file=sys.stderr)
                continue
            labels = load_labels(label_file)
            if args.write_learned:
                learn(kb, [Path(path)], source=name, workers=args.workers, store=False, out_dir=args.write_learned,
                      mapped_only=True, role="reference")  # public suites: examples, not coverage
            report = learn(kb, [Path(path)], source=name, workers=args.workers, store=False, write_file=False)
            mined = {(p.file, p.test): p for p in report.patterns}
            score = per_suite.setdefault(name, Score())
            for key, expected in sorted(labels.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
                pattern = mined.get(key)
                if pattern is None:
                    print(f"warning: {name}: labelled unit {key[0]}::{key[1]} was not mined", file=sys.stderr)
                    continue
                for t in thresholds if args.sweep else ():
                    sweep[(t, split_of(name, *key))].add(
                        expected, {m.id for m in [*pattern.obligations, *pattern.candidates] if m.confidence >= t})
                predicted = {m.id for m in pattern.obligations if m.confidence >= chosen}
                proposed = predicted | {c.id for c in pattern.candidates}
                for bucket in (reviewed["all"], reviewed[split_of(name, *key)]):
                    bucket.add(expected, proposed)
                for bucket in (totals["all"], totals[split_of(name, *key)], score):
                    bucket.add(expected, predicted)
                for oid in expected | predicted:
                    per_obligation.setdefault(oid, Score()).add({oid} & expected, {oid} & predicted)
                shown = args.errors in ("all", split_of(name, *key))
                for oid in sorted(predicted - expected) if shown else ():
                    errors.append(f"FP {name}:{key[0]}::{key[1]} -> {oid}  "
                                  f"{next(m.reasons for m in pattern.obligations if m.id == oid)}")
                for oid in sorted(expected - predicted) if shown else ():
                    errors.append(f"FN {name}:{key[0]}::{key[1]} -> {oid}")
        kb.close()

    print("learn mapping quality (pairs of unit and obligation)")
    for name in ("all", "tune", "holdout"):
        print(totals[name].line(name))
    print("mapped + candidates (what `poet learn review` offers a person):")
    for name in ("all", "tune", "holdout"):
        print(reviewed[name].line(name))
    print()
    for name, score in sorted(per_suite.items()):
        print(score.line(name))
    print()
    counts = Counter({oid: s.tp + s.fn for oid, s in per_obligation.items()})
    for oid, _ in counts.most_common():
        print(per_obligation[oid].line(oid[:16]), oid)
    if args.sweep:
        print()
        for t in thresholds:
            print(f"threshold {t:.2f}:  " + "   ".join(
                f"{part} P {sweep[(t, part)].precision:.3f} R {sweep[(t, part)].recall:.3f}"
                for part in ("tune", "holdout")))
    if args.errors:
        print()
        print("\n".join(errors))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
