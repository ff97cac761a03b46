"""The good service and its seeded-fault variants: each switches flaws on and names what it breaks.

A variant is a set of flags the service code reads (:class:`Flaws`); the good
configuration has none. Each variant records the outage it models and the
obligations it is built to break, so the gate matrix can show that every one is
caught by exactly those obligations.
"""

from __future__ import annotations

from pydantic import Field

from poetkb.errors import InputError
from poetkb.models import PoetModel
from poetkb.types import NonEmptyStr, ObligationId


class Flaws(PoetModel):
    """Flaws the service can carry; all off in the good configuration."""

    alg_none_accepted: bool = False
    alg_from_token: bool = False
    embedded_jwk_trusted: bool = False
    expiry_unchecked: bool = False
    audience_unchecked: bool = False
    mock_auth_in_production: bool = False
    jwks_refetch_unbounded: bool = False
    lost_update: bool = False
    partial_write: bool = False
    duplicate_ids: bool = False
    pool_unbounded_wait: bool = False
    dependency_no_timeout: bool = False
    deadlock_unretried: bool = False
    threads_unbounded: bool = False
    no_reconnect: bool = False
    slow_handler: bool = False
    migration_no_lock_timeout: bool = False
    flaky_handler: bool = False
    migration_incompatible: bool = False
    migration_not_atomic: bool = False
    drift_tables_only: bool = False
    overload_latch: bool = False
    memory_leak: bool = False
    retry_storm: bool = False
    no_query_deadline: bool = False
    outbox_dual_write: bool = False


class ServiceVariant(PoetModel):
    """One configuration of the service: the good one or a seeded fault."""

    name: NonEmptyStr
    description: NonEmptyStr
    outage: str = ""
    breaks: list[ObligationId] = Field(default_factory=list)
    flaws: Flaws = Field(default_factory=Flaws)


GOOD = "good"

VARIANTS: dict[str, ServiceVariant] = {v.name: v for v in [
    ServiceVariant(name=GOOD, description="The service as it should be: every flaw off."),
    ServiceVariant(
        name="alg-none", flaws=Flaws(alg_none_accepted=True), breaks=["auth.jwt.signature.verified"],
        description="Tokens whose header says alg none are accepted without a signature.",
        outage="Anyone writes a token for any user: the verifier lets the token switch verification off."),
    ServiceVariant(
        name="alg-from-token", flaws=Flaws(alg_from_token=True), breaks=["auth.jwt.signature.verified"],
        description="The algorithm is taken from the token header; HS256 is checked with the public key as secret.",
        outage="RS256/HS256 confusion: the published public key becomes an HMAC secret anyone can sign with."),
    ServiceVariant(
        name="jwk-trusted", flaws=Flaws(embedded_jwk_trusted=True), breaks=["auth.jwt.signature.verified"],
        description="A key embedded in the token header (jwk) is used to verify that same token.",
        outage="A token brings its own key: any self-signed token passes as long as it carries its public key."),
    ServiceVariant(
        name="expiry-unchecked", flaws=Flaws(expiry_unchecked=True), breaks=["auth.jwt.claims.validated"],
        description="exp and nbf are not checked.",
        outage="A token leaked in a log months ago still works."),
    ServiceVariant(
        name="audience-unchecked", flaws=Flaws(audience_unchecked=True), breaks=["auth.jwt.claims.validated"],
        description="aud and iss are not checked.",
        outage="A token minted for another service of the same issuer is replayed here."),
    ServiceVariant(
        name="mock-auth-in-production", flaws=Flaws(mock_auth_in_production=True),
        breaks=["auth.mock.disabled_in_production", "auth.config.fail_fast"],
        description="The mock-auth header is honoured and accepted at start-up with ENVIRONMENT=production.",
        outage="A test shortcut left on in production: X-Mock-User: admin is all it takes."),
    ServiceVariant(
        name="jwks-refetch-unbounded", flaws=Flaws(jwks_refetch_unbounded=True), breaks=["auth.jwks.cache.bounded"],
        description="Every token with an unknown kid makes the service fetch the JWKS again.",
        outage="Junk kids turn each request into a call to the identity provider, which then rate-limits "
               "every service."),
    ServiceVariant(
        name="lost-update", flaws=Flaws(lost_update=True),
        # the deadlock check also compares the balances of its transfers with what was acknowledged
        breaks=["data.concurrency.no_lost_update", "data.deadlock.retried"],
        description="Increments and transfers read a balance, then write it back, without a lock.",
        outage="Concurrent writes overwrite each other: counts go missing and money appears or vanishes."),
    ServiceVariant(
        name="partial-write", flaws=Flaws(partial_write=True), breaks=["data.txn.rollback.complete"],
        description="A transfer commits each statement on its own, so a failure after the debit keeps it.",
        outage="A failed transfer leaves money debited and never credited."),
    ServiceVariant(
        name="duplicate-ids", flaws=Flaws(duplicate_ids=True), breaks=["data.ids.unique"],
        description="Order numbers are max(number) + 1, computed by the application, with no unique constraint.",
        outage="Two concurrent orders get the same number; one customer sees the other's order."),
    ServiceVariant(
        name="pool-unbounded-wait", flaws=Flaws(pool_unbounded_wait=True), breaks=["data.pool.exhaustion.graceful"],
        description="A request waits for a database connection for as long as it takes.",
        outage="Slow queries hold every connection; requests pile up behind them until clients give up."),
    ServiceVariant(
        name="dependency-no-timeout", flaws=Flaws(dependency_no_timeout=True),
        breaks=["resilience.slow_dependency.isolated"],
        description="The call to the slow dependency has no timeout.",
        outage="A slow dependency makes every request that touches it as slow as the dependency."),
    ServiceVariant(
        name="deadlock-unretried", flaws=Flaws(deadlock_unretried=True), breaks=["data.deadlock.retried"],
        description="Transfers lock rows in request order (not id order) and a deadlock victim is not retried.",
        outage="Two opposite transfers deadlock; one customer gets an error for a transfer that would have worked."),
    ServiceVariant(
        name="threads-unbounded", flaws=Flaws(threads_unbounded=True), breaks=["resilience.threads.bounded"],
        description="Every connection gets a thread of its own, without limit or shedding.",
        outage="A burst of slow requests grows threads without bound until memory or the dependency gives out."),
    ServiceVariant(
        name="no-reconnect", flaws=Flaws(no_reconnect=True),
        # a partition severs the pooled connections too, and they are never replaced either
        breaks=["resilience.dependency.restart", "resilience.partition.recovery"],
        description="Pooled connections are never validated or replaced: after a database restart they stay broken.",
        outage="The database restarted for a minor upgrade; the service needs a restart by hand to serve again."),
    ServiceVariant(
        name="slow-handler", flaws=Flaws(slow_handler=True), breaks=["perf.latency.slo", "perf.throughput.slo"],
        description="GET /api/me does 300 ms of needless work on every call.",
        outage="A release adds a synchronous call to every request: p95 and capacity both collapse."),
    ServiceVariant(
        name="flaky-handler", flaws=Flaws(flaky_handler=True), breaks=["perf.error_rate.slo"],
        description="Every twentieth GET /api/me fails with 500.",
        outage="A race in a new code path fails one request in twenty under load."),
    ServiceVariant(
        name="migration-no-lock-timeout", flaws=Flaws(migration_no_lock_timeout=True),
        breaks=["data.migration.lock_bounded"],
        description="The online migration takes its exclusive lock with no lock_timeout.",
        outage="An ALTER TABLE queues behind a long read and every query on the table queues behind the ALTER."),
    ServiceVariant(
        name="migration-incompatible", flaws=Flaws(migration_incompatible=True),
        breaks=["data.migration.backward_compatible"],
        description="The expand migration renames accounts.owner instead of adding a column (a contract step "
                    "shipped with the expand).",
        outage="The migration runs before the new code is out: the running release reads a column that is gone "
               "and every account request fails until the deploy finishes or is rolled back."),
    ServiceVariant(
        name="migration-not-atomic", flaws=Flaws(migration_not_atomic=True), breaks=["data.migration.idempotent"],
        description="A multi-step migration commits each step on its own and records its version only at the end.",
        outage="A deploy job killed half-way leaves a column but no version record; every re-run fails on "
               "'column already exists' until someone repairs the schema by hand."),
    ServiceVariant(
        name="drift-unchecked", flaws=Flaws(drift_tables_only=True), breaks=["data.schema.drift.detected"],
        description="The schema drift report compares table names only.",
        outage="A hotfix index or column added by hand in production is never reported; the next migration "
               "collides with it."),
    ServiceVariant(
        name="overload-latch", flaws=Flaws(overload_latch=True), breaks=["perf.burst.recovery"],
        description="Overload protection opens on shedding and refuses everything for 4 s, with no half-open probe.",
        outage="A short burst trips the breaker and the service keeps refusing normal traffic long after the "
               "burst is gone."),
    ServiceVariant(
        name="memory-leak", flaws=Flaws(memory_leak=True), breaks=["perf.soak.stable"],
        description="Every API request keeps a 128 KiB buffer in a module-level list.",
        outage="Memory climbs with traffic until the process is killed for it, hours after the release."),
    ServiceVariant(
        name="retry-storm", flaws=Flaws(retry_storm=True), breaks=["resilience.retry.backoff"],
        description="A failed dependency call is retried at once, up to ten times, with no budget.",
        outage="A dependency that fails under load gets ten times the load from every caller and cannot recover."),
    ServiceVariant(
        name="partition-hang", flaws=Flaws(no_query_deadline=True), breaks=["resilience.partition.recovery"],
        description="A request holding a database connection has no deadline: a query into a silent network waits.",
        outage="The network to the database drops packets; requests hang until the clients give up, and the "
               "workers they hold are gone for everything else."),
    ServiceVariant(
        name="outbox-dual-write", flaws=Flaws(outbox_dual_write=True), breaks=["data.outbox.no_loss"],
        description="An order's event is published to the broker after the commit, not written to an outbox.",
        outage="The broker is down for a minute: orders are taken, their events are lost, and downstream "
               "systems never ship them."),
]}


def get_service_variant(name: str) -> ServiceVariant:
    """The variant called ``name``; bad input naming the known variants otherwise."""
    found = VARIANTS.get(name)
    if found is None:
        raise InputError(f"unknown service variant {name!r}", field="service-variant",
                         hint=f"known service variants: {', '.join(VARIANTS)}")
    return found
