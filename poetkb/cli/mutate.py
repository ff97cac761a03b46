"""`poet gate mutate`: mutation testing of an edge configuration, and recording equivalent mutants."""

from __future__ import annotations

from pathlib import Path

import click

from poetkb.cli.common import emit_json, open_kb, write_output
from poetkb.cli.gate import gate


@gate.command("mutate")
@click.option("--operator", "operators", multiple=True, metavar="ID", help="Only this operator (repeatable).")
@click.option("--obligation", "obligations", multiple=True, metavar="ID",
              help="Only operators aimed at this obligation (repeatable).")
@click.option("--list", "list_", is_flag=True, help="List the operators for the proxy and exit.")
@click.option("--max-mutants", type=click.IntRange(1, 10_000), default=200, show_default=True)
@click.option("--budget", type=click.FloatRange(1, 86_400), default=1800, show_default=True,
              help="Seconds; mutants not started by then are reported as not run.")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="Your edge's configuration file (default: the running demo's).")
@click.option("--proxy", type=click.Choice(["nginx", "haproxy"]), help="The proxy of --config (default: inferred).")
@click.option("--reload-command", metavar="CMD",
              help="Reloads your running edge after the file changed; without it, --config is brought up on "
                   "loopback against instrumented upstreams for each mutant (your file is only read).")
@click.option("--validate-command", metavar="CMD",
              help="Validates the file (default: nginx -t -c FILE or haproxy -c -f FILE).")
@click.option("--target", metavar="URL", help="Your edge's HTTP URL (with --config).")
@click.option("--access-log", type=click.Path(dir_okay=False, path_type=Path), help="Your edge's JSON access log.")
@click.option("--upstream-admin", "upstream_admin", multiple=True, metavar="[NAME[:ROLE]=]URL",
              help="An instrumented upstream's admin URL (repeatable).")
@click.option("--metrics-url", metavar="URL", help="Your edge's Prometheus metrics endpoint.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the Markdown report here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def gate_mutate(ctx: click.Context, operators: tuple[str, ...], obligations: tuple[str, ...], list_: bool,
                max_mutants: int, budget: float, config: Path | None, proxy: str | None,
                reload_command: str | None, validate_command: str | None, target: str | None,
                access_log: Path | None, upstream_admin: tuple[str, ...], metrics_url: str | None,
                out: Path | None, as_json: bool) -> None:
    """Mutate the edge's configuration and measure how many faults the gates catch.

    Each mutant changes one directive in a way that should break named obligations
    (retries unbounded, a cache key narrowed, a log field dropped, client input
    trusted, ...). It is validated by the proxy, applied with a reload, gated on those
    obligations, and reverted; the original file is restored byte for byte at the end,
    on Ctrl-C too. Exit code: 0 no mutant survived, 1 a mutant survived or could not
    be judged, 2 bad input.
    """
    from poetkb.errors import InputError
    from poetkb.mutation import command_target, demo_target, load_operators, run_mutation, select

    all_ops = load_operators()
    if list_:
        shown = [op for op in select(all_ops, only=operators, obligations=obligations)
                 if proxy is None or op.proxy == proxy]
        if as_json:
            emit_json(shown)
            return
        for op in shown:
            click.echo(f"{op.id:<36} {op.op:<12} {op.match:<28} breaks {', '.join(op.breaks)}")
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="poet-mutate-") as scratch:
        if config is not None and reload_command:
            from poetkb.gates.schema import Edge

            reach = Edge.from_options(target=target, proxy=proxy, access_log=access_log,
                                      upstream_admin=upstream_admin, metrics_url=metrics_url,
                                      reload_command=reload_command)
            edge = command_target(config, proxy=reach.proxy, reload_command=reload_command,
                                  validate_command=validate_command, edge=reach)
        elif config is not None:
            if target or access_log or upstream_admin or metrics_url or validate_command:
                raise InputError("without --reload-command, --config is brought up on loopback for each mutant; "
                                 "--target, --access-log, --upstream-admin, --metrics-url and --validate-command "
                                 "belong to a running edge", field="--config",
                                 hint="add --reload-command to mutate the running edge instead")
            from poetkb.ownedge.mutate import own_config_target

            edge = own_config_target(config, proxy=proxy, work=Path(scratch))
        else:
            edge = demo_target()
        chosen = [op for op in select(all_ops, only=operators, obligations=obligations) if op.proxy == edge.proxy]
        progress = (lambda line: click.echo(line, err=True)) if not as_json else None
        with open_kb(ctx) as kb:
            report = run_mutation(kb, edge, operators=chosen, max_mutants=max_mutants, budget_s=budget,
                                  on_progress=progress)
    if out is not None:
        write_output(report.markdown(), out)
    if as_json:
        emit_json(report)
    else:
        for m in report.mutants:
            click.echo(f"{m.status.upper():<10} {m.id}  {m.detail if m.status in ('invalid', 'not-run') else ''}")
        score = "n/a" if report.score is None else f"{report.score:.0%}"
        click.echo(f"mutation score {score}: {sum(m.status == 'killed' for m in report.mutants)} killed, "
                   f"{len(report.survivors())} survived; original restored: {'yes' if report.restored else 'NO'}",
                   err=True)
    if not report.restored:
        ctx.exit(3)
    judged = [m for m in report.mutants if m.status in ("killed", "survived", "error")]
    ctx.exit(0 if judged and all(m.status == "killed" for m in judged) else 1)


@gate.command("mutant-equivalent")
@click.argument("mutant_id")
@click.option("--proxy", type=click.Choice(["nginx", "haproxy"]), required=True)
@click.option("--note", required=True, help="Why the obligation still holds under this mutant.")
@click.pass_context
def gate_mutant_equivalent(ctx: click.Context, mutant_id: str, proxy: str, note: str) -> None:
    """Record MUTANT_ID (operator@file:line) as equivalent: later mutation scores leave it out."""
    from poetkb.errors import InputError
    from poetkb.mutation import load_operators

    operator = mutant_id.split("@", 1)[0]
    if "@" not in mutant_id or operator not in {op.id for op in load_operators()}:
        raise InputError(f"{mutant_id!r} is not a mutant id (operator@file:line)", field="MUTANT_ID",
                         hint="copy the id from `poet gate mutate`")
    with open_kb(ctx) as kb:
        kb.record_mutation_equivalent(mutant_id, proxy, note.strip())
    click.echo(f"recorded {mutant_id} as equivalent on {proxy}")
