"""Shared pieces of the CLI: the root group, error handling, output helpers."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from poetkb.errors import PoetError

#: exit code of a crash: never 0 (pass) or 1 (a gate failed), so a crash never reads as a verdict
EXIT_INTERNAL = 3


class PoetGroup(click.Group):
    """A click group that turns every error into a clear message and its exit code.

    A :class:`PoetError` exits with its own code (2 bad input, 1 a gate failed).
    Anything else is a crash: one line on stderr and exit 3; the traceback is
    printed only under ``--debug`` or ``POET_DEBUG=1``.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PoetError as exc:
            fail(exc)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            closed_pipe()
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the one place a crash becomes exit 3
            crash(ctx, exc)


#: exit code when the reader of our output went away (`poet ... | head`): the shell's code for SIGPIPE
EXIT_CLOSED_PIPE = 141


def closed_pipe() -> NoReturn:
    """The reader of standard output closed it: stop quietly, as a command killed by SIGPIPE would.

    Standard output is pointed at /dev/null first, so the flush at exit does not raise again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)
    sys.exit(EXIT_CLOSED_PIPE)


def fail(exc: PoetError) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


def debug_enabled(ctx: click.Context | None = None) -> bool:
    """True under ``--debug`` or ``POET_DEBUG=1``."""
    root = ctx.find_root() if ctx is not None else None
    if root is not None and isinstance(root.obj, dict) and root.obj.get("debug"):
        return True
    return os.environ.get("POET_DEBUG", "") not in ("", "0")


def crash(ctx: click.Context | None, exc: BaseException) -> NoReturn:
    """Report an internal error in one line (traceback under --debug) and exit 3."""
    if debug_enabled(ctx):
        import traceback

        traceback.print_exception(exc)
    what = type(exc).__name__
    detail = str(exc).splitlines()[0][:300] if str(exc) else ""
    click.echo(f"internal error: {what}{': ' + detail if detail else ''}", err=True)
    click.echo("  hint: this is a bug in poetkb, not a verdict; rerun with --debug (or POET_DEBUG=1) "
               "for the traceback and report it", err=True)
    sys.exit(EXIT_INTERNAL)


@click.group(cls=PoetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="POET_DB",
    help="Knowledge base file (default: $POET_DB or ~/.local/share/poetkb/kb.sqlite).",
)
@click.option("--debug", is_flag=True, help="Print the traceback of an internal error (also POET_DEBUG=1).")
@click.version_option(package_name="poetkb", prog_name="poet")
@click.pass_context
def main(ctx: click.Context, db_path: Path | None, debug: bool) -> None:
    """poetkb: obligations, evidence and release gates for risky changes.

    Exit codes: 0 pass, 1 a gate or check failed, 2 bad input, 3 an internal error
    (141 when the reader of the output closed it early, as with `| head`).
    """
    ctx.ensure_object(dict)
    ctx.obj["db_path"] = db_path
    ctx.obj["debug"] = debug


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
