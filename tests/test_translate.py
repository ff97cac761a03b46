"""`poet translate`: NGINX <-> HAProxy translation of the obligation-relevant subset, validated and verified."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "translate"
CASES = sorted(p.name for p in FIXTURES.iterdir())


def _to(name: str) -> str:
    return "haproxy" if name.endswith(".conf") else "nginx"


# -- translation (no processes) ----------------------------------------------------------------------
def test_nginx_subset_is_read_with_lines() -> None:
    """The shop's upstream, balancing, passive health, limits, cache, TLS and log are read from its NGINX file."""
    from poetkb.translate import read_spec

    spec = read_spec(FIXTURES / "shop-nginx.conf")
    ups = spec.upstream("shop_app")
    assert ups is not None and ups.balance == "leastconn" and ups.health.max_fails == 3
    assert [s.backup for s in ups.servers] == [False, False, True]
    routes = {r.path: r for r in spec.vhosts[0].routes}
    assert routes["/api/"].rate_limit is not None and routes["/api/"].rate_limit.rate == 20
    assert routes["/api/"].timeouts.read_ms == 5000
    assert routes["/assets/"].cache is not None and routes["/assets/"].cache.key == ["scheme", "host", "uri"]
    assert routes["/healthz"].exact and routes["/healthz"].status == 200
    assert any(lis.tls for lis in spec.vhosts[0].listeners)
    assert spec.retry.tries == 3 and spec.retry.on == ["error", "timeout"]
    assert {f.key for f in spec.log} >= {"request_id", "client", "status", "upstream_addr", "cache_status"}


def test_nginx_to_haproxy_text_carries_the_subset() -> None:
    """The HAProxy text balances, retries, limits, caches and logs as the NGINX file does."""
    from poetkb.translate import translate_file

    text = translate_file(FIXTURES / "shop-nginx.conf", to="haproxy").text
    assert "balance leastconn" in text
    assert "retries 2" in text and "retry-on conn-failure empty-response response-timeout" in text
    assert "observe layer7 error-limit 3 on-error mark-down" in text
    assert "sc_http_req_rate(0) gt 20" in text and "http-request cache-use assets" in text
    assert "option forwardfor" in text and "timeout server 5s" in text
    assert '"request_id":"%ID"' in text and "unique-id-format" in text
    assert "ssl crt /etc/nginx/tls/shop.example.com.fullchain.pem" in text


def test_haproxy_to_nginx_text_carries_the_subset() -> None:
    """The gateway's mTLS listener, limits, retries and checks come out as NGINX directives (checks listed)."""
    from poetkb.translate import translate_file

    result = translate_file(FIXTURES / "api-gateway-haproxy.cfg", to="nginx")
    text = result.text
    assert "ssl_verify_client on;" in text and "ssl_client_certificate /etc/haproxy/certs/partners-ca.pem;" in text
    assert "limit_req zone=rate_50 burst=50 nodelay;" in text and "limit_conn conn_limit 20;" in text
    assert "proxy_next_upstream_tries 3;" in text and "least_conn;" in text
    assert text.index("location /v1/orders/") < text.index("location /v1/ ")
    assert {u.line for u in result.untranslated if "httpchk" in u.directive} == {49, 57}


def test_haproxy_server_and_body_time_are_logged_by_nginx(tmp_path: Path) -> None:
    """HAProxy's server name and body time have no NGINX item of their own: the nearest ones are logged (the
    upstream timing check reads them), under the original's keys."""
    from poetkb.translate import translate_file
    from poetkb.translate.cases import render_demo_good

    text = translate_file(render_demo_good("haproxy", tmp_path), to="nginx").text
    assert '"server":"$upstream_addr"' in text and '"upstream_data_time":"$upstream_response_time"' in text


def test_untranslated_directives_are_listed_with_their_line() -> None:
    """What the subset cannot say (stale serving, map logic, if blocks) is listed, not silently dropped."""
    from poetkb.translate import translate_file

    conf = FIXTURES / "media-nginx.conf"
    result = translate_file(conf, to="haproxy")
    reasons = {(u.line, u.directive.split()[0]) for u in result.untranslated}
    assert all(u.file == str(conf) for u in result.untranslated)
    assert (11, "retry") in reasons  # status retries dropped where passive health is kept


def test_unlisted_lines_are_listed(tmp_path: Path) -> None:
    """An `if` block and a regular-expression location are each listed with their own line."""
    from poetkb.translate import translate_file

    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n  server {\n    listen 80;\n    if ($http_x_debug) {\n      return 403;\n"
                    "    }\n    location ~ \\.php$ {\n      return 404;\n    }\n    location / {\n"
                    "      proxy_pass http://10.0.0.1:80;\n      proxy_cache_use_stale error;\n    }\n  }\n}\n")
    result = translate_file(conf, to="haproxy")
    lines = {u.line: u.reason for u in result.untranslated}
    assert 5 in lines and "if" in lines[5]
    assert 8 in lines and "regular-expression" in lines[8]
    assert 13 in lines and "no proxy_cache" in lines[13]


@pytest.mark.parametrize("name", CASES)
def test_round_trip_keeps_the_subset(name: str, tmp_path: Path) -> None:
    """Translating there and back keeps upstream servers, balancing, limits, caches and listeners."""
    from poetkb.translate import read_spec, translate_file

    there = translate_file(FIXTURES / name, to=_to(name))
    middle = tmp_path / ("x.cfg" if _to(name) == "haproxy" else "x.conf")
    middle.write_text(there.text)
    back = read_spec(middle)
    first = read_spec(FIXTURES / name)

    def facts(spec):  # noqa: ANN001, ANN202
        servers = sorted((s.address, s.backup) for u in spec.upstreams for s in u.servers)
        routes = sorted((r.path, r.exact, bool(r.cache), r.rate_limit.rate if r.rate_limit else None,
                         r.conn_limit.connections if r.conn_limit else None, r.status)
                        for v in spec.vhosts for r in v.routes)
        listeners = sorted({(lis.port, lis.tls, lis.verify) for v in spec.vhosts for lis in v.listeners})
        return set(servers), set(routes), listeners, {f.key for f in spec.log}

    s1, r1, l1, log1 = facts(first)
    s2, r2, l2, log2 = facts(back)
    assert s1 == s2 and l1 == l2 and log1 <= log2 | {u.directive.split("=")[0][10:] for u in there.untranslated}
    assert {r[:3] for r in r1} <= {r[:3] for r in r2}


# -- bad input -----------------------------------------------------------------------------------------
def test_unparsable_file_exits_2_naming_the_line(tmp_path: Path) -> None:
    """A file NGINX cannot parse is refused with exit 2 and its line; nothing is written."""
    from poetkb.cli import main

    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n  server {\n    listen 80\n  }\n")
    out = tmp_path / "out.cfg"
    result = CliRunner().invoke(main, ["translate", str(conf), "--to", "haproxy", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"{conf}:" in result.output and not out.exists()


def test_unknown_target_exits_2() -> None:
    """--to naming neither proxy is refused with exit 2 naming the option."""
    from poetkb.cli import main

    result = CliRunner().invoke(main, ["translate", str(FIXTURES / "shop-nginx.conf"), "--to", "envoy"])
    assert result.exit_code == 2 and "--to" in result.output and "envoy" in result.output


def test_same_proxy_and_verify_without_out_exit_2() -> None:
    """Translating into the file's own proxy, or --verify without --out, is bad input."""
    from poetkb.cli import main

    same = CliRunner().invoke(main, ["translate", str(FIXTURES / "shop-nginx.conf"), "--to", "nginx"])
    assert same.exit_code == 2 and "already" in same.output
    bare = CliRunner().invoke(main, ["translate", str(FIXTURES / "shop-nginx.conf"), "--to", "haproxy", "--verify"])
    assert bare.exit_code == 2 and "--out" in bare.output


# -- the proxies' word ---------------------------------------------------------------------------------
@pytest.mark.proxy
@pytest.mark.parametrize("name", CASES)
def test_translations_validate(name: str) -> None:
    """nginx -t / haproxy -c accept every translation (after the gate's rewrite of certificates and ports)."""
    from poetkb.translate import translate_file

    result = translate_file(FIXTURES / name, to=_to(name), validate=True)
    assert result.valid, result.validation_error


@pytest.mark.proxy
def test_demo_good_configs_translate_and_validate(tmp_path: Path) -> None:
    """The demo's good NGINX and HAProxy configurations translate into configurations the other proxy accepts."""
    from poetkb.translate import translate_file
    from poetkb.translate.cases import render_demo_good

    for proxy, to in (("nginx", "haproxy"), ("haproxy", "nginx")):
        result = translate_file(render_demo_good(proxy, tmp_path / proxy), to=to, validate=True)
        assert result.valid, result.validation_error
        assert "poet_cache" in result.text


@pytest.mark.proxy
def test_live_verification_of_the_shop(kb_path: Path, tmp_path: Path) -> None:
    """Both the shop's NGINX file and its HAProxy translation are gated on loopback: the same verdicts."""
    from poetkb.cli import main

    out = tmp_path / "shop.cfg"
    t0 = time.monotonic()
    result = CliRunner().invoke(main, ["translate", str(FIXTURES / "shop-nginx.conf"), "--to", "haproxy",
                                       "--out", str(out), "--verify", "--format", "json",
                                       *[a for ob in LIVE for a in ("--obligation", ob)]])
    took = time.monotonic() - t0
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(result.output[result.output.index("{"):])
    rows = {r["obligation_id"]: r for r in data["verification"]["obligations"]}
    assert set(rows) == set(LIVE)
    assert all(r["status"] == "equivalent" and r["original"] == r["translated"] == "pass" for r in rows.values())
    assert took < 90  # ~25 s alone; generous for a loaded machine


LIVE = ("state.ratelimit.enforced", "cache.key.complete")


def test_equivalent_only_where_both_pass() -> None:
    """Comparison: both pass is equivalent; one passing is differing (not-applicable too); neither is not judged."""
    from types import SimpleNamespace as NS

    from poetkb.translate.verify import compare

    def report(**verdicts: str) -> NS:
        return NS(obligations=[NS(obligation_id=k, verdict=v, diagnosis="") for k, v in verdicts.items()])

    rows = compare(report(a="pass", b="pass", c="not-applicable", d="fail"),
                   report(a="pass", b="fail", c="pass", d="no-evidence"))
    assert [(r.obligation_id, r.status) for r in rows] == [
        ("a", "equivalent"), ("b", "differing"), ("c", "differing"), ("d", "not-judged")]


@pytest.mark.proxy
def test_markdown_report_lists_untranslated_lines(tmp_path: Path) -> None:
    """--format md writes the translation's report: the proxy's verdict and each untranslated line."""
    from poetkb.cli import main

    out = tmp_path / "gw.conf"
    result = CliRunner().invoke(main, ["translate", str(FIXTURES / "api-gateway-haproxy.cfg"), "--to", "nginx",
                                       "--out", str(out), "--format", "md"])
    assert result.exit_code == 0, result.output
    assert "the proxy accepts the result" in result.output
    assert "| 49 | `option httpchk GET /healthz (orders)` |" in result.output
    assert out.read_text().startswith("# translated by poetkb from")
