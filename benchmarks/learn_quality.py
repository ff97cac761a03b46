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
  occurs, as a whole-word phrase, in the unit's own source lines or in the data files it names (replay, gold and
  fixture files: where a data-driven suite keeps its behaviour).

Pooled figures add up the pairs of all suites (micro average).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from poetkb import store  # noqa: E402
from poetkb.catalog import load_catalog  # noqa: E402
from poetkb.kb import KnowledgeBase  # noqa: E402
from poetkb.learn import mapping, training  # noqa: E402
from poetkb.learn.features import MinedUnit  # noqa: E402
from poetkb.learn.runner import learn  # noqa: E402
from poetkb.text import has_phrase, normalise  # noqa: E402

LABELS = ROOT / "tests" / "fixtures" / "learn" / "labels"


def split_of(source: str, file: str, test: str | None) -> str:
    """'holdout' for about a third of the units (by a hash of their id), else 'tune'."""
    digest = hashlib.sha1(f"{source}:{file}::{test}".encode()).digest()
    return "holdout" if digest[0] % 3 == 0 else "tune"


def load_labels(path: Path) -> dict[tuple[str, str | None], set[str]]:
    """(file, test) -> the obligations a label file says the unit exercises (empty for `none`)."""
    return training.load_label_file(path).labels


def scratch_kb(workdir: Path) -> KnowledgeBase:
    """A knowledge base from this checkout's catalog, minus the committed learned knowledge."""
    catalog = workdir / "catalog"
    for part in ("obligations", "knowledge", "mappings"):
        shutil.copytree(ROOT / part, catalog / part, ignore=shutil.ignore_patterns("learned"))
    target = workdir / "kb.sqlite"
    store.build(load_catalog(catalog), target, source=str(catalog))
    return KnowledgeBase(target)



# The scoring, training and leave-one-suite-out code is poetkb's own (`poet learn train-model` uses it too).
TARGET_PRECISION, GRID = training.TARGET_PRECISION, training.GRID
Score, UnitResult, MinedSuite, Loso = training.Score, training.UnitResult, training.MinedSuite, training.Loso
predict, score_at, choose_threshold = training.predict, training.score_at, training.choose_threshold
featurise, results_with, train_on = training.featurise, training.results_with, training.train_on
leave_one_suite_out = training.leave_one_suite_out


def grep_terms(kb: KnowledgeBase) -> dict[str, list[str]]:
    """Obligation -> its keywords and the terms of the test rules that point at it, normalised."""
    return mapping.obligation_terms(kb.obligations(), kb.rules(kind="test_pattern"))


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
               terms: dict[str, list[str]], workers: int | None) -> MinedSuite:
    """Mine a suite once (the real `poet learn` pipeline up to the units), map it with the rules only, and add the
    grep baseline of each labelled unit."""
    suite = training.mine_labelled(kb, name, path, labels, workers)
    for file, test in suite.missing:
        print(f"warning: {name}: labelled unit {file}::{test} was not mined", file=sys.stderr)
    sources: dict[str, list[str]] = {}
    for i, _, _ in suite.labelled:
        u = suite.units[i]
        # the unit's own source lines and the text of the data files it names (in a data-driven suite the
        # behaviour lives there; the grep sees what the mapper sees)
        suite.baseline[i] = grep_baseline(unit_source(path, u.file, u.line, u.end_line, sources) + "\n"
                                          + u.fields.get("data", ""), terms)
    return suite


COLUMNS = ("mapped", "review_rules", "review", "score", "shipped", "grep")


def load_reused(path: Path) -> MinedSuite | None:
    """A suite kept by an earlier ``--reuse`` run, or None when it is of an older shape (mined again then)."""
    try:
        suite = pickle.loads(path.read_bytes())
    except (pickle.UnpicklingError, AttributeError, EOFError, TypeError, ValueError):
        return None
    if not isinstance(suite, MinedSuite) or not all(isinstance(u, MinedUnit) for u in suite.units):
        return None  # e.g. units kept as dicts before they were MinedUnit records
    return suite


#: The table row pooling the suites no rule was written against (``unseen_by_rules`` in their label files).
UNSEEN_ROW = "unseen by the rules"


def table_rows(suites: dict[str, MinedSuite], scored: Loso, rules: Loso, styles: dict[str, str],
               unseen: frozenset[str] = frozenset(),
               ) -> list[tuple[str, str, dict[str, Score], float | None, float | None]]:
    """(name, style, scores per column, rules' LOSO threshold, combiner's LOSO threshold) per suite, then per
    style, the suites in ``unseen`` pooled (labelled after the rules last changed), and all pooled (thresholds
    None).

    mapped: the rules, threshold chosen on the other suites (what `poet learn` maps: the combiner only proposes);
    review: mapped + candidates (>= CANDIDATE_THRESHOLD), rules only, then with the combiner trained on the other
    suites proposing; score: the combiner's probability as the confidence (one obligation per unit, as
    `poet learn` scores), threshold chosen on the other suites; shipped: the rules at the shipped threshold,
    tuned looking at every suite; grep: the keyword baseline.
    """
    out: list[tuple[str, str, dict[str, Score], float | None, float | None]] = []
    pooled = {k: Score() for k in COLUMNS}
    fresh = {k: Score() for k in COLUMNS}
    by_style: dict[str, dict[str, Score]] = {}
    candidate = mapping.CANDIDATE_THRESHOLD
    for name in sorted(suites):
        proposed = results_with(suites[name], scored.models[name], "propose")
        scores = {
            "mapped": score_at(rules.results[name], rules.threshold[name]),
            "review_rules": score_at(rules.results[name], candidate),
            "review": score_at(proposed, candidate),
            "score": score_at(scored.results[name], scored.threshold[name]),
            "shipped": score_at(rules.results[name], mapping.MAP_THRESHOLD),
            "grep": Score(),
        }
        for unit in rules.results[name]:
            scores["grep"].add(unit.expected, unit.baseline)
        style = styles.get(name, "pytest")
        for kind in COLUMNS:
            pooled[kind].merge(scores[kind])
            by_style.setdefault(style, {k: Score() for k in COLUMNS})[kind].merge(scores[kind])
            if name in unseen:
                fresh[kind].merge(scores[kind])
        out.append((name, style, scores, rules.threshold[name], scored.threshold[name]))
    for style, sc in sorted(by_style.items()):
        out.append((f"style {style}", "", sc, None, None))
    if unseen & set(suites):
        out.append((UNSEEN_ROW, "", fresh, None, None))
    out.append(("pooled", "", pooled, None, None))
    return out


#: Issue 11's targets, leave-one-suite-out: pooled precision and recall, the recall of the script-style and
#: data-driven suites, and how far below the keyword grep's recall a suite's recall may fall.
TARGETS = {"precision": 0.90, "recall": 0.80, "style_recall": 0.75, "grep_margin": 0.05}


def targets(suites: dict[str, MinedSuite], scored: Loso, rules: Loso, styles: dict[str, str]) -> list[str]:
    """Which of the issue's targets what `poet learn` maps (the rules, LOSO thresholds) meets, and by how much
    it misses the others."""
    rows = table_rows(suites, scored, rules, styles)
    by_name = {name: sc for name, _, sc, _, _ in rows}
    pooled = by_name["pooled"]["mapped"]
    out = ["targets (mapped, leave-one-suite-out):",
           f"  pooled precision {pooled.precision:.2f} (>= {TARGETS['precision']:.2f}: "
           f"{'met' if pooled.precision >= TARGETS['precision'] else 'not met'}), recall {pooled.recall:.2f} "
           f"(>= {TARGETS['recall']:.2f}: {'met' if pooled.recall >= TARGETS['recall'] else 'not met'})"]
    for style in ("script", "data"):
        sc = by_name.get(f"style {style}")
        if sc is not None:
            r = sc["mapped"].recall
            out.append(f"  {style} recall {r:.2f} over {sc['mapped'].tp + sc['mapped'].fn} pairs "
                       f"(>= {TARGETS['style_recall']:.2f}: {'met' if r >= TARGETS['style_recall'] else 'not met'})")
    below = [f"{name} {sc['mapped'].recall:.2f} < {sc['grep'].recall:.2f}"
             for name, style, sc, _, _ in rows if style
             and sc["mapped"].recall < sc["grep"].recall - TARGETS["grep_margin"]]
    out.append(f"  suites whose recall is more than {TARGETS['grep_margin']:.2f} below the grep's: "
               f"{len(below)} of {len(suites)}" + (f" ({', '.join(below)})" if below else ""))
    return out


def table(suites: dict[str, MinedSuite], scored: Loso, rules: Loso, styles: dict[str, str],
          unseen: frozenset[str] = frozenset()) -> list[str]:
    """The headline table as text: per suite, per style and pooled (columns: see :func:`table_rows`)."""
    head = (f"{'suite':<19} {'style':<8} {'units':>5} {'pairs':>5}  {'mapped LOSO':<11} {'thr':>4}  "
            f"{'review rules':<12}  {'review +learned':<15}  {'score LOSO':<11} {'thr':>4}  {'shipped':<11}  "
            f"{'grep':<11}")
    rows = [head]
    for name, style, sc, rthr, sthr in table_rows(suites, scored, rules, styles, unseen):
        m = sc["mapped"]
        rt = f"{rthr:>4.2f}" if rthr is not None else f"{'':>4}"
        st = f"{sthr:>4.2f}" if sthr is not None else f"{'':>4}"
        rows.append(f"{name:<19} {style:<8} {m.units:>5} {m.tp + m.fn:>5}  {m.pr():<11} {rt}  "
                    f"{sc['review_rules'].pr():<12}  {sc['review'].pr():<15}  {sc['score'].pr():<11} "
                    f"{st}  {sc['shipped'].pr():<11}  {sc['grep'].pr():<11}")
    return rows


def markdown(suites: dict[str, MinedSuite], scored: Loso, rules: Loso, styles: dict[str, str],
             unseen: frozenset[str] = frozenset()) -> list[str]:
    """The same table in Markdown, as docs/learn.md shows it (``--update-doc``)."""
    rows = ["| suite | style | units | pairs | **mapped, LOSO** | thr | review, rules | review, + learned | "
            "learned score, LOSO | thr | shipped (0.65) | **grep** |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, style, sc, rthr, sthr in table_rows(suites, scored, rules, styles, unseen):
        m = sc["mapped"]
        label = (f"**{name}**" if name == "pooled" else f"*{name[6:]}*" if name.startswith("style ")
                 else f"*{name}*" if name == UNSEEN_ROW else name)
        strong = name == "pooled"
        cell = (lambda v: f"**{v}**") if strong else (lambda v: v)
        rows.append(f"| {label} | {style} | {m.units} | {m.tp + m.fn} | {cell(m.pr())} | "
                    f"{'' if rthr is None else f'{rthr:.2f}'} | {sc['review_rules'].pr()} | {sc['review'].pr()} | "
                    f"{sc['score'].pr()} | {'' if sthr is None else f'{sthr:.2f}'} | {sc['shipped'].pr()} | "
                    f"{cell(sc['grep'].pr())} |")
    return rows


def negatives(suites: dict[str, MinedSuite]) -> list[str]:
    """How many labelled units are *realistic negatives*: labelled `none`, yet the keyword grep maps them to an
    obligation (a test of a neighbouring feature that names a header, a timeout, a cache...), per suite and
    pooled. The issue asks for about a third of the labelled units."""
    rows = ["realistic negatives (labelled none, mapped by the keyword grep) / labelled units:"]
    total = realistic = 0
    for name in sorted(suites):
        suite = suites[name]
        count = sum(1 for i, _, expected in suite.labelled if not expected and suite.baseline[i])
        size = len(suite.labelled)
        rows.append(f"  {name + ':':<17} {count:>4} / {size:<4} ({count / max(size, 1):.0%})")
        total += len(suite.labelled)
        realistic += count
    rows.append(f"  {'pooled:':<17} {realistic:>4} / {total:<4} ({realistic / max(total, 1):.0%})")
    return rows


def evidence_ceiling(suites: dict[str, MinedSuite], styles: dict[str, str]) -> list[str]:
    """Per style: how many labelled pairs have any evidence at all (a rule, one of the obligation's terms in a
    field, or the unit's most similar obligation: the pairs the learned combiner scores). A pair without any
    cannot be mapped by anything built on this evidence, so this is the recall ceiling of the mapper as it is."""
    rows = ["labelled pairs with any evidence (the recall ceiling), per style:"]
    totals: dict[str, list[int]] = {}
    for name in sorted(suites):
        suite = suites[name]
        style = styles.get(name, "pytest")
        for i, _, expected in suite.labelled:
            seen = totals.setdefault(style, [0, 0])
            seen[0] += len(expected & suite.vectors[i].keys())
            seen[1] += len(expected)
    pooled = [sum(v[0] for v in totals.values()), sum(v[1] for v in totals.values())]
    for style, (found, total) in [*sorted(totals.items()), ("pooled", pooled)]:
        rows.append(f"  {style + ':':<11} {found:>4} / {total:<4} ({found / max(total, 1):.2f})")
    return rows


def calibration(loso: Loso, suites: dict[str, MinedSuite], bins: int = 5) -> list[str]:
    """How well the learned probabilities are calibrated leave-one-suite-out: per probability bin, the pairs,
    their mean probability and the share of them that are labelled (each suite scored by a model that did not
    see it)."""
    seen: list[tuple[float, int]] = []
    for name, suite in suites.items():
        model = loso.models.get(name)
        if model is None:
            continue
        for i, _, expected in suite.labelled:
            seen.extend((model.probability(v), 1 if oid in expected else 0) for oid, v in suite.vectors[i].items())
    rows = ["calibration of the learned probability, LOSO (bin: pairs, mean probability, labelled share):"]
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [(p, y) for p, y in seen if low <= p < high or (b == bins - 1 and p == 1.0)]
        if inside:
            mean = sum(p for p, _ in inside) / len(inside)
            share = sum(y for _, y in inside) / len(inside)
            rows.append(f"  {low:.1f}-{high:.1f}: {len(inside):>5} pairs, mean p {mean:.2f}, labelled {share:.2f}")
    return rows


BEGIN_MARK = "<!-- learn_quality table: begin (benchmarks/learn_quality.py --update-doc) -->"
END_MARK = "<!-- learn_quality table: end -->"


def update_doc(path: Path, rows: list[str]) -> None:
    """Replace the table between the markers in ``path`` (the markers must be there)."""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(BEGIN_MARK), text.find(END_MARK)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: the markers {BEGIN_MARK!r} and {END_MARK!r} are missing; add them where "
                         "the table goes")
    path.write_text(text[:start + len(BEGIN_MARK)] + "\n" + "\n".join(rows) + "\n" + text[end:], encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="+", help="NAME=PATH or PATH of a checked-out suite with a label file")
    parser.add_argument("--labels", type=Path, default=LABELS, help="directory of <name>.yaml label files")
    parser.add_argument("--errors", choices=["loso", "shipped", "grep"],
                        help="list the wrong or missed mappings (of the rules at the leave-one-suite-out or the "
                             "shipped threshold, or of the grep baseline)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--write-learned", type=Path, metavar="DIR",
                        help="also write each suite's mapped units to DIR/<name>.json (how knowledge/learned/ is made)")
    parser.add_argument("--sweep", action="store_true", help="also print pooled precision and recall per threshold")
    parser.add_argument("--reuse", type=Path, metavar="DIR",
                        help="keep each mined suite (units and rule matches) in DIR and reuse it on the next run "
                             "(for iterating on the learned model; delete DIR after changing rules or extraction)")
    parser.add_argument("--write-model", type=Path, metavar="FILE",
                        help="write the learned model trained on every given suite (poetkb/learn/learned_model.json)")
    parser.add_argument("--update-doc", type=Path, metavar="FILE",
                        help="rewrite the Markdown table between the learn_quality markers of FILE (docs/learn.md)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the per-unit results as JSON")
    args = parser.parse_args()

    suites: dict[str, MinedSuite] = {}
    styles: dict[str, str] = {}
    unseen: set[str] = set()  # suites labelled after the rules last changed (unseen_by_rules)
    with tempfile.TemporaryDirectory() as tmp:
        kb = scratch_kb(Path(tmp))
        terms = grep_terms(kb)
        reuse_mapper = mapping.Mapper(kb.obligations(), kb.rules(), kb.failure_modes(), model=None)
        for spec in args.suites:
            name, _, path = spec.rpartition("=") if "=" in spec else (Path(spec).name, "", spec)
            label_file = args.labels / f"{name}.yaml"
            if not label_file.is_file():
                print(f"skip {name}: no label file {label_file}", file=sys.stderr)
                continue
            label = training.load_label_file(label_file)  # read once: labels, style, repository, unseen
            if args.write_learned:
                learn(kb, [Path(path)], source=name, workers=args.workers, store=False, out_dir=args.write_learned,
                      mapped_only=True, role="reference",  # public suites: examples, not coverage
                      repository=label.repository)
            cached = args.reuse / f"{name}.pickle" if args.reuse else None
            reused = load_reused(cached) if cached is not None and cached.is_file() else None
            if reused is not None:
                suites[name] = reused
                suites[name].vectors = featurise(reuse_mapper, suites[name].units, suites[name].rule_rows)
            else:
                suites[name] = mine_suite(kb, name, Path(path), label.labels, terms, args.workers)
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    cached.write_bytes(pickle.dumps(suites[name]))
            styles[name] = label.style
            if label.unseen_by_rules:
                unseen.add(name)
        kb.close()

    results = {name: results_with(suite, None) for name, suite in suites.items()}
    loso = leave_one_suite_out(suites, use_model=True)
    rules_loso = leave_one_suite_out(suites, use_model=False)
    model = train_on(list(suites.values()))
    if args.write_model and model is not None:
        # the shipped model's threshold: chosen on every suite's leave-one-suite-out scores (each suite scored
        # by a model that did not see it), as the benchmark chooses one per held-out suite
        model.threshold = choose_threshold([u for units in loso.results.values() for u in units])
        args.write_model.write_text(model.to_json(), encoding="utf-8")
        print(f"wrote {args.write_model}: trained on {model.pairs} pairs of {len(suites)} suites, "
              f"threshold {model.threshold:.2f}")
    if args.update_doc:
        update_doc(args.update_doc, markdown(suites, loso, rules_loso, styles, frozenset(unseen)))
        print(f"updated the table in {args.update_doc}")
    print("learn mapping quality, pairs of (unit, obligation): precision / recall")
    print(f"LOSO = leave-one-suite-out: thresholds (highest recall at P >= {TARGET_PRECISION}, else best F1) and the "
          f"learned combiner are fitted on the other suites only. See table() for the columns.")
    print("\n".join(table(suites, loso, rules_loso, styles, frozenset(unseen))))
    print("\n".join(targets(suites, loso, rules_loso, styles)))
    everything = [u for units in results.values() for u in units]
    per_obligation: dict[str, Score] = {}
    for unit in everything:
        predicted = predict(unit.scored, mapping.MAP_THRESHOLD)
        for oid in unit.expected | predicted:
            per_obligation.setdefault(oid, Score()).add({oid} & unit.expected, {oid} & predicted)
    print("\n" + "\n".join(calibration(loso, suites)))
    print("\n" + "\n".join(negatives(suites)))
    print("\n" + "\n".join(evidence_ceiling(suites, styles)))
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
        print()
        listed = [u for units in rules_loso.results.values() for u in units] if args.errors == "loso" else everything
        for unit in listed:
            if args.errors == "grep":
                predicted = unit.baseline
            else:
                threshold = rules_loso.threshold[unit.suite] if args.errors == "loso" else mapping.MAP_THRESHOLD
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
