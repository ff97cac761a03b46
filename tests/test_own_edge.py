"""Gating a user's own configuration (`poet gate run --config`): rewrite, probe plan, bring-up, verdicts."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from own_edge_corpus import EDGES, broken_copy, load_expected

from poetkb.gates.schema import Edge

pytestmark = pytest.mark.proxy
EXPECTED = load_expected()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verdicts(report: Any) -> dict[str, str]:
    return {ob.obligation_id: ob.verdict for ob in report.obligations}


# -- rewrite and plan (no processes) -------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rewrite_changes_only_environment_lines(name: str, tmp_path: Path) -> None:
    """Every line the rewrite does not list is byte for byte the original; the original is untouched."""
    from poetkb.edgeconfig import load_config
    from poetkb.ownedge.rewrite import Env, rewrite_config

    source = EXPECTED[name]["path"]
    before = _digest(source)
    ports = iter(range(41000, 41100))
    env = Env(run_dir=tmp_path, alloc_port=lambda: next(ports),
              cert=lambda full: (str(tmp_path / "c.pem"), str(tmp_path / "k.pem"), str(tmp_path / "h.pem")),
              ca_chain=str(tmp_path / "ca.pem"))
    result = rewrite_config(load_config(source), env)
    original = source.read_text().splitlines()
    copy = Path(result.main).read_text().splitlines()
    changed = {r.line for r in result.rewrites if r.file == str(source)}
    assert len(original) == len(copy)
    assert [n for n, (a, b) in enumerate(zip(original, copy, strict=True), 1) if a != b] == sorted(changed)
    assert all("127.0.0.1:" in r.after for r in result.rewrites
               if r.directive in ("listen", "bind", "server") and "poet: removed" not in r.after)
    assert not any(str(tmp_path) not in line and ("/var/" in line or "/run/" in line or "/etc/" in line)
                   for line in copy if not line.lstrip().startswith("#") and "poet: removed" not in line)
    assert _digest(source) == before


def test_plan_reads_routes_caches_limits_and_listeners() -> None:
    """The probe plan names the cached, rate-limited, connection-limited, TLS and mTLS routes of a file."""
    from poetkb.edgeconfig import load_config
    from poetkb.ownedge.plan import build_plan

    cache = build_plan(load_config(EXPECTED["nginx-api-cache"]["path"]))
    api = next(r for r in cache.routes if r.location == "/api/")
    assert (api.cache, api.cache_key, api.servers, api.hosts) == (
        "api_cache", "$scheme$host$request_uri", 2, ["api.example.com"])
    assert cache.request_id_header == "X-Request-ID" and cache.forwarded_for and cache.access_log_json
    limits = build_plan(load_config(EXPECTED["haproxy-login-limit"]["path"]))
    assert {r.location: (r.rate_limit, r.conn_limit) for r in limits.routes} == {
        "/signin/": (True, False), "/export/": (False, True), "/": (False, False)}
    tls = build_plan(load_config(EXPECTED["haproxy-tls-partners"]["path"]))
    assert {(r.port, r.tls, r.mtls) for r in tls.routes} == {("443", True, False), ("8443", True, True)}
    assert tls.adapt("cache_key_stable", {})[1] == \
        "no route of the configuration caches responses (no proxy_cache / cache-use)"


def test_demo_paths_captured_by_a_more_specific_route_keep_their_behaviour(tmp_path: Path) -> None:
    """A configuration with its own `location /slow/`: the timing probe's `/slow/200` moved under `/` falls under
    that route, so it is moved there (`/slow/slow/200`) and the upstream is still told to serve `/slow/200`."""
    from poetkb.edgeconfig import load_config
    from poetkb.gates.probes import RequestSpec
    from poetkb.ownedge.plan import build_plan, router

    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n  upstream app { server 127.0.0.1:9001; }\n  server {\n    listen 8080;\n"
                    "    location / { proxy_pass http://app; }\n    location /slow/ { proxy_pass http://app/; }\n"
                    "  }\n}\n", encoding="utf-8")
    plan = build_plan(load_config(conf))
    root = next(r for r in plan.routes if r.location == "/")
    assert plan.translate(root, "/slow/200") == "/slow/slow/200"
    assert plan.translate(root, "/bytes/10") == "/bytes/10"
    dressed = router(plan)(RequestSpec(path="/slow/slow/200"))
    assert dressed.headers["X-Poet-Serve"] == "/slow/200"


def test_includes_are_rewritten_or_refused_with_the_line(tmp_path: Path) -> None:
    """An included file is rewritten into the run copy; a missing one is refused naming file and line."""
    from poetkb.errors import InputError
    from poetkb.ownedge import own_edge

    (tmp_path / "upstreams.conf").write_text("upstream app { server 10.0.0.9:80; }\n")
    main = tmp_path / "nginx.conf"
    main.write_text("events {}\nhttp {\n    include upstreams.conf;\n    server { listen 80; "
                    "location / { proxy_pass http://app; } }\n}\n")
    with own_edge(main, work=tmp_path / "work") as edge:
        assert [s.original for s in edge.rewritten.servers] == ["10.0.0.9:80"]
        assert any(r.directive == "include" for r in edge.rewritten.rewrites)
    main.write_text("events {}\nhttp {\n    include missing.conf;\n}\n")
    with pytest.raises(InputError) as caught, own_edge(main, work=tmp_path / "work"):
        pass
    assert caught.value.line == 3 and "missing.conf" in caught.value.message


@pytest.mark.parametrize("name", ["nginx-websocket-tls", "haproxy-tls-partners"])
def test_bring_up_and_tear_down_are_fast_and_leave_nothing(name: str, tmp_path: Path) -> None:
    """Up (TLS certificates included) and down each take under 3 s; no process and no run directory remain."""
    import ssl

    import httpx

    from poetkb.demo import procs
    from poetkb.ownedge import own_edge

    source = EXPECTED[name]["path"]
    before = _digest(source)
    t0 = time.perf_counter()
    with own_edge(source, work=tmp_path) as edge:
        up = time.perf_counter() - t0
        marker, run_dir = edge.marker, edge.run_dir
        assert procs.find_by_marker(marker)
        verify = ssl.create_default_context(cafile=edge.target.ca_cert) if edge.target.ca_cert else False
        response = httpx.get(edge.target.base_url + "/", verify=verify,
                             headers={"Host": edge.plan.probe_host() or "localhost"})
        assert response.status_code == 200 and response.headers["x-upstream"]
        t1 = time.perf_counter()
    down = time.perf_counter() - t1
    assert up < 3.0 and down < 3.0, (up, down)
    assert procs.find_by_marker(marker) == [] and not run_dir.exists()
    assert _digest(source) == before


# -- verdicts ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["nginx-api-cache", "haproxy-tls-partners"])
def test_full_gate_matches_the_expected_table(kb: Any, name: str) -> None:
    """--all on a correct configuration: the hand-written passes pass, everything else is not-applicable."""
    spec = EXPECTED[name]
    report = kb.gate(all=True, edge=Edge(config=spec["path"]))
    verdicts = _verdicts(report)
    wrong = {ob: v for ob, v in verdicts.items() if v != ("pass" if ob in spec["pass"] else "not-applicable")}
    assert wrong == {}, [(ob.obligation_id, ob.diagnosis) for ob in report.obligations if ob.obligation_id in wrong]
    assert report.exit_code == 0 and report.summary.not_applicable == len(verdicts) - len(spec["pass"])
    assert report.summary.coverage == round(len(spec["pass"]) / len(verdicts), 4)  # not-applicable is no pass
    names = {f.path for f in report.evidence_files}
    assert {"ownedge/rewrites.json", "ownedge/plan.json", "ownedge/explain.txt"} <= names


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_claims_pass_and_the_broken_form_fails(kb: Any, name: str, tmp_path: Path) -> None:
    """What a configuration claims passes on its correct form; its one seeded mistake is caught as a fail."""
    spec = EXPECTED[name]
    good = kb.gate(obligations=spec["extra"], edge=Edge(config=spec["path"]))
    assert {ob: v for ob, v in _verdicts(good).items() if v != "pass"} == {}, \
        [(o.obligation_id, o.diagnosis) for o in good.obligations if o.verdict != "pass"]
    fails = spec["broken"]["fails"]
    bad = kb.gate(obligations=[fails], edge=Edge(config=broken_copy(name, spec, tmp_path)))
    assert _verdicts(bad) == {fails: "fail"} and bad.exit_code == 1


def test_required_obligation_the_configuration_lacks_fails_else_not_applicable(kb: Any) -> None:
    """Named explicitly, an unclaimed obligation fails with the reason; selected by domain it is not-applicable."""
    path = EXPECTED["nginx-login-limit"]["path"]
    named = kb.gate(obligations=["security.tls.chain.valid", "cache.ttl.honored"], edge=Edge(config=path))
    assert _verdicts(named) == {"security.tls.chain.valid": "fail", "cache.ttl.honored": "fail"}
    tls = next(o for o in named.obligations if o.obligation_id == "security.tls.chain.valid")
    assert tls.diagnosis == ("the configuration has no TLS listener, but the selection requires obligation "
                             "security.tls.chain.valid")
    by_domain = kb.gate(domains=["cache"], edge=Edge(config=path))
    edge_cache = {o: v for o, v in _verdicts(by_domain).items() if o.startswith("cache.")}
    assert edge_cache and set(edge_cache.values()) == {"not-applicable"}
    assert by_domain.exit_code != 0 and by_domain.summary.passed == 0  # nothing judged proves nothing


# -- the command line ----------------------------------------------------------------------------------
def test_cli_explain_prints_rewrites_and_plan_and_exits_with_the_verdict(kb_path: Path, tmp_path: Path) -> None:
    """`--explain` shows every rewritten line and the probe plan; a caught fault exits 1."""
    from poetkb.cli import main

    spec = EXPECTED["haproxy-api-cache"]
    broken = broken_copy("haproxy-api-cache", spec, tmp_path)
    result = CliRunner().invoke(main, ["gate", "run", "--config", str(broken), "--obligation",
                                       "cache.private.bypassed", "--explain"])
    assert result.exit_code == 1, result.output
    assert "rewritten (" in result.output and "probe plan:" in result.output
    assert "server api-a 127.0.0.1:" in result.output and "cache api_cache" in result.output
    assert "FAIL" in result.output and "cache.private.bypassed" in result.output


@pytest.mark.parametrize(("args", "says"), [
    (["--config", "no-such.conf"], "configuration file not found"),
    (["--config", str(EDGES / "nginx-api-cache" / "nginx.conf"), "--target", "http://127.0.0.1:1"],
     "--target cannot be given with it"),
])
def test_cli_bad_config_input_exits_2(kb_path: Path, args: list[str], says: str) -> None:
    """A missing file or a contradictory option is bad input (exit 2) with a clear message."""
    from poetkb.cli import main

    result = CliRunner().invoke(main, ["gate", "run", "--all", *args])
    assert result.exit_code == 2 and says in result.output, result.output


def test_mutation_testing_works_on_the_users_configuration(kb: Any, tmp_path: Path) -> None:
    """Mutants of a corpus file are validated, gated with --config and killed; the user's file is untouched."""
    from poetkb.mutation import load_operators, run_mutation
    from poetkb.ownedge.mutate import own_config_target

    source = EXPECTED["nginx-api-cache"]["path"]
    before = _digest(source)
    target = own_config_target(source, work=tmp_path / "mutate")
    ops = [op for op in load_operators() if op.id in ("nginx.xff.trust_client", "nginx.request_id.not_forwarded")]
    report = run_mutation(kb, target, operators=ops, max_mutants=4)
    statuses = {m.operator: m.status for m in report.mutants}
    assert statuses and set(statuses.values()) == {"killed"}, [(m.operator, m.status, m.detail)
                                                             for m in report.mutants]
    assert _digest(source) == before
