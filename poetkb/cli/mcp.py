"""`poet mcp`: serve the knowledge base to agents over the Model Context Protocol (stdio or HTTP).

The MCP SDK is an optional extra: this module imports it (through
:mod:`poetkb.mcp_server`) only when the command runs, so every other command
starts without it, and a machine without it gets exit 2 and the install command.
"""

from __future__ import annotations

from pathlib import Path

import click

from poetkb.cli.common import main

INSTALL_HINT = "install the extra: pip install 'poetkb[mcp]'"


def require_sdk() -> None:
    """Raise an EnvironmentProblem (exit 2) naming the extra to install when the MCP SDK cannot be imported."""
    from poetkb.errors import EnvironmentProblem

    try:
        import mcp.server.mcpserver  # noqa: F401 - fail here, with the hint, rather than deep inside
    except ImportError as exc:
        raise EnvironmentProblem(f"`poet mcp` needs the MCP SDK, which is not installed ({exc})",
                                 hint=INSTALL_HINT) from exc


@main.command("mcp")
@click.option("--http", "use_http", is_flag=True,
              help="Serve over streamable HTTP at http://HOST:PORT/mcp instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on with --http; only loopback unless --allow-remote.")
@click.option("--port", type=int, default=8765, show_default=True, help="Port to listen on with --http.")
@click.option("--allow-remote", is_flag=True,
              help="Allow a --host that is not loopback (no authentication: anyone who reaches it can use it).")
@click.option("--allow-actions", is_flag=True,
              help="Also offer the tools that act: gate_run, demo_up, demo_down, learn_decide (default: read-only).")
@click.option("--root", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Directory that file arguments (diffs, evidence, profiles, metrics) must lie in "
                   "(default: the current directory).")
@click.pass_context
def mcp_command(ctx: click.Context, use_http: bool, host: str, port: int, allow_remote: bool, allow_actions: bool,
                root: Path | None) -> None:
    """Serve the knowledge base to agents over MCP: stdio by default, streamable HTTP with --http.

    Read-only unless --allow-actions. Configure an MCP client to run `poet mcp` (see docs/mcp.md).
    Needs the optional extra: pip install 'poetkb[mcp]'.
    """
    require_sdk()
    from poetkb.mcp_server import ServerOptions, build_server, check_host, serve_http, serve_stdio

    if use_http:
        check_host(host, allow_remote=allow_remote)  # refuse before building anything
    settings = ctx.find_root().obj or {}
    server = build_server(ServerOptions(db_path=settings.get("db_path"), root=root, allow_actions=allow_actions))
    if use_http:
        serve_http(server, host=host, port=port, allow_remote=allow_remote)
    else:
        serve_stdio(server)
