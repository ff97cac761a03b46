"""Docs that cannot drift: the CLI reference is generated from the commands and must match."""

from __future__ import annotations

from pathlib import Path

from poetkb.cli.reference import render

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_cli_reference_matches_the_commands() -> None:
    """docs/cli.md equals what `python -m poetkb.cli.reference` generates (regenerate it when this fails)."""
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == render()


def test_every_command_has_help_text() -> None:
    """Every command and group says what it does."""
    import click

    from poetkb.cli import main

    def walk(cmd: click.Command, path: str) -> None:
        assert cmd.help, f"{path} has no help text"
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}")

    walk(main, "poet")
