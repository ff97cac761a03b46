"""Bring a user's configuration up on loopback, and down again, leaving nothing behind.

:func:`own_edge` parses the configuration, derives its probe plan, makes test
certificates for its server names when it has TLS listeners, rewrites it into a
private run directory, starts one process holding every instrumented upstream
(one per original server) and the proxy itself, and waits until every listener
answers. On exit it stops both, checks that no process of the run directory is
left, and removes the directory. The user's file is only read.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from poetkb.demo import health, procs
from poetkb.edgeconfig import EdgeConfig, load_config
from poetkb.environment import find_binary, install_hint
from poetkb.errors import EnvironmentProblem, InputError
from poetkb.gates.schema import TargetInfo, UpstreamInfo
from poetkb.ownedge.plan import ProbePlan, build_plan, explain
from poetkb.ownedge.rewrite import Env, Rewritten, rewrite_config

START_TIMEOUT = 10.0
HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class OwnEdge:
    """A running copy of the user's configuration: plan, rewrites, target, and its processes."""

    config: EdgeConfig
    plan: ProbePlan
    rewritten: Rewritten
    run_dir: Path
    target: TargetInfo
    pids: dict[str, int] = field(default_factory=dict)
    started_s: float = 0.0
    stopped_s: float = 0.0

    @property
    def marker(self) -> str:
        return f"{self.run_dir}/"

    def explain_lines(self) -> list[str]:
        """What was rewritten and the probe plan, as the CLI prints them."""
        out = [f"configuration: {self.config.path} ({self.config.proxy}), run copy {self.rewritten.main}",
               f"rewritten ({len(self.rewritten.rewrites)} lines; everything else byte for byte):"]
        for r in self.rewritten.rewrites:
            out.append(f"  {Path(r.file).name}:{r.line}: {r.before}  ->  {r.after}   ({r.why})")
        out.append("instrumented upstreams:")
        for s in self.rewritten.servers:
            out.append(f"  {s.group}: {s.original} -> {s.name} on {HOST}:{s.port}" + (" (backup)" if s.backup else ""))
        out.append("listeners:")
        for lis in self.rewritten.listeners:
            kind = "mTLS" if lis.mtls else "TLS" if lis.tls else "HTTP"
            out.append(f"  port {lis.original} -> {HOST}:{lis.port} ({kind})")
        out.append("probe plan:")
        out += [f"  {line}" for line in explain(self.plan)]
        return out

    def evidence_files(self) -> dict[str, tuple[bytes, str, str]]:
        """Files the run keeps as evidence: the rewritten configuration, the rewrites, the plan."""
        files: dict[str, tuple[bytes, str, str]] = {
            "ownedge/rewrites.json": (json.dumps([r.model_dump() for r in self.rewritten.rewrites], indent=2)
                                      .encode(), "ownedge", f"what was rewritten in {self.config.path}"),
            "ownedge/plan.json": (self.plan.model_dump_json(indent=2).encode(), "ownedge",
                                  "the probe plan derived from the configuration"),
            "ownedge/explain.txt": ("\n".join(self.explain_lines()).encode() + b"\n", "ownedge",
                                    "--explain output"),
        }
        for original, copy in self.rewritten.files.items():
            files[f"ownedge/{Path(copy).name}"] = (Path(copy).read_bytes(), "ownedge",
                                                  f"the rewritten copy of {original}")
        return files

    def reload(self) -> None:
        """Graceful reload of the proxy (nginx SIGHUP, HAProxy SIGUSR2 to the master)."""
        from poetkb.gates.checks.base import CollectError

        proxy = self.config.proxy
        pid = self.pids.get(proxy)
        if pid is None or not procs.owned(pid, self.marker):
            raise CollectError(f"{proxy} of the own-edge run is not running")
        before = set(procs.children(pid))
        os.kill(pid, signal.SIGHUP if proxy == "nginx" else signal.SIGUSR2)
        ok, _ = health.wait_for(lambda: bool(set(procs.children(pid)) - before), timeout=START_TIMEOUT)
        if not ok:
            raise CollectError(f"{proxy} started no new worker after the reload signal")
        # old workers accept new connections until the master tells them to stop, and keep the passive health
        # state of before the reload: wait (bounded) until they are gone, so the next request meets a new one
        health.wait_for(lambda: not (set(procs.children(pid)) & before), timeout=3.0, interval=0.02)
        self._wait_listeners()

    def _wait_listeners(self) -> None:
        def all_accept() -> bool:
            for lis in self.rewritten.listeners:
                try:
                    with socket.create_connection((HOST, lis.port), timeout=0.5):
                        pass
                except OSError:
                    return False
            return True

        pid = self.pids.get(self.config.proxy)
        ok, last = health.wait_for(all_accept, timeout=START_TIMEOUT, interval=0.02,
                                   abort=lambda: None if pid and procs.alive(pid) else self._tail())
        if not ok:
            raise EnvironmentProblem(f"{self.config.proxy} did not open its listeners: {last or 'timeout'}",
                                     hint=f"see {self.run_dir / 'logs'}")

    def _tail(self) -> str:
        out = []
        for log in sorted((self.run_dir / "logs").glob("*error*")):
            with contextlib.suppress(OSError):
                out.append(log.read_text(errors="replace")[-600:])
        return "the proxy exited: " + (" | ".join(out) or "no error log")


def _binary(proxy: str) -> str:
    found = find_binary(proxy)
    if found is None:
        raise EnvironmentProblem(f"{proxy} is not installed", hint=f"install it with `{install_hint(proxy)}`")
    return found


def _nginx_argv(binary: str, run: Path, main: str) -> list[str]:
    user = "user root; " if os.geteuid() == 0 else ""
    return [binary, "-p", f"{run}/", "-c", main, "-e", str(run / "logs" / "error.log"),
            "-g", f"{user}daemon off; pid {run / 'nginx.pid'};"]


def _validate(proxy: str, binary: str, run: Path, main: str, original: str) -> None:
    argv = ([*_nginx_argv(binary, run, main), "-t", "-q"] if proxy == "nginx"
            else [binary, "-c", "-f", main])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().replace(main, original)
        raise InputError(f"the rewritten configuration does not validate: {message[-600:]}", file=original,
                         hint=f"`{proxy} -t` on the original shows whether it is the configuration or the rewrite")


@contextlib.contextmanager
def own_edge(path: str | Path, *, proxy: str | None = None, work: Path | None = None) -> Iterator[OwnEdge]:
    """Bring the configuration at ``path`` up on loopback for the block; tear it down after, whatever happens."""
    from poetkb.paths import work_dir

    source = Path(path)
    if not source.is_file():
        raise InputError("configuration file not found", file=source, field="config",
                         hint="pass --config with the path of an nginx.conf or haproxy.cfg")
    config = load_config(source, proxy=proxy)  # type: ignore[arg-type]
    plan = build_plan(config)
    t0 = time.perf_counter()
    run = (work or work_dir()) / "ownedge" / secrets.token_hex(4)
    run.mkdir(parents=True, mode=0o700)
    edge: OwnEdge | None = None
    try:
        edge = _start(config, plan, run, t0)
        yield edge
    finally:
        t1 = time.perf_counter()
        left = _stop(run, edge.pids if edge else {})
        if edge is not None:
            edge.stopped_s = round(time.perf_counter() - t1, 3)
        shutil.rmtree(run, ignore_errors=True)
        if left:
            raise EnvironmentProblem(f"processes {left} of the own-edge run outlived tear-down",
                                     hint=f"stop them by pid: kill {' '.join(map(str, left))}")


def _start(config: EdgeConfig, plan: ProbePlan, run: Path, t0: float) -> OwnEdge:
    binary = _binary(config.proxy)
    has_tls = bool(plan.tls_names) or any(r.tls for r in plan.routes) or any(
        d.name in ("ssl_certificate", "bind") and ("ssl" in d.args or d.name == "ssl_certificate")
        for d in config.walk())
    certs = None
    if has_tls:
        from poetkb.demo.certs import ensure_certs

        names = [n for r in plan.routes for n in r.hosts if "*" not in n] or ["localhost"]
        names = list(dict.fromkeys([*names, "localhost"]))
        certs = ensure_certs(run / "certs", names=names)

    def cert(fullchain: bool) -> tuple[str, str, str]:
        if certs is None:
            raise InputError("the configuration names certificates but has no TLS listener poetkb recognised",
                             file=config.path)
        if fullchain:
            return str(certs.server_fullchain), str(certs.server_key), str(certs.haproxy_fullchain)
        return str(certs.server_leaf), str(certs.server_key), str(certs.haproxy_leaf)

    env = Env(run_dir=run, alloc_port=free_port, cert=cert, ca_chain=str(certs.ca_chain) if certs else "")
    rewritten = rewrite_config(config, env)
    _validate(config.proxy, binary, run, rewritten.main, config.path)
    pids: dict[str, int] = {}
    marker = f"{run}/"
    if rewritten.servers:
        argv = [sys.executable, "-m", "poetkb.demo.upstream", "--host", HOST, "--run-dir", marker]
        for s in rewritten.servers:
            argv += ["--serve", f"{s.name}={s.port}"]
        pids["upstreams"] = procs.spawn(argv, run / "logs" / "upstreams.log")
    # the upstreams answer before the proxy starts: HAProxy marks a server down at once when its first
    # health check fails, and the gate would meet a 503 that says nothing about the configuration
    for s in rewritten.servers:
        url = f"http://{HOST}:{s.port}/__poet/health"

        def answers(url: str = url) -> bool:
            return health.http_request(url, timeout=1).status == 200

        ok, last = health.wait_for(answers, timeout=START_TIMEOUT, interval=0.02)
        if not ok:
            raise EnvironmentProblem(f"instrumented upstream {s.name} did not answer on port {s.port}: {last}",
                                     hint=f"see {run / 'logs' / 'upstreams.log'}")
    if config.proxy == "nginx":
        pids["nginx"] = procs.spawn(_nginx_argv(binary, run, rewritten.main), run / "logs" / "nginx.out")
    else:
        access = Path(rewritten.access_logs[0])
        pids["haproxy"] = procs.spawn([binary, "-W", "-f", rewritten.main], access,
                                      stderr_path=run / "logs" / "haproxy-error.log")
    access_log = rewritten.json_access_log or (rewritten.access_logs[0] if rewritten.access_logs else None)
    if access_log:
        Path(access_log).touch()
    target = _target(config, plan, rewritten, certs, access_log)
    edge = OwnEdge(config=config, plan=plan, rewritten=rewritten, run_dir=run, target=target, pids=pids)
    edge._wait_listeners()
    edge.started_s = round(time.perf_counter() - t0, 3)
    return edge


def _target(config: EdgeConfig, plan: ProbePlan, rewritten: Rewritten, certs: object,
            access_log: str | None) -> TargetInfo:
    ports = {lis.original: lis for lis in rewritten.listeners}
    primary = ports.get(plan.primary_port or "") or (rewritten.listeners[0] if rewritten.listeners else None)
    if primary is None:
        raise InputError("the configuration has no listener to gate", file=config.path,
                         hint="a server block with `listen` (NGINX) or a frontend with `bind` (HAProxy)")
    tls = next((lis for lis in rewritten.listeners if lis.tls and not lis.mtls), None) or \
        next((lis for lis in rewritten.listeners if lis.tls), None)
    mtls = next((lis for lis in rewritten.listeners if lis.mtls), None)
    route = plan.primary("any")
    group = route.upstream if route else None
    members = [s for s in rewritten.servers if s.group == group and not s.backup]
    faulty = members[0].name if members else None
    upstreams = [UpstreamInfo(name=s.name, role="faulty" if s.name == faulty else "healthy",
                              url=f"http://{HOST}:{s.port}", admin_url=f"http://{HOST}:{s.port}/__poet")
                 for s in rewritten.servers]
    scheme = "https" if primary.tls else "http"
    metrics = f"{scheme}://{HOST}:{primary.port}{plan.metrics_path}" if plan.metrics_path else None
    return TargetInfo(
        source="options", base_url=f"{scheme}://{HOST}:{primary.port}",
        tls_url=f"https://{HOST}:{tls.port}" if tls else None,
        mtls_url=f"https://{HOST}:{mtls.port}" if mtls else None, metrics_url=metrics,
        access_log=access_log if plan.access_log_json else None, proxy=config.proxy, variant="own-config",
        ca_cert=str(certs.ca) if certs is not None else None,  # type: ignore[attr-defined]
        client_cert=str(certs.client_cert) if certs is not None else None,  # type: ignore[attr-defined]
        client_key=str(certs.client_key) if certs is not None else None,  # type: ignore[attr-defined]
        upstreams=upstreams, can_reload=True)


def _stop(run: Path, pids: dict[str, int]) -> list[int]:
    """Stop the proxy, then the upstreams, then anything else of the run directory; the pids still alive."""
    marker = f"{run}/"
    order = [n for n in ("nginx", "haproxy") if n in pids] + [n for n in pids if n not in ("nginx", "haproxy")]
    for name in order:
        if procs.owned(pids[name], marker):
            with contextlib.suppress(EnvironmentProblem):
                procs.stop(pids[name], sig=signal.SIGTERM, timeout=3.0)
    for pid in procs.find_by_marker(marker):
        with contextlib.suppress(EnvironmentProblem):
            procs.stop(pid, timeout=2.0)
    return procs.find_by_marker(marker)
