"""`poet rank` and `poet runbook`: which obligations a change puts at risk, and how to watch them.

A change that matches nothing is not an error: `poet rank` says "no obligation
matched" with what it understood, on stderr, and exits 0 (with `--json`, it
prints an empty list). An empty change, a binary or malformed diff, an unknown
component or obligation id exits 2 with a message saying what to fix.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import click

from poetkb.cli.common import emit_json, main, open_kb, write_output

CHANGE_HELP = "The change in words, e.g. 'switch the cache key to include Accept-Language' (a unified diff works too)."
DIFF_HELP = "A unified diff of the change (git diff output; '-' reads standard input)."
COMPONENT_HELP = "The component the change is for (nginx, haproxy, http-service, postgres, ...)."
GIT_HELP = ("Read the change from git: RANGE is A..B, A...B or a revision; without it, uncommitted changes against "
            "HEAD, else main...HEAD on a branch, else the last commit. Commit messages and the branch name count "
            "as the change's words.")
REPO_HELP = "The repository --git reads (default: the current directory)."
TICKET_HELP = ("A ticket or pull-request description in Markdown ('-' reads standard input); its sections (summary, "
               "risk, rollout, ...) are read as the change's words.")


OPENAPI_HELP = ("Two versions of an OpenAPI document (JSON or YAML): endpoints added or removed, authentication "
                "changed, timeouts and rate limits declared are read as the change's words.")


def with_ticket(change: str | None, ticket: str | None, openapi: tuple[str, str] | None = None) -> str | None:
    """The --change text with the --ticket's sections and the --openapi differences after it."""
    parts = [change]
    if ticket is not None:
        from poetkb.rank.ticket import read_ticket

        parts.append(read_ticket(ticket).text)
    if openapi:
        from poetkb.rank.openapi import read_openapi_change

        api = read_openapi_change(*openapi)
        if not api.findings:
            click.echo(f"warning: {openapi[0]} and {openapi[1]} differ in nothing poetkb reads", err=True)
        else:
            parts.append(api.text)
    return "\n".join(t for t in parts if t and t.strip()) or None


def git_option(value: str | None, repo: Path | None) -> Any:
    """The --git option as the library takes it: a GitChange read now, or None."""
    if value is None:
        if repo is not None:
            from poetkb.errors import InputError

            raise InputError("--repo needs --git", field="--repo", hint="add --git [RANGE]")
        return None
    from poetkb.rank.gitchange import read_git

    return read_git(repo or Path.cwd(), value or None)


def echo_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


def read_diff_option(value: str | None) -> str | Path | None:
    """The --diff option as the library takes it: a Path, or the text read from standard input for '-'."""
    if value is None:
        return None
    if value == "-":
        from poetkb.rank.change import read_diff_stream

        return read_diff_stream(sys.stdin.buffer, "<stdin>")
    return Path(value)


def _wrap(text: str, indent: str) -> str:
    return textwrap.fill(text, width=110, initial_indent=indent, subsequent_indent=indent + "  ")


@main.command()
@click.option("--change", "change", help=CHANGE_HELP)
@click.option("--diff", "diff", metavar="FILE", help=DIFF_HELP)
@click.option("--git", "git_range", is_flag=False, flag_value="", default=None, metavar="[RANGE]", help=GIT_HELP)
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), help=REPO_HELP)
@click.option("--ticket", metavar="FILE", help=TICKET_HELP)
@click.option("--openapi", nargs=2, metavar="OLD NEW", help=OPENAPI_HELP)
@click.option("--component", help=COMPONENT_HELP)
@click.option("--top", default=10, show_default=True, type=click.IntRange(1, 200), help="How many obligations.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {id, score, why, ...}, best first.")
@click.pass_context
def rank(ctx: click.Context, change: str | None, diff: str | None, git_range: str | None, repo: Path | None,
         ticket: str | None, openapi: tuple[str, str] | None, component: str | None, top: int,
         as_json: bool) -> None:
    """Rank the obligations a change puts at risk, each with why (rules, words, graph paths, your tests)."""
    change = with_ticket(change, ticket, openapi)
    diff_input = read_diff_option(diff)
    git = git_option(git_range, repo)
    with open_kb(ctx) as kb:
        ranking = kb.rank(change, diff=diff_input, component=component, top=top, git=git)
    echo_warnings(ranking.change.warnings)
    if as_json:
        emit_json(ranking.obligations)
        if not ranking.obligations:
            click.echo(ranking.message, err=True)
        return
    click.echo("Understood:")
    for line in ranking.change.describe():
        click.echo(_wrap(line, "  "))
    if not ranking.obligations:
        click.echo(ranking.message, err=True)
        return
    click.echo("")
    for position, ranked in enumerate(ranking.obligations, start=1):
        click.echo(f"{position:>2}. {ranked.score:.2f}  {ranked.id}  [{ranked.risk}]  {ranked.title}")
        for sentence in ranked.why.sentences[1:]:
            click.echo(_wrap(f"- {sentence}", "      "))


@main.command()
@click.option("--obligation", "obligations", multiple=True, metavar="ID",
              help="An obligation to cover (repeatable); or use --change/--diff to rank them from a change.")
@click.option("--change", "change", help=CHANGE_HELP)
@click.option("--diff", "diff", metavar="FILE", help=DIFF_HELP)
@click.option("--component", help=COMPONENT_HELP)
@click.option("--top", default=5, show_default=True, type=click.IntRange(1, 50),
              help="With a change: how many of the top obligations to cover.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md", show_default=True,
              help="Markdown for people, or JSON for tools.")
@click.pass_context
def runbook(ctx: click.Context, obligations: tuple[str, ...], change: str | None, diff: str | None,
            component: str | None, top: int, out: Path | None, fmt: str) -> None:
    """Observability runbook: signals to collect; per failure mode symptoms, mitigation, verification, escalation."""
    from poetkb.errors import InputError

    if not obligations and not change and diff is None:
        raise InputError("name the obligations with --obligation ID, or describe the change with --change/--diff",
                         field="obligation", hint="e.g. poet runbook --obligation cache.vary.honored")
    diff_input = read_diff_option(diff)
    with open_kb(ctx) as kb:
        book = kb.runbook(obligations=list(obligations) or None, change=change, diff=diff_input,
                          component=component, top=top)
    if book.message:
        click.echo(book.message, err=True)
    write_output(render(book, fmt), out)


def render(model: Any, fmt: str) -> str:
    """A plan or runbook as Markdown or JSON text."""
    if fmt == "json":
        return model.model_dump_json(indent=2) + "\n"
    return str(model.to_markdown())
