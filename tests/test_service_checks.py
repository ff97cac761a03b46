"""Service-tier checks without a running system: how an obligation proven two ways is judged, start-up refusals."""

from __future__ import annotations

from typing import Any

import pytest

from poetkb.demo.service.settings import ServiceSettings, startup_problems
from poetkb.demo.service.variants import VARIANTS, Flaws, get_service_variant
from poetkb.errors import InputError
from poetkb.gates.runner import obligation_verdict
from poetkb.gates.schema import CheckResult
from poetkb.models import Check, Obligation


def _ob(kinds: list[str]) -> Obligation:
    return Obligation.model_validate({"id": "auth.jwt.signature.verified", "title": "t", "statement": "s",
                                      "rationale": "r", "risk": "high", "domain": "auth",
                                      "checks": [Check(kind=k) for k in kinds]})


def _r(kind: str, verdict: str, diagnosis: str = "") -> CheckResult:
    return CheckResult(check_id=f"x#{kind}", obligation_id="auth.jwt.signature.verified", kind=kind,
                       verdict=verdict, diagnosis=diagnosis or ("" if verdict == "pass" else f"{kind} {verdict}"))


@pytest.mark.parametrize(("service", "other", "expected"), [
    ("pass", "no-evidence", "pass"),
    ("no-evidence", "pass", "pass"),
    ("fail", "pass", "fail"),
    ("pass", "fail", "fail"),
    ("no-evidence", "no-evidence", "no-evidence"),
    ("error", "no-evidence", "error"),
])
def test_an_obligation_is_proven_by_either_route(service: str, other: str, expected: str) -> None:
    """The service route or other tools' evidence proves the obligation; a route with evidence counts whole."""
    ob = _ob(["tests_pass", "jwt_forgery_rejected"])
    verdict = obligation_verdict(None, ob, [_r("tests_pass", other), _r("jwt_forgery_rejected", service)])
    assert verdict.verdict == expected


def test_a_route_whose_collection_could_not_start_is_left_out() -> None:
    """A metric check with no metrics endpoint collected nothing: the passing service route decides."""
    ob = _ob(["metric_threshold", "jwks_rotation_bounded"])
    results = [_r("metric_threshold", "error", "collection failed: no metrics endpoint is known"),
               _r("jwks_rotation_bounded", "pass")]
    assert obligation_verdict(None, ob, results).verdict == "pass"
    results[0] = _r("metric_threshold", "error", "the evaluator failed")
    assert obligation_verdict(None, ob, results).verdict == "error"


def _settings(**changes: Any) -> ServiceSettings:
    base = {"port": 1, "dsn": "x", "issuer": "i", "audience": "a", "jwks_url": "j", "dependency_url": "d",
            "issuer_admin_url": "ia"}
    return ServiceSettings.model_validate({**base, **changes})


def test_unsafe_settings_are_refused_naming_the_setting() -> None:
    """Mock auth in production and a missing issuer, audience or key-set URL each stop the start."""
    assert startup_problems(_settings()) == []
    assert startup_problems(_settings(environment="development", mock_auth=True)) == []
    assert "mock_auth" in startup_problems(_settings(mock_auth=True))[0]
    missing = startup_problems(_settings(issuer="", audience=" ", jwks_url=""))
    assert [p.split()[0] for p in missing] == ["issuer", "audience", "jwks_url"]
    flawed = _settings(mock_auth=True, flaws=Flaws(mock_auth_in_production=True))
    assert startup_problems(flawed) == []  # the seeded fault: nothing stops it


def test_every_variant_names_what_it_breaks_and_why() -> None:
    """Each seeded-fault variant switches a flaw on, breaks at least one obligation and says what outage it models."""
    from poetkb.catalog import load_catalog, shipped_catalog_root

    known = set(load_catalog(shipped_catalog_root()).obligations)
    for variant in VARIANTS.values():
        if variant.name == "good":
            assert variant.breaks == [] and variant.flaws == Flaws()
            continue
        assert variant.breaks and set(variant.breaks) <= known, variant.name
        assert variant.outage and variant.flaws != Flaws(), variant.name
    with pytest.raises(InputError, match="known service variants: good, alg-none"):
        get_service_variant("no-such-variant")
