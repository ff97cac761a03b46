"""An MCP server that serves the knowledge base to agents (``poet mcp``; needs ``pip install 'poetkb[mcp]'``).

Agents speak the Model Context Protocol; this package lets them ask poetkb what
a person asks the ``poet`` command: list, show and search obligations, walk the
knowledge graph, rank a change, derive a test plan or a runbook, read gate
reports, judge evidence and load results. Results are the library's pydantic
models, published as the tools' output schemas. Tools that act (run a gate,
start or stop the demo, record a review decision) are only offered when the
server is started with ``allow_actions``.

>>> from poetkb.mcp_server import ServerOptions, build_server   # doctest: +SKIP
>>> server = build_server(ServerOptions(allow_actions=False))    # doctest: +SKIP

Importing this package imports the ``mcp`` SDK; nothing else in poetkb imports
it (the ``poet mcp`` command imports this package only when it runs).
"""

from __future__ import annotations

from poetkb.mcp_server.server import DEFAULT_PORT, build_server, check_host, is_loopback, serve_http, serve_stdio
from poetkb.mcp_server.session import ServerOptions

__all__ = ["DEFAULT_PORT", "ServerOptions", "build_server", "check_host", "is_loopback", "serve_http",
           "serve_stdio"]
