"""Which checks can prove an obligation, and where they can run: the demo, the user's edge, or evidence only.

A plan is only useful when the reader knows how to close each item. For every
check an obligation names, this says the check kind's evidence, whether the
demo edge (``poet demo up``: NGINX or HAProxy on loopback, with TLS, mTLS,
metrics and upstream counters) can run it, and what a gate against the user's
own edge needs for it (the ``poet gate run`` options). Kinds judged from
evidence other tools produce (load summaries, JUnit results, metric snapshots)
and manual checks say so instead. It reads the check-kind registry
(:mod:`poetkb.gates.kinds`) and nothing else.
"""

from __future__ import annotations

from pydantic import Field

from poetkb.models import Check, PoetModel

#: what a gate against the user's edge needs besides --target, per evidence kind
EDGE_NEEDS = {
    "http_capture": "--target URL",
    "access_log": "--access-log FILE (the edge's JSON access log)",
    "upstream_counters": "--upstream-admin URL (upstream counters: HAProxy stats or the upstreams' admin)",
    "tls_handshake": "--tls-url URL or --mtls-url URL (with --ca-cert)",
    "metrics": "--metrics-url URL",
}
#: where evidence of offline kinds comes from
OFFLINE_SOURCE = {
    "load_summary": "a load test summary (`poet load run`), passed with --evidence",
    "test_results": "your test results (JUnit XML), passed with --evidence",
    "metrics": "a metrics snapshot, passed with --evidence or --metrics-url",
}
DEMO_PROXIES = ("nginx", "haproxy")


class ProofRoute(PoetModel):
    """One check kind that can prove an obligation, and who can run it now."""

    kind: str
    summary: str = ""
    evidence: list[str] = Field(default_factory=list)
    #: the demo edge can run it (``poet demo up --proxy P`` then the gate command)
    demo: bool = False
    #: a gate against the user's own edge can run it, given ``edge_needs``
    edge: bool = False
    edge_needs: list[str] = Field(default_factory=list)
    #: how to run it, in one sentence
    how: str = ""


def proof_routes(checks: list[Check], components: list[str]) -> list[ProofRoute]:
    """A route per distinct check kind of an obligation, for the components the change involves."""
    from poetkb.gates.kinds import KINDS

    proxies = [c for c in components if c in DEMO_PROXIES] or list(DEMO_PROXIES)
    routes: dict[str, ProofRoute] = {}
    for check in checks:
        if check.kind in routes:
            continue
        spec = KINDS.get(check.kind)
        if spec is None:
            routes[check.kind] = ProofRoute(kind=check.kind, how="not a check kind this poetkb knows")
            continue
        evidence = list(spec.evidence)
        if check.kind == "manual":
            routes[check.kind] = ProofRoute(kind=check.kind, summary=spec.summary, evidence=evidence,
                                            how="a person checks it and records what they saw")
        elif spec.traffic:
            needs = list(dict.fromkeys(EDGE_NEEDS.get(e, e) for e in ["http_capture", *evidence]))
            routes[check.kind] = ProofRoute(
                kind=check.kind, summary=spec.summary, evidence=evidence, demo=True, edge=True, edge_needs=needs,
                how=f"on the demo: `poet demo up --proxy {proxies[0]}`, then the gate; on your edge: the gate "
                    f"with {', '.join(needs)}")
        else:
            source = "; ".join(OFFLINE_SOURCE.get(e, e) for e in evidence) or "evidence you provide"
            routes[check.kind] = ProofRoute(kind=check.kind, summary=spec.summary, evidence=evidence, edge=True,
                                            edge_needs=[source], how=f"judged from {source}")
    return list(routes.values())
