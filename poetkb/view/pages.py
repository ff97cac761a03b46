"""The viewer's pages: a route table from URL paths to functions that gather data and render a template.

Paths are split on ``/`` and each segment is percent-decoded on its own, so ids
holding ``#`` or ``/`` travel as one segment. Every id is checked against its
grammar before any lookup; an unknown or malformed id raises :class:`NotFound`,
which the server turns into a 404 page (never a traceback).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from poetkb.errors import UnknownObligation
from poetkb.types import OBLIGATION_ID_RE, NodeId
from poetkb.view import data, svg
from poetkb.view.evidence import RunCache, check_evidence, evidence_file, exchange_summary, load_report
from poetkb.view.templating import href, render

if TYPE_CHECKING:
    from poetkb.kb import KnowledgeBase

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_FILE_PATH = 512


class NotFound(Exception):
    """The page or the thing it names does not exist; the message says which."""

    def __init__(self, message: str, *, suggestions: list[str] | None = None) -> None:
        super().__init__(message)
        self.suggestions = suggestions or []


@dataclass
class Request:
    """What a page sees of a request: the decoded path segments and the query arguments (first value each)."""

    segments: list[str]
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class Context:
    """Shared by every page: the open knowledge base and the cache of verified evidence directories."""

    kb: KnowledgeBase
    runs: RunCache

    def page(self, template: str, **values: Any) -> str:
        from poetkb._version import __version__

        return render(template, kb_path=str(self.kb.path), version=__version__, **values)


Page = Callable[[Context, Request], str]


def _obligation_id(text: str) -> str:
    if not OBLIGATION_ID_RE.match(text) or len(text) > 200:
        raise NotFound(f"{text!r} is not an obligation id (lowercase dotted words, such as cache.vary.honored)")
    return text


def _run_id(text: str) -> str:
    if not RUN_ID_RE.match(text):
        raise NotFound(f"{text!r} is not a gate run id")
    return text


def _run(ctx: Context, run_id: str) -> dict[str, Any]:
    row = data.run(ctx.kb, _run_id(run_id))
    if row is None:
        raise NotFound(f"no gate run {run_id!r} is recorded in this knowledge base")
    return row


# -- pages ----------------------------------------------------------------------------------------
def overview(ctx: Context, req: Request) -> str:
    rows = data.obligation_rows(ctx.kb)
    tally: dict[str, int] = {}
    for row in rows:
        tally[row.verdict or "none"] = tally.get(row.verdict or "none", 0) + 1
    return ctx.page("overview.html.j2", section="/", stats=ctx.kb.stats(), tally=tally, total=len(rows),
                    runs=data.runs(ctx.kb, limit=10))


def obligations(ctx: Context, req: Request) -> str:
    domain = req.query.get("domain") or None
    known = data.domains(ctx.kb)
    if domain is not None and domain not in known:
        raise NotFound(f"no obligation is in domain {domain!r}; domains: {', '.join(known)}")
    return ctx.page("obligations.html.j2", section="/obligations", rows=data.obligation_rows(ctx.kb, domain=domain),
                    domains=known, domain=domain)


def obligation(ctx: Context, req: Request) -> str:
    oid = _obligation_id(req.segments[1])
    try:
        page = data.obligation_page(ctx.kb, oid)
    except UnknownObligation as exc:
        known = [o.id for o in ctx.kb.obligations()]
        raise NotFound(f"no obligation {oid!r} in this knowledge base",
                       suggestions=difflib.get_close_matches(oid, known, n=3)) from exc
    timeline = svg.verdict_timeline([svg.TimelinePoint(label=h["run_id"], when=h["started_at"], verdict=h["verdict"],
                                                       href=href("runs", h["run_id"])) for h in page.history])
    graph = svg.neighbourhood(oid, [svg.GraphNode(kind=n.kind, label=n.label if n.kind != "obligation" else
                                                  NodeId(n.id).key, edge=n.edge, href=_node_href(n.id))
                                    for n in page.neighbours])
    return ctx.page("obligation.html.j2", section="/obligations", p=page, timeline=timeline, graph=graph)


def _node_href(node_id: str) -> str | None:
    """Obligations have pages; other nodes are described on the obligation page itself."""
    kind, _, key = node_id.partition(":")
    return href("obligations", key) if kind == "obligation" else None


def runs(ctx: Context, req: Request) -> str:
    return ctx.page("runs.html.j2", section="/runs", runs=data.runs(ctx.kb))


def gate_run(ctx: Context, req: Request) -> str:
    row = _run(ctx, req.segments[1])
    report, problem = load_report(row.get("report_path"))
    recorded = data.results(ctx.kb, row["run_id"])
    order = {"fail": 0, "error": 1, "no-evidence": 2, "pass": 3}
    verdicts = sorted(report.obligations, key=lambda o: (order.get(o.verdict, 4), o.obligation_id)) if report else []
    older = [r for r in data.runs(ctx.kb) if (r["started_at"], r["run_id"]) < (row["started_at"], row["run_id"])]
    return ctx.page("run.html.j2", section="/runs", run=row, report=report, problem=problem, verdicts=verdicts,
                    recorded=sorted(recorded, key=lambda r: (order.get(r["verdict"], 4), r["obligation_id"])),
                    previous=older[0]["run_id"] if older else None)


def gate_check(ctx: Context, req: Request) -> str:
    row = _run(ctx, req.segments[1])
    oid = _obligation_id(req.segments[3])
    if not req.segments[4].isdigit() or len(req.segments[4]) > 4:
        raise NotFound(f"{req.segments[4]!r} is not a check number")
    check_id = f"{oid}#{int(req.segments[4])}"
    report, problem = load_report(row.get("report_path"))
    if report is None:
        raise NotFound(f"the report of run {row['run_id']} cannot be read, so its checks cannot be shown: {problem}")
    verdict = next((o for o in report.obligations if o.obligation_id == oid), None)
    result = next((c for c in verdict.checks if c.check_id == check_id), None) if verdict else None
    if verdict is None or result is None:
        raise NotFound(f"run {row['run_id']} has no check {check_id}")
    ev = check_evidence(report, result, ctx.runs)
    return ctx.page("check.html.j2", section="/runs", run=row, report=report, ob=verdict, c=result, ev=ev,
                    exchanges=[exchange_summary(e) for e in ev.exchanges])


def gate_file(ctx: Context, req: Request) -> str:
    row = _run(ctx, req.segments[1])
    relative = req.segments[3]
    if not relative or len(relative) > MAX_FILE_PATH:
        raise NotFound("no such evidence file")
    report, problem = load_report(row.get("report_path"))
    if report is None:
        raise NotFound(f"the report of run {row['run_id']} cannot be read: {problem}")
    shown, why, entry = evidence_file(report, relative)
    if entry is None:
        raise NotFound(f"{relative!r} is not listed in the evidence manifest of run {row['run_id']}")
    return ctx.page("file.html.j2", section="/runs", run=row, entry=entry, shown=shown, why=why)


def run_diff(ctx: Context, req: Request) -> str:
    all_runs = data.runs(ctx.kb)
    a, b = req.query.get("a"), req.query.get("b")
    if not a or not b:
        if len(all_runs) < 2:
            return ctx.page("diff.html.j2", section="/runs", runs=all_runs, a=None, b=None, changes=None, counts={})
        a, b = a or all_runs[1]["run_id"], b or all_runs[0]["run_id"]
    before, after = _run(ctx, a), _run(ctx, b)
    changes = data.diff_runs(ctx.kb, before["run_id"], after["run_id"])
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.change] = counts.get(change.change, 0) + 1
    return ctx.page("diff.html.j2", section="/runs", runs=all_runs, a=before, b=after, changes=changes, counts=counts)


def mining(ctx: Context, req: Request) -> str:
    suites = data.mining_coverage(ctx.kb)
    total = len(ctx.kb.obligations())
    return ctx.page("mining.html.j2", section="/mining", suites=suites, total=total)


def load(ctx: Context, req: Request) -> str:
    plots = []
    for base in ctx.kb.load_baselines():
        s = base.summary
        slo = s.slo
        latency = slo.latency_ms if slo else None
        bars = [(name, getattr(s, f"{name}_ms"), getattr(latency, name, None) if latency else None)
                for name in ("p50", "p90", "p95", "p99")]
        series = [p for p in s.series if p.p95_ms is not None]
        plots.append({
            "baseline": base,
            "latency": svg.bars_against_limits(f"latency percentiles of {base.service} {base.scenario}", bars),
            "errors": svg.bars_against_limits(
                "error rate", [("errors", _pct(s.error_rate), _pct(slo.error_rate) if slo else None)], unit="%"),
            "series": svg.line_chart(f"p95 latency over the run of {base.service} {base.scenario}",
                                     [p.t_s for p in series], [("p95", [p.p95_ms for p in series])],
                                     limit=latency.p95 if latency else None, y_unit=" ms"),
            "histogram": svg.histogram(f"latency samples of {base.service} {base.scenario}", s.samples_ms,
                                       limit=latency.p95 if latency else None),
        })
    return ctx.page("load.html.j2", section="/load", plots=plots)


def _pct(value: float | None) -> float | None:
    return None if value is None else value * 100


#: (pattern of path segments, page); a segment of ``None`` matches anything non-empty
ROUTES: list[tuple[tuple[str | None, ...], Page]] = [
    ((), overview),
    (("obligations",), obligations),
    (("obligations", None), obligation),
    (("runs",), runs),
    (("runs", None), gate_run),
    (("runs", None, "checks", None, None), gate_check),
    (("runs", None, "files", None), gate_file),
    (("diff",), run_diff),
    (("mining",), mining),
    (("load",), load),
]


def route(segments: list[str]) -> Page:
    """The page for a path; :class:`NotFound` when none matches."""
    for pattern, page in ROUTES:
        if len(pattern) == len(segments) and all(p is None and s or p == s for p, s in zip(pattern, segments,
                                                                                             strict=True)):
            return page
    raise NotFound("there is no such page")
