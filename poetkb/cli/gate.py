"""`poet gate`: run release gates against an edge, re-evaluate stored evidence, show reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from poetkb.cli.common import emit_json, main, open_kb


def _selection(func: Any) -> Any:
    func = click.option("--domain", "domains", multiple=True,
                        help="Every obligation of this domain (repeatable).")(func)
    func = click.option("--obligation", "obligations", multiple=True, metavar="ID",
                        help="One obligation by id (repeatable).")(func)
    func = click.option("--all", "all_", is_flag=True,
                        help="Every obligation with a check a gate can drive against an edge.")(func)
    return func


def _print_report(report: Any, *, verbose: bool = False) -> None:
    from poetkb.gates.reports import reports_dir

    marks = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "no-evidence": "NO-EVIDENCE",
             "not-applicable": "N/A"}
    for ob in sorted(report.obligations, key=lambda o: o.obligation_id):
        click.echo(f"{marks[ob.verdict]:<12} {ob.obligation_id:<36} {ob.title}")
        if ob.verdict != "pass" or verbose:
            for check in ob.checks:
                if check.verdict != "pass" or verbose:
                    click.echo(f"{'':13}{check.kind}: {check.diagnosis or check.observed}")
    s = report.summary
    target = report.target
    where = f" on {target.proxy or 'edge'} {target.base_url}" if target is not None and target.base_url else ""
    if report.evidence_record in ("unrecorded", "mismatch"):
        where += f" ({report.evidence_record} evidence)"
    click.echo(f"gate {marks[report.verdict]}{where}: {s.passed} of {s.selected} obligations pass "
               f"(coverage {s.coverage:.0%}), {s.failed} fail, {s.errors} error, {s.no_evidence} no evidence"
               + (f", {s.not_applicable} not applicable" if s.not_applicable else "") + "; "
               f"{report.duration_s:.1f} s", err=True)
    for problem in report.problems:
        click.echo(f"problem: {problem}", err=True)
    html = reports_dir() / f"{report.run_id}.html"
    if html.exists():
        click.echo(f"report: {html}", err=True)
    if report.evidence_dir:
        click.echo(f"evidence: {report.evidence_dir}", err=True)


def _finish(ctx: click.Context, report: Any, *, as_json: bool, junit: Path | None) -> None:
    if junit is not None:
        from poetkb.gates.reports import render_junit

        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(render_junit(report), encoding="utf-8")
    if as_json:
        emit_json(report)
    else:
        _print_report(report)
    ctx.exit(report.exit_code)


@main.group()
def gate() -> None:
    """Release gates: prove obligations on an edge with evidence, or judge evidence already stored."""


@gate.command("run")
@_selection
@click.option("--target", metavar="URL", help="The edge's HTTP URL (default: the running demo edge).")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="Your own nginx.conf or haproxy.cfg: brought up on loopback against instrumented upstreams "
                   "for the run (the file is only read).")
@click.option("--explain", is_flag=True, help="With --config: print what was rewritten and the probe plan.")
@click.option("--discover", is_flag=True,
              help="With --target: propose a target profile from a few safe GETs (printed as YAML), no gate.")
@click.option("--target-profile", "target_profile", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML describing a live edge: routes per check, hosts, safe methods, access log "
                   "(`poet schema target-profile`).")
@click.option("--proxy", type=click.Choice(["nginx", "haproxy"]), help="The proxy kind the target must be.")
@click.option("--access-log", type=click.Path(dir_okay=False, path_type=Path), help="The edge's JSON access log.")
@click.option("--upstream-admin", "upstream_admin", multiple=True, metavar="[NAME[:ROLE]=]URL",
              help="An upstream's admin URL for counters and faults (repeatable).")
@click.option("--metrics-url", metavar="URL", help="The edge's Prometheus metrics endpoint.")
@click.option("--tls-url", metavar="URL", help="The edge's TLS listener.")
@click.option("--mtls-url", metavar="URL", help="The edge's mutual-TLS listener.")
@click.option("--ca-cert", type=click.Path(dir_okay=False), help="CA certificate to verify the edge with.")
@click.option("--client-cert", type=click.Path(dir_okay=False), help="Client certificate for the mTLS listener.")
@click.option("--client-key", type=click.Path(dir_okay=False), help="Key of the client certificate.")
@click.option("--reload-command", metavar="CMD", help="Command that reloads the edge's configuration gracefully.")
@click.option("--evidence", "evidence", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Extra evidence from other tools (load summary, JUnit XML) for checks a gate cannot drive.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Also write JUnit XML here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--capture", is_flag=True, help="Record the run's loopback packets with tcpdump (when permitted).")
@click.option("--allow-remote", is_flag=True, help="Allow targets that are not on this machine's loopback.")
@click.pass_context
def gate_run(ctx: click.Context, all_: bool, obligations: tuple[str, ...], domains: tuple[str, ...],
             target: str | None, config: Path | None, explain: bool, discover: bool, target_profile: Path | None,
             proxy: str | None, access_log: Path | None,
             upstream_admin: tuple[str, ...],
             metrics_url: str | None, tls_url: str | None, mtls_url: str | None, ca_cert: str | None,
             client_cert: str | None, client_key: str | None, reload_command: str | None,
             evidence: tuple[Path, ...], junit: Path | None, as_json: bool, capture: bool, allow_remote: bool) -> None:
    """Drive traffic at the edge, keep the evidence, and judge the selected obligations.

    Exit code: 0 every selected obligation passes; 1 one fails or lacks evidence; 2 bad input, an
    unreachable target, or a check that could not run or be judged (error).
    """
    if discover:
        from poetkb.errors import InputError
        from poetkb.gates.discover import discover as propose
        from poetkb.gates.discover import render_yaml

        if not target:
            raise InputError("--discover needs --target URL", field="discover")
        profile, notes = propose(target, allow_remote=allow_remote)
        click.echo(render_yaml(profile, notes), nl=False)
        ctx.exit(0)
    from poetkb.gates.schema import Edge

    with open_kb(ctx) as kb:
        edge = Edge.from_options(target=target, config=config, target_profile=target_profile, proxy=proxy,
                                 access_log=access_log, upstream_admin=upstream_admin, metrics_url=metrics_url,
                                 tls_url=tls_url, mtls_url=mtls_url, ca_cert=ca_cert, client_cert=client_cert,
                                 client_key=client_key, reload_command=reload_command, allow_remote=allow_remote)
        report = kb.gate(all=all_, obligations=obligations, domains=domains, edge=edge, capture=capture,
                         evidence=evidence, on_edge=_explainer(as_json) if explain else None)
    _finish(ctx, report, as_json=as_json, junit=junit)


def _explainer(as_json: bool) -> Any:
    def show(edge: Any) -> None:
        for line in edge.explain_lines():
            click.echo(line, err=as_json)
        click.echo(f"brought up in {edge.started_s:.2f} s", err=True)

    return show


@gate.command("evaluate")
@click.option("--evidence", "evidence", multiple=True, required=True, type=click.Path(path_type=Path),
              help="A gate's evidence directory, or files from other tools: access log, HAR, metrics, JUnit, "
                   "load summary (repeatable).")
@_selection
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Also write JUnit XML here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.pass_context
def gate_evaluate(ctx: click.Context, evidence: tuple[Path, ...], all_: bool, obligations: tuple[str, ...],
                  domains: tuple[str, ...], junit: Path | None, as_json: bool) -> None:
    """Judge stored evidence again, without sending any traffic.

    Without a selection, a gate's evidence directory is judged for the obligations it recorded, and other
    files for the obligations whose checks read that kind of evidence. An evidence directory whose run this
    knowledge base did not record is judged like evidence from another tool and reported as unrecorded; one
    whose manifest changed since the run is an error.

    Exit code: 0 every selected obligation passes; 1 one fails or lacks evidence, or nothing was judged;
    2 bad input (unknown obligations, unreadable evidence) or a check whose evidence is unusable (error).
    """
    from poetkb.gates.schema import Selection

    selection = Selection(all=all_, obligations=list(obligations), domains=list(domains))
    with open_kb(ctx) as kb:
        report = kb.gate_evaluate(list(evidence), selection=selection)
    _finish(ctx, report, as_json=as_json, junit=junit)


@gate.command("report")
@click.argument("run_id", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html", "md", "junit"]), default="text",
              show_default=True, help="How to show the report.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
@click.pass_context
def gate_report(ctx: click.Context, run_id: str | None, fmt: str, output: Path | None) -> None:
    """Show the latest gate report, or the one of RUN_ID.

    The report is checked against the knowledge base's record of its run (verdict, and the digest of the
    evidence manifest when the evidence is still there). A report that differs from the record is refused
    (exit 2); one the knowledge base has no record of is shown with a note saying so.
    """
    from poetkb.errors import PoetError
    from poetkb.gates.reports import load_report, render
    from poetkb.gates.runner import verify_report

    report = load_report(run_id)
    try:
        with open_kb(ctx, create=False) as kb:
            status, problems = verify_report(kb, report)
    except PoetError:
        status, problems = verify_report(None, report)
    if problems:
        from poetkb.errors import InputError

        raise InputError("; ".join(problems), field="report",
                         hint="run the gate again, or evaluate the evidence directory with `poet gate evaluate`")
    if status == "unrecorded":
        click.echo(f"note: run {report.run_id} is not recorded in this knowledge base, so this report and its "
                   "evidence cannot be checked against a record", err=True)
    if fmt == "text":
        _print_report(report, verbose=False)
        return
    text = render(report, fmt, base=output.parent.resolve() if output else None)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@gate.command("kinds")
@click.option("--json", "as_json", is_flag=True, help="Print the kinds as JSON.")
def gate_kinds(as_json: bool) -> None:
    """The check kinds a catalog may use: what each proves and the evidence it reads."""
    from poetkb.gates.kinds import describe_kinds

    kinds = describe_kinds()
    if as_json:
        emit_json(kinds)
        return
    for kind in kinds:
        how = "drives traffic" if kind.traffic else "from evidence"
        click.echo(f"{kind.kind:<28} {how:<15} {kind.summary}")
