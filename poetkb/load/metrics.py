"""Load-test results as one summary model, read from the files load tools write.

:func:`read_metrics` recognises the format from the content (not the name):

- a simple JSON or CSV summary (``p50_ms, p90_ms, p95_ms, p99_ms, error_rate,
  throughput_rps, cpu_percent, memory_percent``; optional ``phases`` and
  ``series``), the format poetkb documents for any tool;
- k6's end-of-test summary (``--summary-export`` and ``handleSummary`` JSON)
  and k6's ``--out json`` stream of points;
- Locust's ``--csv`` statistics (the ``Aggregated`` row) and stats history;
- raw latency samples: one number per line, or a JSON list of numbers.

Readers stream: large files are read line by line (or chunk by chunk) and raw
samples are kept as compact doubles, then reduced to exact percentiles and a
bounded reservoir (:data:`RESERVOIR_SIZE`) for statistical tests. Files are
opened through :mod:`poetkb.safefile`: regular files only, the size checked
before reading (:data:`STREAM_LIMIT` for streamed files, :data:`JSON_LIMIT`
for JSON documents read whole) and lines at most :data:`MAX_LINE` long.

Numbers are checked for sense: NaN and Infinity are refused everywhere, as are
negative latencies, counts and rates, error rates outside 0..1 and percentiles
out of order (p50 <= p90 <= p95 <= p99). Every problem is an
:class:`~poetkb.errors.InputError` naming the file, the line or field, and
what to do: a summary that cannot be trusted never reaches an SLO check or a
baseline.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from poetkb.errors import InputError
from poetkb.load.metrics_base import (  # the model and shared primitives, re-exported for callers
    _CHUNK,
    JSON_LIMIT,
    MAX_LINE,
    METRIC_FIELDS,
    RESERVOIR_SIZE,
    STREAM_LIMIT,
    Latency,
    MetricsFormat,
    MetricsSummary,
    PhaseMetrics,
    SampleSink,
    SeriesPoint,
    _number,
    _SummaryFile,
    checked_latency,
    finite_number,
    open_stream,
    stream_lines,
    summary_from_samples,
)

KNOWN_FORMATS_TEXT = ("a simple JSON/CSV summary (p95_ms, error_rate, ...), a k6 summary (--summary-export or "
                      "handleSummary JSON), k6 --out json, a Locust stats CSV, or raw latency samples "
                      "(one number per line, or a JSON list)")






















def _read_line_samples(path: Path, shown: str, sink: SampleSink, *, skip_header: bool) -> None:
    with open_stream(path, shown) as fh:
        for number, raw in stream_lines(fh, shown):
            text = raw.strip()
            if not text or text.startswith("#") or (skip_header and number == 1):
                continue
            sink.add(_number(text.split(",")[0].strip(), file=shown, line=number))


def _read_json_list_samples(path: Path, shown: str, sink: SampleSink) -> None:
    """Stream a JSON list of numbers chunk by chunk, without loading the file."""
    line, pending, opened, closed = 1, "", False, False
    with open_stream(path, shown) as fh:
        while chunk := fh.read(_CHUNK):
            if closed and chunk.strip():
                raise InputError("text after the closing ']' of the sample list", file=shown, line=line)
            if not opened:
                chunk = chunk.lstrip()
                if not chunk:
                    continue
                chunk, opened = chunk[1:], True
            if "]" in chunk:
                chunk, rest = chunk.split("]", 1)
                closed = True
                if rest.strip():
                    raise InputError("text after the closing ']' of the sample list", file=shown, line=line)
            parts = (pending + chunk).split(",")
            pending = "" if closed else parts.pop()
            if len(pending) > 4096:
                raise InputError("an entry of the sample list is longer than any number", file=shown, line=line,
                                 hint="write a JSON list of numbers, or one number per line")
            for part in parts:
                if part.strip():
                    sink.add(_number(part.strip(), file=shown, line=line))
                line += part.count("\n")
    if not closed:
        raise InputError("the JSON list of samples has no closing ']': the file is truncated", file=shown,
                         line=line, hint="write the complete list, or one number per line")
    if pending.strip():
        sink.add(_number(pending.strip(), file=shown, line=line))




# -- simple summaries ---------------------------------------------------------------------------
def _summary_json(data: dict[str, Any], text: str, shown: str) -> MetricsSummary:
    try:
        parsed = _SummaryFile.model_validate(data)
    except ValidationError as exc:
        from poetkb.load.profile import json_with_lines
        from poetkb.yamlfile import problems_from_validation

        lined = json_with_lines(text, data, file=shown) if len(text) < 5_000_000 else data
        problems = problems_from_validation(exc, lined, file=shown)
        p = problems[0]
        if exc.errors()[0].get("type") == "finite_number":
            p = type(p)(file=p.file, line=p.line, field=p.field,
                        message="NaN and Infinity are not measurements; write a finite number")
        if exc.errors()[0].get("type") == "extra_forbidden":
            import difflib

            key = str(exc.errors()[0]["loc"][-1])
            close = difflib.get_close_matches(key, list(_SummaryFile.model_fields), n=1)
            p = type(p)(file=p.file, line=p.line, field=p.field, message=f"unknown field {key!r}"
                        + (f" (did you mean {close[0]!r}?)" if close else ""))
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        allowed = ", ".join(_SummaryFile.model_fields)
        raise InputError(p.message.removeprefix("Value error, ") + more, file=shown, line=p.line, field=p.field,
                         hint=f"a simple summary has the fields {allowed}") from None
    if not any(getattr(parsed, f) is not None for f in METRIC_FIELDS) and not parsed.phases \
            and not parsed.samples_ms and not parsed.series:
        raise InputError(f"the summary has none of the metric fields {', '.join(METRIC_FIELDS)}", file=shown,
                         hint="add at least the metrics your SLOs need (p95_ms, error_rate, ...)")
    fields = {**parsed.model_dump(exclude={"samples_ms", "slo"}), "slo": parsed.slo}
    if parsed.samples_ms:
        sink = SampleSink()
        for value in parsed.samples_ms:
            sink.add(value)
        fields = {**sink.percentiles(), **{k: v for k, v in fields.items() if v is not None and v != {} and v != []}}
        return MetricsSummary(source=shown, format="summary-json", sample_count=len(sink),
                              samples_ms=list(sink.reservoir), **fields)
    return MetricsSummary(source=shown, format="summary-json", **fields)


_WHOLE_RUN = {"", "all", "total", "whole", "run"}


def _summary_csv(rows: Iterator[list[str]], header: list[str], shown: str) -> MetricsSummary:
    names = [h.strip().lower() for h in header]
    allowed = set(METRIC_FIELDS) | {"requests", "duration_s", "phase", "scenario"}
    if names[:2] == ["metric", "value"]:
        values: dict[str, str] = {}
        for number, row in enumerate(rows, start=2):
            if len(row) < 2 or not row[0].strip():
                continue
            key = row[0].strip().lower()
            if key not in allowed:
                raise InputError(f"unknown metric {row[0].strip()!r}", file=shown, line=number,
                                 hint=f"known metrics: {', '.join(sorted(allowed))}")
            values[key] = row[1].strip()
        table = [(2, values)]
    else:
        unknown = [h for h in names if h not in allowed]
        if unknown:
            raise InputError(f"unknown column(s) {', '.join(unknown)}", file=shown, line=1,
                             hint=f"known columns: {', '.join(sorted(allowed))}")
        table = []
        for number, row in enumerate(rows, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                raise InputError(f"row has {len(row)} values but the header has {len(names)} columns "
                                 "(a truncated or hand-edited file?)", file=shown, line=number)
            table.append((number, dict(zip(names, (c.strip() for c in row), strict=True))))
    if not table:
        raise InputError("the CSV summary has a header but no values: the file is truncated", file=shown)
    whole: dict[str, Any] = {}
    phases: dict[str, PhaseMetrics] = {}
    scenario = None
    for number, record in table:
        converted: dict[str, Any] = {}
        for key, text in record.items():
            if key in ("phase", "scenario") or text == "" or text.upper() == "N/A":
                continue
            value = finite_number(text, file=shown, line=number, field=key)
            converted[key] = int(value) if key == "requests" else value
        scenario = record.get("scenario") or scenario
        try:
            metrics = PhaseMetrics(**converted)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InputError(str(err["msg"]).removeprefix("Value error, "), file=shown, line=number,
                             field=".".join(map(str, err["loc"])) or None) from None
        phase = (record.get("phase") or "").strip()
        if phase.lower() in _WHOLE_RUN:
            whole = metrics.model_dump(exclude_none=True)
        else:
            phases[phase] = metrics
    return MetricsSummary(source=shown, format="summary-csv", scenario=scenario, phases=phases, **whole)


# -- entry point --------------------------------------------------------------------------------
def _first_text(path: Path, shown: str) -> str:
    try:
        with open_stream(path, shown) as fh:
            head = fh.read(4096)
    except UnicodeDecodeError:
        raise InputError("file is not UTF-8 text; metrics files are JSON, CSV or plain text", file=shown) from None
    if not head.strip():
        raise InputError(f"file is empty; expected {KNOWN_FORMATS_TEXT}", file=shown,
                         hint="check that the load test finished and wrote its results")
    return head


def _load_json(path: Path, shown: str) -> tuple[Any, str]:
    """The JSON document of ``path`` (read whole, bounded) and its text."""
    from poetkb import safefile
    from poetkb.yamlfile import loads_json

    text = safefile.read_text(path, limit=JSON_LIMIT, display=shown)
    return loads_json(text, file=shown), text


def read_metrics(path: str | Path) -> MetricsSummary:
    """Read a load-test result file in any supported format (see the module docstring).

    Whatever the format, the result is bad input (an InputError naming the
    file and field) or a summary whose every number passed the checks above.
    """
    target = Path(path)
    shown = str(path)
    if not target.exists() and not target.is_symlink():
        raise InputError("no such metrics file", file=shown, hint="pass the file your load test wrote")
    try:
        return _read_metrics(target, shown)
    except ValidationError as exc:
        raise invalid_summary(exc, shown) from None
    except UnicodeDecodeError:
        raise InputError("file is not UTF-8 text; metrics files are JSON, CSV or plain text", file=shown) from None


def invalid_summary(exc: ValidationError, shown: str) -> InputError:
    """One InputError for a summary whose numbers fail the model's checks, naming the first bad field."""
    errors = exc.errors()
    err = errors[0]
    field = ".".join(str(p) for p in err.get("loc", ())) or None
    message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if err.get("type") == "finite_number":
        message = "NaN and Infinity are not measurements; write a finite number"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return InputError(message + more, file=shown, field=field,
                      hint="the summary is refused: fix or regenerate the file")


def _read_metrics(target: Path, shown: str) -> MetricsSummary:
    import csv

    from poetkb.load import metrics_tools

    head = _first_text(target, shown)
    first = head.lstrip()[0]
    if first == "[":
        sink = SampleSink()
        _read_json_list_samples(target, shown, sink)
        return summary_from_samples(sink, source=shown)
    if first == "{":
        first_line = head.lstrip().split("\n", 1)[0]
        stream = metrics_tools.k6_stream_record(first_line)
        if stream:
            return metrics_tools.read_k6_stream(target, shown)
        data, text = _load_json(target, shown)
        if isinstance(data, dict) and isinstance(data.get("metrics"), dict):
            return metrics_tools.read_k6_summary(data, shown)
        if isinstance(data, dict):
            return _summary_json(data, text, shown)
        raise InputError(f"unknown metrics format; expected {KNOWN_FORMATS_TEXT}", file=shown)
    header_line = head.lstrip().split("\n", 1)[0]
    if "," in header_line:
        with open_stream(target, shown, newline="") as fh:
            reader = csv_rows(csv.reader(fh), shown)
            header = next(reader, [])
            if not header:
                header = next(reader, [])
            names = {h.strip() for h in header}
            if {"Name", "Request Count"} <= names or {"Name", "User Count"} <= names:
                return metrics_tools.read_locust_csv(reader, header, shown)
            lowered = {n.lower() for n in names}
            if lowered & (set(METRIC_FIELDS) | {"metric"}):
                return _summary_csv(reader, header, shown)
            if header and not _is_number(header[0]) and len(header) > 1:
                raise InputError(f"unknown CSV format (columns: {', '.join(header[:8])}); expected "
                                 f"{KNOWN_FORMATS_TEXT}", file=shown, line=1)
    token = header_line.strip().split(",")[0].strip()
    if _is_number(token) or token.lower() in ("latency_ms", "duration_ms", "ms", "latency", "response_time_ms"):
        sink = SampleSink()
        _read_line_samples(target, shown, sink, skip_header=not _is_number(token))
        return summary_from_samples(sink, source=shown)
    raise InputError(f"unknown metrics format (first line: {header_line.strip()[:60]!r}); expected "
                     f"{KNOWN_FORMATS_TEXT}", file=shown, line=1)


def csv_rows(reader: Any, shown: str) -> Iterator[list[str]]:
    """Rows of a csv reader; a malformed row (NUL byte, endless field) is an InputError naming the line."""
    import csv

    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"malformed CSV: {exc}", file=shown, line=reader.line_num,
                             hint="pass the CSV file the load tool wrote, unedited") from None
        yield row


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_samples(path: str | Path) -> MetricsSummary:
    """Read raw latency samples only (one number per line, or a JSON list); other formats are an error."""
    summary = read_metrics(path)
    if not summary.sample_count:
        raise InputError(f"no raw latency samples in this file ({summary.format})", file=str(path),
                         hint="pass a file with one latency in ms per line, or a JSON list of numbers")
    return summary


def merge(summaries: Iterable[MetricsSummary]) -> MetricsSummary:
    """Combine results of one run read from several files: the first file's values win, gaps are filled."""
    items = list(summaries)
    if not items:
        raise InputError("no metrics files given", hint="pass --metrics FILE")
    base = items[0].model_dump()
    for other in items[1:]:
        extra = other.model_dump()
        for key in (*METRIC_FIELDS, "requests", "duration_s", "scenario", "service", "slo"):
            if base.get(key) is None:
                base[key] = extra.get(key)
        for name, phase in extra["phases"].items():
            mine = base["phases"].setdefault(name, {})
            for key, value in phase.items():
                if mine.get(key) is None:
                    mine[key] = value
        if not base["series"]:
            base["series"] = extra["series"]
        if not base["sample_count"] and extra["sample_count"]:
            base["sample_count"], base["samples_ms"] = extra["sample_count"], extra["samples_ms"]
        base["notes"] = [*base["notes"], *extra["notes"]]
    base["source"] = " + ".join(s.source for s in items)
    try:
        return MetricsSummary.model_validate(base)
    except ValidationError as exc:
        raise invalid_summary(exc, base["source"]) from None


__all__ = [
    "checked_latency",
    "csv_rows",
    "finite_number",
    "invalid_summary",
    "JSON_LIMIT",
    "KNOWN_FORMATS_TEXT",
    "Latency",
    "MAX_LINE",
    "merge",
    "METRIC_FIELDS",
    "MetricsFormat",
    "MetricsSummary",
    "open_stream",
    "PhaseMetrics",
    "read_metrics",
    "read_samples",
    "RESERVOIR_SIZE",
    "SampleSink",
    "SeriesPoint",
    "STREAM_LIMIT",
    "stream_lines",
    "summary_from_samples",
]
