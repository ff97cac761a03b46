"""Loading and validating catalogs: the shipped one, the original POET format, and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from poetkb.catalog import check_catalog, load_catalog, shipped_catalog_root
from poetkb.errors import CatalogError

FIXTURES = Path(__file__).resolve().parent / "fixtures"

CONTRACT_IDS = [
    "routing.backend.selection", "routing.fanout.bound", "routing.healthcheck.respect",
    "cache.key.stability", "cache.vary.honored", "protocol.http.status", "protocol.content.length",
    "security.client.ip.preserved", "security.mtls.client.verified", "security.tls.chain.valid",
    "resilience.graceful.degradation", "resilience.retry.bounded", "resilience.timeout.enforced",
    "observability.access.logged", "observability.metrics.exposed", "state.config.reload.atomic",
    "state.ratelimit.enforced", "routing.host.isolated", "cache.key.complete", "cache.private.bypassed",
    "cache.ttl.honored", "cache.stale.bounded", "protocol.hop_by_hop.stripped", "protocol.framing.strict",
    "resilience.overload.shed", "observability.request.id", "observability.upstream.timing",
    "perf.latency.slo", "perf.error_rate.slo", "perf.throughput.slo", "perf.regression.baseline",
    "perf.soak.stable", "perf.burst.recovery", "auth.jwt.signature.verified", "auth.jwt.claims.validated",
    "auth.jwks.cache.bounded", "auth.config.fail_fast", "auth.mock.disabled_in_production",
    "auth.policy.fail_closed", "data.txn.rollback.complete", "data.concurrency.no_lost_update",
    "data.deadlock.retried", "data.pool.exhaustion.graceful", "data.migration.idempotent",
    "data.schema.drift.detected", "data.outbox.no_loss", "data.ids.unique", "resilience.partition.recovery",
    "resilience.dependency.restart", "resilience.retry.backoff", "resilience.threads.bounded",
    "resilience.slow_dependency.isolated",
]

MINI = FIXTURES / "catalog" / "mini"


def test_shipped_catalog_is_valid() -> None:
    """The catalog shipped with poetkb loads with no problem at all."""
    _, problems = check_catalog(shipped_catalog_root())
    assert problems == []


def test_shipped_catalog_has_every_contract_id() -> None:
    """Every obligation id of the public contract exists in the shipped catalog."""
    catalog = load_catalog()
    missing = sorted(set(CONTRACT_IDS) - set(catalog.obligations))
    assert missing == []


def test_shipped_catalog_has_enough_linked_failure_modes() -> None:
    """At least 25 failure modes, each guarded by at least one obligation."""
    catalog = load_catalog()
    assert len(catalog.failure_modes) >= 25
    guarded = {fid for ob in catalog.obligations.values() for fid in ob.failure_modes}
    guarded |= {fid for fid, fm in catalog.failure_modes.items() if fm.guarded_by}
    assert sorted(set(catalog.failure_modes) - guarded) == []


def test_edge_obligations_carry_gate_checks_and_directives() -> None:
    """Every edge obligation has a machine check and a recipe naming NGINX and HAProxy directives."""
    catalog = load_catalog()
    edge = [ob for ob in catalog.obligations.values() if "edge" in ob.tags]
    assert len(edge) >= 27
    for ob in edge:
        assert ob.gate_checks, ob.id
        components = {d.component for rid in ob.recipes for d in catalog.recipes[rid].directives}
        assert {"nginx", "haproxy"} <= components, ob.id


def test_mini_catalog_loads_with_sources() -> None:
    """A small valid catalog loads; each item remembers its file and line."""
    catalog = load_catalog(MINI)
    assert sorted(catalog.obligations) == ["demo.cache.keyed", "demo.retry.bounded"]
    assert catalog.obligations["demo.retry.bounded"].domain == "demo"
    assert catalog.obligations["demo.cache.keyed"].domain == "cache"
    assert catalog.rules["mini.tries"].component == "nginx"
    source = catalog.sources[("obligation", "demo.cache.keyed")]
    assert source.file.endswith("mini.yaml") and source.line == 11


def test_original_poet_format_loads_unchanged() -> None:
    """A catalog in the original POET format loads, with its fields mapped onto ours."""
    root = FIXTURES / "catalog" / "legacy"
    catalog, problems = check_catalog(root)
    assert problems == []
    ob = catalog.obligations["routing.backend.selection"]
    assert ob.statement.startswith("Requests with the same routing key")
    assert ob.risk == "high" and ob.safe_in_prod is True and ob.domain == "routing"
    kinds = {e.kind for e in ob.evidence}
    assert {"access_log", "metrics"} <= kinds
    assert ob.pass_criteria == ["100% of requests sharing a key hit one backend."]
    assert [c.kind for c in ob.checks] == ["manual"] and ob.gate_checks == []
    assert catalog.obligations["cache.vary.honored"].evidence[0].kind == "http_capture"


BAD_CASES = [
    pytest.param(
        "obligations/mini.yaml", "obligations:\n  - id: demo.x\n    title: [unclosed\n",
        ["mini.yaml:3", "malformed YAML"], id="malformed-yaml",
    ),
    pytest.param(
        "obligations/extra.yaml",
        "obligations:\n  - id: demo.typo\n    title: T\n    statement: S\n    rationale: R\n    risk: low\n"
        "    saf_in_prod: true\n",
        ["extra.yaml:7", "saf_in_prod", "unknown field"], id="unknown-field",
    ),
    pytest.param(
        "obligations/extra.yaml",
        "obligations:\n  - id: demo.wrong\n    title: T\n    statement: S\n    rationale: R\n    risk: extreme\n",
        ["extra.yaml:6", "risk", "'high', 'medium' or 'low'"], id="wrong-value",
    ),
    pytest.param(
        "obligations/extra.yaml",
        "obligations:\n  - id: demo.types\n    title: T\n    statement: S\n    rationale: R\n    risk: low\n"
        "    safe_in_prod: sometimes\n",
        ["extra.yaml:7", "safe_in_prod", "boolean"], id="wrong-type",
    ),
    pytest.param(
        "obligations/extra.yaml",
        "obligations:\n  - id: demo.retry.bounded\n    title: T\n    statement: S\n    rationale: R\n    risk: low\n",
        ["extra.yaml:2", "duplicate obligation id 'demo.retry.bounded'", "mini.yaml:2"], id="duplicate-id",
    ),
    pytest.param(
        "obligations/extra.yaml",
        "obligations:\n  - id: demo.dangling\n    title: T\n    statement: S\n    rationale: R\n    risk: low\n"
        "    failure_modes: [demo.no_such_mode]\n",
        ["extra.yaml:2", "failure_modes", "unknown failure mode 'demo.no_such_mode'"], id="dangling-reference",
    ),
    pytest.param(
        "obligations/extra.yaml",
        "obligations:\n  - id: Demo.Bad-Id\n    title: T\n    statement: S\n    rationale: R\n    risk: low\n",
        ["extra.yaml:2", "id", "should match pattern"], id="bad-id-grammar",
    ),
    pytest.param(
        "obligations/extra.yaml",
        "obligations:\n  - id: demo.missing\n    title: T\n    risk: low\n",
        ["extra.yaml:2", "statement", "required field is missing"], id="missing-field",
    ),
    pytest.param(
        "mappings/extra.yaml",
        "rules:\n  - id: bad.rule\n    kind: directive\n    obligations: [demo.retry.bounded]\n",
        ["extra.yaml:2", "needs `terms` or `regex`"], id="rule-without-matcher",
    ),
    pytest.param(
        "obligations/extra.yaml", "obligatons:\n  - id: demo.top\n",
        ["extra.yaml:1", "unknown top-level key"], id="unknown-top-level-key",
    ),
    pytest.param(
        "knowledge/packs/extra.yaml", "pack: x\nfailure_modes:\n  - id: demo.x\n    title: X\n    description: D\n"
        "    guarded_by: [demo.nope]\n",
        ["extra.yaml:3", "unknown obligation 'demo.nope'"], id="dangling-guarded-by",
    ),
]


@pytest.mark.parametrize(("relpath", "text", "expected"), BAD_CASES)
def test_bad_catalog_input_is_reported_with_file_line_and_field(
    tmp_path: Path, relpath: str, text: str, expected: list[str]
) -> None:
    """Each kind of bad catalog input is reported with file, line, field and a readable message."""
    root = tmp_path / "catalog"
    shutil.copytree(MINI, root)
    (root / relpath).write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_catalog(root)
    message = str(caught.value)
    for fragment in expected:
        assert fragment in message


def test_all_problems_are_listed_at_once(tmp_path: Path) -> None:
    """A catalog with a duplicate id and a typo'd field reports both, not just the first."""
    root = tmp_path / "catalog"
    shutil.copytree(MINI, root)
    (root / "obligations" / "extra.yaml").write_text(
        "obligations:\n  - id: demo.retry.bounded\n    title: T\n    statement: S\n    rationale: R\n    risk: low\n"
        "  - id: demo.other\n    title: T\n    statment: S\n    rationale: R\n    risk: low\n",
        encoding="utf-8",
    )
    _, problems = check_catalog(root)
    rendered = [str(p) for p in problems]
    assert any("duplicate obligation id" in p and "extra.yaml:2" in p for p in rendered)
    assert any("statment" in p and "extra.yaml:9" in p for p in rendered)


def test_non_utf8_file_is_reported(tmp_path: Path) -> None:
    """A catalog file that is not UTF-8 is a problem naming the file, not a crash."""
    root = tmp_path / "catalog"
    shutil.copytree(MINI, root)
    (root / "obligations" / "latin1.yaml").write_bytes("title: caf\xe9\n".encode("latin-1"))
    _, problems = check_catalog(root)
    assert any("latin1.yaml" in str(p) and "UTF-8" in str(p) for p in problems)
