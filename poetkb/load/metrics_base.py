"""The load-result model and the primitives every metrics reader shares.

:class:`MetricsSummary` (with its phases and series), the reservoir of raw
samples (:class:`SampleSink`), finite-number and latency checks, and bounded
streaming of large files. :mod:`poetkb.load.metrics` (the format dispatcher and
the generic readers) and :mod:`poetkb.load.metrics_tools` (k6 and Locust) both
build on this module, so neither imports the other back.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

from pydantic import Field, model_validator

from poetkb.errors import InputError
from poetkb.load.profile import SLO
from poetkb.models import PoetModel

MetricsFormat = Literal[
    "summary-json", "summary-csv", "k6-summary-export", "k6-handle-summary", "k6-json-stream",
    "locust-csv", "locust-history-csv", "samples",
]


#: the metric fields every summary can carry
METRIC_FIELDS = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "error_rate", "throughput_rps", "cpu_percent",
                 "memory_percent")


#: raw samples kept per summary for statistical tests (a uniform reservoir of all samples)
RESERVOIR_SIZE = 5000


_RESERVOIR_SEED = 20240601


_CHUNK = 1 << 20


#: largest streamed metrics file (raw samples, k6 --out json, Locust CSV)
STREAM_LIMIT = 1 << 30


#: largest JSON summary, read whole
JSON_LIMIT = 64 << 20


#: longest line of a streamed file
MAX_LINE = 1 << 20


#: a latency in ms: finite (the models refuse NaN and Infinity) and not negative
Latency = Annotated[float, Field(ge=0)]


class PhaseMetrics(PoetModel):
    """The metrics of a run or of one phase of it. Latencies in ms, error rate as a fraction."""

    p50_ms: float | None = Field(default=None, ge=0)
    p90_ms: float | None = Field(default=None, ge=0)
    p95_ms: float | None = Field(default=None, ge=0)
    p99_ms: float | None = Field(default=None, ge=0)
    error_rate: float | None = Field(default=None, ge=0, le=1)
    throughput_rps: float | None = Field(default=None, ge=0)
    cpu_percent: float | None = Field(default=None, ge=0)
    memory_percent: float | None = Field(default=None, ge=0)
    requests: int | None = Field(default=None, ge=0)
    duration_s: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _percentiles_in_order(self) -> PhaseMetrics:
        present = [(name, value) for name in ("p50_ms", "p90_ms", "p95_ms", "p99_ms")
                   if (value := getattr(self, name)) is not None]
        for (low, low_value), (high, high_value) in zip(present, present[1:], strict=False):
            if high_value < low_value:
                raise ValueError(f"percentiles out of order: {high} ({high_value:g}) is below {low} "
                                 f"({low_value:g}); a higher percentile cannot be faster")
        return self


class SeriesPoint(PoetModel):
    """One point of a time series (seconds from the start of the run)."""

    t_s: float = Field(ge=0)
    p95_ms: float | None = Field(default=None, ge=0)
    error_rate: float | None = Field(default=None, ge=0, le=1)
    throughput_rps: float | None = Field(default=None, ge=0)
    cpu_percent: float | None = Field(default=None, ge=0)
    memory_percent: float | None = Field(default=None, ge=0)


class MetricsSummary(PhaseMetrics):
    """A load-test result: whole-run metrics, optional phases and series, and a reservoir of raw samples."""

    source: str
    format: MetricsFormat
    service: str | None = None
    scenario: str | None = None
    slo: SLO | None = Field(default=None, description="The SLOs the run was planned against, if it recorded them.")
    phases: dict[str, PhaseMetrics] = Field(default_factory=dict)
    series: list[SeriesPoint] = Field(default_factory=list)
    sample_count: int = Field(default=0, ge=0)
    samples_ms: list[Latency] = Field(default_factory=list, description="Uniform reservoir of raw latencies, ms.")
    notes: list[str] = Field(default_factory=list)

    def metrics_for(self, phase: str | None) -> PhaseMetrics | None:
        """The whole run (``phase=None``) or one phase, if the summary has it."""
        return self if phase is None else self.phases.get(phase)


class _SummaryFile(PhaseMetrics):
    """The simple JSON summary as written by people and scripts."""

    scenario: str | None = None
    service: str | None = None
    slo: SLO | None = None
    phases: dict[str, PhaseMetrics] = Field(default_factory=dict)
    series: list[SeriesPoint] = Field(default_factory=list)
    samples_ms: list[Latency] = Field(default_factory=list)


# -- samples ------------------------------------------------------------------------------------
class SampleSink:
    """Collects latencies as compact doubles and a uniform reservoir, for exact percentiles of big inputs."""

    def __init__(self) -> None:
        self.values = array("d")
        self.reservoir: list[float] = []
        self._rng = random.Random(_RESERVOIR_SEED)

    def add(self, value: float) -> None:
        self.values.append(value)
        n = len(self.values)
        if n <= RESERVOIR_SIZE:
            self.reservoir.append(value)
        else:
            slot = self._rng.randrange(n)
            if slot < RESERVOIR_SIZE:
                self.reservoir[slot] = value

    def __len__(self) -> int:
        return len(self.values)

    def percentiles(self) -> dict[str, float]:
        import numpy

        if not self.values:
            return {}
        data = numpy.frombuffer(self.values, dtype=numpy.float64)
        p50, p90, p95, p99 = numpy.percentile(data, [50, 90, 95, 99])
        return {"p50_ms": round(float(p50), 3), "p90_ms": round(float(p90), 3), "p95_ms": round(float(p95), 3),
                "p99_ms": round(float(p99), 3)}


def _number(token: str, *, file: str, line: int) -> float:
    try:
        value = float(token)
    except ValueError:
        shown = token if len(token) <= 40 else token[:40] + "..."
        raise InputError(f"{shown!r} is not a number; raw samples are latencies in ms, one per line or a JSON "
                         "list", file=file, line=line) from None
    return checked_latency(value, file=file, line=line, shown=token)


def finite_number(text: str, *, file: str, line: int | None = None, field: str | None = None) -> float:
    """The number in ``text``; not a number, NaN or Infinity is an InputError naming where it is."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{text[:40]!r} is not a number", file=file, line=line, field=field) from None
    if not math.isfinite(value):
        raise InputError(f"{text[:40]!r} is not a finite number (NaN and Infinity are refused)", file=file,
                         line=line, field=field, hint="write the measured value")
    return value


def checked_latency(value: float, *, file: str, line: int | None = None, field: str | None = None,
                    shown: Any = None) -> float:
    """``value`` if it is a usable latency (finite, not negative), else an InputError naming where it is."""
    if not math.isfinite(value) or value < 0:
        text = str(shown if shown is not None else value)[:40]
        raise InputError(f"{text!r} is not a usable latency (negative, NaN or infinite)", file=file, line=line,
                         field=field, hint="latencies are milliseconds, 0 or more")
    return value


def open_stream(path: Path, shown: str, *, newline: str | None = None) -> TextIO:
    """Open a metrics file for streaming: a regular file, at most :data:`STREAM_LIMIT` bytes."""
    from poetkb import safefile

    return safefile.open_text(path, limit=STREAM_LIMIT, display=shown, newline=newline)


def stream_lines(fh: TextIO, shown: str) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline) of a stream, read in chunks.

    A line longer than :data:`MAX_LINE` is an error, not a memory spike.
    """
    number, pending = 0, ""
    while chunk := fh.read(_CHUNK):
        lines = (pending + chunk).split("\n")
        pending = lines.pop()
        if len(pending) > MAX_LINE:
            raise InputError(f"line is longer than {MAX_LINE:,} characters", file=shown, line=number + len(lines) + 1,
                             hint="metrics files hold one short record per line")
        for line in lines:
            number += 1
            if len(line) > MAX_LINE:
                raise InputError(f"line is longer than {MAX_LINE:,} characters", file=shown, line=number,
                                 hint="metrics files hold one short record per line")
            yield number, line
    if pending:
        yield number + 1, pending


def summary_from_samples(sink: SampleSink, *, source: str, fmt: MetricsFormat = "samples",
                         **extra: Any) -> MetricsSummary:
    """A summary whose latency percentiles come from raw samples."""
    if not len(sink):
        raise InputError("no samples in the file", file=source, hint="write latencies in ms, one per line")
    fields = {**sink.percentiles(), **{k: v for k, v in extra.items() if v is not None}}
    fields.setdefault("requests", len(sink))
    return MetricsSummary(source=source, format=fmt, sample_count=len(sink), samples_ms=list(sink.reservoir),
                          **fields)
