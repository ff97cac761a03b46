"""The tools that act: run a gate, start and stop the demo edge, record a review decision.

They exist only when the server is started with ``--allow-actions``; a
read-only server (the default) does not list them and refuses a call to them
as an unknown tool. Each carries MCP tool annotations saying what it changes,
so a client can ask a person before calling it:

=================  ==========  ===========  ==========  =======================================
tool               read-only   destructive  idempotent  what it changes
=================  ==========  ===========  ==========  =======================================
``gate_run``       no          no           no          sends traffic to a loopback edge; records
                                                        the run and writes its report and evidence
``demo_up``        no          yes          yes         starts the demo (replaces a running one
                                                        with other settings)
``demo_down``      no          yes          yes         stops every demo process
``learn_decide``   no          yes          yes         stores accept/reject decisions, remaps the
                                                        learned patterns (replaces earlier ones)
=================  ==========  ===========  ==========  =======================================

Gates run only against this machine's loopback (the library refuses other
targets unless asked, and this server never asks), and the options that would
run a command (``--reload-command``) or capture packets are not offered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.types import ToolAnnotations
from pydantic import Field

from poetkb.demo.state import DemoState
from poetkb.gates.schema import Edge, GateReport
from poetkb.mcp_server.results import DemoStopped, ReviewList
from poetkb.mcp_server.session import Session, add_tool, tool_errors
from poetkb.models import PoetModel

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

ADDITIVE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                           open_world_hint=False)
REPLACING = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)


class MappingRef(PoetModel):
    """A learned pattern and the obligation it is (or is not) a test of."""

    pattern_id: str
    obligation_id: str


def register(server: MCPServer, session: Session) -> list[str]:
    """Add the acting tools to ``server``; return their names."""
    tools: list[tuple[Callable[..., Any], ToolAnnotations]] = [
        (gate_run, ADDITIVE), (demo_up, REPLACING), (demo_down, REPLACING), (learn_decide, REPLACING)]
    return [add_tool(server, session, tool, hints) for tool, hints in tools]


def gate_run(session: Session, obligations: list[str] | None = None, domains: list[str] | None = None,
             all: bool = False,  # the name agents see
             target: Annotated[str | None, Field(description="The edge's URL on this machine's loopback; default: "
                                                 "the running demo edge.")] = None,
             proxy: Literal["nginx", "haproxy"] | None = None) -> GateReport:
    """ACTS: drive traffic at the edge, keep the evidence, judge the selected obligations, record the run.

    Select with obligation ids, domains, or all (every obligation a gate can drive). The report's
    exit_code is 0 when every selected obligation passes and 1 otherwise.
    """
    with session.kb() as kb:
        return kb.gate(all=all, obligations=obligations or [], domains=domains or [],
                       edge=Edge.from_options(target=target, proxy=proxy))


def demo_up(session: Session, proxy: Literal["nginx", "haproxy"] = "nginx",
            variant: Annotated[str, Field(description="good, or a seeded-fault variant name.")] = "good",
            base_port: Annotated[int | None, Field(ge=1024, le=65000, description="First port of the demo's "
                                                   "range (default 18080).")] = None) -> DemoState:
    """ACTS: start the demo edge (NGINX or HAProxy on 127.0.0.1 with its upstreams) and wait until it answers.

    The same settings again change nothing; other settings replace the running demo.
    """
    from poetkb.demo.lifecycle import up

    with tool_errors():
        return up(proxy=proxy, variant=variant, base_port=base_port)


def demo_down(session: Session) -> DemoStopped:
    """ACTS: stop every process of the demo edge and check that none is left."""
    from poetkb.demo.lifecycle import down

    with tool_errors():
        return DemoStopped(stopped=down())


def learn_decide(session: Session, mappings: Annotated[list[MappingRef], Field(min_length=1)],
                 decision: Literal["accept", "reject"],
                 note: Annotated[str, Field(max_length=500)] = "") -> ReviewList:
    """ACTS: accept or reject learned test-to-obligation mappings; stored, and applied now and by later mining."""
    with session.kb() as kb:
        done = kb.learn_decide([(m.pattern_id, m.obligation_id) for m in mappings], decision, note=note)
    return ReviewList(count=len(done), items=done)
