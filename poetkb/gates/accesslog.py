"""Read JSON-lines access logs into records the evaluators can use, naming every bad line.

Edges name their log fields differently (``uri`` or ``request_uri``, NGINX's
comma-joined ``upstream_addr`` or a list of attempts), so a record keeps the raw
object and exposes the common fields under one name each, with every upstream
attempt as an :class:`Attempt`. Lines that are not JSON objects, or a last line
cut off without its newline, become :class:`LogProblem` entries with their line
number: evaluators turn them into an ``error`` verdict rather than guess.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from poetkb.yamlfile import strict_json

#: our name -> names edges use for it, first match wins
ALIASES: dict[str, tuple[str, ...]] = {
    "time": ("time", "time_iso8601", "timestamp", "ts", "@timestamp", "date"),
    "request_id": ("request_id", "req_id", "x_request_id", "unique_id", "id"),
    "host": ("host", "http_host", "server_name", "vhost"),
    "method": ("method", "request_method", "verb"),
    "uri": ("uri", "request_uri", "path", "url"),
    "status": ("status", "status_code", "response_status"),
    "request_time": ("request_time", "duration", "time_total", "elapsed", "request_duration"),
    "cache_status": ("cache_status", "upstream_cache_status", "cache"),
    "upstream_addr": ("upstream_addr", "upstream_address", "backend_addr", "server_addr_upstream"),
    "upstream_status": ("upstream_status", "backend_status"),
    "upstream_response_time": ("upstream_response_time", "backend_response_time"),
    "upstream_connect_time": ("upstream_connect_time", "backend_connect_time"),
    "upstream_header_time": ("upstream_header_time",),
    "attempts": ("upstream_attempts", "attempts", "upstreams"),
}

_SPLIT = re.compile(r"\s*[,:]\s+|\s+:\s*|\s*,\s*")


@dataclass(frozen=True)
class Attempt:
    """One upstream attempt of a request, as the access log tells it."""

    addr: str | None
    status: int | None = None
    response_time: float | None = None
    connect_time: float | None = None
    header_time: float | None = None


@dataclass
class AccessRecord:
    """One access-log line: the raw object plus the common fields under stable names."""

    line: int
    raw: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)

    def get(self, name: str) -> Any:
        """A common field by our name (``uri``, ``status`` ...) or any raw field by its own name."""
        for key in ALIASES.get(name, (name,)):
            if key in self.raw and not _empty(self.raw[key]):
                return self.raw[key]
        return None

    def has(self, name: str) -> bool:
        """True when the line has a non-empty value for ``name``."""
        return self.get(name) is not None

    def has_key(self, name: str) -> bool:
        """True when the line carries the field at all (it may be empty where it does not apply)."""
        return any(key in self.raw for key in ALIASES.get(name, (name,)))

    @property
    def uri(self) -> str:
        value = self.get("uri")
        return str(value) if value is not None else ""

    @property
    def method(self) -> str:
        value = self.get("method")
        return str(value).upper() if value is not None else ""

    @property
    def status(self) -> int | None:
        return _int(self.get("status"))

    @property
    def request_id(self) -> str | None:
        value = self.get("request_id")
        return str(value) if value is not None else None

    @property
    def request_time(self) -> float | None:
        return _float(self.get("request_time"))

    @property
    def cache_status(self) -> str | None:
        value = self.get("cache_status")
        return str(value).upper() if value is not None else None

    @property
    def upstream_addrs(self) -> list[str]:
        return [a.addr for a in self.attempts if a.addr]


@dataclass(frozen=True)
class LogProblem:
    """A line of an access log that could not be read, and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ParsedLog:
    """Records and problems of a slice of an access log.

    ``other`` counts lines that are not JSON objects at all (a proxy's own notices, such as HAProxy's
    "Proxy stopped" or connection errors, written to the same stream); they are not access records and
    are skipped. A line that starts like a JSON object and does not parse is a problem.
    """

    records: list[AccessRecord] = field(default_factory=list)
    problems: list[LogProblem] = field(default_factory=list)
    other: int = 0


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == "-"


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    """A finite number from a log field; NaN, Infinity and text that is not a number give None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except (TypeError, ValueError, OverflowError):
            return None
    return number if math.isfinite(number) else None


def _split(value: Any) -> list[Any]:
    """NGINX joins attempts with ', ' (and groups with ' : '); lists are taken as they are."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    text = str(value).strip()
    if text in ("", "-"):
        return []
    return [part for part in _SPLIT.split(text) if part != ""] if "," in text or " : " in text else [text]


def _addr_split(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    text = "" if value is None else str(value).strip()
    if text in ("", "-"):
        return []
    return [part.strip() for part in re.split(r"\s*,\s*|\s+:\s+", text) if part.strip()]


def _attempts(raw: dict[str, Any]) -> list[Attempt]:
    listed = next((raw[k] for k in ALIASES["attempts"] if isinstance(raw.get(k), list)), None)
    if listed is not None:
        out = []
        for item in listed:
            if isinstance(item, dict):
                out.append(Attempt(
                    addr=_str_or_none(item.get("addr") or item.get("address") or item.get("server")),
                    status=_int(item.get("status")),
                    response_time=_float(item.get("response_time") or item.get("time")),
                    connect_time=_float(item.get("connect_time")),
                    header_time=_float(item.get("header_time")),
                ))
            elif isinstance(item, str):
                out.append(Attempt(addr=item))
        return out

    def first(name: str) -> Any:
        return next((raw[k] for k in ALIASES[name] if k in raw), None)

    addrs = _addr_split(first("upstream_addr"))
    statuses = _split(first("upstream_status"))
    times = _split(first("upstream_response_time"))
    connects = _split(first("upstream_connect_time"))
    headers = _split(first("upstream_header_time"))
    count = max(len(addrs), len(statuses), len(times))
    attempts = []
    for i in range(count):
        attempts.append(Attempt(
            addr=addrs[i] if i < len(addrs) else None,
            status=_int(statuses[i]) if i < len(statuses) else None,
            response_time=_float(times[i]) if i < len(times) else None,
            connect_time=_float(connects[i]) if i < len(connects) else None,
            header_time=_float(headers[i]) if i < len(headers) else None,
        ))
    return attempts


def _str_or_none(value: Any) -> str | None:
    return None if _empty(value) else str(value)


def parse(data: bytes, *, first_line: int = 1, final: bool = True) -> ParsedLog:
    """Parse JSON lines; ``final`` marks that a last line without newline is truncated, not pending.

    A truncated last line is reported whatever its content: a cut-off JSON object no longer starts and
    ends like one.
    """
    parsed = ParsedLog()
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: empty when the data ends with one
    for offset, raw_line in enumerate(lines):
        _parse_line(raw_line, first_line + offset, parsed)
    if tail.strip():
        number = first_line + len(lines)
        if final and tail.strip().startswith((b"{", b"[")):
            parsed.problems.append(LogProblem(number, "truncated: the last line has no newline (cut off mid-write?)"))
        else:
            _parse_line(tail, number, parsed)
    return parsed


def _parse_line(raw_line: bytes, number: int, parsed: ParsedLog) -> None:
    text = raw_line.strip()
    if not text:
        return
    if not text.startswith((b"{", b"[")):
        parsed.other += 1
        return
    try:
        decoded = text.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        parsed.problems.append(LogProblem(number, "not UTF-8 text"))
        return
    try:
        obj = strict_json(decoded)
    except json.JSONDecodeError as exc:
        parsed.problems.append(LogProblem(number, f"not valid JSON ({exc.msg} at column {exc.colno})"))
        return
    except ValueError as exc:  # too deep, NaN, Infinity, a number beyond a double, an integer of 5000 digits
        parsed.problems.append(LogProblem(number, f"not valid JSON ({exc})"))
        return
    if not isinstance(obj, dict):
        parsed.problems.append(LogProblem(number, f"expected a JSON object, got {type(obj).__name__}"))
        return
    parsed.records.append(AccessRecord(line=number, raw=obj, attempts=_attempts(obj)))
