"""Core commands: init, obligations, kb, schema, search, related."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from poetkb.cli.common import emit_json, main, open_kb


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def init(ctx: click.Context, as_json: bool) -> None:
    """Show what this machine has for testing (proxies, capture tools) and where the knowledge base is."""
    from poetkb.environment import machine_report

    report = machine_report(ctx.find_root().obj.get("db_path"))
    if as_json:
        emit_json(report)
        return
    for tool in report.tools:
        if tool.found:
            click.echo(f"  {tool.name:<9} {tool.version or '?':<10} {tool.path}")
        else:
            click.echo(f"  {tool.name:<9} {'missing':<10} install with: {tool.install_hint}")
    state = "present" if report.db_exists else "not built yet (built on first use)"
    click.echo(f"knowledge base: {report.db_path} ({state})")
    click.echo(f"work directory: {report.work_dir}")


@main.group()
def obligations() -> None:
    """List and show obligations."""


@obligations.command("list")
@click.option("--domain", help="Only this domain (cache, routing, perf, auth, data, ...).")
@click.option("--risk", type=click.Choice(["high", "medium", "low"]), help="Only this risk.")
@click.option("--component", help="Only obligations that apply to this component (nginx, haproxy, ...).")
@click.option("--tag", help="Only obligations with this tag (edge, performance, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of obligations.")
@click.pass_context
def obligations_list(
    ctx: click.Context, domain: str | None, risk: str | None, component: str | None, tag: str | None, as_json: bool
) -> None:
    """List obligations, sorted by id."""
    with open_kb(ctx) as kb:
        if as_json:
            emit_json(kb.obligations(domain=domain, risk=risk, component=component, tag=tag))
            return
        found = kb.obligation_lines(domain=domain, risk=risk, component=component, tag=tag)
    for ob in found:
        click.echo(f"{ob.id:<36} {ob.risk:<7} {ob.title}")
    click.echo(f"{len(found)} obligation{'s' if len(found) != 1 else ''}", err=True)


@obligations.command("show")
@click.argument("obligation_id")
@click.option("--json", "as_json", is_flag=True, help="Print the obligation as JSON.")
@click.pass_context
def obligations_show(ctx: click.Context, obligation_id: str, as_json: bool) -> None:
    """Show one obligation: statement, rationale, evidence, checks and recipes."""
    from poetkb.obligation_text import obligation_text

    with open_kb(ctx) as kb:
        ob = kb.obligation(obligation_id)
        if as_json:
            emit_json(ob)
            return
        click.echo(obligation_text(kb, ob))


@main.group()
def kb() -> None:
    """Build, check and describe the knowledge base."""


@kb.command("build")
@click.option("--from", "source", type=click.Path(file_okay=False, path_type=Path),
              help="Catalog directory (default: the catalog shipped with poetkb).")
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Knowledge base file to write (default: --db of `poet`, $POET_DB, or the user data directory).")
@click.option("--force", is_flag=True,
              help="Replace a damaged poetkb knowledge base (kept beside it as NAME.damaged-TIME). Never "
                   "overwrites a file that is not poetkb's or one from a newer poetkb.")
@click.pass_context
def kb_build(ctx: click.Context, source: Path | None, db_path: Path | None, force: bool) -> None:
    """Build the knowledge base from the catalog files; the old file stays intact if anything fails.

    Writes only to a missing file or a poetkb knowledge base (its gate runs, baselines,
    learn decisions and caches are carried over); any other file is refused with exit 2.
    """
    from poetkb import store
    from poetkb.kb import build
    from poetkb.paths import default_db_path

    target = Path(db_path or ctx.find_root().obj.get("db_path") or default_db_path())
    state = store.writable_target(target, force=force)  # what was there: a damaged file is kept beside it
    with build(target, source, force=force) as built:
        stats = built.stats()
    counts = stats.counts
    if state.kind == "damaged":
        kept = sorted(target.parent.glob(f"{target.name}.damaged-*"))
        click.echo(f"kept the damaged file as {kept[-1] if kept else '?'}", err=True)
    click.echo(
        f"built {stats.path}: {counts['obligations']} obligations, {counts['failure_modes']} failure modes, "
        f"{counts['recipes']} recipes, {counts['rules']} rules, {counts['patterns']} learned patterns, "
        f"{counts['edges']} graph edges"
    )


@kb.command("check")
@click.option("--from", "source", type=click.Path(file_okay=False, path_type=Path),
              help="Catalog directory (default: the catalog shipped with poetkb).")
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Knowledge base file to check (default: --db of `poet`, $POET_DB, or the user data directory).")
@click.option("--catalog-only", is_flag=True, help="Check only the catalog files.")
@click.option("--db-only", is_flag=True, help="Check only the knowledge base file.")
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
@click.pass_context
def kb_check(ctx: click.Context, source: Path | None, db_path: Path | None, catalog_only: bool, db_only: bool,
             as_json: bool) -> None:
    """Validate the catalog and the knowledge base file.

    The catalog: schema, unknown fields, duplicate ids, dangling references. The
    knowledge base file (when it exists, or when --db names it): that it is poetkb's,
    of a schema this version knows, and passes SQLite's integrity check. Lists every
    problem with its file; exits 2 when there is any.
    """
    from poetkb import store
    from poetkb.catalog import check_catalog, shipped_catalog_root
    from poetkb.errors import Problem
    from poetkb.paths import default_db_path

    if catalog_only and db_only:
        raise click.UsageError("--catalog-only and --db-only exclude each other")
    problems: list[Problem] = []
    lines: list[str] = []
    if not db_only:
        catalog, found = check_catalog(source or shipped_catalog_root())
        problems += found
        if not found:
            lines.append(
                f"catalog ok: {len(catalog.obligations)} obligations, {len(catalog.failure_modes)} failure modes, "
                f"{len(catalog.recipes)} recipes, {len(catalog.rules)} rules, {len(catalog.patterns)} patterns"
            )
    target = Path(db_path or ctx.find_root().obj.get("db_path") or default_db_path())
    if not catalog_only and not (db_path or db_only or os.path.lexists(target)):
        lines.append(f"knowledge base: none at {target} yet (nothing to check)")
    elif not catalog_only:
        found_db = [Problem(str(target), None, None, text) for text in store.integrity_problems(target)]
        problems += found_db
        if not found_db:
            lines.append(f"knowledge base ok: {target} (integrity check passed)")
    if as_json:
        emit_json({"ok": not problems, "problems": [p.__dict__ for p in problems]})
    else:
        for problem in problems:
            click.echo(str(problem), err=True)
        for line in lines:
            click.echo(line)
    if problems:
        if not as_json:
            click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}", err=True)
        raise SystemExit(2)


@kb.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@click.pass_context
def kb_stats(ctx: click.Context, as_json: bool) -> None:
    """Counts, schema version and provenance of the knowledge base."""
    with open_kb(ctx) as base:
        if as_json:
            emit_json(base.stats())
            return
        meta, counts, path = base.meta(), base.table_counts(), base.path
    click.echo(f"path:            {path}")
    click.echo(f"schema version:  {int(meta.get('schema_version', 0))}")
    click.echo(f"built:           {meta.get('built_at', '?')} by poetkb {meta.get('poetkb_version', '?')}")
    click.echo(f"catalog:         {meta.get('catalog_fingerprint', '')[:16]}")
    for name, count in counts.items():
        click.echo(f"  {name:<24} {count}")


@main.command()
@click.argument("name", required=False)
def schema(name: str | None) -> None:
    """Print the JSON Schema of a public model (no NAME: list the names)."""
    from poetkb.schemas import json_schema, schema_names

    if name is None:
        for known in schema_names():
            click.echo(known)
        return
    click.echo(json.dumps(json_schema(name), indent=2))


@main.command()
@click.argument("text", nargs=-1, required=True)
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 200))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def search(ctx: click.Context, text: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Full-text search over obligations' titles, statements, rationale and keywords."""
    with open_kb(ctx) as base:
        if as_json:
            emit_json(base.search(" ".join(text), limit=limit))
            return
        found = base.search_lines(" ".join(text), limit=limit)
    for ob in found:
        click.echo(f"{ob.id:<36} {ob.title}")
    if not found:
        click.echo("no obligation matched", err=True)


@main.command()
@click.argument("name")
@click.option("--depth", default=1, show_default=True, type=click.IntRange(1, 4))
@click.option("--edge", "edges", multiple=True, help="Only follow edges of this kind (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def related(ctx: click.Context, name: str, depth: int, edges: tuple[str, ...], as_json: bool) -> None:
    """Graph neighbourhood of an obligation (or any node, as kind:id), with edge kinds."""
    with open_kb(ctx) as base:
        if as_json:
            emit_json(base.related(name, depth=depth, edge_kinds=edges or None))
            return
        found = base.related_lines(name, depth=depth, edge_kinds=edges or None)
    for node in found:
        arrow = "->" if node.direction == "out" else "<-"
        role = {"own": "  [your test]", "reference": "  [public example, not coverage]"}.get(node.role or "", "")
        click.echo(f"{'  ' * (node.distance - 1)}{arrow} {node.edge:<18} {node.id}  ({node.label}){role}")
