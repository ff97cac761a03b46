"""Build the MCP server over a knowledge base and serve it over stdio or streamable HTTP.

:func:`build_server` assembles an SDK ``MCPServer`` from the read-only tools
(:mod:`.reading`), the resources (:mod:`.resources`) and, only when asked, the
acting tools (:mod:`.acting`). :func:`serve_stdio` and :func:`serve_http` run it.

HTTP is served on loopback by default. Another address is refused unless the
caller passes ``allow_remote=True`` (``poet mcp --http --allow-remote``), and
then a warning says that the server has no authentication. Host and Origin
headers are checked against the served address, which stops a web page in a
browser on this machine from reaching the server through DNS rebinding.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import TYPE_CHECKING

from poetkb._version import __version__
from poetkb.errors import EnvironmentProblem, InputError
from poetkb.mcp_server import acting, reading, resources
from poetkb.mcp_server.session import ServerOptions, Session

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings

NAME = "poetkb"
INSTRUCTIONS = """\
poetkb holds reliability obligations (what must be true of an edge or service), the failure modes they guard
against, the evidence that proves them, and release-gate verdicts. Start with obligations_search or rank_change
for a change you are reviewing; obligation_show and related explain one obligation; test_plan and runbook say
what to prove and watch before release; gate_runs, gate_report and gate_evaluate read verdicts on evidence;
load_interpret judges load-test results against a service profile. Gates fail closed: no evidence is never a pass.
"""
DEFAULT_PORT = 8765


def build_server(options: ServerOptions | None = None) -> MCPServer:
    """An MCP server over the knowledge base named in ``options`` (read-only unless ``allow_actions``)."""
    from mcp.server.mcpserver import MCPServer

    options = options or ServerOptions()
    session = Session(options)
    mode = "tools that act are enabled" if options.allow_actions else "read-only: no tool changes anything"
    server: MCPServer = MCPServer(NAME, title="poetkb knowledge base", version=__version__,
                                  instructions=f"{INSTRUCTIONS}This server is {mode}.", log_level="WARNING")
    reading.register(server, session)
    resources.register(server, session)
    if options.allow_actions:
        acting.register(server, session)
    return server


def serve_stdio(server: MCPServer) -> None:
    """Serve over stdin/stdout until the client closes stdin (stdout carries only protocol messages)."""
    server.run("stdio")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, *, allow_remote: bool) -> str | None:
    """Refuse a non-loopback host unless allowed; return the warning to show when it is allowed."""
    if is_loopback(host):
        return None
    if not allow_remote:
        raise InputError(f"refusing to serve on {host}: it is not this machine's loopback", field="--host",
                         hint="use --host 127.0.0.1 (the default), or add --allow-remote to serve the knowledge "
                              "base to other machines without authentication")
    return (f"warning: serving the knowledge base on {host}, reachable from other machines, without "
            "authentication: anyone who can reach it can read it (and act, if tools that act are enabled)")


def _transport_security(host: str) -> TransportSecuritySettings:
    from mcp.server.transport_security import TransportSecuritySettings

    shown = f"[{host.strip('[]')}]" if ":" in host else host
    hosts = [f"{shown}:*"]
    if is_loopback(host):
        hosts += ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    elif host.strip("[]") in ("0.0.0.0", "::"):  # every address: the Host header can be any of them
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    unique = list(dict.fromkeys(hosts))
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=unique,
                                     allowed_origins=[f"http://{h}" for h in unique])


def _check_port_free(host: str, port: int) -> None:
    """Fail with exit 2 and a clear message when the port is taken (the HTTP server would only log it)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"cannot resolve {host}: {exc.strerror}", field="--host") from exc
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot listen on {host}:{port}: {exc.strerror}",
                                     hint="pick another port with --port") from exc


def serve_http(server: MCPServer, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
               allow_remote: bool = False) -> None:
    """Serve over streamable HTTP at ``http://HOST:PORT/mcp`` until interrupted (SIGINT or SIGTERM)."""
    warning = check_host(host, allow_remote=allow_remote)
    if not 1 <= port <= 65535:
        raise InputError(f"port {port} is out of range", field="--port", hint="use a port from 1 to 65535")
    _check_port_free(host, port)
    if warning:
        print(warning, file=sys.stderr)
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    print(f"poet mcp: serving the knowledge base at http://{shown}:{port}/mcp", file=sys.stderr, flush=True)
    server.run("streamable-http", host=host.strip("[]"), port=port, transport_security=_transport_security(host))
