"""`poet runbook`: what to watch and what to do when the obligations of a change are violated in production.

A runbook covers a set of obligations, named by id or ranked from a change.
It lists the signals to collect before and during the release (access-log
fields with a ready ``log_format`` / ``log-format`` line, metrics with example
PromQL, capture commands such as tcpdump filters) and, per failure mode those
obligations guard against, its symptoms, immediate mitigation, verification
steps and escalation, all taken from the knowledge base. What the catalog does
not say, the runbook says it does not know, rather than inventing it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from poetkb.models import Obligation, PoetModel, Signal
from poetkb.plans.testplan import change_title
from poetkb.rank.change import ChangeSummary

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge

DEFAULT_TOP = 5
PROXIES = ("nginx", "haproxy")

#: access-log field -> (NGINX variable, HAProxy log-format code)
LOG_FIELDS: dict[str, tuple[str | None, str | None]] = {
    "time": ("$time_iso8601", "%tr"),
    "remote_addr": ("$remote_addr", "%ci"),
    "client_addr": ("$remote_addr", "%ci"),
    "method": ("$request_method", "%HM"),
    "request_method": ("$request_method", "%HM"),
    "uri": ("$request_uri", "%HU"),
    "request_uri": ("$request_uri", "%HU"),
    "request": ("$request", "%r"),
    "host": ("$host", "%[req.hdr(host)]"),
    "server_name": ("$server_name", "%f"),
    "status": ("$status", "%ST"),
    "bytes_sent": ("$bytes_sent", "%B"),
    "body_bytes_sent": ("$body_bytes_sent", "%B"),
    "request_time": ("$request_time", "%Ta"),
    "request_id": ("$request_id", "%ID"),
    "upstream_addr": ("$upstream_addr", "%si:%sp"),
    "upstream_status": ("$upstream_status", "%ST"),
    "upstream_response_time": ("$upstream_response_time", "%Tr"),
    "upstream_connect_time": ("$upstream_connect_time", "%Tc"),
    "upstream_header_time": ("$upstream_header_time", "%Tr"),
    "upstream_bytes_received": ("$upstream_bytes_received", "%U"),
    "cache_status": ("$upstream_cache_status", None),
    "upstream_cache_status": ("$upstream_cache_status", None),
    "http_x_forwarded_for": ("$http_x_forwarded_for", "%[req.hdr(x-forwarded-for)]"),
    "realip_remote_addr": ("$realip_remote_addr", None),
    "trace_id": ("$http_traceparent", "%[req.hdr(traceparent)]"),
    "backend": (None, "%b"),
    "server": (None, "%s"),
    "retries": (None, "%rc"),
    "termination_state": (None, "%ts"),
    "queue_time": (None, "%Tw"),
}

#: fields whose value is always a number (written unquoted, so `jq '.status >= 500'` compares numbers)
NUMERIC_FIELDS = {"status", "bytes_sent", "body_bytes_sent", "request_time"}

#: evidence kind -> [(component or None for any, purpose, command)]; $VARIABLES are set by the reader
CAPTURES: dict[str, list[tuple[str | None, str, str]]] = {
    "packet_capture": [
        (None, "Connection opens, closes and resets between the proxy and its upstreams",
         "tcpdump -i any -nn 'tcp port $UPSTREAM_PORT and (tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0)'"),
        (None, "Full packets for later analysis (bounded to 100 MB)",
         "tcpdump -i any -nn -s 0 -C 100 -W 1 -w poet-capture.pcap 'tcp port $EDGE_PORT or tcp port $UPSTREAM_PORT'"),
    ],
    "http_capture": [
        (None, "Response headers of one request through the edge",
         "curl -sS -D - -o /dev/null \"$EDGE_URL/path\""),
    ],
    "tls_handshake": [
        (None, "The certificate chain and protocol the edge presents",
         "openssl s_client -connect $EDGE_HOST:443 -servername $EDGE_HOST -showcerts </dev/null"),
    ],
    "upstream_counters": [
        ("haproxy", "Per-server request, error, retry and redispatch counters",
         "echo 'show stat' | socat stdio /run/haproxy/admin.sock | cut -d, -f1,2,5,8,14,15,16,18"),
        ("nginx", "Connection counters (stub_status must be enabled)", "curl -s http://127.0.0.1/nginx_status"),
    ],
    "config_snapshot": [
        ("nginx", "The configuration NGINX actually runs", "nginx -T > nginx-running.conf"),
        ("haproxy", "A syntax check and copy of the running configuration",
         "haproxy -c -f /etc/haproxy/haproxy.cfg && cp /etc/haproxy/haproxy.cfg haproxy-running.cfg"),
    ],
    "db_state": [
        ("postgres", "Sessions by state and wait event",
         "psql -X -c \"select state, wait_event_type, wait_event, count(*) from pg_stat_activity group by 1, 2, 3\""),
    ],
}


class Ref(PoetModel):
    """An obligation in the runbook's scope."""

    id: str
    title: str
    risk: str
    #: the user's own learned tests exercising it (0: a gap), and public examples of how others test it
    own_tests: int = 0
    reference_examples: int = 0


class LogField(PoetModel):
    """An access-log field to record, who needs it, and how each proxy writes it."""

    field: str
    needed_by: list[str] = Field(default_factory=list)
    nginx: str | None = None
    haproxy: str | None = None


class CaptureCommand(PoetModel):
    """A command that captures evidence, and why."""

    purpose: str
    command: str
    evidence: str
    component: str | None = None


class RunbookSignal(PoetModel):
    """A signal to watch, and the failure mode it reveals."""

    kind: str
    name: str
    query: str = ""
    description: str = ""
    failure_mode: str


class RunbookSignals(PoetModel):
    """Everything to collect: access-log fields and formats, metrics, captures, other signals."""

    access_log: list[LogField] = Field(default_factory=list)
    log_formats: dict[str, str] = Field(default_factory=dict)
    log_queries: list[RunbookSignal] = Field(default_factory=list)
    metrics: list[RunbookSignal] = Field(default_factory=list)
    captures: list[CaptureCommand] = Field(default_factory=list)
    other: list[RunbookSignal] = Field(default_factory=list)


class RunbookFailureMode(PoetModel):
    """One way the release can fail: how it shows, what to do at once, how to confirm, whom to call."""

    id: str
    title: str
    description: str
    impact: str = ""
    guarded_by: list[str] = Field(default_factory=list)
    symptoms: list[str] = Field(default_factory=list)
    signals: list[Signal] = Field(default_factory=list)
    mitigation: list[str] = Field(default_factory=list)
    verification: list[str] = Field(default_factory=list)
    escalation: str = ""


class Runbook(PoetModel):
    """The observability runbook for a set of obligations (named, or ranked from a change)."""

    title: str
    change: ChangeSummary | None = None
    understood: list[str] = Field(default_factory=list)
    components: list[str] = Field(default_factory=list)
    obligations: list[Ref] = Field(default_factory=list)
    signals: RunbookSignals = Field(default_factory=RunbookSignals)
    failure_modes: list[RunbookFailureMode] = Field(default_factory=list)
    message: str = ""

    def to_markdown(self) -> str:
        from poetkb.plans.templating import render_markdown

        return render_markdown("runbook.md.j2", book=self)


def _components(obligations: list[Obligation], given: list[str]) -> list[str]:
    if given:
        return list(dict.fromkeys(given))
    found = {c for ob in obligations for c in ob.applies_to if c in PROXIES}
    return [c for c in PROXIES if c in found]


def _ref(kb: Knowledge, ob: Obligation) -> Ref:
    from poetkb.rank.explain import learned_counts

    counts = learned_counts(kb, ob.id)
    return Ref(id=ob.id, title=ob.title, risk=ob.risk, own_tests=counts.get("own", 0),
               reference_examples=counts.get("reference", 0))


def _log_fields(obligations: list[Obligation]) -> list[LogField]:
    needed: dict[str, list[str]] = {}
    for ob in obligations:
        for ev in ob.evidence:
            if ev.kind != "access_log":
                continue
            for name in ev.fields:
                users = needed.setdefault(name, [])
                if ob.id not in users:
                    users.append(ob.id)
    out = []
    for name, users in needed.items():
        nginx, haproxy = LOG_FIELDS.get(name, (None, None))
        if name.startswith("http_") and nginx is None:
            nginx = f"${name}"
        out.append(LogField(field=name, needed_by=users, nginx=nginx, haproxy=haproxy))
    return out


def _json_pairs(fields: list[LogField], proxy: str, quote: str) -> list[str]:
    pairs = []
    for f in fields:
        value = getattr(f, proxy)
        if value:
            shown = value if f.field in NUMERIC_FIELDS else f"{quote}{value}{quote}"
            pairs.append(f"{quote}{f.field}{quote}:{shown}")
    return pairs


def _log_formats(fields: list[LogField], components: list[str]) -> dict[str, str]:
    """One JSON log line per request, so the catalog's jq queries and the gate's log reader can read it."""
    formats = {}
    if "nginx" in components:
        pairs = _json_pairs(fields, "nginx", '"')
        if pairs:
            formats["nginx"] = f"log_format poet escape=json '{{{','.join(pairs)}}}';"
    if "haproxy" in components:
        pairs = _json_pairs(fields, "haproxy", '\\"')
        if pairs:
            formats["haproxy"] = f'log-format "{{{",".join(pairs)}}}"'
    return formats


def _captures(obligations: list[Obligation], components: list[str],
              modes: list[RunbookFailureMode]) -> list[CaptureCommand]:
    out: list[CaptureCommand] = []
    for mode in modes:
        for signal in mode.signals:
            if signal.kind == "capture" and signal.query:
                out.append(CaptureCommand(purpose=signal.description or signal.name, command=signal.query,
                                          evidence="packet_capture"))
    kinds = list(dict.fromkeys(ev.kind for ob in obligations for ev in ob.evidence))
    applies = {c for ob in obligations for c in ob.applies_to}
    for kind in kinds:
        for component, purpose, command in CAPTURES.get(kind, []):
            if component is not None and component not in components and component not in applies:
                continue
            if component in PROXIES and components and component not in components:
                continue
            if not any(c.command == command for c in out):
                out.append(CaptureCommand(purpose=purpose, command=command, evidence=kind, component=component))
    return out


def build_runbook(
    kb: Knowledge,
    *,
    obligations: Iterable[str] | None = None,
    change: str | None = None,
    diff: str | Path | None = None,
    component: str | None = None,
    top: int = DEFAULT_TOP,
) -> Runbook:
    """The runbook for the named obligations, or for the top ``top`` obligations a change puts at risk.

    Unknown obligation ids raise :class:`~poetkb.errors.UnknownObligation`; a
    change that matches nothing gives a runbook with no obligations and a
    ``message`` saying what was understood.
    """
    from poetkb.errors import InputError
    from poetkb.rank import rank

    wanted = list(dict.fromkeys(obligations or []))
    summary: ChangeSummary | None = None
    message = ""
    if wanted and (change or diff is not None):
        raise InputError("pass either --obligation IDs or a change (--change/--diff), not both", field="obligation")
    if component is not None:
        kb.component(component)
    if wanted:
        scoped = [kb.obligation(oid) for oid in wanted]
        title = "Runbook: " + ", ".join(wanted[:4]) + (f" and {len(wanted) - 4} more" if len(wanted) > 4 else "")
    else:
        ranking = rank(kb, change, diff=diff, component=component, top=top)
        summary = ranking.change
        scoped = [kb.obligation(r.id) for r in ranking.obligations]
        title = f"Runbook: {change_title(summary)}"
        message = ranking.message
    components = _components(scoped, [component] if component else (summary.components if summary else []))
    modes: dict[str, RunbookFailureMode] = {}
    for ob in scoped:
        for fm in kb.failure_modes(obligation=ob.id):
            if fm.id in modes:
                if ob.id not in modes[fm.id].guarded_by:
                    modes[fm.id].guarded_by.append(ob.id)
                continue
            modes[fm.id] = RunbookFailureMode(
                id=fm.id, title=fm.title, description=fm.description, impact=fm.impact, guarded_by=[ob.id],
                symptoms=fm.symptoms, signals=fm.signals, mitigation=fm.mitigation,
                verification=fm.verification, escalation=fm.escalation,
            )
    mode_list = list(modes.values())
    fields = _log_fields(scoped)
    signals = RunbookSignals(
        access_log=fields,
        log_formats=_log_formats(fields, components),
        metrics=[RunbookSignal(kind=s.kind, name=s.name, query=s.query, description=s.description, failure_mode=m.id)
                 for m in mode_list for s in m.signals if s.kind == "metric"],
        captures=_captures(scoped, components, mode_list),
        log_queries=[RunbookSignal(kind=s.kind, name=s.name, query=s.query, description=s.description,
                                   failure_mode=m.id) for m in mode_list for s in m.signals if s.kind == "access_log"],
        other=[RunbookSignal(kind=s.kind, name=s.name, query=s.query, description=s.description, failure_mode=m.id)
               for m in mode_list for s in m.signals if s.kind not in ("metric", "capture", "access_log")],
    )
    return Runbook(
        title=title, change=summary, understood=summary.describe() if summary else [], components=components,
        obligations=[_ref(kb, ob) for ob in scoped], signals=signals,
        failure_modes=mode_list, message=message,
    )
