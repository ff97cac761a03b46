"""The `poet plan` group: plans derived from the knowledge base for a change.

`poet plan test` (a release checklist of the obligations a change puts at
risk) lives here; other modules add their own subcommands to :data:`plan`
(for example `poet plan load` in :mod:`poetkb.cli.load`) by importing it.
"""

from __future__ import annotations

from poetkb.cli.common import main


@main.group()
def plan() -> None:
    """Plans for a change: test plans (release checklists), load plans."""
