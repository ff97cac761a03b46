"""Train the learned combiner from labelled suites: the reproducible way the shipped model is made.

``poet learn train-model`` runs :func:`train_model`: each labelled suite (a
checkout, and its label file ``<name>.yaml`` as in ``tests/fixtures/learn/labels/``)
is mined by the real pipeline up to the units (:func:`poetkb.learn.runner.mine_units`),
mapped by the rules alone, and every (labelled unit, obligation) pair with any
evidence becomes a training example (:func:`poetkb.learn.learned.pair_features`,
target 1 when the label names the obligation). The model is a logistic regression
over every suite given (:func:`poetkb.learn.learned.train`).

Its threshold (the probability from which it maps, :attr:`PairModel.threshold`) is
chosen as ``benchmarks/learn_quality.py`` chooses one per held-out suite: leave one
suite out, score each suite with a model trained on the others only, and take the
threshold with the highest pooled recall at precision >= :data:`TARGET_PRECISION`
(else the best F1). Those held-out scores are also what the command reports: the
model's quality on suites it did not see.

Nothing here is fitted when ``poet learn`` runs: the model file is plain data.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from poetkb.errors import InputError
from poetkb.learn import learned, mapping
from poetkb.learn.features import MinedUnit
from poetkb.learn.learned import PairModel
from poetkb.models import ObligationMatch

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge

#: Threshold choice: the highest recall whose pooled precision reaches this.
TARGET_PRECISION = 0.85
#: The thresholds tried.
GRID = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
#: Bound on a label file's size (they are data in the repository, read whole).
MAX_LABEL_BYTES = 4 * 1024 * 1024

Key = tuple[str, str | None]


@dataclass
class LabelFile:
    """One suite's labels: (file, test) -> the obligations the unit exercises (empty: none)."""

    name: str
    path: Path
    labels: dict[Key, set[str]]
    style: str = "pytest"
    repository: str | None = None
    commit: str | None = None
    #: Labelled after the rules in mappings/test_patterns.yaml last changed, blind to the mapper's output: a
    #: suite no rule was written against (its figures measure generalisation without any tuning on it).
    unseen_by_rules: bool = False


def load_label_file(path: Path) -> LabelFile:
    """A label file (``<name>.yaml``: ``units`` of ``{file, test, obligations}``), checked field by field."""
    from poetkb.yamlfile import load_with_lines

    data = load_with_lines(path, limit=MAX_LABEL_BYTES, aliases=False)
    hint = "a label file holds `units:`, a list of {file, test, obligations} (see tests/fixtures/learn/labels)"
    if not isinstance(data, dict) or not isinstance(data.get("units"), list):
        raise InputError("has no `units` list", file=path, field="units", hint=hint)
    labels: dict[Key, set[str]] = {}
    for n, unit in enumerate(data["units"], 1):
        if not isinstance(unit, dict) or not isinstance(unit.get("file"), str):
            raise InputError(f"unit {n} has no `file`", file=path, field=f"units[{n}].file", hint=hint)
        test = unit.get("test")
        obligations = unit.get("obligations")
        if obligations in ("none", None):
            expected: set[str] = set()
        elif isinstance(obligations, list) and all(isinstance(o, str) for o in obligations):
            expected = set(obligations)
        else:
            raise InputError(f"unit {n} ({unit['file']}) has `obligations` that are neither `none` nor a list of "
                             "obligation ids", file=path, field=f"units[{n}].obligations", hint=hint)
        labels[(unit["file"], str(test) if test is not None else None)] = expected
    repository = data.get("repository")
    commit = data.get("commit")
    unseen = data.get("unseen_by_rules", False)
    if not isinstance(unseen, bool):
        raise InputError("`unseen_by_rules` is not true or false", file=path, field="unseen_by_rules", hint=hint)
    return LabelFile(path.stem, path, labels, str(data.get("style", "pytest")),
                     repository if isinstance(repository, str) else None, commit if isinstance(commit, str) else None,
                     unseen)


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
    """One labelled unit: what it exercises, what was scored (obligation -> confidence), what grep finds."""

    suite: str
    key: Key
    expected: set[str]
    scored: dict[str, float] = field(default_factory=dict)
    baseline: set[str] = field(default_factory=set)
    reasons: dict[str, list[str]] = field(default_factory=dict)
    limit: int = mapping.MAX_OBLIGATIONS  # how many obligations of the unit may be mapped


@dataclass
class MinedSuite:
    """A suite mined once: every unit (with its feature fields), the rules' matches, and the labelled units."""

    name: str
    units: list[MinedUnit]
    rule_rows: list[dict[str, tuple[float, list[str]]]]  # per unit: obligation -> (rules' confidence, reasons)
    vectors: list[dict[str, list[float]]]  # per unit: obligation -> learned-combiner features
    labelled: list[tuple[int, Key, set[str]]]  # (unit index, key, expected)
    baseline: dict[int, set[str]]
    needed: list[int]  # labelled units and the methods of labelled classes
    missing: list[Key] = field(default_factory=list)  # labelled units the mining did not find


def predict(scored: dict[str, float], threshold: float, limit: int = mapping.MAX_OBLIGATIONS) -> set[str]:
    """The obligations mapped at a threshold: at least that confident, the most confident `limit`."""
    kept = sorted(((c, oid) for oid, c in scored.items() if c >= threshold), key=lambda t: (-t[0], t[1]))
    return {oid for _, oid in kept[:limit]}


def score_at(units: Sequence[UnitResult], threshold: float) -> Score:
    score = Score()
    for unit in units:
        score.add(unit.expected, predict(unit.scored, threshold, unit.limit))
    return score


def choose_threshold(units: Sequence[UnitResult], grid: tuple[float, ...] = GRID,
                     target: float = TARGET_PRECISION) -> float:
    """The threshold with the highest recall at precision >= target on these units (else the best F1)."""
    scores = [(t, score_at(units, t)) for t in grid]
    good = [(s.recall, s.precision, t) for t, s in scores if s.precision >= target]
    if good:
        return max(good)[2]
    return max((s.f1, t) for t, s in scores)[1]


def featurise(mapper: mapping.Mapper, units: Sequence[MinedUnit],
              rule_rows: Sequence[dict[str, tuple[float, list[str]]]]) -> list[dict[str, list[float]]]:
    """The learned combiner's features of every pair of a suite (as :meth:`Mapper.learned` computes them)."""
    fields = [u.fields for u in units]
    return learned.pair_features([{o: c for o, (c, _) in row.items()} for row in rule_rows],
                                 [mapper.terms.hits(f) for f in fields], [u.file for u in units],
                                 mapper.similarity_rows(fields))


def real_file(root: Path, file: str) -> str:
    """A mined file's path relative to the checkout once links are resolved: a file reached through a directory
    link (mitmproxy's ``docs/src/examples`` -> ``examples``) is mined once, under whichever path discovery met
    first, and its label names it by its real path."""
    try:
        return (root / file).resolve().relative_to(root.resolve()).as_posix()
    except (OSError, ValueError):
        return file


def mine_labelled(kb: Knowledge, name: str, path: Path, labels: dict[Key, set[str]],
                  workers: int | None = None) -> MinedSuite:
    """Mine a suite once (the real pipeline up to the units), then map it with the rules only."""
    from poetkb.learn.runner import mine_units

    units = mine_units(kb, [path], source=name, workers=workers)
    mapper = mapping.Mapper(kb.obligations(), kb.rules(), kb.failure_modes(), model=None)
    fields = [u.fields for u in units]
    rule_rows = [{m.id: (m.confidence, m.reasons) for m in row}
                 for row in mapper.map(fields, groups=[u.file for u in units], floor=0.0)]
    vectors = featurise(mapper, units, rule_rows)
    index: dict[Key, int] = {(u.file, u.test): i for i, u in enumerate(units)}
    index.update({(real, test): i for (file, test), i in list(index.items())
                  if (real := real_file(path, file)) != file and (real, test) not in index})
    labelled, missing = [], []
    for key, expected in sorted(labels.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        i = index.get(key)
        if i is None:
            missing.append(key)
            continue
        labelled.append((i, key, expected))
    classes = {(units[i].file, units[i].test) for i, _, _ in labelled if units[i].kind == "class"}
    needed = sorted({i for i, _, _ in labelled} | {
        j for j, u in enumerate(units)
        if u.test and "." in u.test and (u.file, u.test.rsplit(".", 1)[0]) in classes})
    return MinedSuite(name, units, rule_rows, vectors, labelled, {}, needed, missing)


def results_with(suite: MinedSuite, model: PairModel | None, mode: str = "score") -> list[UnitResult]:
    """Each labelled unit's scores (rules, or with the learned combiner in a mode of
    :func:`poetkb.learn.mapping.learned_confidence`), classes aggregated as ``poet learn`` does."""
    combined: list[list[ObligationMatch]] = [[] for _ in suite.units]
    for i in suite.needed:
        row = suite.rule_rows[i]
        if model is not None:
            # "score": the raw probability (the threshold is chosen on it, and the unit keeps its most probable
            # LEARNED_LIMIT pairs, as `poet learn` does); "propose": as the mapper combines them
            row = {**row, **{oid: (model.probability(v) if mode == "score" else
                                   mapping.learned_confidence(row.get(oid, (0.0, []))[0], model.probability(v), mode),
                                   row.get(oid, (0.0, []))[1]) for oid, v in suite.vectors[i].items()}}
        combined[i] = sorted((ObligationMatch(id=oid, confidence=round(c, 3), reasons=r[:4])
                              for oid, (c, r) in row.items() if c >= min(GRID)),
                             key=lambda m: (-m.confidence, m.id))
    mapped = [[m for m in c if m.confidence >= mapping.MAP_THRESHOLD][:mapping.MAX_OBLIGATIONS] for c in combined]
    aggregated = mapping.aggregate_classes(suite.units, mapped)
    out = []
    for i, key, expected in suite.labelled:
        scored = {m.id: m.confidence for m in combined[i]}
        reasons = {m.id: m.reasons for m in combined[i]}
        for m in aggregated[i]:
            if m.confidence > scored.get(m.id, 0.0):
                scored[m.id], reasons[m.id] = m.confidence, m.reasons
        limit = mapping.LEARNED_LIMIT if model is not None and mode == "score" else mapping.MAX_OBLIGATIONS
        out.append(UnitResult(suite.name, key, expected, scored, suite.baseline.get(i, set()), reasons, limit))
    return out


def train_on(suites: Sequence[MinedSuite]) -> PairModel | None:
    """The learned combiner fitted on every pair (with evidence) of these suites' labelled units (None when the
    pairs are all of one kind: nothing to learn)."""
    vectors, targets = [], []
    for suite in suites:
        for i, _, expected in suite.labelled:
            for oid, vector in suite.vectors[i].items():
                vectors.append(vector)
                targets.append(1 if oid in expected else 0)
    if len(set(targets)) < 2:
        return None
    return learned.train(vectors, targets, sources=[s.name for s in suites])


@dataclass
class Loso:
    """Leave-one-suite-out results per held-out suite: the threshold chosen on the others, the model trained on
    the others, and the suite's units scored at it."""

    threshold: dict[str, float] = field(default_factory=dict)
    models: dict[str, PairModel | None] = field(default_factory=dict)
    results: dict[str, list[UnitResult]] = field(default_factory=dict)

    def score(self, name: str) -> Score:
        """The held-out suite's score at its threshold."""
        return score_at(self.results[name], self.threshold[name])


def leave_one_suite_out(suites: dict[str, MinedSuite], *, use_model: bool) -> Loso:
    """Per suite: a model trained on the others, a threshold chosen on the others (scored by models that did not
    see them either: nested leave-one-out), then the suite scored at it (the combiner in "score" mode)."""
    out = Loso()
    names = sorted(suites)
    for held in names:
        others = [n for n in names if n != held]
        model = train_on([suites[n] for n in others]) if use_model and others else None
        inner: list[UnitResult] = []
        for other in others:
            rest = [suites[n] for n in others if n != other]
            inner_model = train_on(rest) if use_model and rest else None
            inner.extend(results_with(suites[other], inner_model))
        out.threshold[held] = choose_threshold(inner) if inner else mapping.MAP_THRESHOLD
        out.models[held] = model
        out.results[held] = results_with(suites[held], model)
    return out


@dataclass
class Trained:
    """What :func:`train_model` made: the model, the suites it saw, and its held-out figures."""

    model: PairModel
    suites: dict[str, MinedSuite]
    loso: Loso | None  # None when the threshold was not chosen (fewer than three suites)

    def held_out(self) -> Score:
        """Pooled over the suites: each scored by a model (and a threshold) fitted on the others only."""
        pooled = Score()
        if self.loso is not None:
            for name in self.loso.results:
                pooled.merge(self.loso.score(name))
        return pooled


def train_model(kb: Knowledge, suites: Sequence[tuple[str, Path, dict[Key, set[str]]]], *,
                workers: int | None = None, choose: bool = True) -> Trained:
    """Mine the labelled suites, fit the model on all of them, and choose its threshold leave-one-suite-out.

    ``choose`` False (or fewer than three suites) keeps the threshold at 0.5 and skips the held-out scoring.
    """
    if not suites:
        raise InputError("no labelled suite given", hint="pass suite checkouts as NAME=PATH, or --suites DIR")
    mined = {name: mine_labelled(kb, name, path, labels, workers) for name, path, labels in suites}
    model = train_on(list(mined.values()))
    if model is None:
        raise InputError("the labelled units give nothing to learn (every pair is of one kind)",
                         hint="label units that exercise obligations and units that do not")
    loso = None
    if choose and len(mined) >= 3:
        loso = leave_one_suite_out(mined, use_model=True)
        model.threshold = choose_threshold([u for units in loso.results.values() for u in units])
    return Trained(model, mined, loso)


@contextmanager
def scratch_knowledge(catalog_root: Path) -> Iterator[Knowledge]:
    """A temporary knowledge base built from ``catalog_root``'s obligations, knowledge and mappings, without
    its mined knowledge (``knowledge/learned``): what a model is trained against, independent of the user's
    knowledge base and of earlier mining of the same suites."""
    from poetkb import store
    from poetkb.catalog import load_catalog
    from poetkb.knowledge import Knowledge

    with tempfile.TemporaryDirectory(prefix="poet-train-") as tmp:
        catalog = Path(tmp) / "catalog"
        for part in ("obligations", "knowledge", "mappings"):
            if (catalog_root / part).is_dir():
                shutil.copytree(catalog_root / part, catalog / part, ignore=shutil.ignore_patterns("learned"))
        target = Path(tmp) / "kb.sqlite"
        store.build(load_catalog(catalog), target, source=str(catalog))
        kb = Knowledge(target)
        try:
            yield kb
        finally:
            kb.close()


def resolve_suites(specs: Sequence[str], suites_dir: Path | None,
                   labels_dir: Path) -> list[tuple[str, Path, LabelFile]]:
    """The labelled suites to train on: each spec is ``NAME=PATH`` or a ``PATH`` whose directory name is the
    label file's name; ``suites_dir`` adds every subdirectory of it that has a label file ``<name>.yaml``."""
    if not labels_dir.is_dir():
        raise InputError("is not a directory of label files", file=labels_dir, field="--labels",
                         hint="pass the directory holding <suite>.yaml label files (tests/fixtures/learn/labels)")
    wanted: dict[str, Path] = {}
    for spec in specs:
        name, _, where = spec.partition("=") if "=" in spec else (Path(spec).resolve().name, "", spec)
        wanted[name] = Path(where)
    if suites_dir is not None:
        if not suites_dir.is_dir():
            raise InputError("is not a directory", file=suites_dir, field="--suites",
                             hint="pass the directory holding one checkout per labelled suite, named as its labels")
        for label in sorted(labels_dir.glob("*.yaml")):
            if (suites_dir / label.stem).is_dir():
                wanted.setdefault(label.stem, suites_dir / label.stem)
    if not wanted:
        raise InputError("no labelled suite found", field="SUITES",
                         hint="pass NAME=PATH checkouts or --suites DIR with one checkout per label file")
    out = []
    for name, path in sorted(wanted.items()):
        label_file = labels_dir / f"{name}.yaml"
        if not label_file.is_file():
            raise InputError(f"suite {name!r} has no label file {label_file}", field="SUITES",
                             hint="name each suite as its label file (NAME=PATH) or add <name>.yaml to --labels")
        if not path.is_dir():
            raise InputError(f"suite {name!r}: its checkout is not a directory", file=path, field="SUITES",
                             hint="check the suite out at the commit its label file names")
        out.append((name, path, load_label_file(label_file)))
    return out


def write_model(model: PairModel, target: Path) -> None:
    """Write the model file atomically (a temporary file beside it, then renamed)."""
    from poetkb.errors import StoreError

    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_text(model.to_json(), encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {target}: {exc.strerror or exc}", path=target,
                         hint="pass --output to a writable file") from exc
