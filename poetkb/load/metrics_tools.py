"""Readers for the result files of specific load tools: k6 and Locust.

Each reader maps the tool's own names onto :class:`~poetkb.load.metrics.MetricsSummary`
fields and says, in the summary's ``notes``, what the file could not provide
(k6 omits p99 unless ``summaryTrendStats`` asks for it, for example), so that a
missing number becomes a "no-evidence" verdict with a reason, never a pass.

Phases: the k6 scripts poetkb generates record ``poet_phase_<name>_duration``
(trend), ``poet_phase_<name>_failed`` (rate) and ``poet_phase_<name>_reqs``
(counter) for each phase of the scenario; these become ``phases`` here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeGuard

from pydantic import ValidationError

from poetkb.errors import InputError
from poetkb.load.metrics_base import (
    MetricsFormat,
    MetricsSummary,
    PhaseMetrics,
    SampleSink,
    SeriesPoint,
    checked_latency,
    finite_number,
    open_stream,
    stream_lines,
    summary_from_samples,
)
from poetkb.load.profile import SLO
from poetkb.yamlfile import loads_json

_PHASE_METRIC = re.compile(r"^poet_phase_(?P<phase>[a-z0-9_]+)_(?P<kind>duration|failed|reqs)$")


def _phase_name(metric_part: str) -> str:
    return metric_part.replace("_", "-")


# -- k6 end-of-test summary ---------------------------------------------------------------------
def _num(value: Any) -> TypeGuard[int | float]:
    """True for a JSON number (not a bool); the JSON reader has already refused NaN and Infinity."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _trend(values: dict[str, Any]) -> dict[str, float | None]:
    def pick(*keys: str) -> float | None:
        for key in keys:
            if _num(values.get(key)):
                return float(values[key])
        return None

    return {"p50_ms": pick("p(50)", "med"), "p90_ms": pick("p(90)"), "p95_ms": pick("p(95)"),
            "p99_ms": pick("p(99)")}


def _rate(values: dict[str, Any]) -> float | None:
    """A k6 Rate metric: ``rate`` (handleSummary) or ``value`` (--summary-export), else passes/(passes+fails)."""
    for key in ("rate", "value"):
        if _num(values.get(key)):
            return float(values[key])
    passes, fails = values.get("passes"), values.get("fails")
    if _num(passes) and _num(fails) and passes >= 0 and fails >= 0 and passes + fails:
        return float(passes / (passes + fails))
    return None


def read_k6_summary(data: dict[str, Any], shown: str) -> MetricsSummary:
    """k6 ``--summary-export`` (flat metric values) or ``handleSummary`` JSON (values under ``values``)."""
    metrics: dict[str, Any] = data["metrics"]
    handle = any(isinstance(m, dict) and isinstance(m.get("values"), dict) for m in metrics.values())
    fmt: MetricsFormat = "k6-handle-summary" if handle else "k6-summary-export"

    def values(name: str) -> dict[str, Any] | None:
        metric = metrics.get(name)
        if not isinstance(metric, dict):
            return None
        inner = metric.get("values") if handle else metric
        return inner if isinstance(inner, dict) else None

    duration = values("http_req_duration")
    if duration is None:
        raise InputError("the k6 summary has no http_req_duration metric (no HTTP requests were made, or the "
                         "file is cut short)", file=shown, field="metrics.http_req_duration",
                         hint="check the test ran requests; export with --summary-export or handleSummary")
    fields: dict[str, Any] = _trend(duration)
    notes: list[str] = []
    for key, stat in (("p90_ms", "p(90)"), ("p99_ms", "p(99)")):
        if fields[key] is None:
            notes.append(f"the k6 summary has no {stat} of http_req_duration: add '{stat}' to summaryTrendStats")
    failed = values("http_req_failed")
    if failed is not None:
        fields["error_rate"] = _rate(failed)
    else:
        notes.append("the k6 summary has no http_req_failed metric, so no error rate")
    reqs = values("http_reqs")
    if reqs is not None:
        fields["requests"] = int(reqs["count"]) if _num(reqs.get("count")) else None
        fields["throughput_rps"] = float(reqs["rate"]) if _num(reqs.get("rate")) else None
    dropped = values("dropped_iterations")
    if dropped and _num(dropped.get("count")) and dropped["count"]:
        notes.append(f"k6 dropped {int(dropped['count'])} iterations: the generator could not keep the arrival "
                     "rate (raise maxVUs or use more generator hosts); latencies may be understated")
    state = data.get("state")
    if isinstance(state, dict) and _num(state.get("testRunDurationMs")):
        fields["duration_s"] = round(state["testRunDurationMs"] / 1000, 3)
    phases: dict[str, dict[str, Any]] = {}
    for name in metrics:
        match = _PHASE_METRIC.match(name)
        vals = values(name)
        if not match or vals is None:
            continue
        phase = phases.setdefault(_phase_name(match["phase"]), {})
        if match["kind"] == "duration":
            phase.update({k: v for k, v in _trend(vals).items() if v is not None})
        elif match["kind"] == "failed":
            phase["error_rate"] = _rate(vals)
        elif _num(vals.get("count")):
            phase["requests"] = int(vals["count"])
    poet: dict[str, Any] = data["poet"] if isinstance(data.get("poet"), dict) else {}
    listed: list[Any] = poet["phases"] if isinstance(poet.get("phases"), list) else []
    windows = {p["name"]: p for p in listed if isinstance(p, dict) and isinstance(p.get("name"), str)}
    scale = float(poet["time_scale"]) if _num(poet.get("time_scale")) and poet["time_scale"] > 0 else 1.0
    for name, phase in phases.items():
        window = windows.get(name)
        start, end = (window.get("start_s"), window.get("end_s")) if window else (None, None)
        if phase.get("requests") and _num(start) and _num(end) and end > start:
            phase["throughput_rps"] = round(phase["requests"] / ((end - start) * scale), 3)
    slo = None
    if isinstance(poet.get("slo"), dict):
        try:
            slo = SLO.model_validate(poet["slo"])
        except ValidationError:
            notes.append("the SLOs recorded in the summary are not valid; give the profile to judge it")
    return MetricsSummary(
        source=shown, format=fmt, notes=notes, slo=slo,
        scenario=poet.get("scenario") if isinstance(poet.get("scenario"), str) else None,
        service=poet.get("service") if isinstance(poet.get("service"), str) else None,
        phases={k: PhaseMetrics(**v) for k, v in phases.items()},
        **{k: v for k, v in fields.items() if v is not None},
    )


# -- k6 --out json ------------------------------------------------------------------------------
def k6_stream_record(line: str) -> dict[str, Any] | None:
    """The first record of a k6 ``--out json`` stream, or None if ``line`` is not one."""
    try:
        record = loads_json(line, file="<first line>")
    except InputError:
        return None
    if isinstance(record, dict) and record.get("type") in ("Metric", "Point") and "metric" in record:
        return record
    return None


def _k6_time(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def read_k6_stream(path: Path, shown: str) -> MetricsSummary:
    """k6's newline-delimited JSON points, streamed: raw latencies, error rate and throughput."""
    sink = SampleSink()
    phase_sinks: dict[str, SampleSink] = {}
    failed = total = 0
    first = last = None
    with open_stream(path, shown) as fh:
        for number, line in stream_lines(fh, shown):
            if not line.strip():
                continue
            record = loads_json(line, file=shown, first_line=number)
            if not isinstance(record, dict) or record.get("type") != "Point":
                continue
            metric, data = record.get("metric"), record.get("data")
            if not isinstance(data, dict):
                continue
            value = data.get("value")
            if not _num(value):
                continue
            if metric == "http_req_duration":
                sink.add(checked_latency(float(value), file=shown, line=number, field="data.value"))
                stamp = _k6_time(data.get("time"))
                if stamp is not None:
                    first = stamp if first is None else min(first, stamp)
                    last = stamp if last is None else max(last, stamp)
            elif metric == "http_req_failed":
                total += 1
                failed += 1 if value else 0
            elif isinstance(metric, str) and (m := _PHASE_METRIC.match(metric)) and m["kind"] == "duration":
                phase_sinks.setdefault(_phase_name(m["phase"]), SampleSink()).add(
                    checked_latency(float(value), file=shown, line=number, field="data.value"))
    if not len(sink):
        raise InputError("the k6 output has no http_req_duration points", file=shown,
                         field="http_req_duration", hint="check the test made HTTP requests")
    span = (last - first) if first is not None and last is not None else 0
    return summary_from_samples(
        sink, source=shown, fmt="k6-json-stream",
        error_rate=failed / total if total else None,
        throughput_rps=round(len(sink) / span, 3) if span > 0 else None,
        duration_s=round(span, 3) if span else None,
        phases={name: PhaseMetrics(requests=len(s), **s.percentiles()) for name, s in phase_sinks.items()},
    )


# -- Locust -------------------------------------------------------------------------------------
def _cell(row: dict[str, str], key: str, *, shown: str, line: int) -> float | None:
    text = (row.get(key) or "").strip()
    if text in ("", "N/A"):
        return None
    return finite_number(text, file=shown, line=line, field=key)


def read_locust_csv(reader: Iterator[list[str]], header: list[str], shown: str) -> MetricsSummary:
    """Locust ``--csv`` output: the ``Aggregated`` row of ``*_stats.csv``, or ``*_stats_history.csv``."""
    names = [h.strip() for h in header]
    if "User Count" in names:
        return _read_locust_history(reader, names, shown)
    for required in ("Request Count", "Failure Count", "Requests/s", "95%"):
        if required not in names:
            raise InputError(f"the Locust stats CSV has no {required!r} column", file=shown, line=1,
                             field=required, hint="pass the *_stats.csv file Locust writes with --csv")
    aggregated: tuple[int, dict[str, str]] | None = None
    for number, cells in enumerate(reader, start=2):
        record = dict(zip(names, cells, strict=False))
        if (record.get("Name") or "").strip() == "Aggregated":
            aggregated = (number, record)
    if aggregated is None:
        raise InputError("the Locust stats CSV has no 'Aggregated' row: the file is truncated or not from "
                         "`locust --csv`", file=shown, field="Aggregated",
                         hint="let Locust finish so it writes the final statistics")
    line, row = aggregated
    count = _cell(row, "Request Count", shown=shown, line=line) or 0.0
    fails = _cell(row, "Failure Count", shown=shown, line=line) or 0.0
    fields: dict[str, Any] = {
        "p50_ms": _cell(row, "50%", shown=shown, line=line),
        "p90_ms": _cell(row, "90%", shown=shown, line=line),
        "p95_ms": _cell(row, "95%", shown=shown, line=line),
        "p99_ms": _cell(row, "99%", shown=shown, line=line),
        "throughput_rps": _cell(row, "Requests/s", shown=shown, line=line),
        "error_rate": fails / count if count else None,
        "requests": int(count),
    }
    notes = [] if count else ["Locust recorded no requests: every latency metric is missing"]
    return MetricsSummary(source=shown, format="locust-csv", notes=notes,
                          **{k: v for k, v in fields.items() if v is not None})


def _read_locust_history(reader: Iterator[list[str]], names: list[str], shown: str) -> MetricsSummary:
    points: list[SeriesPoint] = []
    start: float | None = None
    final: tuple[int, dict[str, str]] | None = None
    for number, cells in enumerate(reader, start=2):
        record = dict(zip(names, cells, strict=False))
        if (record.get("Name") or "").strip() != "Aggregated":
            continue
        stamp = _cell(record, "Timestamp", shown=shown, line=number)
        if stamp is None:
            continue
        start = stamp if start is None else start
        rps = _cell(record, "Requests/s", shown=shown, line=number)
        fps = _cell(record, "Failures/s", shown=shown, line=number)
        points.append(SeriesPoint(t_s=stamp - start, p95_ms=_cell(record, "95%", shown=shown, line=number),
                                  throughput_rps=rps, error_rate=(fps or 0.0) / rps if rps else None))
        final = (number, record)
    if final is None:
        raise InputError("the Locust history CSV has no 'Aggregated' rows", file=shown, field="Aggregated",
                         hint="run Locust with --csv and --csv-full-history and let it finish")
    line, row = final
    total = _cell(row, "Total Request Count", shown=shown, line=line) or 0.0
    fails = _cell(row, "Total Failure Count", shown=shown, line=line) or 0.0
    span = points[-1].t_s if points else 0.0
    return MetricsSummary(
        source=shown, format="locust-history-csv", series=points, requests=int(total),
        p50_ms=_cell(row, "Total Median Response Time", shown=shown, line=line),
        error_rate=fails / total if total else None,
        throughput_rps=round(total / span, 3) if span > 0 else None,
        notes=["a Locust history file has per-interval p95 only; pass the *_stats.csv for whole-run percentiles"],
    )
