"""Shared pieces of the CLI: the root group, error handling, output helpers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from poetkb.errors import PoetError


class PoetGroup(click.Group):
    """A click group that turns PoetError into a clear message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PoetError as exc:
            fail(exc)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


def fail(exc: PoetError) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


@click.group(cls=PoetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="POET_DB",
    help="Knowledge base file (default: $POET_DB or ~/.local/share/poetkb/kb.sqlite).",
)
@click.version_option(package_name="poetkb", prog_name="poet")
@click.pass_context
def main(ctx: click.Context, db_path: Path | None) -> None:
    """poetkb: obligations, evidence and release gates for risky changes."""
    ctx.ensure_object(dict)
    ctx.obj["db_path"] = db_path


def open_kb(ctx: click.Context, *, create: bool = True) -> Any:
    """Open the knowledge base named by --db / POET_DB, or the embedded default."""
    from poetkb.kb import open as open_kb_file

    root = ctx.find_root()
    path = root.obj.get("db_path") if root.obj else None
    return open_kb_file(path, create=create)


def emit_json(data: Any) -> None:
    """Print JSON for scripts: models and lists of models are dumped in JSON mode."""
    click.echo(json.dumps(to_jsonable(data), indent=2, sort_keys=False))


def to_jsonable(data: Any) -> Any:
    if hasattr(data, "model_dump"):
        return data.model_dump(mode="json")
    if isinstance(data, list | tuple):
        return [to_jsonable(d) for d in data]
    if isinstance(data, dict):
        return {k: to_jsonable(v) for k, v in data.items()}
    return data


def write_output(text: str, out: Path | None) -> None:
    """Print ``text``, or write it to ``out`` (naming the file on failure)."""
    if out is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    from poetkb.errors import InputError

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the output file: {exc.strerror}", file=out, field="--out") from exc
    click.echo(f"wrote {out}", err=True)
