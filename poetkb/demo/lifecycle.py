"""Bring the demo edge up and down, report its status, reload it.

``up`` is idempotent: the same settings again return the running edge; other
settings restart the proxy cleanly (the upstreams keep running when their ports
stay the same, with faults and counters reset). Everything runs from one run
directory (``poetkb.paths.work_dir() / "demo"``) and ``state.json`` there says
what runs; ``down`` stops every process of that directory and checks that none
is left. A lock file serialises concurrent ``up``/``down``/``reload`` calls.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from poetkb.demo import health, procs
from poetkb.demo.certs import CertFiles, ensure_certs
from poetkb.demo.edge_config import HOSTS, RunPaths, context, validate, write_config
from poetkb.demo.layout import HOST, UPSTREAMS, base_port_from_env, check_ports_free, ports_for, run_dir
from poetkb.demo.overlays import GOOD, get_variant, knobs_for
from poetkb.demo.state import PROXIES, DemoState, DemoStatus, ProcessStatus, UpstreamInfo
from poetkb.environment import find_binary, install_hint
from poetkb.errors import EnvironmentProblem, InputError

START_TIMEOUT = 15.0
BRIDGE = "nginx-metrics"


# -- state ----------------------------------------------------------------------------------------
def load_state(directory: Path | None = None) -> DemoState | None:
    """The state of the running demo from ``RUNDIR/state.json``, or None when the demo is not up."""
    path = RunPaths(directory or run_dir()).state
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EnvironmentProblem(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return DemoState.model_validate_json(text)
    except ValueError as exc:
        raise InputError(f"the demo state file is damaged: {exc}", file=path,
                         hint="run `poet demo down` and `poet demo up` again") from exc


def _write_state(paths: RunPaths, state: DemoState) -> None:
    tmp = paths.state.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, paths.state)


@contextlib.contextmanager
def _locked(paths: RunPaths) -> Iterator[None]:
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _marker(paths: RunPaths) -> str:
    """What every demo process's command line contains: the run directory with a trailing slash."""
    return f"{paths.root}/"


def require_binary(proxy: str) -> str:
    """The path of the proxy binary, or a clear error with the install command."""
    found = find_binary(proxy)
    if found is None:
        raise EnvironmentProblem(f"{proxy} is not installed (looked on PATH and in /usr/sbin, /sbin)",
                                 hint=f"install it with `{install_hint(proxy)}`, or use --proxy "
                                      f"{'haproxy' if proxy == 'nginx' else 'nginx'}")
    return found


# -- up -------------------------------------------------------------------------------------------
def up(proxy: str = "nginx", variant: str = GOOD, base_port: int | None = None,
       service_port: int | None = None) -> DemoState:
    """Start (or keep) the demo edge with ``proxy`` and ``variant``; return its state once healthy.

    With ``service_port`` (``poet demo up --tier all``) the edge also routes ``/svc/`` to the service tier.
    """
    if proxy not in PROXIES:
        raise InputError(f"unknown proxy {proxy!r}", field="proxy", hint="use nginx or haproxy")
    base = base_port_from_env(base_port)
    chosen = get_variant(proxy, variant)
    knobs = {**knobs_for(chosen), "service_port": service_port}
    binary = require_binary(proxy)
    paths = RunPaths(run_dir())
    paths.make()
    with _locked(paths):
        current = load_state(paths.root)
        if current is not None:
            same = (current.proxy, current.variant, current.base_port) == (proxy, variant, base) \
                and _routes_service(paths, current.proxy) == bool(service_port)
            if same and _all_alive(current, paths) and _healthy(current):
                return current
            keep = current.base_port == base and _upstreams_alive(current, paths)
            _stop_edge(current, paths)
            if not keep:
                _stop_all(current, paths)
        else:
            keep = False
            _stop_strays(paths)
        _clean_pid_files(paths)
        return _start(proxy, variant, chosen.breaks, knobs, binary, base, paths,
                      current if keep else None)


def _routes_service(paths: RunPaths, proxy: str) -> bool:
    """True when the rendered edge configuration routes /svc/ to the service tier."""
    try:
        return "/svc/" in paths.config(proxy).read_text(encoding="utf-8")
    except OSError:
        return False


def _start(proxy: str, variant: str, breaks: list[str], knobs: dict[str, Any], binary: str, base: int,
           paths: RunPaths, keep: DemoState | None) -> DemoState:
    ports = ports_for(base)
    needed = {"http", "tls", "mtls"}
    if knobs.get("metrics", True):
        needed.add("metrics")
        if proxy == "nginx":
            needed.add("metrics_bridge")
    if keep is None:
        needed |= {name for name, _ in UPSTREAMS}
    check_ports_free({n: p for n, p in ports.items() if n in needed})
    certs = ensure_certs(paths.certs)
    ctx = context(proxy, variant, knobs, paths, ports, certs)
    write_config(proxy, ctx, paths)
    validate(proxy, binary, paths)
    pids: dict[str, int] = {}
    try:
        if keep is not None:
            pids.update({n: keep.pids[n] for n, _ in UPSTREAMS})
            _reset_upstreams(keep)
        else:
            pids.update(_start_upstreams(paths, ports))
        if proxy == "nginx" and "metrics_bridge" in needed:
            pids[BRIDGE] = _start_bridge(paths, ports)
        pids[proxy] = _start_proxy(proxy, binary, paths)
        state = _make_state(proxy, variant, breaks, base, ports, pids, paths, certs)
        _wait_healthy(state, paths, metrics="metrics" in needed)
    except BaseException:
        for pid in reversed(list(pids.values())):
            if procs.owned(pid, _marker(paths)):
                procs.stop(pid)
        raise
    _write_pid_files(paths, pids)
    _write_state(paths, state)
    return state


def _start_upstreams(paths: RunPaths, ports: dict[str, int]) -> dict[str, int]:
    pids = {}
    for name, role in UPSTREAMS:
        argv = [sys.executable, "-m", "poetkb.demo.upstream", "--name", name, "--role", role, "--host", HOST,
                "--port", str(ports[name]), "--run-dir", _marker(paths)]
        pids[name] = procs.spawn(argv, paths.logs / f"upstream-{name}.log")
    for name, _ in UPSTREAMS:
        url = f"http://{HOST}:{ports[name]}/__poet/health"

        def answers(url: str = url) -> bool:
            return health.http_request(url, timeout=1).status == 200

        ok, last = health.wait_for(answers, timeout=START_TIMEOUT,
                                   abort=_died(pids[name], paths, f"upstream-{name}.log"))
        if not ok:
            raise EnvironmentProblem(f"upstream {name} did not become healthy on port {ports[name]}: {last}",
                                     hint=f"see {paths.logs / f'upstream-{name}.log'}")
    return pids


def _start_bridge(paths: RunPaths, ports: dict[str, int]) -> int:
    argv = [sys.executable, "-m", "poetkb.demo.nginx_metrics", "--port", str(ports["metrics_bridge"]),
            "--status-url", f"http://{HOST}:{ports['metrics']}/stub_status", "--run-dir", _marker(paths)]
    return procs.spawn(argv, paths.logs / f"{BRIDGE}.log")


def _proxy_argv(proxy: str, binary: str, paths: RunPaths) -> list[str]:
    if proxy == "nginx":
        return [binary, "-p", _marker(paths), "-c", str(paths.config("nginx")), "-e", str(paths.error_log("nginx"))]
    return [binary, "-W", "-f", str(paths.config("haproxy"))]


def _start_proxy(proxy: str, binary: str, paths: RunPaths) -> int:
    if proxy == "nginx":
        return procs.spawn(_proxy_argv(proxy, binary, paths), paths.logs / "nginx.out")
    # HAProxy writes its access log to stdout (`log stdout`) and its own messages to stderr
    return procs.spawn(_proxy_argv(proxy, binary, paths), paths.access_log, stderr_path=paths.error_log(proxy))


def _make_state(proxy: str, variant: str, breaks: list[str], base: int, ports: dict[str, int],
                pids: dict[str, int], paths: RunPaths, certs: CertFiles) -> DemoState:
    listeners = {n: p for n, p in ports.items() if n != "metrics_bridge" or proxy == "nginx"}
    return DemoState(
        proxy=proxy,  # type: ignore[arg-type]
        variant=variant,
        run_dir=str(paths.root),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        base_port=base,
        base_url=f"http://{HOST}:{ports['http']}",
        tls_url=f"https://{HOST}:{ports['tls']}",
        mtls_url=f"https://{HOST}:{ports['mtls']}",
        metrics_url=f"http://{HOST}:{ports['metrics']}/metrics",
        access_log=str(paths.access_log),
        error_log=str(paths.error_log(proxy)),
        config_path=str(paths.config(proxy)),
        ca_cert=str(certs.ca),
        client_cert=str(certs.client_cert),
        client_key=str(certs.client_key),
        upstreams=[UpstreamInfo(name=n, role=r, url=f"http://{HOST}:{ports[n]}",  # type: ignore[arg-type]
                                admin_url=f"http://{HOST}:{ports[n]}/__poet") for n, r in UPSTREAMS],
        ports=listeners,
        pids=pids,
        breaks=breaks,
        hosts=dict(HOSTS),
    )


def _died(pid: int, paths: RunPaths, log_name: str) -> Any:
    def check() -> str | None:
        if procs.alive(pid):
            return None
        return f"the process exited; last lines of {paths.logs / log_name}:\n{_tail(paths.logs / log_name)}"

    return check


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_healthy(state: DemoState, paths: RunPaths, *, metrics: bool) -> None:
    proxy_pid = state.pids[state.proxy]
    log = paths.error_log(state.proxy).name

    def probe() -> bool:
        return all(c.ok for c in health.check_edge(state, metrics=metrics))

    ok, last = health.wait_for(probe, timeout=START_TIMEOUT, interval=0.1, abort=_died(proxy_pid, paths, log))
    if not ok:
        failing = [f"{c.name}: {c.detail}" for c in health.check_edge(state, metrics=metrics) if not c.ok]
        reason = last if isinstance(last, str) else "; ".join(failing)
        raise EnvironmentProblem(f"the {state.proxy} edge did not become healthy: {reason}",
                                 hint=f"see {paths.error_log(state.proxy)}")


def _reset_upstreams(state: DemoState) -> None:
    for info in state.upstreams:
        health.http_request(info.admin_url + "/fault", method="DELETE")
        health.http_request(info.admin_url + "/counters/reset", method="POST")


# -- down -----------------------------------------------------------------------------------------
def down() -> list[str]:
    """Stop every process of the demo and check none is left; return the names of those stopped."""
    from poetkb.demo.service.tier import down as service_down

    stopped_service = service_down()
    paths = RunPaths(run_dir())
    if not paths.root.exists():
        return stopped_service
    with _locked(paths):
        current = load_state(paths.root)
        stopped: list[str] = list(stopped_service)
        if current is not None:
            stopped += _stop_all(current, paths)
        stopped += [f"stray process {pid}" for pid in _stop_strays(paths)]
        left = procs.find_by_marker(_marker(paths))
        if left:
            raise EnvironmentProblem(f"processes {left} of the demo are still running after down",
                                     hint=f"stop them by pid: kill {' '.join(map(str, left))}")
        paths.state.unlink(missing_ok=True)
        _clean_pid_files(paths, everything=True)
        return stopped


def _stop_edge(state: DemoState, paths: RunPaths) -> list[str]:
    stopped = []
    for name in (state.proxy, BRIDGE):
        pid = state.pids.get(name)
        if pid is not None and procs.owned(pid, _marker(paths)):
            procs.stop(pid)
            stopped.append(name)
    return stopped


def _stop_all(state: DemoState, paths: RunPaths) -> list[str]:
    stopped = _stop_edge(state, paths)
    for name, pid in state.pids.items():
        if name not in (state.proxy, BRIDGE) and procs.owned(pid, _marker(paths)):
            procs.stop(pid)
            stopped.append(name)
    return stopped


def _stop_strays(paths: RunPaths) -> list[int]:
    """Stop processes of this run directory that no state file knows about (after a crash)."""
    strays = procs.find_by_marker(_marker(paths))
    for pid in strays:
        procs.stop(pid)
    return strays


def _write_pid_files(paths: RunPaths, pids: dict[str, int]) -> None:
    for name, pid in pids.items():
        if name not in PROXIES:  # nginx and HAProxy write their own
            paths.pid_file(name).write_text(f"{pid}\n")


def _clean_pid_files(paths: RunPaths, everything: bool = False) -> list[str]:
    """Remove pid files whose process is gone (all of them with ``everything``); return their names."""
    cleaned = []
    for pid_file in sorted((paths.root / "pids").glob("*.pid")):
        try:
            pid = int(pid_file.read_text().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if everything or not procs.owned(pid, _marker(paths)):
            pid_file.unlink(missing_ok=True)
            cleaned.append(pid_file.stem)
    return cleaned


# -- status ---------------------------------------------------------------------------------------
def _process_status(state: DemoState, paths: RunPaths) -> list[ProcessStatus]:
    return [ProcessStatus(name=n, pid=p, alive=procs.owned(p, _marker(paths))) for n, p in state.pids.items()]


def _all_alive(state: DemoState, paths: RunPaths) -> bool:
    return all(p.alive for p in _process_status(state, paths))


def _upstreams_alive(state: DemoState, paths: RunPaths) -> bool:
    return all(procs.owned(state.pids.get(n), _marker(paths)) for n, _ in UPSTREAMS)


def _metrics_on(state: DemoState) -> bool:
    return bool(knobs_for(get_variant(state.proxy, state.variant)).get("metrics", True))


def _healthy(state: DemoState) -> bool:
    checks = health.check_upstreams(state) + health.check_edge(state, metrics=_metrics_on(state))
    return all(c.ok for c in checks)


def status() -> DemoStatus:
    """Whether the demo runs and is healthy: every process, every upstream, every listener."""
    paths = RunPaths(run_dir())
    state = load_state(paths.root) if paths.root.exists() else None
    if state is None:
        cleaned = _clean_pid_files(paths) if paths.root.exists() else []
        return DemoStatus(running=False, healthy=False, run_dir=str(paths.root), stale_pids_cleaned=cleaned)
    processes = _process_status(state, paths)
    if not any(p.alive for p in processes):
        with _locked(paths):
            paths.state.unlink(missing_ok=True)
            cleaned = _clean_pid_files(paths, everything=True)
        return DemoStatus(running=False, healthy=False, run_dir=str(paths.root), processes=processes,
                          stale_pids_cleaned=cleaned or [p.name for p in processes])
    checks = health.check_upstreams(state) + health.check_edge(state, metrics=_metrics_on(state))
    healthy = all(p.alive for p in processes) and all(c.ok for c in checks)
    return DemoStatus(running=True, healthy=healthy, run_dir=str(paths.root), state=state,
                      processes=processes, checks=checks)


# -- reload ---------------------------------------------------------------------------------------
#: how long a reload waits for the proxy's old workers to exit before it goes on regardless (seconds)
OLD_WORKERS_TIMEOUT = 3.0


def reload(state: DemoState | None = None) -> DemoState:
    """Reload the running proxy with the configuration file as it is on disk.

    Nothing is rendered here: a reload never replaces what a person edited, so a
    gate that reloads the edge tests the configuration that really runs (only
    ``poet demo up --variant`` renders from the templates). The file is validated
    first (``nginx -t`` / ``haproxy -c``); a broken edit is refused with the
    proxy's message and the running edge keeps its old configuration.

    The good configuration reloads gracefully (nginx SIGHUP, HAProxy SIGUSR2 to the
    master): in-flight requests finish, the listeners never close. The
    ``reload-restart`` variants stop and start the proxy instead, on purpose.
    """
    paths = RunPaths(run_dir())
    with _locked(paths):
        current = load_state(paths.root)
        if current is None:
            raise EnvironmentProblem("the demo is not running", hint="start it with `poet demo up`")
        if state is not None and (state.proxy, state.started_at) != (current.proxy, current.started_at):
            raise EnvironmentProblem("the demo was restarted since this state was read",
                                     hint="read it again with poetkb.demo.load_state()")
        proxy = current.proxy
        pid = current.pids[proxy]
        if not procs.owned(pid, _marker(paths)):
            raise EnvironmentProblem(f"{proxy} (pid {pid}) is not running", hint="run `poet demo up` again")
        knobs = knobs_for(get_variant(proxy, current.variant))
        binary = require_binary(proxy)
        validate(proxy, binary, paths, hint="fix the edit (the running edge keeps its previous configuration), "
                                            "or render the original again with `poet demo up`")
        if knobs.get("reload") == "restart":
            procs.stop(pid)
            new_pid = _start_proxy(proxy, binary, paths)
            current = current.model_copy(update={"pids": {**current.pids, proxy: new_pid}})
            paths.pid_file(proxy).write_text(f"{new_pid}\n")
        else:
            before = set(procs.children(pid))
            os.kill(pid, signal.SIGHUP if proxy == "nginx" else signal.SIGUSR2)
            ok, _ = health.wait_for(lambda: bool(set(procs.children(pid)) - before), timeout=START_TIMEOUT)
            if not ok:
                raise EnvironmentProblem(f"{proxy} started no new worker after the reload signal",
                                         hint=f"see {paths.error_log(proxy)}")
            # the old workers keep serving the clients' open keep-alive connections with their own view of the
            # upstreams (which servers passive health has taken out) until they exit: wait for that, bounded
            # (a request still in flight keeps one alive), so what follows a reload meets the new workers only
            health.wait_for(lambda: not set(procs.children(pid)) & before, timeout=OLD_WORKERS_TIMEOUT, interval=0.02)
        _wait_healthy(current, paths, metrics=bool(knobs.get("metrics", True)))
        _write_state(paths, current)
        return current
