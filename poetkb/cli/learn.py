"""`poet learn`: mine legacy test suites into learned patterns, and review the unsure mappings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from poetkb.cli.common import emit_json, main, open_kb


@main.group()
def learn() -> None:
    """Learn which tests exercise which obligations, from existing test suites (static: nothing is run)."""


@learn.command("from-tests")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for <source>.json (default: ./knowledge/learned).")
@click.option("--source", help="Name of what is mined, and of the output file (default: the repository's name).")
@click.option("--role", type=click.Choice(["own", "reference"]), default="own", show_default=True,
              help="own: your suite, its tests count as coverage; reference: a public suite, its tests are only "
                   "examples of how others test an obligation.")
@click.option("--repository", metavar="URL", help="The suite's repository web address (https://...), so plans "
              "link each test at the mined commit.")
@click.option("--workers", type=click.IntRange(1, 256), help="Parser processes (default: the CPU count).")
@click.option("--mapped-only", is_flag=True,
              help="Keep only units mapped to an obligation in the file and the KB (the summary counts all).")
@click.option("--no-store", is_flag=True, help="Write the file only; leave the knowledge base's patterns alone.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (per unit: file, test, line, "
              "obligations with confidence and reasons).")
@click.pass_context
def from_tests(ctx: click.Context, paths: tuple[Path, ...], out_dir: Path | None, source: str | None,
               role: str, repository: str | None, workers: int | None, mapped_only: bool, no_store: bool,
               as_json: bool) -> None:
    """Mine test files under PATHS into knowledge/learned/<source>.json and the knowledge base.

    Finds test_*.py, *_test.py, *.test.py, conftest.py and test modules under tests/;
    units are test functions (parametrized too), unittest methods, test classes, and
    script-style files. Unparseable, non-UTF-8, huge (> 1 MiB) and too deeply nested
    files, FIFOs and devices, links leaving PATH and symlink loops are skipped, named
    and counted. A PATH that is missing, unreadable or a symlink loop is exit 2. A
    re-run parses only changed files.
    """
    with open_kb(ctx) as kb:
        report = kb.learn(list(paths), source=source, out_dir=out_dir, workers=workers, progress=not as_json,
                          store=not no_store, mapped_only=mapped_only, role=role,
                          repository=repository)
    if as_json:
        emit_json(_report_json(report))
        return
    summary, run = report.summary, report.run
    click.echo(f"{report.source} ({report.role}): {summary.files_mined} test files mined ({run.files_parsed} parsed, "
               f"{run.files_cached} from the cache) in {run.seconds:.1f}s with {run.workers} "
               f"worker{'s' if run.workers != 1 else ''}")
    if summary.files_skipped:
        reasons = ", ".join(f"{n} {r}" for r, n in summary.skipped_by_reason.items())
        click.echo(f"skipped {summary.files_skipped} file{'s' if summary.files_skipped != 1 else ''}: {reasons}")
        for skipped in summary.skipped[:10]:
            detail = f" ({skipped.detail})" if skipped.detail else ""
            click.echo(f"  {skipped.path}: {skipped.reason}{detail}")
        if len(summary.skipped) > 10:
            click.echo(f"  ... and {len(summary.skipped) - 10} more (see the learned file)")
    click.echo(f"{summary.units} test units, {summary.units_mapped} mapped to obligations, "
               f"{summary.candidates} candidate mapping{'s' if summary.candidates != 1 else ''} to review")
    for oid, count in sorted(summary.covered.items(), key=lambda kv: (-kv[1], kv[0]))[:12]:
        click.echo(f"  {count:>5}  {oid}")
    click.echo(f"gaps: {len(summary.gaps)} obligations no mined test covers"
               + (f" ({', '.join(summary.gaps[:6])}{', ...' if len(summary.gaps) > 6 else ''})" if summary.gaps
                  else ""))
    if report.out_file:
        out = Path(report.out_file)
        shown = out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out
        click.echo(f"wrote {shown}")
    if report.stored_in_kb:
        click.echo("stored the patterns in the knowledge base; review unsure ones with `poet learn review`")


def _report_json(report: Any) -> dict[str, Any]:
    return {
        "source": report.source,
        "role": report.role,
        "out_file": report.out_file,
        "stored_in_kb": report.stored_in_kb,
        "summary": report.summary.model_dump(mode="json"),
        "run": report.run.model_dump(mode="json"),
        "units": [
            {"id": p.id, "file": p.file, "test": p.test, "kind": p.kind, "line": p.line, "end_line": p.end_line,
             "obligations": [{"id": m.id, "confidence": m.confidence, "reasons": m.reasons} for m in p.obligations]}
            for p in report.patterns
        ],
    }


@learn.command("review")
@click.option("--accept", "accepts", multiple=True, metavar="PATTERN_ID:OBLIGATION",
              help="Accept a mapping (repeatable); an unmapped pair is added. Used by every later run.")
@click.option("--reject", "rejects", multiple=True, metavar="PATTERN_ID:OBLIGATION",
              help="Reject a mapping (repeatable). Used by every later run.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), help="List mappings below this confidence "
              "(default 0.7).")
@click.option("--source", help="Only patterns mined from this source.")
@click.option("--decided", is_flag=True, help="Also list the decisions already taken.")
@click.option("--note", default="", help="A note stored with the decisions.")
@click.option("--json", "as_json", is_flag=True, help="Print the items as JSON.")
@click.pass_context
def review(ctx: click.Context, accepts: tuple[str, ...], rejects: tuple[str, ...], threshold: float | None,
           source: str | None, decided: bool, note: str, as_json: bool) -> None:
    """List low-confidence learned mappings and near-miss candidates, or accept / reject them.

    Mappings below the threshold are listed with the candidates (marked [candidate]),
    which the mapper did not map on its own: accepting one maps it.
    """
    from poetkb.learn.review import parse_pair

    accepted = [parse_pair(a, option="--accept") for a in accepts]
    rejected = [parse_pair(r, option="--reject") for r in rejects]
    with open_kb(ctx) as kb:
        if accepted or rejected:
            done = []
            if accepted:
                done += kb.learn_decide(accepted, "accept", note=note)
            if rejected:
                done += kb.learn_decide(rejected, "reject", note=note)
            if as_json:
                emit_json(done)
                return
            for item in done:
                click.echo(f"{item.decision}ed  {item.pattern_id} -> {item.obligation_id}")
            click.echo("stored; later `poet learn from-tests` runs apply these decisions")
            return
        items = kb.learn_review(threshold=threshold, source=source, decided=decided)
    if as_json:
        emit_json(items)
        return
    for item in items:
        mark = f" [{item.decision}]" if item.decision else (" [candidate]" if item.status == "candidate" else "")
        click.echo(f"{item.confidence:.2f}  {item.pattern_id}:{item.obligation_id}{mark}")
        click.echo(f"      {item.file}:{item.line}  " + "; ".join(item.reasons[:3]))
    click.echo(f"{len(items)} mapping{'s' if len(items) != 1 else ''} to review", err=True)


@learn.command("suggest-markers")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--min-confidence", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Propose only mappings at least this confident.")
@click.option("--apply", "apply_", is_flag=True, help="Rewrite the files (default: print the patch only).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the patch to this file.")
@click.option("--workers", type=click.IntRange(1, 256), help="Parser processes (default: the CPU count).")
@click.option("--json", "as_json", is_flag=True, help="Print the suggestions and the patch as JSON.")
@click.pass_context
def suggest_markers(ctx: click.Context, path: Path, min_confidence: float, apply_: bool, out: Path | None,
                    workers: int | None, as_json: bool) -> None:
    """Propose @pytest.mark.obligation markers for the tests under PATH, as a reviewable patch.

    The suite is mined as `from-tests` does (statically; nothing is stored), and a
    libcst codemod adds one marker per mapped test with the ids it lacks, plus
    `import pytest` where needed. Files change only with --apply; the patch applies
    with `git apply` or `patch -p1` from PATH.
    """
    from poetkb.cli.common import write_output
    from poetkb.learn.markers import suggest_markers as suggest

    with open_kb(ctx) as kb:
        result = suggest(kb, path, min_confidence=min_confidence, apply=apply_, workers=workers)
    if as_json:
        emit_json(result)
        return
    if out is not None or not apply_:
        write_output(result.patch or "", out)
    tests = len(result.suggestions)
    verb = "marked" if result.applied else "would mark"
    click.echo(f"{verb} {tests} test{'s' if tests != 1 else ''} in {result.files_changed} "
               f"file{'s' if result.files_changed != 1 else ''}"
               + ("" if result.applied else " (review the patch; --apply writes it)"), err=True)
    if result.unmarkable:
        click.echo(f"{len(result.unmarkable)} mapped unit{'s' if len(result.unmarkable) != 1 else ''} cannot "
                   f"carry a marker (script-style files): {', '.join(result.unmarkable[:5])}", err=True)


@learn.command("train-model")
@click.argument("suites", nargs=-1)
@click.option("--suites", "suites_dir", type=click.Path(file_okay=False, path_type=Path),
              help="A directory holding one checkout per labelled suite, named as its label file.")
@click.option("--labels", "labels_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("tests") / "fixtures" / "learn" / "labels", show_default=True,
              help="The directory of <suite>.yaml label files.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where the model goes (default: the shipped poetkb/learn/learned_model.json).")
@click.option("--workers", type=click.IntRange(1, 256), help="Parser processes (default: the CPU count).")
@click.option("--no-threshold", is_flag=True,
              help="Skip choosing the threshold leave-one-suite-out (faster; the threshold stays 0.5).")
@click.option("--json", "as_json", is_flag=True, help="Print what was trained on and the held-out figures as JSON.")
def train_model(suites: tuple[str, ...], suites_dir: Path | None, labels_dir: Path, output: Path | None,
                workers: int | None, no_threshold: bool, as_json: bool) -> None:
    """Train the learned combiner's model from labelled suites (how the shipped model is made).

    SUITES are checkouts given as NAME=PATH, or PATH whose directory name is the
    label file's; --suites DIR adds every checkout DIR/<name> with a label file.
    Each suite is mined (statically), mapped by the rules, and every labelled
    (unit, obligation) pair with evidence trains a logistic regression (scikit-learn).
    Its threshold is chosen leave-one-suite-out (each suite scored by a model trained
    on the others), and those held-out figures are printed. Mining runs against the
    shipped catalog (without its mined knowledge), not your knowledge base.
    """
    from poetkb.catalog_files import shipped_catalog_root
    from poetkb.learn import learned, training

    resolved = training.resolve_suites(list(suites), suites_dir, labels_dir)
    with training.scratch_knowledge(shipped_catalog_root()) as kb:
        trained = training.train_model(kb, [(n, p, lf.labels) for n, p, lf in resolved], workers=workers,
                                       choose=not no_threshold)
    target = output or learned.DEFAULT_PATH
    training.write_model(trained.model, target)
    rows: list[dict[str, Any]] = []
    for name, _path, label_file in resolved:
        suite = trained.suites[name]
        held = trained.loso.score(name) if trained.loso is not None else None
        rows.append({"suite": name, "style": label_file.style, "commit": label_file.commit,
                     "labelled_units": len(suite.labelled), "not_mined": [f"{f}::{t}" for f, t in suite.missing],
                     "pairs": sum(len(suite.vectors[i]) for i, _, _ in suite.labelled),
                     "held_out": None if held is None else {
                         "threshold": trained.loso.threshold[name] if trained.loso else None,
                         "precision": round(held.precision, 3), "recall": round(held.recall, 3)}})
    pooled = trained.held_out() if trained.loso is not None else None
    if as_json:
        emit_json({"output": str(target), "pairs": trained.model.pairs, "threshold": trained.model.threshold,
                   "suites": rows, "held_out_pooled": None if pooled is None else {
                       "precision": round(pooled.precision, 3), "recall": round(pooled.recall, 3)}})
        return
    click.echo(f"trained on {len(rows)} suite{'s' if len(rows) != 1 else ''}, {trained.model.pairs} pairs:")
    for row in rows:
        shown = row["held_out"]
        figures = (f"  held out: P {shown['precision']:.2f} R {shown['recall']:.2f} at {shown['threshold']:.2f}"
                   if shown else "")
        missing = f", {len(row['not_mined'])} labelled units not mined" if row["not_mined"] else ""
        click.echo(f"  {row['suite']:<16} {row['style']:<9} {row['labelled_units']:>4} labelled units, "
                   f"{row['pairs']:>5} pairs{missing}{figures}")
    if pooled is not None:
        click.echo(f"held out, pooled (each suite scored by a model trained on the others): "
                   f"P {pooled.precision:.2f} R {pooled.recall:.2f}")
    click.echo(f"threshold {trained.model.threshold:.2f}; wrote {target}")
