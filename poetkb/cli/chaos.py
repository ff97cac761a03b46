"""Chaos commands: `poet chaos validate|run|import|export` and the training scenarios `poet train ...`.

A thin layer: every piece of work is in :mod:`poetkb.chaos`. Exit codes of `poet chaos run`: 0 the
hypothesis held, 1 it did not (deviated, aborted by a guardrail, an action failed, interrupted, or not
steady before), 2 bad input, 3 an internal error or a rollback that failed.
"""

from __future__ import annotations

from pathlib import Path

import click

from poetkb.cli.common import emit_json, main, open_kb

_FILE = click.Path(dir_okay=False, path_type=Path)


@main.group()
def chaos() -> None:
    """Chaos experiments tied to obligations: validate, run (rollbacks always), Chaos Toolkit import/export."""


@chaos.command()
@click.argument("experiment", type=_FILE)
@click.pass_context
def validate(ctx: click.Context, experiment: Path) -> None:
    """Check an experiment file (schema, references, obligation ids, production rules) without running it."""
    from poetkb.chaos.loader import load, production_problems
    from poetkb.errors import InputError

    with open_kb(ctx) as base:
        exp = load(experiment, kb=base)
    unsafe = production_problems(exp)
    if unsafe:
        raise InputError(f"production experiment with actions not marked safe_in_prod: {', '.join(unsafe)}",
                         file=experiment, field="production")
    click.echo(f"{experiment}: valid ({len(exp.steady_state.probes)} hypothesis probe(s), {len(exp.method)} "
               f"method step(s), {len(exp.rollbacks)} rollback(s); obligations: {', '.join(exp.obligations)})")


@chaos.command()
@click.argument("experiment", type=_FILE)
@click.option("--dry-run", is_flag=True, help="Validate and print the plan; run nothing.")
@click.option("--journal", "journal_path", type=_FILE,
              help="Where to write the journal (default: $POET_HOME/chaos/<run-id>/journal.json).")
@click.option("--allow-remote", is_flag=True, help="Allow targets that are not on loopback.")
@click.option("--confirm-production", is_flag=True, help="Confirm running an experiment marked production.")
@click.option("--json", "as_json", is_flag=True, help="Print the journal as JSON on stdout.")
@click.pass_context
def run(ctx: click.Context, experiment: Path, dry_run: bool, journal_path: Path | None, allow_remote: bool,
        confirm_production: bool, as_json: bool) -> None:
    """Run an experiment: steady state before, watched during the method, rollbacks always, then after.

    Exit 0 when the hypothesis held; 1 when it did not (deviated, aborted, failed, interrupted);
    2 for bad input; 3 for an internal error or a rollback that failed.
    """
    from poetkb.chaos.loader import load
    from poetkb.chaos.runner import RunOptions, preflight, run_experiment
    from poetkb.errors import PoetError

    base = open_kb(ctx)
    try:
        exp = load(experiment, kb=base)
        options = RunOptions(allow_remote=allow_remote, confirm_production=confirm_production,
                             journal_path=journal_path, echo=lambda line: click.echo(line, err=True))
        if dry_run:
            from poetkb import demo

            preflight(exp, demo.load_state(), options, file=str(experiment))
            for phase, steps in (("before", exp.steady_state.probes), ("method", exp.method),
                                 ("rollback", exp.rollbacks), ("after", exp.steady_state.probes)):
                for step in steps:
                    click.echo(f"[{phase}] {step.name} ({step.type})")
            return
        journal = run_experiment(exp, kb=base, file=experiment, options=options)
        written = options.journal_path or _journal_default(journal.run_id)
        # the journal is evidence: judged again from its steps and recorded as a gate run (verdict per obligation)
        report, problem = None, ""
        try:
            report = base.gate_evaluate(written)
        except PoetError as exc:  # the run's own exit code stands; say why it was not recorded
            problem = exc.message
    finally:
        base.close()
    if as_json:
        emit_json(journal)
    click.echo(f"{journal.status}: {journal.reason}", err=True)
    click.echo(f"journal: {written}", err=True)
    if report is None:
        click.echo(f"warning: the journal was not recorded as a gate run: {problem}", err=True)
    else:
        for verdict in report.obligations:
            click.echo(f"  {verdict.obligation_id}: {verdict.verdict}", err=True)
        click.echo(f"recorded as gate run {report.run_id} (judge it again: poet gate evaluate --evidence {written})",
                   err=True)
    ctx.exit(journal.exit_code)


def _journal_default(run_id: str) -> Path:
    from poetkb.chaos.journal import default_journal_path

    return default_journal_path(run_id)


@chaos.command("import")
@click.argument("ctk_file", type=_FILE)
@click.option("--obligation", "obligations", multiple=True,
              help="Obligation the experiment tests (repeatable; needed unless the file names them).")
@click.option("--out", type=_FILE, help="Write the experiment here (.json for JSON, else YAML) instead of stdout.")
@click.pass_context
def import_(ctx: click.Context, ctk_file: Path, obligations: tuple[str, ...], out: Path | None) -> None:
    """Convert a Chaos Toolkit experiment (JSON or YAML) into a poetkb experiment, or a CTK journal into a
    poetkb journal (JSON) that `poet gate evaluate --evidence` judges (its probes become evidence).

    What cannot be converted is listed on stderr with its JSON path; the result is validated like
    `poet chaos validate` (exit 2 when it is not a valid experiment).
    """
    import json

    import yaml

    from poetkb.chaos.ctk import import_ctk
    from poetkb.chaos.ctk_journal import is_ctk_journal
    from poetkb.chaos.loader import parse, read_data
    from poetkb.errors import InputError

    doc = read_data(ctk_file)
    if is_ctk_journal(doc):
        _import_journal(ctx, ctk_file, doc, list(obligations), out)
        return
    result = import_ctk(doc, obligations=list(obligations))
    for item in result.unconverted:
        click.echo(f"not converted: {item}", err=True)
    if not result.data["obligations"]:
        raise InputError("the Chaos Toolkit experiment names no obligation", file=ctk_file,
                         hint="pass --obligation ID (repeatable); see `poet obligations list`")
    experiment = parse(result.data, file=str(ctk_file))
    with open_kb(ctx) as base:
        from poetkb.gates.runner import require_known

        require_known(base, experiment.obligations, where="the imported experiment", file=ctk_file)
    data = experiment.model_dump(mode="json", exclude_unset=True)
    if out is not None and out.suffix == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    from poetkb.cli.common import write_output

    write_output(text, out)
    click.echo(f"imported {len(experiment.method)} method step(s), {len(experiment.rollbacks)} rollback(s); "
               f"{len(result.unconverted)} item(s) not converted", err=True)


def _import_journal(ctx: click.Context, ctk_file: Path, doc: object, obligations: list[str], out: Path | None) -> None:
    """A CTK journal becomes a poetkb journal (JSON): evidence for `poet gate evaluate`."""
    import json

    from poetkb import safefile
    from poetkb.chaos.ctk_journal import import_ctk_journal
    from poetkb.chaos.loader import MAX_BYTES
    from poetkb.cli.common import write_output

    data = safefile.read_bytes(ctk_file, limit=MAX_BYTES)
    journal = import_ctk_journal(doc, data, file=str(ctk_file), obligations=obligations)
    with open_kb(ctx) as base:
        from poetkb.gates.runner import require_known

        require_known(base, journal.obligations, where="the imported journal", file=ctk_file)
    write_output(json.dumps(journal.model_dump(mode="json"), indent=2) + "\n", out)
    click.echo(f"imported a Chaos Toolkit journal: {len(journal.steps)} activity run(s), status {journal.status}; "
               f"judge it with `poet gate evaluate --evidence {out or 'FILE'}`", err=True)


@chaos.command("export")
@click.argument("experiment", type=_FILE)
@click.option("--out", type=_FILE, help="Write the Chaos Toolkit experiment (JSON) here instead of stdout.")
def export(experiment: Path, out: Path | None) -> None:
    """Export a poetkb experiment as a Chaos Toolkit experiment (JSON).

    HTTP probes and calls become CTK http providers; every other step calls poetkb through CTK's python
    provider (poetkb.chaos.ctk_functions.run_step); obligations, watch and guardrails travel in the
    `poetkb` extension.
    """
    import json

    from poetkb.chaos.ctk import export_ctk
    from poetkb.chaos.loader import load
    from poetkb.cli.common import write_output

    write_output(json.dumps(export_ctk(load(experiment)), indent=2) + "\n", out)


@main.group()
def train() -> None:
    """Training scenarios: a standard failure injected into the demo, graded hints, a check when it is fixed.

    `poet train list`, `start ID`, `hint`, `check` (exit 0 healthy again, 1 not yet), `stop`.
    Also available as `poet scenario`.
    """


main.add_command(train, name="scenario")


@train.command("list")
@click.option("--json", "as_json", is_flag=True)
def train_list(as_json: bool) -> None:
    """The scenarios of the library: id, obligations, what the learner sees."""
    from poetkb.chaos.training import active, load_scenarios

    scenarios = load_scenarios()
    if as_json:
        emit_json(list(scenarios.values()))
        return
    current = active()
    for scenario in scenarios.values():
        mark = " (active)" if current is not None and current.scenario == scenario.id else ""
        click.echo(f"{scenario.id:<24} {scenario.title}{mark}")
        click.echo(f"{'':<24} teaches: {', '.join(scenario.obligations)}")


@train.command("start")
@click.argument("scenario_id")
def train_start(scenario_id: str) -> None:
    """Inject the scenario's failure into the running demo and describe the symptom."""
    from poetkb.chaos.training import start

    scenario, injected = start(scenario_id)
    click.echo(f"started {scenario.id}: {scenario.title}")
    for line in injected:
        click.echo(f"  injected {line}", err=True)
    click.echo(f"symptom: {scenario.symptom}")
    click.echo("`poet train hint` for a hint, `poet train check` when you think it is fixed, `poet train stop` "
               "to end.")


@train.command("hint")
def train_hint() -> None:
    """The next graded hint: first the signal, then the component, then the fix."""
    from poetkb.chaos.training import hint

    number, total, text = hint()
    click.echo(f"hint {number}/{total}: {text}")


@train.command("check")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def train_check(ctx: click.Context, as_json: bool) -> None:
    """Run the scenario's gates against the demo: exit 0 when it is healthy again, 1 when not yet, and why."""
    from poetkb.chaos.training import check

    with open_kb(ctx) as base:
        result = check(base)
    if as_json:
        emit_json(result)
    else:
        for line in result.details:
            click.echo(f"  {line}")
        click.echo(result.message)
    ctx.exit(0 if result.healthy else 1)


@train.command("stop")
def train_stop() -> None:
    """Heal the faults and put the demo back in the configuration it had before the scenario."""
    from poetkb.chaos.training import stop

    click.echo(stop())


@train.command("guide")
@click.argument("scenario_id")
def train_guide(scenario_id: str) -> None:
    """The instructor guide of a scenario (Markdown): what breaks and why, diagnosis, fix, what it teaches."""
    from poetkb.chaos.guides import render_guide
    from poetkb.chaos.training import get_scenario

    click.echo(render_guide(get_scenario(scenario_id)), nl=False)


@chaos.command("toxiproxy")
@click.option("--port", type=click.IntRange(1, 65535), default=8474, show_default=True,
              help="Port of the API on 127.0.0.1 (Toxiproxy's default is 8474).")
@click.option("--allow-remote", is_flag=True, help="Allow upstreams that are not on loopback.")
def toxiproxy(port: int, allow_remote: bool) -> None:
    """Serve a Toxiproxy-compatible API over poetkb's fault proxy on 127.0.0.1 until Ctrl-C or SIGTERM.

    Existing Toxiproxy clients create proxies and add latency, bandwidth, slow_close, timeout, reset_peer and
    limit_data toxics; every proxy listens on loopback and is stopped when the server ends.
    """
    import asyncio

    from poetkb.chaos.toxiproxy_api import ToxiproxyAPI, serve

    click.echo(f"Toxiproxy-compatible API on http://127.0.0.1:{port} (Ctrl-C to stop)", err=True)
    asyncio.run(serve(ToxiproxyAPI(allow_remote=allow_remote), port))


@chaos.command("plan")
@click.option("--change", help="The change in words (what you are about to ship).")
@click.option("--diff", type=_FILE, help="A unified diff of the change.")
@click.option("--component", help="The component the change touches (nginx, haproxy, ...).")
@click.option("--top", type=click.IntRange(1, 50), default=5, show_default=True)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write one experiment file per obligation here (default: print them).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
def plan(ctx: click.Context, change: str | None, diff: Path | None, component: str | None, top: int,
         out_dir: Path | None, as_json: bool) -> None:
    """Chaos experiments for the obligations a change puts at risk (from the ranking and the scenario library).

    Obligations without a fault template are listed with the gate command that checks them.
    """
    import yaml

    from poetkb.chaos.plan import plan_experiments
    from poetkb.errors import InputError

    if not change and diff is None:
        raise InputError("give --change TEXT or --diff FILE", field="change")
    with open_kb(ctx) as base:
        result = plan_experiments(base, change, diff=diff, component=component, top=top)
    if as_json:
        emit_json(result)
        return
    for item in result.items:
        source = f"scenario {item.scenario}" if item.scenario else "the service-tier fault templates"
        click.echo(f"{item.obligation_id} ({item.score:.2f}): "
                   + (f"experiment from {source}" if item.experiment else item.note), err=True)
        if item.experiment is None:
            continue
        text = yaml.safe_dump(item.experiment.model_dump(mode="json", exclude_unset=True), sort_keys=False)
        if out_dir is None:
            click.echo(f"---\n{text}", nl=False)
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / f"{item.obligation_id}.yaml"
            path.write_text(text, encoding="utf-8")
            click.echo(f"  wrote {path}", err=True)
