"""The typed chaos experiment: steady-state hypothesis, method, rollbacks, guardrails, configuration.

An experiment says which obligations it tests and what "healthy" means for them (the steady-state
hypothesis: probes with tolerances), then what to do to the system (the method: actions, probes and
pauses), how to undo it (rollbacks, which always run) and when to stop at once (guardrails). Every
number that bounds time or count has a ceiling here, so no experiment file can ask for an unbounded run.

Steps are a discriminated union on ``type``; the registry of step types that can *run* lives in
:mod:`poetkb.chaos.providers`, so a new kind (a SQL probe, a service action) is one model here plus one
function there. ``poet schema chaos-experiment`` prints the JSON Schema.

Strings in steps may reference values: ``${config.KEY}`` (the experiment's configuration),
``${demo.base_url}`` / ``${demo.upstreams.NAME.admin_url}`` (the running demo edge), ``${run.nonce}``
(fresh per run, for cache-busting paths) and
``${NAME.FIELD...}`` (the output of an earlier probe or action called NAME, e.g. ``${first.json.upstream}``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from poetkb.models import PoetModel
from poetkb.types import NonEmptyStr, ObligationId

#: step names: referenced as ``${NAME...}``, so no dots, no spaces
StepName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")]
Seconds = Annotated[float, Field(ge=0.0, le=600.0)]
TimeoutSeconds = Annotated[float, Field(gt=0.0, le=120.0)]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


class StepBase(PoetModel):
    """What every step has: a unique name, pauses around it and a time bound."""

    name: StepName
    description: str = ""
    pause_before_s: Seconds = 0.0
    pause_after_s: Seconds = 0.0
    timeout_s: TimeoutSeconds = 10.0


# -- probes ---------------------------------------------------------------------------------------------
StatusClass = Literal["1xx", "2xx", "3xx", "4xx", "5xx"]


def _ok_only() -> list[int | StatusClass]:
    return [200]


class HttpTolerance(PoetModel):
    """When an HTTP answer counts as healthy: status in a set, fast enough, containing a text.

    ``status`` lists codes and classes: ``[200, 204]``, ``["2xx", 304]``.
    """

    status: list[Annotated[int, Field(ge=100, le=599)] | StatusClass] = Field(default_factory=_ok_only,
                                                                               min_length=1, max_length=100)

    def status_ok(self, code: int) -> bool:
        """True when ``code`` is listed, or its class (``"5xx"``) is."""
        return code in self.status or f"{code // 100}xx" in self.status
    max_latency_ms: float | None = Field(default=None, gt=0, le=120_000)
    body_contains: str | None = None
    #: header name (lowercase) -> the exact value it must have
    headers: dict[str, str] = Field(default_factory=dict)


class HttpProbe(StepBase):
    """An HTTP request on loopback; its output is status, latency, headers, body and parsed JSON."""

    type: Literal["http"] = "http"
    url: NonEmptyStr
    method: HttpMethod = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    tolerance: HttpTolerance | None = None


class MetricProbe(StepBase):
    """One sample of a Prometheus text endpoint compared with a threshold (a metric threshold)."""

    type: Literal["metric"] = "metric"
    url: NonEmptyStr
    metric: NonEmptyStr
    labels: dict[str, str] = Field(default_factory=dict)
    op: Literal["<", "<=", ">", ">=", "==", "!="] = "<="
    threshold: float


class GateProbe(StepBase):
    """The gate checks of the named obligations, run against the edge; healthy when every one passes.

    This turns any check kind of the catalog into a steady-state probe. A gate drives real traffic and
    takes seconds, so gate probes are checked before and after the method, not in the watch loop.
    """

    type: Literal["gate"] = "gate"
    obligations: list[ObligationId] = Field(min_length=1, max_length=20)
    target: str | None = None
    timeout_s: TimeoutSeconds = 120.0


class CountersProbe(StepBase):
    """The request counters of a demo upstream (output: total, by_path); healthy unless bounds are given."""

    type: Literal["upstream_counters"] = "upstream_counters"
    upstream: NonEmptyStr
    max_total: int | None = Field(default=None, ge=0)
    min_total: int | None = Field(default=None, ge=0)


class SqlExpect(PoetModel):
    """When a SQL probe's answer counts as healthy: the row count and the first column of the first row."""

    min_rows: int | None = Field(default=None, ge=0)
    max_rows: int | None = Field(default=None, ge=0)
    op: Literal["<", "<=", ">", ">=", "==", "!="] | None = None
    value: float | None = None
    max_latency_ms: float | None = Field(default=None, gt=0, le=120_000)

    @model_validator(mode="after")
    def _op_needs_value(self) -> SqlExpect:
        if (self.op is None) != (self.value is None):
            raise ValueError("op and value go together: give both or neither")
        return self


class SqlProbe(StepBase):
    """A read-only SQL query on the service tier's PostgreSQL (or ``dsn``, on loopback).

    It runs in a READ ONLY transaction with ``statement_timeout`` set from ``timeout_s``, so a probe never
    writes and never waits without bound. Output: ``rows`` (at most 50, as lists), ``row_count``, ``value``
    (the first column of the first row), ``elapsed_ms``.
    """

    type: Literal["sql"] = "sql"
    query: NonEmptyStr
    #: a libpq connection string; empty means the running service tier's database
    dsn: str = ""
    expect: SqlExpect | None = None


Probe = Annotated[HttpProbe | MetricProbe | GateProbe | CountersProbe | SqlProbe, Field(discriminator="type")]
PROBE_TYPES = ("http", "metric", "gate", "upstream_counters", "sql")


# -- actions --------------------------------------------------------------------------------------------
class ActionBase(StepBase):
    """An action changes the system; ``safe_in_prod`` must be set for it to run in a production experiment."""

    safe_in_prod: bool = False


class FaultSpec(PoetModel):
    """A demo upstream fault (the fields of ``poet schema demo-fault``)."""

    latency_ms: int = Field(default=0, ge=0, le=600_000)
    status: int | None = Field(default=None, ge=100, le=599)
    error_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    action: Literal["none", "reset", "close", "hang"] = "none"
    hang_s: float = Field(default=30.0, ge=0.0, le=3600.0)
    paths: list[NonEmptyStr] = Field(default_factory=list)


class UpstreamFaultAction(ActionBase):
    """Inject a fault into a demo upstream through its admin API (healed again after the run)."""

    type: Literal["upstream_fault"] = "upstream_fault"
    upstream: NonEmptyStr
    fault: FaultSpec


class UpstreamHealAction(ActionBase):
    """Remove the fault of one demo upstream, or of all of them (``upstream: all``)."""

    type: Literal["upstream_heal"] = "upstream_heal"
    upstream: NonEmptyStr = "all"
    safe_in_prod: bool = True


class Toxics(PoetModel):
    """What the fault proxy does to a connection (all off by default); see :mod:`poetkb.chaos.faultproxy`."""

    latency_ms: int = Field(default=0, ge=0, le=60_000)
    jitter_ms: int = Field(default=0, ge=0, le=60_000)
    direction: Literal["downstream", "upstream", "both"] = "downstream"
    bandwidth_kbps: int | None = Field(default=None, gt=0, le=10_000_000)
    reset: bool = False
    slow_close_ms: int = Field(default=0, ge=0, le=60_000)
    timeout_ms: int | None = Field(default=None, ge=0, le=120_000)
    cut_after_bytes: int | None = Field(default=None, ge=0)
    #: share of new connections the toxics apply to (the rest pass untouched)
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    seed: int | None = None


class FaultProxyStart(ActionBase):
    """Start a TCP fault proxy on 127.0.0.1 in front of ``upstream`` (host:port or a demo upstream name).

    Output: ``listen`` (host:port) and ``port``; later steps use ``${NAME.port}``. Stopped after the run.
    """

    type: Literal["fault_proxy_start"] = "fault_proxy_start"
    upstream: NonEmptyStr
    listen_port: int = Field(default=0, ge=0, le=65535)
    toxics: Toxics = Field(default_factory=Toxics)
    max_connections: int = Field(default=256, ge=1, le=4096)


class EdgeInterpose(ActionBase):
    """Put a fault proxy between the running demo edge and one of its upstreams.

    The proxy is started in front of the upstream, the edge's configuration file is edited so that
    the upstream's address points at the proxy, and the edge is reloaded gracefully. The original
    file is written back and the edge reloaded again after the run (and the proxy stopped).
    Output as for ``fault_proxy_start``; ``fault_proxy_update`` takes this step's name.
    """

    type: Literal["edge_interpose"] = "edge_interpose"
    upstream: NonEmptyStr
    toxics: Toxics = Field(default_factory=Toxics)
    max_connections: int = Field(default=256, ge=1, le=4096)
    timeout_s: TimeoutSeconds = 30.0


class ServiceDbInterpose(ActionBase):
    """Put a fault proxy on the service tier's own database path: between its connection pool and PostgreSQL.

    The proxy is started in front of the tier's PostgreSQL, and the service's relay (through which its
    pool reaches the database) is pointed at it (``PUT /__poet/db_via``): the pooled connections open at
    that moment are closed and replaced through the proxy, so every toxic hits the service's own queries.
    After the run the relay is pointed back at the database (its proxied connections replaced again) and
    the proxy stopped; healing the service (``DELETE /__poet/fault``) points it back too.
    Output as for ``fault_proxy_start`` plus ``replaced`` (connections closed); ``fault_proxy_update``
    takes this step's name (toxics apply to connections opened after the change).
    """

    type: Literal["service_db_interpose"] = "service_db_interpose"
    toxics: Toxics = Field(default_factory=Toxics)
    max_connections: int = Field(default=64, ge=1, le=4096)


class FaultProxyUpdate(ActionBase):
    """Change the toxics of a running fault proxy started by an earlier step (new connections only)."""

    type: Literal["fault_proxy_update"] = "fault_proxy_update"
    proxy: StepName
    toxics: Toxics


class FaultProxyStop(ActionBase):
    """Stop a fault proxy started by an earlier step (closing its connections)."""

    type: Literal["fault_proxy_stop"] = "fault_proxy_stop"
    proxy: StepName
    safe_in_prod: bool = True


class HttpAction(ActionBase):
    """An HTTP request that changes something (on loopback); fails on a status outside ``expect_status``."""

    type: Literal["http_call"] = "http_call"
    url: NonEmptyStr
    method: HttpMethod = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=lambda: [200, 201, 202, 204])


class DemoReloadAction(ActionBase):
    """A graceful reload of the running demo edge (NGINX or HAProxy), ``count`` times: a reload storm."""

    type: Literal["demo_reload"] = "demo_reload"
    count: int = Field(default=1, ge=1, le=50)
    interval_s: float = Field(default=0.2, ge=0.0, le=10.0)
    timeout_s: TimeoutSeconds = 60.0


class DemoSignalAction(ActionBase):
    """Send a signal to a process of the running demo (``nginx``, ``haproxy``, ``healthy-a`` ...) or of the
    service tier (``service``, ``sidecar``, ``postgres``).

    SIGSTOP freezes it (SIGCONT is sent after the run); SIGTERM and SIGKILL stop it (the demo is started
    again after the run); SIGHUP and SIGCONT are sent as they are. Only processes the demo started (their
    command line carries the demo's run directory) are signalled.
    """

    type: Literal["demo_signal"] = "demo_signal"
    process: NonEmptyStr
    signal: Literal["SIGSTOP", "SIGCONT", "SIGHUP", "SIGTERM", "SIGKILL"]


class PgActionBase(ActionBase):
    """A PostgreSQL action on the service tier's database (or ``dsn``, on loopback)."""

    dsn: str = ""


class PgTerminateBackends(PgActionBase):
    """Terminate the database's client backends (``pg_terminate_backend``), as a failover or an admin would.

    ``application_name`` limits it to sessions of that name; ``max_backends`` bounds how many. Output:
    ``terminated`` (how many). Nothing to undo: a service must reconnect by itself.
    """

    type: Literal["pg_terminate_backends"] = "pg_terminate_backends"
    application_name: str = ""
    max_backends: int = Field(default=100, ge=1, le=1000)


class PgHoldLock(PgActionBase):
    """Hold a table lock in a transaction of its own for ``hold_s`` seconds (in the background).

    The method goes on while the lock is held; the lock is released when ``hold_s`` is over, and at the
    latest by the automatic cleanup after the run (the session is cancelled and closed).
    """

    type: Literal["pg_hold_lock"] = "pg_hold_lock"
    table: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
    mode: Literal["ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
                  "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"] = "ACCESS EXCLUSIVE"
    hold_s: float = Field(default=5.0, gt=0.0, le=600.0)


class PgSlowStatements(PgActionBase):
    """Run ``sessions`` slow statements at once, in the background, for ``seconds`` each.

    Each session reads ``table`` inside a transaction (taking its ACCESS SHARE lock, as a long report
    query does) and sleeps in the statement: the database holds backends and a lock the whole time.
    Cancelled by the automatic cleanup after the run at the latest.
    """

    type: Literal["pg_slow_statements"] = "pg_slow_statements"
    sessions: int = Field(default=1, ge=1, le=32)
    seconds: float = Field(default=5.0, gt=0.0, le=600.0)
    table: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")] | None = None


class PgRestart(ActionBase):
    """Restart the service tier's PostgreSQL (``pg_ctl restart -m fast``): every connection breaks."""

    type: Literal["pg_restart"] = "pg_restart"
    timeout_s: TimeoutSeconds = 60.0


class PauseStep(PoetModel):
    """Wait (interruptibly): the method stops at once when a guardrail trips or a signal arrives."""

    type: Literal["pause"] = "pause"
    name: StepName
    seconds: Seconds
    description: str = ""


Action = Annotated[
    UpstreamFaultAction | UpstreamHealAction | FaultProxyStart | EdgeInterpose | ServiceDbInterpose | FaultProxyUpdate
    | FaultProxyStop | HttpAction | DemoReloadAction | DemoSignalAction | PgTerminateBackends | PgHoldLock
    | PgSlowStatements | PgRestart,
    Field(discriminator="type"),
]
ACTION_TYPES = ("upstream_fault", "upstream_heal", "fault_proxy_start", "edge_interpose", "service_db_interpose",
                "fault_proxy_update",
                "fault_proxy_stop", "http_call", "demo_reload", "demo_signal", "pg_terminate_backends",
                "pg_hold_lock", "pg_slow_statements", "pg_restart")

Step = Annotated[
    HttpProbe | MetricProbe | GateProbe | CountersProbe | SqlProbe | UpstreamFaultAction | UpstreamHealAction
    | FaultProxyStart | EdgeInterpose | ServiceDbInterpose | FaultProxyUpdate | FaultProxyStop | HttpAction
    | DemoReloadAction | DemoSignalAction | PgTerminateBackends | PgHoldLock | PgSlowStatements | PgRestart | PauseStep,
    Field(discriminator="type"),
]


# -- the experiment -------------------------------------------------------------------------------------
class Watch(PoetModel):
    """How the hypothesis is watched during the method: a bounded background loop."""

    enabled: bool = True
    interval_s: float = Field(default=0.5, ge=0.05, le=60.0)
    #: consecutive failed rounds before a deviation is declared (1 = the first failure)
    tolerance_rounds: int = Field(default=1, ge=1, le=20)


class SteadyState(PoetModel):
    """The hypothesis: every probe within its tolerance before, during and after the method."""

    title: NonEmptyStr = "the system is healthy"
    probes: list[Probe] = Field(min_length=1, max_length=50)
    watch: Watch = Field(default_factory=Watch)


class Guardrails(PoetModel):
    """Abort conditions: crossing any stops the method at once; rollbacks then run."""

    max_duration_s: float = Field(default=120.0, gt=0.0, le=3600.0)
    #: the largest share of the demo's upstreams the method may fault at once (blast radius)
    max_faulted_share: float = Field(default=1.0, ge=0.0, le=1.0)
    #: probes whose failure aborts the run (checked in the watch loop)
    probes: list[Probe] = Field(default_factory=list, max_length=20)
    interval_s: float = Field(default=0.5, ge=0.05, le=60.0)
    #: the largest share of failed samples of ``error_rate_probes`` (over the last ``error_rate_window``)
    #: before the run is aborted; a single failed sample does not abort, as a guardrail probe does
    max_error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    error_rate_probes: list[Probe] = Field(default_factory=list, max_length=20)
    error_rate_window: int = Field(default=20, ge=5, le=1000)

    @model_validator(mode="after")
    def _error_rate_needs_probes(self) -> Guardrails:
        if self.max_error_rate is not None and not self.error_rate_probes:
            raise ValueError("max_error_rate needs error_rate_probes: the requests whose failures are counted")
        return self


ConfigValue = str | int | float | bool


class Experiment(PoetModel):
    """A chaos experiment tied to obligations (``poet schema chaos-experiment``)."""

    version: Literal[1] = 1
    title: NonEmptyStr
    description: str = ""
    obligations: list[ObligationId] = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    #: a production experiment refuses every action not marked ``safe_in_prod``
    production: bool = False
    configuration: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], ConfigValue] = \
        Field(default_factory=dict)
    steady_state: SteadyState
    method: list[Step] = Field(min_length=1, max_length=200)
    rollbacks: list[Action] = Field(default_factory=list, max_length=100)
    guardrails: Guardrails = Field(default_factory=Guardrails)

    @model_validator(mode="after")
    def _names_unique(self) -> Experiment:
        seen: set[str] = set()
        for step in self.all_steps():
            if step.name in seen:
                raise ValueError(f"step name {step.name!r} is used twice; names must be unique (they are "
                                 "referenced as ${NAME...})")
            if step.name in ("config", "demo", "run", "service"):
                raise ValueError(f"step name {step.name!r} is reserved")
            seen.add(step.name)
        return self

    def all_steps(self) -> list[Any]:
        """Every step in order: hypothesis probes, guardrail probes, method, rollbacks."""
        return [*self.steady_state.probes, *self.guardrails.probes, *self.guardrails.error_rate_probes,
                *self.method, *self.rollbacks]

    def actions(self) -> list[Any]:
        """Every action of the method and the rollbacks."""
        return [s for s in [*self.method, *self.rollbacks] if s.type in ACTION_TYPES]
