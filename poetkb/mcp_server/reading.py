"""The read-only tools: ask the knowledge base, rank a change, derive plans, read gate and load verdicts.

Each tool is a thin call into the library (:class:`~poetkb.kb.KnowledgeBase`
and the feature modules) that returns the library's pydantic model, so the SDK
publishes its JSON Schema as the tool's output schema and the result as
structured content. None of them changes anything an agent or a person relies
on: evidence is judged without recording a run or writing report files, and a
load result is compared with the stored baseline without replacing it. (Ranking
keeps its fitted model in the knowledge base's cache table, as ``poet rank``
does; that is a cache, not a record.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.types import ToolAnnotations
from pydantic import Field

from poetkb.demo.state import DemoStatus
from poetkb.gates.schema import GateReport
from poetkb.load.interpret import Interpretation
from poetkb.mcp_server.results import GateRun, GateRunList, Neighbourhood, ObligationList, ReviewList
from poetkb.mcp_server.session import Session, add_tool, checked_run_id, tool_errors
from poetkb.models import Obligation
from poetkb.plans.runbook import Runbook
from poetkb.plans.testplan import TestPlan
from poetkb.rank.explain import Ranking
from poetkb.safefile import EVIDENCE_FILE_LIMIT

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

#: every tool in this module: reads only, same answer for the same state, no world outside this machine
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

ObligationId = Annotated[str, Field(description="An obligation id, e.g. cache.vary.honored.")]
Change = Annotated[str | None, Field(description="The change in words, e.g. 'switch the cache key to include "
                                                 "Accept-Language'.")]
DiffText = Annotated[str | None, Field(description="A unified diff of the change, as text (git diff output).")]
DiffFile = Annotated[str | None, Field(description="A unified diff file, inside the server's root directory.")]
Component = Annotated[str | None, Field(description="The component the change is to: nginx, haproxy, ...")]


def register(server: MCPServer, session: Session) -> list[str]:
    """Add the read-only tools to ``server``; return their names."""
    tools: list[Callable[..., Any]] = [
        obligations_list, obligation_show, obligations_search, related, rank_change, test_plan, runbook,
        gate_runs, gate_report, gate_evaluate, load_interpret, demo_status, learn_review]
    return [add_tool(server, session, tool, READ_ONLY) for tool in tools]


# -- the catalog -------------------------------------------------------------------------------
def obligations_list(session: Session, domain: str | None = None,
                     risk: Literal["high", "medium", "low"] | None = None, component: str | None = None,
                     tag: str | None = None) -> ObligationList:
    """List obligations, sorted by id, filtered by domain (cache, routing, perf, ...), risk, component or tag."""
    with session.kb() as kb:
        found = kb.obligations(domain=domain, risk=risk, component=component, tag=tag)
    return ObligationList(count=len(found), obligations=found)


def obligation_show(session: Session, obligation_id: ObligationId) -> Obligation:
    """One obligation in full: statement, rationale, evidence requirements, checks and references.

    An unknown id is an error that suggests the closest ids.
    """
    with session.kb() as kb:
        return kb.obligation(obligation_id)


def obligations_search(session: Session, text: Annotated[str, Field(description="Words to look for.")],
                       limit: Annotated[int, Field(ge=1, le=100)] = 20) -> ObligationList:
    """Full-text search over obligation titles, statements, rationales and keywords, best match first."""
    with session.kb() as kb:
        found = kb.search(text, limit=limit)
    return ObligationList(count=len(found), obligations=found)


def related(session: Session,
            name: Annotated[str, Field(description="An obligation id, or a graph node as kind:id "
                                                   "(failure_mode:cache.variant_mixup, component:nginx).")],
            depth: Annotated[int, Field(ge=1, le=4)] = 1,
            edge_kinds: Annotated[list[str] | None, Field(description="Follow only these edge kinds "
                                                          "(guards_against, applies_to, exercised_by, ...).")] = None,
            ) -> Neighbourhood:
    """The knowledge-graph neighbourhood of a node: failure modes, components, recipes, related obligations."""
    with session.kb() as kb:
        node = kb.node_id(name)
        found = kb.related(name, depth=depth, edge_kinds=edge_kinds)
    return Neighbourhood(node=node, depth=depth, count=len(found), neighbours=found)


# -- a change: rank, test plan, runbook ----------------------------------------------------------
def rank_change(session: Session, change: Change = None, diff: DiffText = None, diff_file: DiffFile = None,
                component: Component = None, top: Annotated[int, Field(ge=1, le=50)] = 10) -> Ranking:
    """Rank the obligations a change puts at risk, best first, each with why (words, diff paths, graph)."""
    with session.kb() as kb:
        return kb.rank(change, diff=_diff(session, diff, diff_file), component=component, top=top)


def test_plan(session: Session, change: Change = None, diff: DiffText = None, diff_file: DiffFile = None,
              component: Component = None, top: Annotated[int, Field(ge=1, le=20)] = 5) -> TestPlan:
    """A release checklist for a change: the top obligations, how to exercise each, the gate to run."""
    with session.kb() as kb:
        return kb.test_plan(change, diff=_diff(session, diff, diff_file), component=component, top=top)


def runbook(session: Session,
            obligations: Annotated[list[str] | None, Field(description="Obligation ids to cover.")] = None,
            change: Change = None, diff: DiffText = None, diff_file: DiffFile = None, component: Component = None,
            top: Annotated[int, Field(ge=1, le=20)] = 5) -> Runbook:
    """The observability runbook (signals, log fields, captures, failure modes) for obligations or a change."""
    with session.kb() as kb:
        return kb.runbook(obligations=obligations or None, change=change, diff=_diff(session, diff, diff_file),
                          component=component, top=top)


def _diff(session: Session, text: str | None, file: str | None) -> str | Path | None:
    if text is not None and file is not None:
        from poetkb.errors import InputError

        raise InputError("give the diff as text or as a file, not both", field="diff_file")
    return session.path(file, what="diff") if file is not None else text


# -- gates -------------------------------------------------------------------------------------
def gate_runs(session: Session, limit: Annotated[int, Field(ge=1, le=200)] = 20) -> GateRunList:
    """The latest recorded gate runs, newest first: verdict, coverage, target and counts of each."""
    with session.kb() as kb:
        rows = kb.gate_runs(limit=limit)
    runs = [GateRun.from_row(r) for r in rows]
    return GateRunList(count=len(runs), runs=runs)


def gate_report(session: Session,
                run_id: Annotated[str | None, Field(description="A run id from gate_runs; "
                                                    "the latest report when omitted.")] = None) -> GateReport:
    """One gate run's full report: each obligation's verdict, its checks with expected and observed, evidence."""
    from poetkb.gates.reports import load_report

    with tool_errors():
        return load_report(checked_run_id(run_id) if run_id is not None else None)


def gate_evaluate(session: Session,
                  evidence: Annotated[list[str], Field(min_length=1, description="A gate's evidence directory, or "
                                                       "files from other tools (access log, HAR, metrics, JUnit, "
                                                       "load summary), inside the server's root directory.")],
                  obligations: list[str] | None = None, domains: list[str] | None = None,
                  all: bool = False) -> GateReport:  # the name agents see
    """Judge stored evidence without sending traffic; nothing is recorded and no report file is written.

    Without a selection, an evidence directory is judged for the obligations it recorded, and other files for
    the obligations whose checks read that kind of evidence.
    """
    from poetkb.gates.runner import evaluate_evidence
    from poetkb.gates.schema import Selection

    with session.kb() as kb:
        paths = [session.path(p, what="evidence", directory=True, limit=EVIDENCE_FILE_LIMIT) for p in evidence]
        selection = Selection(all=all, obligations=obligations or [], domains=domains or [])
        return evaluate_evidence(kb, paths, selection, record=False, write_reports=False)


# -- load results, the demo, learned mappings ----------------------------------------------------
def load_interpret(session: Session,
                   profile: Annotated[str, Field(description="The service profile (YAML), inside the root.")],
                   metrics: Annotated[list[str], Field(min_length=1, description="Load-test result files "
                                                       "(k6, Locust, JSON summary), inside the root.")],
                   scenario: Annotated[str | None, Field(description="steady, burst, soak or stress; "
                                                         "default: the one the metrics name.")] = None,
                   baseline: Annotated[str | None, Field(description="A metrics file to compare with, or "
                                                         "'stored' for the recorded baseline (not replaced).")] = None,
                   ) -> Interpretation:
    """Judge load-test results against the profile's SLOs: a verdict per check and per perf obligation."""
    from poetkb.load.metrics import merge, read_metrics
    from poetkb.load.profile import as_profile

    with session.kb() as kb:
        prof = as_profile(session.path(profile, what="profile"))
        files = [session.path(m, what="metrics") for m in metrics]
        summary = read_metrics(files[0]) if len(files) == 1 else merge(read_metrics(f) for f in files)
        if baseline == "stored":
            name = scenario or summary.scenario or "steady"
            stored = kb.load_baseline(prof.service, name)
            result = kb.interpret(prof, summary, scenario=name, baseline=stored)
            if stored is None:
                note = f"no stored baseline for {prof.service}/{name}: nothing to compare with"
                result = result.model_copy(update={"notes": [*result.notes, note]})
            return result
        reference = session.path(baseline, what="baseline") if baseline is not None else None
        return kb.interpret(prof, summary, scenario=scenario, baseline=reference)


def demo_status(session: Session) -> DemoStatus:
    """Whether the demo edge runs and is healthy: its processes, listeners and where its logs are."""
    from poetkb.demo.lifecycle import status

    with tool_errors():
        return status()


def learn_review(session: Session,
                 threshold: Annotated[float | None, Field(ge=0, le=1, description="List mappings below this "
                                                          "confidence (default 0.7).")] = None,
                 source: Annotated[str | None, Field(description="Only patterns mined from this suite.")] = None,
                 decided: Annotated[bool, Field(description="Also list decisions already taken.")] = False,
                 ) -> ReviewList:
    """Learned test-to-obligation mappings a person should review: low confidence ones and near misses."""
    with session.kb() as kb:
        items = kb.learn_review(threshold=threshold, source=source, decided=decided)
    return ReviewList(count=len(items), items=items)
