"""`poet kb verify`: check the catalog's behaviour claims against the real proxies, and its references."""

from __future__ import annotations

from pathlib import Path

import click

from poetkb.cli.common import emit_json
from poetkb.cli.core import kb


@kb.command("verify")
@click.option("--from", "source", type=click.Path(file_okay=False, path_type=Path),
              help="Catalog directory (default: the catalog shipped with poetkb).")
@click.option("--claim", "claim", help="Run only the probes of this claim id.")
@click.option("--proxy", type=click.Choice(["nginx", "haproxy"]), help="Run only the probes of this proxy.")
@click.option("--record", is_flag=True,
              help="When every probe passes, record the proxy versions in knowledge/probes/verified.yaml.")
@click.option("--references", "references_only", is_flag=True,
              help="Check only the cited RFC sections and documentation anchors, offline (no proxy runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def kb_verify(source: Path | None, claim: str | None, proxy: str | None, record: bool, references_only: bool,
              as_json: bool) -> None:
    """Run the probes behind the catalog's claims against NGINX and HAProxy on loopback.

    Exits 0 when every probe shows what its claims say, 1 when one does not (the claims are named),
    2 on bad input. With --references, checks every cited section against the stored index instead.
    """
    from poetkb.catalog import shipped_catalog_root
    from poetkb.errors import CheckFailed

    root = source or shipped_catalog_root()
    if references_only:
        _references(root, as_json)
        return
    from poetkb.verify.run import verify

    report = verify(root, claim=claim, proxy=proxy, record=record)
    if as_json:
        emit_json({"ok": not report.failed, "versions": report.versions, "results": report.results,
                   "claims": {"total": report.summary.total, "verified": report.summary.verified,
                              "unverified": report.summary.unverified},
                   "recorded": report.recorded})
    else:
        for result in report.results:
            mark = "ok  " if result.passed else "FAIL"
            moved = result.recorded_version is not None and result.recorded_version != result.version
            note = f"  [recorded on {result.recorded_version}; --record to update]" if moved and result.passed else ""
            click.echo(f"{mark} {result.proxy} {result.version}  {result.id}  ({result.seconds:.1f}s){note}")
            for failure in result.failures:
                click.echo(f"       {failure}")
            if not result.passed:
                was = f"; it passed on {result.proxy} {result.recorded_version}" if result.recorded_version else ""
                click.echo(f"       claims that no longer hold{was}: {', '.join(result.claims) or '(none)'}")
        s = report.summary
        click.echo(f"{len(report.results) - len(report.failed)} of {len(report.results)} probes passed; "
                   f"directive claims: {s.total}, verified {s.verified}, unverified {len(s.unverified)}")
        if report.recorded:
            click.echo(f"recorded versions in {report.recorded}")
    if report.failed:
        raise CheckFailed(f"claims failed on the installed proxies: {', '.join(report.failed_claims) or '(none)'}; "
                          f"probes: {', '.join(r.id for r in report.failed)}")


def _references(root: Path, as_json: bool) -> None:
    from poetkb.catalog import load_catalog
    from poetkb.errors import CatalogError
    from poetkb.verify.references import check_references

    catalog = load_catalog(root)
    result = check_references(catalog)
    if as_json:
        emit_json({"ok": not result.problems, "checked": result.checked, "unindexed": result.unindexed,
                   "problems": [p.__dict__ for p in result.problems]})
    else:
        click.echo(f"{result.checked} references checked against the index; {len(result.unindexed)} cite "
                   f"documents the index does not hold")
    if result.problems:
        raise CatalogError(result.problems)
