"""The `poet plan` group: plans derived from the knowledge base for a change.

`poet plan test` (a release checklist of the obligations a change puts at
risk) lives here; other modules add their own subcommands to :data:`plan`
(for example `poet plan load` in :mod:`poetkb.cli.load`) by importing it.
"""

from __future__ import annotations

from pathlib import Path

import click

from poetkb.cli.common import main, open_kb, write_output
from poetkb.cli.rank import (
    CHANGE_HELP,
    COMPONENT_HELP,
    DIFF_HELP,
    GIT_HELP,
    OPENAPI_HELP,
    REPO_HELP,
    TICKET_HELP,
    echo_warnings,
    git_option,
    read_diff_option,
    render,
    with_ticket,
)


@main.group()
def plan() -> None:
    """Plans for a change: test plans (release checklists), load plans."""


@plan.command("test")
@click.option("--change", "change", help=CHANGE_HELP)
@click.option("--diff", "diff", metavar="FILE", help=DIFF_HELP)
@click.option("--git", "git_range", is_flag=False, flag_value="", default=None, metavar="[RANGE]", help=GIT_HELP)
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), help=REPO_HELP)
@click.option("--ticket", metavar="FILE", help=TICKET_HELP)
@click.option("--openapi", nargs=2, metavar="OLD NEW", help=OPENAPI_HELP)
@click.option("--component", help=COMPONENT_HELP)
@click.option("--top", default=5, show_default=True, type=click.IntRange(1, 50), help="How many obligations to plan.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["md", "json", "junit"]), default="md", show_default=True,
              help="md: a pull-request comment (summary, gate command, collapsed details); json: the TestPlan model "
                   "(`poet schema test-plan`); junit: each obligation a test case awaiting evidence.")
@click.pass_context
def plan_test(ctx: click.Context, change: str | None, diff: str | None, git_range: str | None, repo: Path | None,
              ticket: str | None, openapi: tuple[str, str] | None, component: str | None, top: int,
              out: Path | None, fmt: str) -> None:
    """Test plan for a change: per obligation at risk, what must be true, how to exercise it, evidence, gate."""
    change = with_ticket(change, ticket, openapi)
    diff_input = read_diff_option(diff)
    git = git_option(git_range, repo)
    with open_kb(ctx) as kb:
        test_plan = kb.test_plan(change, diff=diff_input, component=component, top=top, git=git)
    echo_warnings(test_plan.change.warnings)
    if test_plan.message:
        click.echo(test_plan.message, err=True)
    write_output(test_plan.to_junit() if fmt == "junit" else render(test_plan, fmt), out)
