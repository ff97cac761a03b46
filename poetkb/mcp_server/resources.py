"""Resources: obligations, failure modes and gate runs addressed by URI, as JSON documents.

Resource templates let an agent (or a person in an MCP client) attach a piece of
the knowledge base to a conversation by name:

- ``obligation://{obligation_id}``: the :class:`~poetkb.models.Obligation`;
- ``failure-mode://{failure_mode_id}``: the :class:`~poetkb.models.FailureMode`;
- ``gate-run://{run_id}``: the :class:`~poetkb.gates.schema.GateReport` of a run (``latest`` for the newest).

Each reads the same JSON as ``poet ... --json``. An unknown id is a
"resource not found" error whose message suggests the closest ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from poetkb.mcp_server.session import Session, checked_run_id, resource_errors

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

JSON = "application/json"


def register(server: MCPServer, session: Session) -> list[str]:
    """Add the resource templates to ``server``; return their URI templates."""

    @server.resource("obligation://{obligation_id}", name="obligation", mime_type=JSON,
                     description="One obligation: statement, rationale, evidence requirements, checks, references.")
    def obligation(obligation_id: str) -> str:
        from poetkb.kb import KnowledgeBase

        with resource_errors(), KnowledgeBase(session.db_path) as kb:
            return kb.obligation(obligation_id).model_dump_json(indent=2)

    @server.resource("failure-mode://{failure_mode_id}", name="failure-mode", mime_type=JSON,
                     description="One failure mode: how it shows, what it affects, the obligations guarding it.")
    def failure_mode(failure_mode_id: str) -> str:
        from poetkb.kb import KnowledgeBase

        with resource_errors(), KnowledgeBase(session.db_path) as kb:
            return kb.failure_mode(failure_mode_id).model_dump_json(indent=2)

    @server.resource("gate-run://{run_id}", name="gate-run", mime_type=JSON,
                     description="One gate run's report (run id from the gate_runs tool, or 'latest').")
    def gate_run(run_id: str) -> str:
        from poetkb.gates.reports import load_report

        with resource_errors():
            report = load_report(None if run_id == "latest" else checked_run_id(run_id))
            return report.model_dump_json(indent=2)

    return ["obligation://{obligation_id}", "failure-mode://{failure_mode_id}", "gate-run://{run_id}"]
