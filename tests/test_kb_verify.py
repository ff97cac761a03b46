"""`poet kb verify`: the catalog's proxy claims checked by probes against the real NGINX and HAProxy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from poetkb.catalog import check_catalog, load_catalog, shipped_catalog_root
from poetkb.cli import main
from poetkb.verify.claims import catalog_claims, claim_summary
from poetkb.verify.probes import load_probes, load_records

ROOT = shipped_catalog_root()


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def copy_catalog(tmp_path: Path) -> Path:
    """The shipped catalog without the learned patterns (which play no part in claims), copied to edit."""
    root = tmp_path / "catalog"
    for part in ("obligations", "mappings", "knowledge/packs", "knowledge/probes"):
        shutil.copytree(ROOT / part, root / part)
    shutil.copy(ROOT / "knowledge/references.yaml", root / "knowledge/references.yaml")
    return root


@pytest.mark.proxy
def test_every_probe_passes_on_the_installed_proxies() -> None:
    """All probes pass against the installed nginx and haproxy, and each ran on its recorded version."""
    code, out, err = invoke("kb", "verify", "--json")
    report = json.loads(out)
    failed = [(r["id"], r["failures"]) for r in report["results"] if not r["passed"]]
    assert code == 0 and report["ok"], (failed, err)
    probes, _ = load_probes(ROOT)
    assert {r["id"] for r in report["results"]} == set(probes.probes)
    assert {r["proxy"] for r in report["results"]} == {"nginx", "haproxy"}
    records, problems = load_records(ROOT)
    assert not problems and set(records) == set(probes.probes)
    for result in report["results"]:
        assert result["recorded_version"] == records[result["id"]].version, result["id"]
        assert result["version"] and result["claims"], f"probe {result['id']} verifies no claim"


@pytest.mark.proxy
def test_a_wrong_expectation_fails_with_the_claim_named(tmp_path: Path) -> None:
    """A probe whose expectation the proxy contradicts exits 1 naming its claims and the version it passed on."""
    root = copy_catalog(tmp_path)
    path = root / "knowledge/probes/nginx/cache.yaml"
    text = path.read_text()
    wrong = "expect: {status: 200, headers: {X-Cache-Status: STALE}}"
    text = text.replace("expect: {status: 500, headers: {X-Cache-Status: EXPIRED}}", wrong, 1)
    assert wrong in text
    path.write_text(text)
    code, out, err = invoke("kb", "verify", "--from", str(root), "--claim", "nginx.stale_if_error.ignored_on_status")
    assert code == 1
    assert "FAIL nginx" in out and "nginx.cache.stale_if_error_ignored_on_500" in out
    assert "expected status 200, got status 500" in out
    assert "nginx.stale_if_error.ignored_on_status" in out and "nginx.stale_if_error.recipe_network_error" in out
    assert "it passed on nginx 1.22" in out
    assert "claims failed on the installed proxies: nginx.stale_if_error.ignored_on_status" in err


@pytest.mark.proxy
def test_record_writes_the_version_a_probe_passed_on(tmp_path: Path) -> None:
    """--record writes the proxy version of each passing probe to knowledge/probes/verified.yaml."""
    root = copy_catalog(tmp_path)
    (root / "knowledge/probes/verified.yaml").unlink()
    code, out, _ = invoke("kb", "verify", "--from", str(root), "--claim", "haproxy.process_vary.default_off",
                          "--proxy", "haproxy", "--record")
    assert code == 0, out
    records, problems = load_records(root)
    assert not problems and list(records) == ["haproxy.cache.vary_not_cached_by_default"]
    assert records["haproxy.cache.vary_not_cached_by_default"].version.startswith("2.6")
    assert "recorded versions in" in out


def test_verified_share_of_directive_claims_is_at_least_80_percent() -> None:
    """At least 80% of the catalog's nginx/haproxy directive claims name a probe; the rest say unverified."""
    catalog = load_catalog(ROOT)
    summary = claim_summary(catalog)
    assert summary.total >= 60
    assert summary.share >= 0.8, summary.unverified
    unverified = [p.claim for p in catalog_claims(catalog) if p.claim.id in summary.unverified]
    assert unverified and all(c.status == "unverified" for c in unverified)


def test_every_claimed_directive_rule_and_issue_claim_has_its_probe() -> None:
    """The behaviours the review found wrong each carry a probe of the proxy they are about."""
    catalog = load_catalog(ROOT)
    claims = {p.claim.id: p.claim for p in catalog_claims(catalog)}
    for claim_id in ("nginx.max_fails.errors_always_count", "nginx.max_fails.status_counts_when_listed",
                     "nginx.max_fails.404_never_counts", "nginx.stale_if_error.ignored_on_status",
                     "nginx.framing.te_on_http10_rejected", "haproxy.http_response.not_on_generated",
                     "nginx.hash.runtime_failure_moves_own_keys", "nginx.cache.no_age_header",
                     "haproxy.retries.default_three", "haproxy.connection.named_headers_kept",
                     "recipe.health_checks.nginx_needs_http_502_503", "nginx.xff.appends_realip_address"):
        assert claims[claim_id].verified_by, claim_id


def test_unknown_probe_or_wrong_proxy_in_verified_by_is_a_catalog_problem(tmp_path: Path) -> None:
    """verified_by naming a missing probe, or a probe of the other proxy, is reported with file and field."""
    root = copy_catalog(tmp_path)
    path = root / "mappings/nginx.yaml"
    text = path.read_text()
    text = text.replace("verified_by: [nginx.protocol.mirror_doubles_requests]", "verified_by: [nginx.no.such_probe]", 1)
    text = text.replace("verified_by: [nginx.upstream.read_timeout_504]", "verified_by: [haproxy.http.timeout_server_504]",
                        1)
    path.write_text(text)
    _, problems = check_catalog(root)
    messages = [str(p) for p in problems]
    assert any("mappings/nginx.yaml" in m and "unknown probe 'nginx.no.such_probe'" in m for m in messages), messages
    assert any("runs on haproxy, the claim is about nginx" in m for m in messages), messages


def test_a_malformed_probe_file_is_bad_input_with_file_and_line(tmp_path: Path) -> None:
    """A probe step with two actions exits 2 naming the probe file and the line; no proxy is started."""
    root = copy_catalog(tmp_path)
    path = root / "knowledge/probes/haproxy/extra.yaml"
    path.write_text(yaml.safe_dump({"probes": [{
        "id": "haproxy.extra.bad", "proxy": "haproxy", "title": "t", "shows": "s", "config": "x",
        "steps": [{"sleep_s": 1, "request": {"path": "/echo"}}]}]}))
    code, _, err = invoke("kb", "verify", "--from", str(root))
    assert code == 2
    assert "knowledge/probes/haproxy/extra.yaml" in err and "exactly one of" in err


def test_an_unknown_or_unverified_claim_is_bad_input() -> None:
    """--claim with an id the catalog lacks, or with a claim that has no probe, exits 2 saying which."""
    code, _, err = invoke("kb", "verify", "--claim", "nginx.no_such_claim")
    assert code == 2 and "no claim 'nginx.no_such_claim'" in err
    code, _, err = invoke("kb", "verify", "--claim", "haproxy.cache_max_age.default_60")
    assert code == 2 and "has no probe: it is unverified" in err


def test_obligations_show_marks_claims_verified_or_unverified(kb_path: Path) -> None:
    """`poet obligations show` lists the proxy behaviour an obligation relies on, verified or unverified."""
    code, out, _ = invoke("obligations", "show", "cache.stale.bounded")
    assert code == 0
    assert "verified: nginx proxy_cache: Since 1.19.3 the origin's stale-if-error is ignored" in out
    assert "[probe: nginx.cache.stale_if_error_ignored_on_500]" in out
    assert "unverified: haproxy max-age" in out


def test_test_plans_mark_each_claim_verified_or_unverified(kb: object) -> None:
    """A test plan lists the proxy behaviour each item relies on; claims without a probe read **unverified**."""
    plan = kb.test_plan("Change the HAProxy cache max-age and cache-store rules", component="haproxy",  # type: ignore[attr-defined]
                        top=8)
    claims = [c for item in plan.items for c in item.claims]
    assert claims and all(c.component == "haproxy" for c in claims)
    text = plan.to_markdown()
    assert "**Proxy behaviour relied on.**" in text
    verified = [c for c in claims if c.verified_by]
    unverified = [c for c in claims if not c.verified_by]
    assert verified and f"- verified (haproxy `{verified[0].directive}`)" in text
    assert unverified and f"- **unverified** (haproxy `{unverified[0].directive}`)" in text
