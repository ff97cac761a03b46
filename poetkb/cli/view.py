"""`poet view`: serve the read-only evidence viewer on loopback."""

from __future__ import annotations

import click

from poetkb.cli.common import main, open_kb


@main.command("view")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs --allow-remote.")
@click.option("--port", default=8470, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0 picks a free one).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option("--allow-remote", is_flag=True,
              help="Allow a non-loopback --host: whoever reaches it sees the knowledge base and its evidence.")
@click.pass_context
def view(ctx: click.Context, host: str, port: int, open_browser: bool, allow_remote: bool) -> None:
    """Serve a local, read-only web page over the knowledge base and its gate evidence.

    Obligations with their graph neighbourhood and verdicts over time, each gate run's checks with expected
    and observed values, the captured requests and responses, log slices and metric deltas behind every
    verdict, a diff of two runs, mining coverage per suite and load results against SLOs. The page loads
    nothing from the network and runs no script. Stop it with Ctrl-C.
    """
    from poetkb.view.server import make_server

    kb = open_kb(ctx)  # builds or upgrades the file first; the server itself only reads
    path = kb.path
    kb.close()
    server = make_server(path, host=host, port=port, allow_remote=allow_remote)
    click.echo(f"poet view: serving {path} at {server.url} (read-only; Ctrl-C to stop)", err=True)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        click.echo("poet view: stopped", err=True)
    finally:
        server.server_close()
