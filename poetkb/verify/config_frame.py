"""Turn a probe's configuration fragment into a complete NGINX or HAProxy configuration.

The frame is minimal on purpose: one worker, no access log, temporary paths in
the run directory, and timeouts short enough that a probe of a timeout stays
fast. A probe states everything its claim depends on in its own fragment.
"""

from __future__ import annotations

import os
import re

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")

NGINX_FRAME = """\
{user}daemon off;
master_process on;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {run}/tmp/body;
    proxy_temp_path {run}/tmp/proxy;
    fastcgi_temp_path {run}/tmp/fastcgi;
    uwsgi_temp_path {run}/tmp/uwsgi;
    scgi_temp_path {run}/tmp/scgi;
{body}
}}
"""

HAPROXY_FRAME = """\
global
    pidfile {run}/haproxy.pid
    stats socket {run}/admin.sock level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
{body}
"""


def fill(text: str, values: dict[str, str]) -> str:
    """Replace ``{{name}}`` placeholders; an unknown name is an error naming it."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"unknown placeholder {{{{{name}}}}}; known: {', '.join(sorted(values))}")
        return values[name]

    return _PLACEHOLDER.sub(one, text)


def render_config(proxy: str, fragment: str, values: dict[str, str]) -> str:
    """The full configuration for ``proxy`` around ``fragment``, placeholders filled."""
    body = fill(fragment, values)
    if proxy == "nginx":
        indented = "\n".join("    " + line if line.strip() else line for line in body.splitlines())
        user = "user root;\n" if os.geteuid() == 0 else ""
        return NGINX_FRAME.format(user=user, run=values["run"], body=indented)
    return HAPROXY_FRAME.format(run=values["run"], body=body)
