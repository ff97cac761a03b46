"""The configuration model: NGINX (crossplane) and HAProxy files as directives with context and source line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from poetkb.demo.certs import CertFiles
from poetkb.demo.edge_config import RunPaths, context, render
from poetkb.demo.layout import ports_for
from poetkb.demo.overlays import get_variant, knobs_for
from poetkb.edgeconfig import load_config, parse_text
from poetkb.errors import InputError


def rendered(proxy: str, tmp_path: Path, variant: str = "good") -> Path:
    paths = RunPaths(tmp_path / "run")
    ctx = context(proxy, variant, knobs_for(get_variant(proxy, variant)), paths, ports_for(20000),
                  CertFiles(paths.certs))
    target = tmp_path / ("nginx.conf" if proxy == "nginx" else "haproxy.cfg")
    target.write_text(render(proxy, ctx), encoding="utf-8")
    return target


def test_demo_nginx_config_parses_with_context_and_lines(tmp_path: Path) -> None:
    """The demo's NGINX config: upstream servers, retries and log format found with their block and line."""
    path = rendered("nginx", tmp_path)
    config = load_config(path)
    assert config.proxy == "nginx"
    lines = path.read_text().splitlines()
    tries = config.find("proxy_next_upstream_tries")
    assert tries and all(lines[d.line - 1].strip().startswith("proxy_next_upstream_tries") for d in tries)
    servers = [d for d in config.find("server") if any(c.startswith("upstream ") for c in d.context)]
    assert len(servers) >= 2 and all(d.args[0].startswith("127.0.0.1:") for d in servers)
    assert config.find("log_format")[0].context == ["http"]
    locations = config.find("proxy_pass", within="location")
    assert locations and all(d.context[0] == "http" for d in locations)


def test_demo_haproxy_config_parses_sections_and_keywords(tmp_path: Path) -> None:
    """The demo's HAProxy config: sections hold keyword lines; multi-word keywords are found whole."""
    path = rendered("haproxy", tmp_path)
    config = load_config(path)
    assert config.proxy == "haproxy"
    names = {d.name for d in config.directives}
    assert {"global", "defaults", "frontend", "backend"} <= names
    connect = config.find("timeout connect")
    assert connect and connect[0].keyword() == "timeout connect"
    lines = path.read_text().splitlines()
    assert all("timeout" in lines[d.line - 1] and "connect" in lines[d.line - 1] for d in connect)
    backend_servers = config.find("server", within="backend")
    assert backend_servers and all(d.context[0].startswith("backend ") for d in backend_servers)


def test_haproxy_words_follow_quotes_escapes_and_comments() -> None:
    """Quoted arguments stay whole, escapes are honoured and comments dropped."""
    config = parse_text('frontend fe\n  http-request set-header X-A "a b\\" c" # note\n  log-format \'%ci %b\'\n',
                        "haproxy")
    front = config.directives[0]
    assert front.block is not None
    assert front.block[0].args == ["set-header", "X-A", 'a b" c']
    assert front.block[1].args == ["%ci %b"]


def test_nginx_includes_are_followed_and_bounded(tmp_path: Path) -> None:
    """Includes are inlined where they stand with their own file and line; a loop is refused by name."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("upstream app {\n    server 10.0.0.1:80;\n}\n")
    main = tmp_path / "nginx.conf"
    main.write_text("events {}\nhttp {\n    include conf.d/*.conf;\n}\n")
    config = load_config(main)
    server = config.find("server")[0]
    assert server.file.endswith("a.conf") and server.line == 2 and server.context == ["http", "upstream app"]
    (tmp_path / "conf.d" / "loop.conf").write_text("include conf.d/loop.conf;\n")
    with pytest.raises(InputError, match="include loop"):
        load_config(main)


@pytest.mark.parametrize(("proxy", "text", "message"), [
    ("nginx", "http {\n    server {\n        listen 80\n    }\n", "not a valid NGINX configuration"),
    ("haproxy", "timeout connect 5s\n", "stands outside any section"),
    ("haproxy", 'frontend fe\n  http-request set-header X "open\n', "unterminated"),
    ("nginx", "http {" * 5000 + "}" * 5000, "nest"),
])
def test_bad_configurations_name_file_and_line(tmp_path: Path, proxy: str, text: str, message: str) -> None:
    """Broken configurations are InputErrors naming the file, never tracebacks."""
    path = tmp_path / ("bad.conf" if proxy == "nginx" else "bad.cfg")
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        load_config(path, proxy=proxy)  # type: ignore[arg-type]
    assert "bad." in str(info.value)


def test_special_files_are_refused(tmp_path: Path) -> None:
    """A FIFO is refused without blocking; an unknown kind of file asks for --proxy."""
    fifo = tmp_path / "nginx.conf"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        load_config(fifo)
    plain = tmp_path / "settings.txt"
    plain.write_text("key = value\n")
    with pytest.raises(InputError, match="--proxy"):
        load_config(plain)
