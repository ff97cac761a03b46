"""Load-test commands: `poet plan load` (plans and exports) and `poet interpret` (SLO verdicts of results)."""

from __future__ import annotations

from pathlib import Path

import click

from poetkb.cli.common import emit_json, main, open_kb, write_output
from poetkb.cli.plan import plan

_PROFILE = click.Path(dir_okay=False, path_type=Path)


def _log(record: dict[str, object], log: Path | None, no_log: bool) -> None:
    from poetkb.load.evidence_log import append_record, default_log_path

    if no_log:
        return
    target = log or default_log_path()
    append_record(target, record)
    click.echo(f"evidence log: {target}", err=True)


@plan.command("load")
@click.option("--profile", "profile_path", type=_PROFILE, required=True, help="Service profile (YAML or JSON).")
@click.option("--format", "fmt", type=click.Choice(["md", "json", "k6", "locust"]), default="md", show_default=True,
              help="Markdown for people, JSON for tools, a k6 script or a Locust locustfile.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout.")
@click.option("--log", type=click.Path(dir_okay=False, path_type=Path),
              help="Evidence log to append to (default: $POET_HOME/evidence/load-evidence.jsonl).")
@click.option("--no-log", is_flag=True, help="Do not record the plan in the evidence log.")
def plan_load(profile_path: Path, fmt: str, out: Path | None, log: Path | None, no_log: bool) -> None:
    """A load-test plan from a service profile: steady, burst, soak and stress scenarios.

    Each scenario has stages (duration, arrival rate), checks tied to the SLOs and the perf obligations,
    metrics to watch and safety notes. `--format k6` and `--format locust` export runnable scripts.
    """
    from poetkb.load.evidence_log import plan_record
    from poetkb.load.plan import build_plan
    from poetkb.load.profile import load_profile

    profile = load_profile(profile_path)
    load_plan = build_plan(profile)
    if fmt == "json":
        import json

        text = json.dumps(load_plan.model_dump(mode="json"), indent=2) + "\n"
    elif fmt == "k6":
        from poetkb.load.export_k6 import export_k6

        text = export_k6(load_plan)
    elif fmt == "locust":
        from poetkb.load.export_locust import export_locust

        text = export_locust(load_plan)
    else:
        from poetkb.load.plan_markdown import plan_markdown

        text = plan_markdown(load_plan)
    write_output(text, out)
    _log(plan_record(load_plan, profile_path=str(profile_path)), log, no_log)


@main.command()
@click.option("--profile", "profile_path", type=_PROFILE, required=True, help="Service profile (YAML or JSON).")
@click.option("--metrics", "metrics_paths", type=click.Path(dir_okay=False, path_type=Path), required=True,
              multiple=True, help="Results: k6 summary, Locust stats CSV, JSON/CSV summary or raw samples "
              "(repeat to combine files of one run).")
@click.option("--baseline", help="A metrics file to compare with, or 'auto' for the stored baseline "
              "(a passing run then becomes the new baseline).")
@click.option("--scenario", type=click.Choice(["steady", "burst", "soak", "stress"]),
              help="Scenario the results are from (default: the one the metrics name, else steady).")
@click.option("--log", type=click.Path(dir_okay=False, path_type=Path),
              help="Evidence log to append to (default: $POET_HOME/evidence/load-evidence.jsonl).")
@click.option("--no-log", is_flag=True, help="Do not record the interpretation in the evidence log.")
@click.option("--json", "as_json", is_flag=True, help="Print the interpretation as JSON.")
@click.pass_context
def interpret(ctx: click.Context, profile_path: Path, metrics_paths: tuple[Path, ...], baseline: str | None,
              scenario: str | None, log: Path | None, no_log: bool, as_json: bool) -> None:
    """Judge load-test results against the profile's SLOs, per check, in plain words.

    Exit 0 when every check passes, 1 when an SLO fails, a regression is found or evidence is missing
    (no data is never a pass), 2 for bad input.
    """
    from poetkb.load.evidence_log import interpretation_record
    from poetkb.load.interpret import interpret_files, interpretation_text
    from poetkb.load.profile import load_profile

    profile = load_profile(profile_path)
    metrics = [str(p) for p in metrics_paths]
    if baseline == "auto":
        with open_kb(ctx) as kb:
            result = interpret_files(kb, profile, metrics, scenario=scenario, baseline="auto")
    else:
        result = interpret_files(None, profile, metrics, scenario=scenario, baseline=baseline)
    if as_json:
        emit_json(result)
    else:
        click.echo(interpretation_text(result))
    _log(interpretation_record(result, profile_path=str(profile_path)), log, no_log)
    if not result.passed:
        from poetkb.errors import CheckFailed

        counts: dict[str, int] = {}
        for verdict in result.verdicts:
            if verdict.gating and verdict.verdict != "pass":
                counts[verdict.verdict] = counts.get(verdict.verdict, 0) + 1
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        raise CheckFailed(f"{result.service}/{result.scenario} did not pass: {summary}",
                          hint="see the verdicts above; no-evidence means the metrics lack what the check needs")
