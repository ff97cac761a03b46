"""Parameter models of the check kinds, as the catalog writes them under ``checks: [{kind, params}]``.

Each model forbids unknown fields, so a typo in a catalog file is reported by
``poet kb check`` with its file and line instead of being silently ignored.
Defaults fit the demo edge (``demo/README.md``); an obligation overrides only
what differs. Every count and duration is bounded so that no catalog entry can
make a gate run unbounded traffic.

This module is light on purpose (pydantic only): the catalog validator imports it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from poetkb.models import PoetModel

Count = Annotated[int, Field(ge=1, le=500)]
Seconds = Annotated[float, Field(gt=0, le=30)]
Millis = Annotated[float, Field(gt=0, le=60_000)]
Status = Annotated[int, Field(ge=100, le=599)]
Concurrency = Annotated[int, Field(ge=1, le=64)]
Path_ = Annotated[str, Field(pattern=r"^/", min_length=1)]
Ratio = Annotated[float, Field(ge=0.0, le=1.0)]


class FaultSpec(PoetModel):
    """A fault to inject through the upstreams' admin API while a check drives traffic.

    ``target`` picks the upstreams: ``faulty`` (the demo's faulty upstream), ``healthy``,
    ``all``, or one upstream by name.
    """

    target: str = "faulty"
    latency_ms: Annotated[int, Field(ge=0, le=30_000)] = 0
    status: Status | None = None
    error_rate: Ratio = 1.0
    action: Literal["none", "reset", "close", "hang"] = "none"
    hang_s: Seconds = 5.0
    paths: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """Accept ``reset``, ``close``, ``hang``, ``status_503``, ``slow_1500`` and ``all_down`` as strings."""
        if not isinstance(value, str):
            return value
        word = value.strip().lower()
        if word in ("reset", "close", "hang"):
            return {"action": word}
        if word == "all_down":
            return {"target": "all", "action": "reset"}
        match = re.fullmatch(r"(status|slow)_(\d+)", word)
        if match and match.group(1) == "status":
            return {"status": int(match.group(2))}
        if match:
            return {"latency_ms": int(match.group(2))}
        raise ValueError(f"unknown fault {value!r}; use reset, close, hang, all_down, status_NNN, slow_MS "
                         "or a mapping with target, action, status, latency_ms, error_rate, hang_s, paths")

    def admin_body(self) -> dict[str, object]:
        """The JSON body the upstream admin API takes for this fault."""
        body: dict[str, object] = {
            "latency_ms": self.latency_ms,
            "error_rate": self.error_rate,
            "action": self.action,
            "hang_s": self.hang_s,
            "paths": list(self.paths),
        }
        if self.status is not None:
            body["status"] = self.status
        return body


class Vantage(PoetModel):
    """Where a check's requests enter the edge: which virtual host (Host) and which listener.

    An obligation holds for every virtual host and listener that carries the configuration it is about;
    a check entry per vantage makes the gate exercise each copy of a directive the configuration repeats
    (a limit removed from one virtual host, a timeout widened on the mTLS listener only). ``via_host`` is
    the Host header of every request that names none; ``listener`` ``mtls`` sends them to the mTLS listener
    with the target's client certificate (TLS server name ``via_host``, or edge.test).
    """

    via_host: str | None = None
    listener: Literal["http", "mtls"] = "http"


class HttpRequestSpec(PoetModel):
    """One request a check sends: method, path (query included), optional Host and headers."""

    method: str = "GET"
    path: Path_ = "/echo"
    host: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    expect_status: list[Status] = Field(default_factory=list)


# -- routing ----------------------------------------------------------------------------------------
class SameKeySameBackend(PoetModel):
    """Requests sharing a key (the URI: ``path?key=kN``) reach one backend."""

    path: Path_ = "/echo"
    keys: Annotated[int, Field(ge=1, le=100)] = 10
    requests: Count = 100
    concurrency: Concurrency = 8
    method: str = "GET"
    min_backends: Annotated[int, Field(ge=1, le=20)] = 1


class UpstreamAttemptsBounded(Vantage):
    """Upstream attempts per request stay at or below ``max_attempts``, counted at the upstreams."""

    path: Path_ = "/flaky/echo"
    #: more locations (backends) with their own settings, probed in the same fault window, requests in turn
    also_paths: list[Path_] = Field(default_factory=list, max_length=10)
    method: str = "GET"
    fault: FaultSpec = Field(default_factory=lambda: FaultSpec(target="all", action="reset"))
    requests: Annotated[int, Field(ge=1, le=50)] = 4
    concurrency: Concurrency = 2
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 2
    timeout_s: Seconds = 6.0


class NoRetryNonIdempotent(Vantage):
    """A non-idempotent request reaches the upstreams at most once, even when the first attempt fails."""

    path: Path_ = "/flaky/echo"
    #: more locations (backends) with their own settings, probed in the same fault window, requests in turn
    also_paths: list[Path_] = Field(default_factory=list, max_length=10)
    methods: list[str] = Field(default_factory=lambda: ["POST"], min_length=1)
    fault: FaultSpec = Field(default_factory=lambda: FaultSpec(action="reset"))
    requests: Annotated[int, Field(ge=1, le=50)] = 3
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 1


class UnhealthyBackendAvoided(Vantage):
    """Once a backend fails, passive health checking keeps (most) traffic away from it."""

    path: Path_ = "/flaky/echo"
    #: more locations (backends) with their own settings, probed in the same fault window, requests in turn
    also_paths: list[Path_] = Field(default_factory=list, max_length=10)
    fault: FaultSpec = Field(default_factory=lambda: FaultSpec(status=502))
    warmup: Annotated[int, Field(ge=0, le=50)] = 4
    requests: Annotated[int, Field(ge=1, le=200)] = 12
    max_faulty_share: Ratio = 0.25
    min_success_ratio: Ratio = 1.0


class HostIsolated(PoetModel):
    """Each virtual host answers as itself, an unknown host gets no other site, and cache entries never cross."""

    hosts: list[str] = Field(default_factory=lambda: ["edge.test", "other.test"], min_length=2)
    path: Path_ = "/echo"
    cache_path: Path_ | None = None
    identity_header: str | None = None
    expect_identity: dict[str, str] = Field(default_factory=dict)
    unknown_host: str | None = None
    unknown_expect_status: list[Status] = Field(default_factory=lambda: [400, 404, 421, 403])


# -- cache ------------------------------------------------------------------------------------------
class CacheKeyStable(PoetModel):
    """Requests for one URL that differ only in headers outside the key share one cache entry."""

    path: Path_ = "/cache/max-age/60"
    variations: list[str] = Field(default_factory=lambda: ["User-Agent", "Referer", "X-Request-ID"],
                                  min_length=1, max_length=20)
    requests: Annotated[int, Field(ge=2, le=50)] = 5
    max_fetches: Annotated[int, Field(ge=1, le=50)] = 1
    new_connections: bool = True


class CacheKeyComplete(Vantage):
    """Requests that differ in a key component (query, host) never share a cache entry."""

    path: Path_ = "/cache/max-age/60"
    differing: list[Literal["query", "host"]] = Field(default_factory=lambda: ["query"],  # type: ignore[arg-type]
                                                      min_length=1)
    #: the first host fills the entry; each other host must miss it. Name a host the edge does not know as
    #: well: it reaches the default virtual host, whose key then must still tell it from the first host
    hosts: list[str] = Field(default_factory=lambda: ["edge.test", "other.test"], min_length=2, max_length=5)


class VaryVariantsIsolated(Vantage):
    """Each value of a Vary header gets its own variant's body, on misses and hits alike."""

    path: Path_ = "/cache/vary/lang"
    header: str = "Accept-Language"
    values: list[str] = Field(default_factory=lambda: ["en", "de", "fr"], min_length=2, max_length=10)
    rounds: Annotated[int, Field(ge=2, le=10)] = 3
    body_field: str = "variant"


class PrivateNotCached(Vantage):
    """Private, no-store and Set-Cookie responses are fetched from the origin every time."""

    path: Path_ | None = None
    paths: list[Path_] = Field(default_factory=list, max_length=10)
    requests: Annotated[int, Field(ge=2, le=20)] = 3

    def all_paths(self) -> list[str]:
        chosen = ([self.path] if self.path else []) + list(self.paths)
        return chosen or ["/cache/private", "/cache/no-store", "/cache/set-cookie"]


class TtlHonored(Vantage):
    """A cached response is reused within its freshness lifetime and refetched after it."""

    path: Path_ = "/cache/max-age/2"
    max_age_s: Seconds = 2.0
    margin_s: Seconds = 0.8
    require_hit: bool = True


class StaleBounded(PoetModel):
    """Stale content is served on origin errors only within the allowed window, never beyond it."""

    path: Path_ = "/cache/stale-if-error/1/2"
    max_age_s: Seconds = 1.0
    max_stale_s: Seconds = 2.0
    margin_s: Seconds = 1.0
    #: a network error: since nginx 1.19.3 stale-if-error is ignored on upstream 500/502/503/504 answers
    fault: FaultSpec = Field(default_factory=lambda: FaultSpec(target="all", action="close"))
    require_stale_within: bool = False
    #: after the fault, passive health checks may keep upstreams out for their fail_timeout (nginx: 10 s by
    #: default); fresh content must return within this many seconds
    recover_within_s: Seconds = 12.0


# -- protocol ---------------------------------------------------------------------------------------
class StatusOnUpstreamFault(Vantage):
    """While upstreams fail, the client gets an honest error status (never a 2xx error page)."""

    path: Path_ = "/flaky/echo"
    #: more locations with their own timeouts, and more virtual hosts and listeners, in the same fault window
    also_paths: list[Path_] = Field(default_factory=list, max_length=10)
    also_via: list[Vantage] = Field(default_factory=list, max_length=5)
    method: str = "GET"
    fault: FaultSpec
    expect_status: list[Status] = Field(min_length=1)
    requests: Annotated[int, Field(ge=1, le=20)] = 2
    timeout_s: Seconds = 6.0
    max_latency_ms: Millis | None = None


class ContentLengthMatches(PoetModel):
    """Content-Length, when sent, equals the bytes of the body; HEAD answers carry the GET length or none."""

    paths: list[Path_] = Field(default_factory=lambda: ["/bytes/0", "/bytes/1", "/bytes/4096", "/bytes/100000"],
                               min_length=1, max_length=20)
    methods: list[str] = Field(default_factory=lambda: ["GET", "HEAD"], min_length=1)
    repeat: Annotated[int, Field(ge=1, le=5)] = 2
    expect_status: list[Status] = Field(default_factory=lambda: [200])


class HopByHopStripped(Vantage):
    """Hop-by-hop headers (and headers a Connection header nominates) never reach the upstream."""

    path: Path_ = "/echo"
    headers: list[str] = Field(default_factory=lambda: ["Connection", "Keep-Alive", "Proxy-Connection", "TE",
                                                        "Upgrade"], min_length=1)
    response_must_not_have: list[str] = Field(default_factory=lambda: ["keep-alive", "proxy-connection"])


FramingCase = Literal["cl_and_te", "duplicate_content_length", "content_length_list", "te_not_chunked_last",
                      "te_obfuscated", "te_on_http10", "invalid_chunk_size", "space_before_colon"]


class AmbiguousFramingRejected(PoetModel):
    """Requests whose length is ambiguous are rejected, never forwarded in a way that smuggles a second request."""

    path: Path_ = "/echo"
    cases: list[FramingCase] = Field(default_factory=lambda: ["cl_and_te", "duplicate_content_length",  # type: ignore[arg-type]
                                                              "te_obfuscated"], min_length=1)
    expect_status: list[Status] = Field(default_factory=lambda: [400, 501])
    allow_normalized: list[FramingCase] = Field(
        default_factory=lambda: ["cl_and_te", "te_on_http10"])  # type: ignore[arg-type]
    timeout_s: Seconds = 3.0


class ForwardedForAppended(PoetModel):
    """The edge appends the client address to X-Forwarded-For and keeps what came before it."""

    path: Path_ = "/echo"
    header: str = "X-Forwarded-For"
    incoming: str = "203.0.113.7"
    client_address: str = "127.0.0.1"


# -- security ---------------------------------------------------------------------------------------
class TlsChainValid(PoetModel):
    """The TLS listener presents a chain that verifies against the CA for the expected name."""

    server_name: str = "edge.test"
    min_days_valid: Annotated[float, Field(ge=0, le=3650)] = 1.0
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    path: Path_ = "/echo"
    min_chain: Annotated[int, Field(ge=1, le=10)] = 1


class MtlsClientRequired(PoetModel):
    """The mTLS listener refuses clients without a certificate and serves those with one."""

    server_name: str = "edge.test"
    path: Path_ = "/echo"


# -- resilience -------------------------------------------------------------------------------------
class LatencyBoundedUnderFault(Vantage):
    """Client latency stays bounded while one upstream hangs or slows down."""

    path: Path_ = "/flaky/echo"
    #: more locations that carry their own timeout, probed in the same fault window (requests spread over all)
    also_paths: list[Path_] = Field(default_factory=list, max_length=10)
    #: more virtual hosts and listeners probed in the same fault window, each with every path
    also_via: list[Vantage] = Field(default_factory=list, max_length=5)
    #: send the faulted requests only on URIs that this upstream serves (found by asking first, without a
    #: fault): behind a hash on the URI, the fault of one named upstream then meets every request, once
    pinned_to: str | None = None
    #: run beside the checks without faults instead of alone: allowed only for a fault of one pinned upstream
    #: on a path no other check uses, and too few requests to take a server out of rotation
    beside_shared: bool = False
    fault: FaultSpec = Field(default_factory=lambda: FaultSpec(action="hang", hang_s=8.0))
    requests: Annotated[int, Field(ge=1, le=200)] = 6
    concurrency: Concurrency = 3
    max_latency_ms: Millis = 2500.0
    min_success_ratio: Ratio = 1.0

    @model_validator(mode="after")
    def _beside_is_confined(self) -> LatencyBoundedUnderFault:
        if self.beside_shared and (self.pinned_to is None or self.fault.target != self.pinned_to
                                   or self.also_paths or self.also_via or self.requests > 1):
            raise ValueError("beside_shared needs pinned_to, a fault on that same upstream, one request and no "
                             "also_paths or also_via (so it cannot disturb the checks it runs beside)")
        return self


class RateLimitSheds(Vantage):
    """A burst over the rate limit is shed quickly with the expected status."""

    path: Path_ = "/limited/echo"
    #: more virtual hosts and listeners bursting at the same moment; each must shed (the limit is per client)
    also_via: list[Vantage] = Field(default_factory=list, max_length=5)
    requests: Count = 40
    concurrency: Concurrency = 8
    expect_status: list[Status] = Field(default_factory=lambda: [429, 503])
    min_shed: Annotated[int, Field(ge=1, le=500)] = 1
    max_shed_latency_ms: Millis = 500.0
    min_served: Annotated[int, Field(ge=0, le=500)] = 1
    #: wait this long first, so that requests an earlier check sent to the limited path (a per-client rate
    #: counts them all, HAProxy's over a sliding second) no longer count
    settle_s: Annotated[float, Field(ge=0, le=5)] = 0.0


class ConnectionLimitSheds(Vantage):
    """Concurrent connections over the limit are shed quickly with the expected status."""

    path: Path_ = "/limited/slow/1500"
    #: more virtual hosts and listeners bursting at the same moment; each must shed (the limit is per client)
    also_via: list[Vantage] = Field(default_factory=list, max_length=5)
    connections: Annotated[int, Field(ge=2, le=64)] = 16
    expect_status: list[Status] = Field(default_factory=lambda: [429, 503])
    min_shed: Annotated[int, Field(ge=1, le=64)] = 1
    max_shed_latency_ms: Millis = 500.0
    timeout_s: Seconds = 10.0


class ReloadNoErrors(PoetModel):
    """No request fails while the configuration is reloaded under traffic."""

    path: Path_ = "/api/echo"
    duration_s: Seconds = 3.0
    concurrency: Concurrency = 4
    reloads: Annotated[int, Field(ge=1, le=10)] = 2
    max_errors: Annotated[int, Field(ge=0, le=1000)] = 0


# -- observability ----------------------------------------------------------------------------------
class AccessLogComplete(PoetModel):
    """Every request, errors included, appears in the access log with the required fields."""

    requests: list[HttpRequestSpec] = Field(default_factory=lambda: [
        HttpRequestSpec(path="/echo"), HttpRequestSpec(path="/api/echo"),
        HttpRequestSpec(path="/no-such-page"), HttpRequestSpec(method="POST", path="/echo", body="x"),
    ], min_length=1, max_length=50)
    fields: list[str] = Field(default_factory=lambda: ["time", "request_id", "host", "method", "uri", "status",
                                                       "request_time"])
    non_empty: list[str] = Field(default_factory=lambda: ["time", "method", "uri", "status"])
    fault_requests: list[HttpRequestSpec] = Field(default_factory=list, max_length=20)
    fault: FaultSpec | None = None


class MetricsExposed(PoetModel):
    """The metrics endpoint serves the required families and its request counter follows traffic."""

    families: list[str] = Field(default_factory=list)
    request_counter: list[str] = Field(default_factory=list)
    requests: Count = 10
    path: Path_ = "/echo"


class RequestIdPropagated(PoetModel):
    """Each request gets an id that the upstream receives, the access log records and (optionally) the client sees."""

    path: Path_ = "/echo"
    header: str = "X-Request-ID"
    requests: Annotated[int, Field(ge=2, le=50)] = 5
    response_header: str | None = None
    log_field: str = "request_id"


class UpstreamTimingLogged(Vantage):
    """The access log records each upstream attempt's timings, consistent with what happened."""

    path: Path_ = "/slow/200"
    requests: Annotated[int, Field(ge=1, le=20)] = 3
    min_upstream_s: Annotated[float, Field(ge=0, le=30)] = 0.2
    fields: list[str] = Field(default_factory=lambda: ["upstream_addr", "upstream_status", "upstream_response_time"])


# -- evaluated from evidence other tools produce ----------------------------------------------------
class LoadCheckParams(PoetModel):
    """Parameters of a load-test check; interpreted by the load-test module, so extra names pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    scenario: str | None = None


class TestsPass(PoetModel):
    """JUnit results linked to the obligation (by test name or property) exist and all pass."""

    __test__ = False  # not a pytest test class

    min_tests: Annotated[int, Field(ge=1, le=100_000)] = 1
    match: str | None = None


class MetricThreshold(PoetModel):
    """A metric from a Prometheus snapshot, aggregated over matching series, compares to a threshold."""

    metric: str
    labels: dict[str, str] = Field(default_factory=dict)
    op: Literal["<", "<=", ">", ">=", "==", "!="] = "<="
    value: float
    aggregate: Literal["sum", "max", "min", "avg", "count"] = "sum"


class Manual(PoetModel):
    """A check a person performs; a gate never passes it on its own."""

    model_config = ConfigDict(extra="allow", frozen=True)

    procedure: str | None = None


# -- demo calibration --------------------------------------------------------------------------------
#: Parameters whose values describe the traffic a gate drives itself (mostly the demo edge's endpoints), not
#: what the obligation states. They are applied to evidence a gate collected and the knowledge base recorded;
#: evidence from other tools (and evidence directories this knowledge base has no record of) is judged without
#: them, each replaced by the neutral value here. docs/gates.md lists them per kind and says how to set them
#: for another edge. Parameters that only steer collection (paths, counts, concurrency, faults) never reach
#: foreign evidence at all: it has no steps of the gate's own.
CALIBRATION: dict[str, dict[str, Any]] = {
    # the demo's /slow/200 endpoint answers after 200 ms, so the gate's own requests must log >= 0.2 s
    "upstream_timing_logged": {"min_upstream_s": 0.0},
    # the demo's fault-injection path /flaky/echo: a foreign log is counted whole, not filtered by it
    "upstream_attempts_bounded": {"path": None},
    "no_retry_non_idempotent": {"path": None},
    # the gate sends `requests` requests between its two scrapes; between two foreign snapshots any growth counts
    "metrics_exposed": {"requests": 1},
}


def without_calibration(kind: str, params: PoetModel) -> tuple[PoetModel, list[str]]:
    """``params`` with the kind's demo-calibration values neutral, and the names that were neutralised."""
    neutral = CALIBRATION.get(kind) or {}
    changed = [name for name, value in neutral.items() if getattr(params, name, value) != value]
    if not changed:
        return params, []
    return params.model_copy(update={name: neutral[name] for name in changed}), changed


# -- the service tier (poet demo up --tier service): auth and data checks that drive the demo service ---------------
class JwtForgeryRejected(PoetModel):
    """Forged and malformed tokens get 401 and never reach a handler, while a valid token is served."""

    path: Path_ = "/api/me"
    forgeries: list[Literal["alg_none", "stripped_signature", "tampered_payload", "hs256_public_key",
                            "embedded_jwk", "jku_foreign", "x5u_foreign", "foreign_key", "garbage"]] = Field(
        default_factory=lambda: [  # type: ignore[arg-type]  # literals, checked by pydantic
            "alg_none", "stripped_signature", "tampered_payload", "hs256_public_key", "embedded_jwk", "jku_foreign",
            "x5u_foreign", "foreign_key", "garbage"],
        min_length=1)


class JwtClaimsEnforced(PoetModel):
    """Validly signed tokens with one bad claim get 401; a valid one, and one within the leeway, are served."""

    path: Path_ = "/api/me"
    cases: list[Literal["expired", "not_yet_valid", "missing_exp", "wrong_issuer", "wrong_audience"]] = Field(
        default_factory=lambda: [  # type: ignore[arg-type]  # literals, checked by pydantic
            "expired", "not_yet_valid", "missing_exp", "wrong_issuer", "wrong_audience"],
        min_length=1)
    max_leeway_s: Annotated[int, Field(ge=0, le=300)] = 60


class JwksRotationBounded(PoetModel):
    """A rotated key is accepted within the cache TTL, junk key ids refetch sparingly, an outage keeps serving."""

    path: Path_ = "/api/me"
    within_s: Seconds = 5.0
    junk_tokens: Count = 20
    max_refetches: Annotated[int, Field(ge=0, le=100)] = 3
    outage: bool = True


class JwksOutageFailsClosed(PoetModel):
    """With no usable key set (cache empty, issuer down), a token is refused (401/503), never served."""

    path: Path_ = "/api/me"
    expect_status: list[Status] = Field(default_factory=lambda: [401, 403, 503])


class UnsafeConfigRefused(PoetModel):
    """The service refuses to start with mock auth in production or a missing issuer setting."""

    cases: list[Literal["mock_auth_in_production", "missing_issuer", "missing_audience", "missing_jwks_url"]] = Field(
        default_factory=lambda: [  # type: ignore[arg-type]  # literals, checked by pydantic
            "mock_auth_in_production", "missing_issuer", "missing_audience", "missing_jwks_url"],
        min_length=1)
    probe_mock_header: bool = True
    path: Path_ = "/api/me"


class ConcurrentUpdatesConsistent(PoetModel):
    """Concurrent increments and transfers leave the database consistent: no lost update, money conserved."""

    increments: Count = 40
    transfers: Count = 40
    concurrency: Concurrency = 8


class RollbackNoPartialWrite(PoetModel):
    """A transfer that fails after its debit leaves no trace in the database."""

    attempts: Annotated[int, Field(ge=1, le=20)] = 3


class IdsUniqueConcurrent(PoetModel):
    """Orders created concurrently get distinct numbers, in the responses and in the database."""

    orders: Count = 40
    concurrency: Concurrency = 8


class PoolExhaustionGraceful(PoetModel):
    """With every database connection held by slow queries, extra requests are refused fast, none hangs."""

    slow_query_ms: Annotated[int, Field(ge=100, le=10_000)] = 1500
    requests: Count = 12
    concurrency: Concurrency = 12
    max_latency_ms: Millis = 4000
    expect_status: list[Status] = Field(default_factory=lambda: [503, 429])


class DatabaseRestartRecovered(PoetModel):
    """After the database restarts, the service serves again within ``within_s`` without being restarted."""

    within_s: Seconds = 10.0


class SlowDependencyIsolated(PoetModel):
    """A slow dependency is cut off by a timeout, and requests that do not need it stay fast."""

    dependency_latency_ms: Annotated[int, Field(ge=100, le=20_000)] = 3000
    max_latency_ms: Millis = 1500
    requests: Count = 4


class DeadlockRetried(PoetModel):
    """Opposite transfers between two accounts, run concurrently, all succeed and conserve money."""

    transfers: Count = 30
    concurrency: Concurrency = 8


class ThreadsBounded(PoetModel):
    """A burst of slow requests beyond the worker pool is shed at once; threads stay bounded."""

    requests: Count = 48
    dependency_latency_ms: Annotated[int, Field(ge=100, le=5000)] = 700
    max_threads: Annotated[int, Field(ge=1, le=10_000)] = 40
    max_latency_ms: Millis = 5000


class ServiceLoadSlo(PoetModel):
    """A short, bounded closed-loop load on the service, judged by the load module's SLO interpretation."""

    slo: Literal["latency", "error_rate", "throughput"] = "latency"
    path: Path_ = "/api/me"
    requests: Annotated[int, Field(ge=10, le=2000)] = 200
    concurrency: Concurrency = 8
    percentile: Literal["p50", "p90", "p95", "p99"] = "p95"
    max_ms: Millis = 250
    max_rate: Ratio = 0.01
    min_rps: Annotated[float, Field(gt=0, le=100_000)] = 50


class MigrationLockBounded(PoetModel):
    """An online migration meeting a long read gives up its lock wait in time; traffic never stalls behind it."""

    hold_read_s: Annotated[float, Field(gt=0, le=10)] = 3.0
    reads: Count = 10
    max_stall_ms: Millis = 2000


class MigrationBackwardCompatible(PoetModel):
    """The next release's migration applied under traffic: the running (previous) release keeps working."""

    migration: Annotated[str, Field(min_length=1, max_length=64)] = "004_accounts_display_name"
    requests: Count = 24
    concurrency: Concurrency = 4


class MigrationIdempotent(PoetModel):
    """A migration killed after each of its steps is run again and ends at the schema of an uninterrupted run."""

    migration: Annotated[str, Field(min_length=1, max_length=64)] = "005_orders_status"


class SchemaDriftDetected(PoetModel):
    """The service's drift report is empty on the migrated schema and names a hand-made column and index."""


class ServiceBurstRecovery(PoetModel):
    """After a burst beyond the worker pool, normal load is back within SLO in the recovery bound."""

    burst_requests: Annotated[int, Field(ge=10, le=2000)] = 96
    burst_concurrency: Concurrency = 48
    dependency_latency_ms: Annotated[int, Field(ge=0, le=5000)] = 300
    steady_requests: Annotated[int, Field(ge=10, le=2000)] = 60
    concurrency: Concurrency = 4
    recovery_s: Annotated[float, Field(ge=0, le=60)] = 1.0
    max_p95_ms: Millis = 250
    max_rate: Ratio = 0.01


class ServiceSoakStable(PoetModel):
    """A short soak: late-phase p95 and the service's memory stay close to the early phase's."""

    phase_requests: Annotated[int, Field(ge=10, le=5000)] = 100
    middle_requests: Annotated[int, Field(ge=0, le=20_000)] = 200
    concurrency: Concurrency = 4
    max_p95_drift_pct: Annotated[float, Field(ge=0, le=10_000)] = 150.0
    #: p95 values below this count as this much: drift among millisecond latencies is scheduling noise
    p95_floor_ms: Annotated[float, Field(ge=0, le=10_000)] = 50.0
    max_memory_growth_pct: Annotated[float, Field(ge=0, le=1000)] = 10.0


class RetryBackoffBounded(PoetModel):
    """With the dependency failing, the service's retries are few, jittered and within a retry budget."""

    calls: Count = 30
    concurrency: Concurrency = 4
    fail_status: Annotated[int, Field(ge=429, le=599)] = 503
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 3
    max_retry_ratio: Ratio = 0.1
    retry_allowance: Annotated[int, Field(ge=0, le=100)] = 10
    min_spread_ms: Millis = 5


class PartitionRecovered(PoetModel):
    """With the network to the database silently dropping packets, requests fail in time; after the heal, served."""

    requests: Annotated[int, Field(ge=1, le=32)] = 4
    max_latency_ms: Millis = 7000
    partition_max_s: Annotated[float, Field(gt=0, le=60)] = 10.0
    recovery_s: Seconds = 10.0
    after: Count = 8


class OutboxNoLoss(PoetModel):
    """Orders taken while the broker is down all reach it once it is back; none for a rolled-back order."""

    orders: Count = 10
    failed_orders: Annotated[int, Field(ge=0, le=50)] = 3
    drain_s: Seconds = 8.0
