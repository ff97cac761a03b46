"""The evidence behind a verdict, read back for display: reports, exchanges, log slices, metric deltas.

A run's full record is its JSON report (``gate_runs.report_path``) and its
evidence directory. Both are untrusted input to the viewer (a knowledge base or
an evidence directory may come from elsewhere), so:

- the report is read with :func:`poetkb.safefile.read_text` (regular file, size
  checked, bounded) and validated as a :class:`~poetkb.gates.schema.GateReport`;
- evidence is read through the gate's own reader, :func:`poetkb.gates.evidence.load_run`,
  which checks every file against the manifest's size and sha256;
- a raw evidence file is shown only when the manifest lists it, its path is
  confined to the evidence directory (:func:`poetkb.safefile.confine`) and it is
  small enough; binary kinds are never read.

What is shown is cut to a bounded size, and cut text says so.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poetkb.errors import PoetError
from poetkb.safefile import MiB, confine, read_text

if TYPE_CHECKING:
    from poetkb.gates.evidence import LoadedRun
    from poetkb.gates.records import CounterSnapshot, HttpExchange, TlsHandshake
    from poetkb.gates.schema import CheckRecord, CheckResult, GateReport

REPORT_LIMIT = 32 * MiB
#: a raw evidence file larger than this is not shown
FILE_SHOW_LIMIT = 2 * MiB
#: display ceilings
MAX_EXCHANGES = 60
MAX_BODY_CHARS = 4096
MAX_LOG_LINES = 300
MAX_LOG_CHARS = 64 * 1024
MAX_DELTAS = 80
BINARY_KINDS = {"pcap", "packet_capture"}


@dataclass
class Shown:
    """A piece of text cut to a display limit, and whether it was cut."""

    text: str
    cut: bool = False
    total: int = 0


@dataclass
class MetricDelta:
    """One metric whose value differs between two snapshots of a check."""

    name: str
    before: float | None
    after: float | None

    @property
    def delta(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before


@dataclass
class CheckEvidenceView:
    """Everything the check page shows besides the verdict itself."""

    record: CheckRecord | None = None
    exchanges: list[HttpExchange] = field(default_factory=list)
    exchanges_total: int = 0
    log: Shown | None = None
    log_range: tuple[int, int] | None = None
    log_records: int = 0
    log_problems: list[str] = field(default_factory=list)
    deltas: list[MetricDelta] = field(default_factory=list)
    deltas_total: int = 0
    snapshots: list[str] = field(default_factory=list)
    counters: list[CounterSnapshot] = field(default_factory=list)
    handshakes: list[TlsHandshake] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    unavailable: str | None = None


def cut(text: str | None, limit: int = MAX_BODY_CHARS) -> Shown:
    """``text`` cut to ``limit`` characters."""
    value = text or ""
    return Shown(text=value[:limit], cut=len(value) > limit, total=len(value))


def load_report(report_path: str | None) -> tuple[GateReport | None, str | None]:
    """The run's JSON report, or None and why it cannot be shown."""
    from pydantic import ValidationError

    from poetkb.gates.schema import GateReport

    if not report_path:
        return None, "this run recorded no report file"
    path = Path(report_path)
    if path.suffix != ".json":
        return None, f"the recorded report {report_path} is not a .json file"
    try:
        text = read_text(path, limit=REPORT_LIMIT)
    except PoetError as exc:
        return None, f"cannot read the report: {exc}"
    try:
        return GateReport.model_validate_json(text), None
    except ValidationError as exc:
        return None, f"{report_path} is not a valid gate report: {str(exc).splitlines()[0]}"


class RunCache:
    """Evidence directories already read and verified, keyed by directory and manifest identity (bounded)."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, int, int], LoadedRun] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, root: Path) -> LoadedRun:
        from poetkb.gates.evidence import MANIFEST, load_run

        try:
            st = (root / MANIFEST).stat()
            key = (str(root), st.st_mtime_ns, st.st_size)
        except OSError:
            key = (str(root), 0, 0)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        loaded = load_run(root)
        with self._lock:
            self._items[key] = loaded
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return loaded


def evidence_root(report: GateReport) -> tuple[Path | None, str | None]:
    """The run's evidence directory, or None and why there is none."""
    if not report.evidence_dir:
        return None, "this run judged files from other tools; it has no evidence directory"
    root = Path(report.evidence_dir)
    if not root.is_dir():
        return None, f"the evidence directory {root} is gone (moved or deleted after the run)"
    return root, None


def check_evidence(report: GateReport, result: CheckResult, cache: RunCache) -> CheckEvidenceView:
    """The exchanges, log slice, metric deltas, counters and handshakes behind one check's verdict."""
    root, why = evidence_root(report)
    if root is None:
        return CheckEvidenceView(unavailable=why)
    try:
        loaded = cache.load(root)
    except PoetError as exc:
        return CheckEvidenceView(unavailable=f"the evidence cannot be read: {exc}")
    record = next((r for r in loaded.manifest.checks if r.check_id == result.check_id), None)
    if record is None:
        return CheckEvidenceView(unavailable=f"the evidence records nothing for check {result.check_id}")
    try:
        ev = loaded.evidence_for(record)
    except (PoetError, OSError, ValueError) as exc:
        return CheckEvidenceView(record=record, unavailable=f"the evidence cannot be read: {exc}")
    view = CheckEvidenceView(record=record, exchanges=ev.exchanges[:MAX_EXCHANGES],
                             exchanges_total=len(ev.exchanges), counters=ev.counters, handshakes=ev.handshakes,
                             problems=dict(ev.problems),
                             snapshots=sorted(ev.metrics, key=lambda label: (label != "before", label)))
    if record.log_range is not None and loaded.log_bytes is not None:
        view.log_range = record.log_range
        view.log = log_slice(loaded.log_bytes, *record.log_range, markers_of(ev.exchanges))
        if ev.log is not None:
            view.log_records = len(ev.log.records)
            view.log_problems = [str(p) for p in ev.log.problems]
    view.deltas, view.deltas_total = metric_deltas(ev.metrics)
    return view


_MARKER = re.compile(r"[?&]poet=([A-Za-z0-9_.-]+)")


def markers_of(exchanges: list[HttpExchange]) -> set[str]:
    """The ``poet=`` markers a check put in its request URLs (how its log lines are told from others')."""
    found = set()
    for exchange in exchanges:
        match = _MARKER.search(exchange.request.url)
        if match:
            found.add(match.group(1))
    return found


def log_slice(data: bytes, start: int, end: int, markers: set[str] | None = None) -> Shown:
    """The access-log lines of a check: those in its byte range of the run's slice that carry one of its
    markers (checks that ran in parallel share a range), or the whole range when none does; bounded."""
    lo = max(0, min(start, len(data)))
    hi = max(lo, min(end, len(data)))
    window = data[lo:min(hi, lo + 16 * MAX_LOG_CHARS)]
    lines = window.decode("utf-8", errors="replace").splitlines()
    if markers:
        own = [line for line in lines if any(m.group(1) in markers for m in _MARKER.finditer(line))]
        lines = own or lines
    joined = "\n".join(lines[:MAX_LOG_LINES])
    return Shown(text=joined[:MAX_LOG_CHARS], cut=len(lines) > MAX_LOG_LINES or len(joined) > MAX_LOG_CHARS
                 or hi - lo > len(window), total=len(lines))


def metric_deltas(snapshots: dict[str, str]) -> tuple[list[MetricDelta], int]:
    """Metrics that changed between the ``before`` and ``after`` snapshots (largest change first)."""
    if "before" not in snapshots or "after" not in snapshots:
        return [], 0
    from poetkb.gates.checks.observability import parse_metrics

    try:
        before, after = parse_metrics(snapshots["before"]), parse_metrics(snapshots["after"])
    except ValueError:
        return [], 0
    changed = [MetricDelta(name, before.get(name), after.get(name))
               for name in sorted(before.keys() | after.keys()) if before.get(name) != after.get(name)]
    changed.sort(key=lambda d: (d.delta is None, -abs(d.delta or 0.0), d.name))
    return changed[:MAX_DELTAS], len(changed)


def evidence_file(report: GateReport, relative: str) -> tuple[Shown | None, str | None, Any]:
    """A raw evidence file listed in the run's manifest: (text, why not shown, its manifest entry)."""
    entry = next((f for f in report.evidence_files if f.path == relative), None)
    if entry is None:
        return None, None, None
    root, why = evidence_root(report)
    if root is None:
        return None, why, entry
    if entry.kind in BINARY_KINDS or relative.endswith(".pcap"):
        return None, f"{relative} is binary ({entry.kind}); open it with a packet analyser", entry
    try:
        path = confine(root, relative, what="evidence file")
        text = read_text(path, limit=FILE_SHOW_LIMIT, root=root, display=relative, errors="replace")
    except PoetError as exc:
        return None, str(exc), entry
    return cut(text, FILE_SHOW_LIMIT), None, entry


def header_lines(headers: dict[str, str]) -> list[tuple[str, str]]:
    return sorted(headers.items())


def exchange_summary(exchange: HttpExchange) -> dict[str, Any]:
    """The parts of an exchange a page shows, bodies cut."""
    response = exchange.response
    return {
        "step": exchange.step, "seq": exchange.seq, "elapsed_ms": exchange.elapsed_ms,
        "method": exchange.request.method, "url": exchange.request.url,
        "request_headers": header_lines(exchange.request.headers), "request_body": cut(exchange.request.body),
        "status": response.status if response else None,
        "version": response.http_version if response else None,
        "response_headers": header_lines(response.headers) if response else [],
        "response_body": cut(response.body) if response else None,
        "body_size": response.body_size if response else 0,
        "body_truncated": response.body_truncated if response else False,
        "error": exchange.error, "error_type": exchange.error_type,
    }
