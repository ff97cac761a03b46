"""The check-kind registry: every kind a catalog may name, its parameters, evidence and implementation.

A check kind is general ("requests sharing a key reach one backend"); an
obligation's ``checks:`` entry picks a kind and sets its parameters. Each kind
has a parameter model (:mod:`poetkb.gates.params`), the evidence kinds its
evaluator reads, and the module holding its collector (which drives traffic)
and its evaluator (a pure function of evidence). Kinds without a collector are
judged only from evidence other tools produce (load summaries, JUnit results,
metric snapshots).

This module also registers the whole-catalog validation that makes
``poet kb check`` report an unknown kind or bad parameters with file and line.
It stays light: the catalog loader imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from poetkb.errors import Problem, UnknownEntity
from poetkb.gates import params as p
from poetkb.models import Check, PoetModel

if TYPE_CHECKING:
    from poetkb.catalog import Catalog


@dataclass(frozen=True)
class KindSpec:
    """What the gate knows about one check kind."""

    name: str
    params: type[PoetModel]
    module: str
    evidence: tuple[str, ...]
    traffic: bool
    summary: str


def _k(name: str, params: type[PoetModel], module: str, evidence: tuple[str, ...], traffic: bool = True,
       summary: str | None = None) -> KindSpec:
    return KindSpec(name, params, f"poetkb.gates.checks.{module}", evidence, traffic,
                    summary or (params.__doc__ or "").strip().splitlines()[0])


_HTTP = ("http_capture",)
_LOG = ("access_log",)
_COUNT = ("upstream_counters",)

KINDS: dict[str, KindSpec] = {spec.name: spec for spec in [
    _k("same_key_same_backend", p.SameKeySameBackend, "routing", _HTTP + _LOG),
    _k("upstream_attempts_bounded", p.UpstreamAttemptsBounded, "routing", _COUNT + _HTTP),
    _k("no_retry_non_idempotent", p.NoRetryNonIdempotent, "routing", _COUNT + _HTTP),
    _k("unhealthy_backend_avoided", p.UnhealthyBackendAvoided, "routing", _COUNT + _HTTP),
    _k("host_isolated", p.HostIsolated, "routing", _HTTP),
    _k("cache_key_stable", p.CacheKeyStable, "cache", _HTTP + _COUNT),
    _k("cache_key_complete", p.CacheKeyComplete, "cache", _HTTP),
    _k("vary_variants_isolated", p.VaryVariantsIsolated, "cache", _HTTP),
    _k("private_not_cached", p.PrivateNotCached, "cache", _HTTP),
    _k("ttl_honored", p.TtlHonored, "cache", _HTTP),
    _k("stale_bounded", p.StaleBounded, "cache", _HTTP),
    _k("status_on_upstream_fault", p.StatusOnUpstreamFault, "protocol", _HTTP),
    _k("content_length_matches", p.ContentLengthMatches, "protocol", _HTTP),
    _k("hop_by_hop_stripped", p.HopByHopStripped, "protocol", _HTTP),
    _k("ambiguous_framing_rejected", p.AmbiguousFramingRejected, "protocol", _HTTP + _COUNT),
    _k("forwarded_for_appended", p.ForwardedForAppended, "protocol", _HTTP),
    _k("tls_chain_valid", p.TlsChainValid, "security", ("tls_handshake",)),
    _k("mtls_client_required", p.MtlsClientRequired, "security", ("tls_handshake",) + _HTTP),
    _k("latency_bounded_under_fault", p.LatencyBoundedUnderFault, "resilience", _HTTP),
    _k("rate_limit_sheds", p.RateLimitSheds, "resilience", _HTTP),
    _k("connection_limit_sheds", p.ConnectionLimitSheds, "resilience", _HTTP),
    _k("reload_no_errors", p.ReloadNoErrors, "resilience", _HTTP),
    _k("access_log_complete", p.AccessLogComplete, "observability", _LOG + _HTTP),
    _k("metrics_exposed", p.MetricsExposed, "observability", ("metrics",)),
    _k("request_id_propagated", p.RequestIdPropagated, "observability", _HTTP + _LOG),
    _k("upstream_timing_logged", p.UpstreamTimingLogged, "observability", _LOG),
    _k("slo_latency", p.LoadCheckParams, "offline", ("load_summary",), traffic=False,
       summary="Latency percentiles of a load test are within the SLO (judged by poetkb.load)."),
    _k("slo_error_rate", p.LoadCheckParams, "offline", ("load_summary",), traffic=False,
       summary="The error rate of a load test is within the SLO (judged by poetkb.load)."),
    _k("slo_throughput", p.LoadCheckParams, "offline", ("load_summary",), traffic=False,
       summary="A load test reaches the required throughput (judged by poetkb.load)."),
    _k("baseline_regression", p.LoadCheckParams, "offline", ("load_summary",), traffic=False,
       summary="A load test does not regress against its baseline (judged by poetkb.load)."),
    _k("soak_drift", p.LoadCheckParams, "offline", ("load_summary",), traffic=False,
       summary="Latency and memory do not drift during a soak test (judged by poetkb.load)."),
    _k("burst_recovery", p.LoadCheckParams, "offline", ("load_summary",), traffic=False,
       summary="Latency and errors recover in time after a burst (judged by poetkb.load)."),
    _k("tests_pass", p.TestsPass, "offline", ("test_results",), traffic=False),
    _k("metric_threshold", p.MetricThreshold, "offline", ("metrics",), traffic=False),
    _k("manual", p.Manual, "offline", (), traffic=False),
]}


def kind_spec(name: str) -> KindSpec:
    """The registry entry of a kind; :class:`UnknownEntity` naming the known kinds otherwise."""
    spec = KINDS.get(name)
    if spec is None:
        raise UnknownEntity("check kind", name, known=list(KINDS))
    return spec


def is_edge_check(check: Check) -> bool:
    """True for checks a gate run can collect evidence for by driving traffic at an edge."""
    spec = KINDS.get(check.kind)
    return spec is not None and spec.traffic


def describe_kinds() -> list[dict[str, Any]]:
    """Name, summary, evidence and whether it drives traffic, for every kind (sorted by name)."""
    return [{"kind": s.name, "summary": s.summary, "evidence": list(s.evidence), "traffic": s.traffic}
            for s in sorted(KINDS.values(), key=lambda s: s.name)]


def check_catalog_kinds(catalog: Catalog) -> list[Problem]:
    """Every check in the catalog names a known kind and valid parameters for it."""
    problems: list[Problem] = []
    for oid, ob in sorted(catalog.obligations.items()):
        src = catalog.sources.get(("obligation", oid))
        file, line = (src.file, src.line) if src else ("?", None)
        for index, check in enumerate(ob.checks):
            where = f"{oid}.checks[{index}]"
            spec = KINDS.get(check.kind)
            if spec is None:
                problems.append(Problem(file, _line_of(file, oid, index, "kind") or line, f"{where}.kind",
                                        f"unknown check kind {check.kind!r}; known kinds: {', '.join(sorted(KINDS))}"))
                continue
            try:
                spec.params.model_validate(check.params)
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(x) for x in err["loc"])
                    field = f"{where}.params" + (f".{loc}" if loc else "")
                    first = str(err["loc"][0]) if err["loc"] else None
                    at = _line_of(file, oid, index, "params", first) or line
                    problems.append(Problem(file, at, field, f"{err['msg']} (check kind {check.kind})"))
    return problems


def _line_of(file: str, oid: str, index: int, key: str, param: str | None = None) -> int | None:
    """The line of a check's key (or of one parameter) in its catalog file; None when it cannot be found."""
    from pathlib import Path

    from poetkb.errors import InputError
    from poetkb.yamlfile import LineDict, load_with_lines

    try:
        data = load_with_lines(Path(file))
    except (InputError, OSError):
        return None
    items = data.get("obligations") if isinstance(data, dict) and "obligations" in data else data
    items = [items] if isinstance(items, dict) else items
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, LineDict) or item.get("id") != oid:
            continue
        checks = item.get("checks")
        if not isinstance(checks, list) or index >= len(checks) or not isinstance(checks[index], LineDict):
            return item.line_of("checks")
        check = checks[index]
        params = check.get("params")
        if param is not None and isinstance(params, LineDict) and param in params:
            return params.line_of(param)
        return check.line_of(key)
    return None


# -- the service tier (poet demo up --tier service) ------------------------------------------------------------
#: kinds that drive the demo's service tier rather than an edge: collected when selected by id or domain, and
#: by ``--all`` when the service tier runs; ``traffic`` stays False so an edge-only ``--all`` is unchanged
SERVICE_KINDS: dict[str, KindSpec] = {spec.name: spec for spec in [
    _k("jwt_forgery_rejected", p.JwtForgeryRejected, "service", _HTTP, traffic=False),
    _k("jwt_claims_enforced", p.JwtClaimsEnforced, "service", _HTTP, traffic=False),
    _k("jwks_rotation_bounded", p.JwksRotationBounded, "service", _HTTP, traffic=False),
    _k("jwks_outage_fails_closed", p.JwksOutageFailsClosed, "service", _HTTP, traffic=False),
    _k("unsafe_config_refused", p.UnsafeConfigRefused, "service", _HTTP, traffic=False),
    _k("concurrent_updates_consistent", p.ConcurrentUpdatesConsistent, "service", _HTTP, traffic=False),
    _k("rollback_no_partial_write", p.RollbackNoPartialWrite, "service", _HTTP, traffic=False),
    _k("ids_unique_concurrent", p.IdsUniqueConcurrent, "service", _HTTP, traffic=False),
    _k("deadlock_retried", p.DeadlockRetried, "service", _HTTP, traffic=False),
    _k("pool_exhaustion_graceful", p.PoolExhaustionGraceful, "service", _HTTP, traffic=False),
    _k("database_restart_recovered", p.DatabaseRestartRecovered, "service", _HTTP, traffic=False),
    _k("slow_dependency_isolated", p.SlowDependencyIsolated, "service", _HTTP, traffic=False),
    _k("threads_bounded", p.ThreadsBounded, "service", _HTTP, traffic=False),
    _k("service_load_slo", p.ServiceLoadSlo, "service", _HTTP, traffic=False),
    _k("migration_lock_bounded", p.MigrationLockBounded, "service", _HTTP, traffic=False),
    _k("migration_backward_compatible", p.MigrationBackwardCompatible, "service_migrations", _HTTP, traffic=False),
    _k("migration_idempotent", p.MigrationIdempotent, "service_migrations", _HTTP, traffic=False),
    _k("schema_drift_detected", p.SchemaDriftDetected, "service_migrations", _HTTP, traffic=False),
    _k("service_burst_recovery", p.ServiceBurstRecovery, "service_perf", _HTTP, traffic=False),
    _k("service_soak_stable", p.ServiceSoakStable, "service_perf", _HTTP, traffic=False),
    _k("retry_backoff_bounded", p.RetryBackoffBounded, "service_resilience", _HTTP, traffic=False),
    _k("partition_recovered", p.PartitionRecovered, "service_resilience", _HTTP, traffic=False),
    _k("outbox_no_loss", p.OutboxNoLoss, "service_outbox", _HTTP, traffic=False),
]}
KINDS.update(SERVICE_KINDS)


def is_service_check(check: Check) -> bool:
    """True for checks that drive the demo's service tier (PostgreSQL, JWT auth)."""
    return check.kind in SERVICE_KINDS
