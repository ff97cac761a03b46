"""Live edges poetkb did not bring up: honest or silent, never a false fail."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from poetkb.gates.schema import Edge

pytestmark = pytest.mark.proxy

NGINX = """events {{}}
http {{
    log_format j escape=json '{{"time":"$time_iso8601","request_id":"$request_id","client":"$remote_addr",'
        '"host":"$host","method":"$request_method","uri":"$request_uri","status":$status,'
        '"bytes_sent":$bytes_sent,"request_time":$request_time,"upstream_addr":"$upstream_addr",'
        '"upstream_status":"$upstream_status","upstream_response_time":"$upstream_response_time"}}';
    access_log {root}/access.json j;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp;
    proxy_cache_path {root}/cache keys_zone=static:1m;
    server {{
        listen 127.0.0.1:{port};
        server_name www.shop.test;
        location /static/ {{
            proxy_pass http://127.0.0.1:{app};
            proxy_cache static;
            proxy_cache_valid 200 1m;
            add_header Cache-Control "public, max-age=60";
            add_header X-Cache-Status $upstream_cache_status;
        }}
        location / {{
            proxy_pass http://127.0.0.1:{app};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Request-ID $request_id;
            proxy_read_timeout 2s;
        }}
    }}
}}
"""


@pytest.fixture
def foreign_edge(tmp_path: Path) -> Any:
    """A correct NGINX in front of a plain static application (no echo endpoint, no admin API)."""
    import httpx

    from poetkb.demo import procs
    from poetkb.environment import find_binary
    from poetkb.ownedge.bringup import free_port

    site = tmp_path / "site"
    (site / "static").mkdir(parents=True)
    (site / "index.html").write_text('<h1>shop</h1><link rel="stylesheet" href="/static/app.css">\n')
    (site / "static" / "app.css").write_text("body { color: black; }\n")
    (tmp_path / "tmp").mkdir()
    (tmp_path / "cache").mkdir()
    app, port = free_port(), free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX.format(root=tmp_path, port=port, app=app))
    pids = [procs.spawn([sys.executable, "-m", "http.server", str(app), "--bind", "127.0.0.1", "--directory",
                         str(site)], tmp_path / "app.log")]
    nginx = find_binary("nginx")
    assert nginx is not None
    pids.append(procs.spawn([nginx, "-p", f"{tmp_path}/", "-c", str(conf), "-e", str(tmp_path / "error.log"),
                             "-g", f"{'user root; ' if os.geteuid() == 0 else ''}daemon off; "
                                   f"pid {tmp_path}/nginx.pid;"], tmp_path / "nginx.out"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    (tmp_path / "access.json").touch()
    try:
        yield f"http://127.0.0.1:{port}", tmp_path
    finally:
        for pid in reversed(pids):
            procs.stop(pid)


def test_live_edge_without_a_profile_route_is_never_a_false_fail(kb: Any, foreign_edge: Any) -> None:
    """--all on a correct foreign NGINX gives no fail; every check not judged says what to add."""
    url, root = foreign_edge
    profile = root / "profile.yaml"
    profile.write_text(f"target: {url}\nhosts: [www.shop.test]\ndefault_path: /\n"
                       f"access_log: {root / 'access.json'}\n")
    report = kb.gate(all=True, edge=Edge(target_profile=profile))
    verdicts = {ob.obligation_id: ob.verdict for ob in report.obligations}
    assert "fail" not in verdicts.values(), [(o.obligation_id, o.diagnosis) for o in report.obligations
                                            if o.verdict == "fail"]
    assert verdicts["protocol.content.length"] == "pass"
    for ob in report.obligations:
        for check in ob.checks:
            if check.verdict in ("no-evidence", "error"):
                assert any(word in check.diagnosis for word in ("target profile", "--", "pass ")), \
                    (check.check_id, check.diagnosis)
    cache = next(o for o in report.obligations if o.obligation_id == "cache.ttl.honored")
    assert "routes.ttl_honored.path" in cache.diagnosis


def test_live_edge_route_named_in_the_profile_is_probed(kb: Any, foreign_edge: Any) -> None:
    """A route the profile names is probed; answers that say nothing (404 everywhere) are no-evidence."""
    url, root = foreign_edge
    profile = root / "profile.yaml"
    profile.write_text(f"target: {url}\nhosts: [www.shop.test]\nroutes:\n"
                       "  cache_key_stable: {path: /no-such-asset.css}\n")
    report = kb.gate(obligations=["cache.key.stability"], edge=Edge(target_profile=profile))
    check = report.obligations[0].checks[0]
    assert check.verdict == "no-evidence" and "got 404" in check.diagnosis, check.diagnosis
    assert check.details["silenced_fail"]


def test_target_profile_errors_name_the_line(kb_path: Path, tmp_path: Path) -> None:
    """A misspelt key in a target profile is bad input naming file, line and field."""
    from click.testing import CliRunner

    from poetkb.cli import main

    profile = tmp_path / "profile.yaml"
    profile.write_text("target: http://127.0.0.1:9\nroutes:\n  ttl_honored: {pth: /x}\n")
    result = CliRunner().invoke(main, ["gate", "run", "--all", "--target-profile", str(profile)])
    assert result.exit_code == 2 and "profile.yaml:3" in result.output and "unknown field" in result.output, \
        result.output


def test_discover_proposes_a_profile_from_safe_gets(kb_path: Path, foreign_edge: Any) -> None:
    """--discover crawls a few GETs and proposes the cached asset as the cache checks' route, no gate run."""
    import yaml
    from click.testing import CliRunner

    from poetkb.cli import main
    from poetkb.gates.profile import TargetProfile

    url, _ = foreign_edge
    result = CliRunner().invoke(main, ["gate", "run", "--target", url, "--discover"])
    assert result.exit_code == 0, result.output
    assert "GET /static/app.css -> 200" in result.output, result.output
    assert "review it before use" in result.output
    profile = TargetProfile.model_validate(yaml.safe_load(result.output))
    assert profile.routes["cache_key_stable"].path == "/static/app.css" and profile.default_path == "/"
