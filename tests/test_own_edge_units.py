"""Pure parts of gating your own edge: silencing meaningless fails on live edges, target profiles, verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.records import HttpExchange, HttpRequestRecord, HttpResponseRecord
from poetkb.gates.schema import CheckResult, ObligationVerdict, TargetInfo


def _exchange(path: str, status: int, location: str | None = None) -> HttpExchange:
    headers = {"location": location} if location else {}
    return HttpExchange(request=HttpRequestRecord(method="GET", url=f"http://127.0.0.1:8080{path}?poet=x"),
                        response=HttpResponseRecord(status=status, headers=headers))


def _fail(kind: str) -> CheckResult:
    return CheckResult(check_id=f"o#{0}", obligation_id="o", kind=kind, verdict="fail", diagnosis="it failed")


@pytest.mark.parametrize(("answers", "silenced"), [
    ([("/echo", 404), ("/api/echo", 404)], True),
    ([("/echo", 302, "https://sso.example.com/login?next=/echo")], True),
    ([("/echo", 401), ("/echo", 403)], True),
    ([("/echo", 404), ("/echo", 200)], False),          # one real answer: the fail stands
    ([("/echo", 302, "https://example.com/elsewhere")], False),
    ([("/echo", 502)], False),
])
def test_a_fail_whose_answers_say_nothing_becomes_no_evidence(answers: list[Any], silenced: bool) -> None:
    """404/405/401/403 or a login redirect on every probe: no-evidence naming the paths; anything else stands."""
    from poetkb.gates.runner import _silent

    ev = CheckEvidence(check_id="o#0", kind="cache_key_stable", exchanges=[_exchange(*a) for a in answers])
    out = _silent(_fail("cache_key_stable"), ev)
    if not silenced:
        assert out is None
        return
    assert out is not None and out.verdict == "no-evidence"
    assert "/echo" in out.diagnosis and "routes.cache_key_stable.path" in out.diagnosis
    assert out.details["silenced_fail"] == "it failed"


def test_edge_answers_are_never_silenced() -> None:
    """Framing, host isolation and TLS checks judge the edge's own answers, so a 404 there is evidence."""
    from poetkb.gates.runner import _live, _silent

    ev = CheckEvidence(check_id="o#0", kind="host_isolated", exchanges=[_exchange("/", 404)])
    assert _silent(_fail("host_isolated"), ev) is None
    assert _live(TargetInfo(source="options")) and not _live(TargetInfo(source="demo"))
    assert not _live(TargetInfo(source="options", variant="own-config"))


def test_target_profile_says_what_is_missing() -> None:
    """Routes are taken from the profile; without one, faults, writes and special routes are named, not run."""
    from poetkb.gates.profile import TargetProfile

    profile = TargetProfile(target="http://127.0.0.1:9", hosts=["www.shop.test"],
                            routes={"ttl_honored": {"path": "/static/app.css"}})
    assert profile.adapt("ttl_honored", {}) == ({"path": "/static/app.css"}, None)
    assert "routes.cache_key_stable.path" in str(profile.adapt("cache_key_stable", {})[1])
    assert "upstream_admin" in str(profile.adapt("upstream_attempts_bounded", {})[1])
    assert "add POST to safe_methods" in str(profile.adapt("no_retry_non_idempotent", {})[1])
    assert "echo_path" in str(profile.adapt("forwarded_for_appended", {})[1])
    assert profile.adapt("content_length_matches", {}) == ({"paths": ["/"]}, None)
    assert profile.adapt("tls_chain_valid", {})[0]["server_name"] == "www.shop.test"


def test_not_applicable_never_counts_as_a_pass() -> None:
    """Coverage counts passes only; a selection that is all not-applicable exits 1; a real fail still wins."""
    from poetkb.gates.runner import obligation_verdict, summarize

    def ob(oid: str, verdicts: list[str]) -> ObligationVerdict:
        from poetkb.models import Obligation

        checks = [CheckResult(check_id=f"{oid}#{i}", obligation_id=oid, kind="host_isolated", verdict=v)
                  for i, v in enumerate(verdicts)]
        model = Obligation.model_construct(id=oid, title=oid, domain="d", risk="high", checks=[object()])
        return obligation_verdict(None, model, checks)

    na = ob("a", ["not-applicable"])
    assert na.verdict == "not-applicable"
    assert ob("b", ["not-applicable", "pass"]).verdict == "pass"
    summary, overall, code = summarize([na, ob("c", ["pass"])])
    assert (summary.coverage, summary.not_applicable, overall, code) == (0.5, 1, "pass", 0)
    assert summarize([na])[1:] == ("no-evidence", 1)
    assert summarize([na, ob("d", ["fail"])])[1:] == ("fail", 1)


def test_reports_show_not_applicable_without_calling_it_a_failure() -> None:
    """Markdown counts it, JUnit marks it skipped, HTML renders it, and failures() leaves it out."""
    from poetkb.gates.reports import render_html, render_junit, render_markdown
    from poetkb.gates.schema import GateReport, GateSummary

    obligations = [
        ObligationVerdict(obligation_id="cache.ttl.honored", title="ttl", domain="cache", risk="high",
                          verdict="not-applicable", diagnosis="not claimed by the configuration: no cache"),
        ObligationVerdict(obligation_id="protocol.http.status", title="status", domain="protocol", risk="high",
                          verdict="fail", diagnosis="got 200"),
    ]
    report = GateReport(run_id="r1", mode="run", poetkb_version="0", started_at="t", finished_at="t",
                        duration_s=1.0, obligations=obligations, verdict="fail", exit_code=1,
                        summary=GateSummary(selected=2, passed=0, failed=1, errors=0, no_evidence=0,
                                            not_applicable=1, coverage=0.0))
    assert [o.obligation_id for o in report.failures()] == ["protocol.http.status"]
    assert "1 not applicable" in render_markdown(report)
    junit = render_junit(report)
    assert 'skipped="1"' in junit and "not applicable: not claimed by the configuration" in junit
    assert "not applicable" in render_html(report)
