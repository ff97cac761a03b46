"""Line formats of the evidence files: HTTP exchanges, TLS handshakes, upstream counter snapshots.

``captures.jsonl`` holds one :class:`HttpExchange` a line, a HAR-like record of
a request and its response (or the error that replaced the response), tagged
with the check and step that sent it. ``tls.jsonl`` holds :class:`TlsHandshake`
lines and ``counters.jsonl`` :class:`CounterSnapshot` lines. Evaluators read
only these records, never the network.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from typing import Any

from pydantic import Field

from poetkb.models import PoetModel

#: bodies longer than this are stored cut, with their full size and sha256 kept
BODY_LIMIT = 16_384
_MARKER = re.compile(r"([?&])poet=[^&]*&?")


def shown(path: str) -> str:
    """A request path for a diagnosis: without the gate's ``poet=`` marker (each run's own)."""
    return _MARKER.sub(r"\1", path).rstrip("?&")


class HttpRequestRecord(PoetModel):
    """The request as sent: method, URL, headers (lower-cased names) and body."""

    method: str
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    raw: str | None = None


class HttpResponseRecord(PoetModel):
    """The response as received: status, version, headers (lower-cased names) and body (possibly cut)."""

    status: int
    http_version: str = "HTTP/1.1"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = ""
    body_size: int = 0
    body_truncated: bool = False
    raw: str | None = None


class HttpExchange(PoetModel):
    """One request/response exchange (or the error instead of a response), tagged with check and step."""

    check: str | None = None
    step: str = ""
    seq: int = 0
    started: float = 0.0
    elapsed_ms: float | None = None
    request: HttpRequestRecord
    response: HttpResponseRecord | None = None
    error: str | None = None
    error_type: str | None = None
    closed: bool | None = None

    model_config = {**PoetModel.model_config, "frozen": False}

    @property
    def status(self) -> int | None:
        return self.response.status if self.response else None

    def header(self, name: str) -> str | None:
        """A response header by (case-insensitive) name."""
        return self.response.headers.get(name.lower()) if self.response else None

    @cached_property
    def body_json(self) -> dict[str, Any] | None:
        """The response body as a JSON object, or None when it is not one."""
        if not self.response or not self.response.body or self.response.body_truncated:
            return None
        try:
            value = json.loads(self.response.body)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python can follow
            return None
        return value if isinstance(value, dict) else None

    @property
    def path(self) -> str:
        """The request path with its query, without scheme and authority."""
        rest = self.request.url.split("://", 1)[-1]
        return "/" + rest.split("/", 1)[1] if "/" in rest else "/"

    @property
    def upstream(self) -> str | None:
        """The upstream that answered: its X-Upstream header, else the name its JSON body gives."""
        value = self.header("x-upstream")
        if value:
            return value
        body = self.body_json
        if body:
            for key in ("upstream", "server", "name"):
                if isinstance(body.get(key), str):
                    return str(body[key])
        return None

    def received_headers(self) -> dict[str, str] | None:
        """The request headers the upstream says it received (its echo), lower-cased; None without an echo."""
        body = self.body_json
        if not body:
            return None
        headers = body.get("headers")
        if isinstance(headers, dict):
            return {str(k).lower(): ", ".join(v) if isinstance(v, list) else str(v) for k, v in headers.items()}
        if isinstance(headers, list):
            out: dict[str, str] = {}
            for item in headers:
                if isinstance(item, list | tuple) and len(item) == 2:
                    key = str(item[0]).lower()
                    out[key] = f"{out[key]}, {item[1]}" if key in out else str(item[1])
            return out
        return None

    def describe(self) -> str:
        """``GET /path -> 200`` or ``GET /path -> ReadTimeout``, for diagnoses."""
        outcome = str(self.status) if self.response else (self.error_type or "error")
        return f"{self.request.method} {shown(self.path)} -> {outcome}"


class TlsHandshake(PoetModel):
    """One TLS handshake attempt: with which name and client certificate, and what came of it."""

    check: str | None = None
    step: str = ""
    address: str
    server_name: str
    client_cert: bool = False
    ok: bool
    verified: bool = False
    error: str | None = None
    version: str | None = None
    cipher: str | None = None
    peer_subject: str | None = None
    peer_issuer: str | None = None
    not_after: str | None = None
    days_left: float | None = None
    chain: list[str] = Field(default_factory=list)
    http_status: int | None = None


class CounterSnapshot(PoetModel):
    """The counters one upstream reported at one moment of a check (``before``/``after``)."""

    check: str | None = None
    label: str
    upstream: str
    role: str = "healthy"
    taken: float
    data: dict[str, Any] | None = None
    error: str | None = None

    @property
    def total(self) -> int | None:
        if not self.data:
            return None
        value = self.data.get("total")
        return int(value) if isinstance(value, int | float) else None

    def by_path(self) -> dict[str, int]:
        raw = (self.data or {}).get("by_path") or {}
        return {str(k): int(v) for k, v in raw.items() if isinstance(v, int | float)}

    def recent(self) -> list[dict[str, Any]]:
        items = (self.data or {}).get("recent") or []
        return [i for i in items if isinstance(i, dict)]
