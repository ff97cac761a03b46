"""Render the edge configuration of a proxy and variant from the Jinja2 templates in ``demo/``.

The templates (``demo/nginx/nginx.conf.j2``, ``demo/haproxy/haproxy.cfg.j2``)
hold the good configuration; a variant only switches knobs (``k.<name>``) in
them. Rendering is strict: a knob or variable the template uses but the
context lacks is an error, never an empty string in a config file.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poetkb.demo.certs import CertFiles
from poetkb.demo.layout import HOST, UPSTREAMS, demo_root
from poetkb.errors import EnvironmentProblem

TEMPLATES = {"nginx": "nginx/nginx.conf.j2", "haproxy": "haproxy/haproxy.cfg.j2"}
CONFIG_NAMES = {"nginx": "nginx.conf", "haproxy": "haproxy.cfg"}
HOSTS = {"default": "edge.test", "other": "other.test"}


@dataclass(frozen=True)
class RunPaths:
    """The files of one run directory."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def access_log(self) -> Path:
        return self.logs / "access.log"

    def error_log(self, proxy: str) -> Path:
        return self.logs / f"{proxy}-error.log"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    def config(self, proxy: str) -> Path:
        return self.root / CONFIG_NAMES[proxy]

    def pid_file(self, name: str) -> Path:
        return self.root / "pids" / f"{name}.pid"

    def make(self) -> None:
        for directory in (self.root, self.logs, self.tmp, self.cache, self.root / "pids"):
            directory.mkdir(parents=True, exist_ok=True)


def context(proxy: str, variant: str, knobs: dict[str, Any], paths: RunPaths, ports: dict[str, int],
            certs: CertFiles) -> dict[str, Any]:
    """Everything a template may use."""
    return {
        "proxy": proxy,
        "variant": variant,
        "k": knobs,
        "host": HOST,
        "ports": ports,
        "upstreams": [{"name": n, "role": r, "port": ports[n]} for n, r in UPSTREAMS],
        "run_dir": str(paths.root),
        "logs": str(paths.logs),
        "tmp": str(paths.tmp),
        "cache_dir": str(paths.cache / proxy),
        "access_log": str(paths.access_log),
        "error_log": str(paths.error_log(proxy)),
        "pid_file": str(paths.pid_file(proxy)),
        "admin_socket": str(paths.root / "haproxy-master.sock"),
        "certs": certs,
        "hosts": HOSTS,
        "is_root": os.geteuid() == 0,
    }


def render(proxy: str, ctx: dict[str, Any], root: Path | None = None) -> str:
    """The configuration text of ``proxy`` for a context."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root or demo_root())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - proxy configs, not HTML
    )
    try:
        return env.get_template(TEMPLATES[proxy]).render(**ctx)
    except jinja2.TemplateError as exc:
        where = getattr(exc, "filename", None) or TEMPLATES[proxy]
        line = getattr(exc, "lineno", None)
        raise EnvironmentProblem(f"cannot render {where}{f':{line}' if line else ''}: {exc}",
                                 hint="fix the template or the knobs in demo/variants.yaml") from exc


def write_config(proxy: str, ctx: dict[str, Any], paths: RunPaths, root: Path | None = None) -> Path:
    """Render and write the configuration atomically; make the directories it names."""
    (paths.cache / proxy).mkdir(parents=True, exist_ok=True)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (paths.tmp / sub).mkdir(parents=True, exist_ok=True)
    target = paths.config(proxy)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(render(proxy, ctx, root))
    os.replace(tmp, target)
    return target


def validate_command(proxy: str, binary: str, paths: RunPaths) -> list[str]:
    if proxy == "nginx":
        return [binary, "-t", "-q", "-p", str(paths.root), "-c", str(paths.config("nginx"))]
    return [binary, "-c", "-q", "-f", str(paths.config("haproxy"))]


def validate(proxy: str, binary: str, paths: RunPaths,
             hint: str = "the template or variant knobs produce an invalid configuration") -> None:
    """Run ``nginx -t`` or ``haproxy -c`` on the configuration file; raise with its output when it is invalid."""
    cmd = validate_command(proxy, binary, paths)
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentProblem(f"cannot run {' '.join(cmd)}: {exc}") from exc
    if result.returncode != 0:
        output = (result.stderr + result.stdout).strip()[-1500:]
        raise EnvironmentProblem(f"{proxy} rejects {paths.config(proxy)}:\n{output}", hint=hint)
