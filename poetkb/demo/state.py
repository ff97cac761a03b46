"""Public data types of the demo edge: its state file, its status, its variants and upstream faults.

Gates and probes code against these, so they are pydantic models (``PoetModel``,
unknown fields rejected) with a JSON Schema (``poet schema demo-state`` ...).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from poetkb.models import PoetModel
from poetkb.types import NonEmptyStr, ObligationId

ProxyName = Literal["nginx", "haproxy"]
PROXIES: tuple[str, ...] = ("nginx", "haproxy")


class UpstreamInfo(PoetModel):
    """One demo upstream: its name, its role, where it serves and where its admin API is."""

    name: NonEmptyStr
    role: Literal["healthy", "faulty"]
    url: str
    admin_url: str


class DemoState(PoetModel):
    """The running demo edge, as written to ``RUNDIR/state.json`` by ``poet demo up``.

    Times in the access log differ by proxy; see ``demo/README.md`` for the
    exact field names each proxy writes.
    """

    proxy: ProxyName
    variant: NonEmptyStr = "good"
    run_dir: str
    started_at: str
    base_port: int
    base_url: str
    tls_url: str
    mtls_url: str
    metrics_url: str
    access_log: str
    error_log: str
    config_path: str
    ca_cert: str
    client_cert: str
    client_key: str
    upstreams: list[UpstreamInfo]
    ports: dict[str, int]
    pids: dict[str, int]
    #: obligation ids this variant is built to break (empty for "good")
    breaks: list[ObligationId] = Field(default_factory=list)
    hosts: dict[str, str] = Field(default_factory=lambda: {"default": "edge.test", "other": "other.test"})

    def upstream(self, name: str) -> UpstreamInfo:
        """The upstream called ``name`` (healthy-a, healthy-b, faulty)."""
        for info in self.upstreams:
            if info.name == name:
                return info
        raise KeyError(name)


class ProcessStatus(PoetModel):
    """One process of the demo and whether it is alive."""

    name: str
    pid: int | None
    alive: bool


class CheckStatus(PoetModel):
    """One health probe of the running demo."""

    name: str
    url: str
    ok: bool
    detail: str = ""


class DemoStatus(PoetModel):
    """What ``poet demo status`` reports: running or not, healthy or not, and why."""

    running: bool
    healthy: bool
    run_dir: str
    state: DemoState | None = None
    processes: list[ProcessStatus] = Field(default_factory=list)
    checks: list[CheckStatus] = Field(default_factory=list)
    stale_pids_cleaned: list[str] = Field(default_factory=list)


class Variant(PoetModel):
    """A configuration of the demo edge: "good", or a seeded fault that breaks named obligations."""

    name: NonEmptyStr
    proxy: ProxyName
    breaks: list[ObligationId] = Field(default_factory=list)
    description: NonEmptyStr
    outage: str = ""
    #: template switches this variant changes from the good configuration
    knobs: dict[str, Any] = Field(default_factory=dict)


FaultAction = Literal["none", "reset", "close", "hang"]


class Fault(PoetModel):
    """A failure injected into an upstream at run time (``PUT /__poet/fault``).

    Requests whose path starts with one of ``paths`` (all requests when empty)
    first wait ``latency_ms``; then a share ``error_rate`` of them fails: by
    ``action`` when it is not "none", else by answering ``status``. The share is
    spread evenly and deterministically (0.25 fails exactly every fourth request).
    """

    latency_ms: int = Field(default=0, ge=0, le=600_000)
    status: int | None = Field(default=None, ge=100, le=599)
    error_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    action: FaultAction = "none"
    hang_s: float = Field(default=30.0, ge=0.0, le=3600.0)
    paths: list[NonEmptyStr] = Field(default_factory=list)

    @model_validator(mode="after")
    def _paths_are_absolute(self) -> Fault:
        for prefix in self.paths:
            if not prefix.startswith("/"):
                raise ValueError(f"paths: {prefix!r} must start with '/'")
        return self

    @property
    def active(self) -> bool:
        return self.latency_ms > 0 or self.status is not None or self.action != "none"
