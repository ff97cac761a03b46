"""Bring the service tier up and down: PostgreSQL, the issuer with the slow dependency, and the service.

Everything runs from one run directory (``poetkb.paths.work_dir() /
"service"``), next to the edge's, and ``state.json`` there says what runs.
``up`` makes a fresh cluster (``initdb``), a fresh database, new signing keys,
migrates, and waits until the service answers; the same settings again return
the running tier. ``down`` stops the service and the sidecar, shuts PostgreSQL
down with ``pg_ctl stop -m fast``, removes the cluster and checks no process of
the tier is left. Ports derive from the demo's base port (offsets 13 to 16).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field

from poetkb.demo import health, procs
from poetkb.demo.layout import HOST, base_port_from_env, check_ports_free, port_free
from poetkb.demo.service.issuer import AUDIENCE, ISSUER
from poetkb.demo.service.pg import Cluster, find_bin
from poetkb.demo.service.settings import ServiceSettings
from poetkb.demo.service.variants import GOOD, get_service_variant
from poetkb.errors import EnvironmentProblem, InputError
from poetkb.models import PoetModel
from poetkb.paths import work_dir
from poetkb.types import ObligationId

START_TIMEOUT = 30.0
#: listener name -> offset from the demo's base port (the edge uses 0-4 and 10-12)
SERVICE_OFFSETS = {"service": 13, "issuer": 14, "dependency": 15, "postgres": 16}


class ServiceState(PoetModel):
    """The running service tier, as written to ``RUNDIR/state.json``."""

    variant: str = GOOD
    breaks: list[ObligationId] = Field(default_factory=list)
    run_dir: str
    started_at: str
    base_port: int
    service_url: str
    admin_url: str
    issuer_url: str
    issuer_admin_url: str
    jwks_url: str
    dependency_url: str
    dsn: str
    settings_path: str
    issuer: str
    audience: str
    ports: dict[str, int]
    pids: dict[str, int]


def service_dir() -> Path:
    return work_dir() / "service"


def _marker(root: Path) -> str:
    return f"{root}/"


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_service_state(root: Path | None = None) -> ServiceState | None:
    """The running tier's state, or None when it is not up."""
    path = (root or service_dir()) / "state.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EnvironmentProblem(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return ServiceState.model_validate_json(text)
    except ValueError as exc:
        raise InputError(f"the service tier's state file is damaged: {exc}", file=path,
                         hint="run `poet demo down` and `poet demo up --tier service` again") from exc


def ports_for(base: int) -> dict[str, int]:
    return {name: base + offset for name, offset in SERVICE_OFFSETS.items()}


def _alive(state: ServiceState, root: Path) -> bool:
    cluster = Cluster(root, state.ports["postgres"])
    return (all(procs.owned(state.pids.get(n), _marker(root)) for n in ("app", "sidecar"))
            and procs.alive(cluster.pid()))


def up(variant: str = GOOD, base_port: int | None = None) -> ServiceState:
    """Start (or keep) the service tier with ``variant``; return its state once the service answers."""
    chosen = get_service_variant(variant)
    base = base_port_from_env(base_port)
    find_bin("initdb")
    find_bin("pg_ctl")
    root = service_dir()
    with _locked(root):
        current = load_service_state(root)
        if current is not None:
            if (current.variant, current.base_port) == (variant, base) and _alive(current, root) and \
                    health.http_request(current.service_url + "/health", timeout=2).status == 200:
                # PostgreSQL may have been restarted under the service (a gate's experiment): its pid now
                postmaster = Cluster(root, current.ports["postgres"]).pid() or 0
                return current.model_copy(update={"pids": {**current.pids, "postgres": postmaster}})
            if current.base_port == base and procs.alive(Cluster(root, current.ports["postgres"]).pid()):
                # another variant on the same ports: keep PostgreSQL, give the new service a fresh database
                _stop(current, root, keep_database=True)
                return _start(chosen.name, list(chosen.breaks), base, root, reuse=True)
            _stop(current, root)
        else:
            _stop(None, root)
        return _start(chosen.name, list(chosen.breaks), base, root)


def _start(variant: str, breaks: list[str], base: int, root: Path, *, reuse: bool = False) -> ServiceState:
    ports = ports_for(base)
    needed = {n: p for n, p in ports.items() if not (reuse and n == "postgres")}
    # processes stopped a moment ago may still be closing their listeners on a loaded machine: wait a little
    health.wait_for(lambda: all(port_free(p) for p in needed.values()), timeout=5.0, interval=0.1)
    check_ports_free(needed)
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(root, ports["postgres"])
    pids: dict[str, int] = {}
    try:
        if not reuse:
            cluster.remove()
            cluster.init()
            cluster.start()
        pids["postgres"] = cluster.pid() or 0
        _fresh_database(ports["postgres"])
        marker = _marker(root)
        pids["sidecar"] = procs.spawn(
            [sys.executable, "-m", "poetkb.demo.service.issuer", "--host", HOST, "--issuer-port",
             str(ports["issuer"]), "--dependency-port", str(ports["dependency"]), "--run-dir", marker],
            logs / "sidecar.log")
        _wait(f"http://{HOST}:{ports['issuer']}/__poet/health", pids["sidecar"], logs / "sidecar.log", "issuer")
        settings = ServiceSettings(
            port=ports["service"], dsn=cluster.dsn, issuer=ISSUER, audience=AUDIENCE,
            jwks_url=f"http://{HOST}:{ports['issuer']}/jwks.json",
            dependency_url=f"http://{HOST}:{ports['dependency']}",
            issuer_admin_url=f"http://{HOST}:{ports['issuer']}/__poet",
            variant=variant, flaws=get_service_variant(variant).flaws,
            # the mock-auth variant runs with mock auth on, in production, and nothing stops it
            mock_auth=get_service_variant(variant).flaws.mock_auth_in_production)
        settings_path = root / "service.json"
        settings_path.write_text(settings.model_dump_json(indent=2) + "\n", encoding="utf-8")
        pids["app"] = procs.spawn([sys.executable, "-m", "poetkb.demo.service.app", "--settings",
                                   str(settings_path), "--run-dir", marker], logs / "service.log")
        _wait(f"http://{HOST}:{ports['service']}/health", pids["app"], logs / "service.log", "service")
    except BaseException:
        for name in ("app", "sidecar"):
            if name in pids and procs.owned(pids[name], _marker(root)):
                procs.stop(pids[name])
        cluster.stop()
        raise
    state = ServiceState(
        variant=variant, breaks=breaks, run_dir=str(root), started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        base_port=base, service_url=f"http://{HOST}:{ports['service']}",
        admin_url=f"http://{HOST}:{ports['service']}/__poet", issuer_url=f"http://{HOST}:{ports['issuer']}",
        issuer_admin_url=settings.issuer_admin_url, jwks_url=settings.jwks_url,
        dependency_url=settings.dependency_url, dsn=cluster.dsn, settings_path=str(settings_path),
        issuer=ISSUER, audience=AUDIENCE, ports=ports, pids=pids)
    tmp = root / "state.tmp"
    tmp.write_text(state.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, root / "state.json")
    return state


def _fresh_database(port: int) -> None:
    import psycopg

    from poetkb.demo.service.pg import DATABASE, SUPERUSER

    dsn = f"host=127.0.0.1 port={port} user={SUPERUSER} dbname=postgres connect_timeout=3"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")


def _wait(url: str, pid: int, log: Path, what: str) -> None:
    def died() -> str | None:
        if procs.alive(pid):
            return None
        return f"the {what} process exited; last lines of {log}:\n{_tail(log)}"

    ok, last = health.wait_for(lambda: health.http_request(url, timeout=1).status == 200, timeout=START_TIMEOUT,
                               interval=0.1, abort=died)
    if not ok:
        raise EnvironmentProblem(f"the {what} did not become healthy at {url}: {last}", hint=f"see {log}")


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(state: ServiceState | None, root: Path, *, keep_database: bool = False) -> list[str]:
    stopped = []
    if state is not None:
        for name in ("app", "sidecar"):
            pid = state.pids.get(name)
            if pid is not None and procs.owned(pid, _marker(root)):
                procs.stop(pid)
                stopped.append(f"service {name}")
    stopped += [f"stray service process {pid}" for pid in _stop_strays(root)]
    if keep_database:
        return stopped
    cluster = Cluster(root, state.ports["postgres"] if state else 0)
    pid = cluster.pid()
    if pid is not None and not procs.alive(pid):
        pid = None
    if pid is not None and procs.alive(pid):
        cluster.stop()
        if procs.wait_gone([pid], 10.0):
            raise EnvironmentProblem(f"PostgreSQL (pid {pid}) is still running after `pg_ctl stop`",
                                     hint=f"stop it with `kill {pid}`; see {cluster.log}")
        stopped.append("service postgres")
    cluster.remove()
    return stopped


def _stop_strays(root: Path) -> list[int]:
    """Stop processes of this run directory no state file knows about (after a crash); PostgreSQL is left to
    ``pg_ctl`` (a signal to its postmaster alone would orphan its backends)."""
    postmaster = Cluster(root, 0).pid()
    strays = [pid for pid in procs.find_by_marker(_marker(root)) if pid != postmaster]
    for pid in strays:
        procs.stop(pid)
    return strays


def down() -> list[str]:
    """Stop every process of the service tier and check none is left; return what was stopped."""
    root = service_dir()
    if not root.exists():
        return []
    with _locked(root):
        state = load_service_state(root)
        stopped = _stop(state, root)
        left = procs.find_by_marker(_marker(root))
        if left:
            raise EnvironmentProblem(f"processes {left} of the service tier are still running after down",
                                     hint=f"stop them by pid: kill {' '.join(map(str, left))}")
        (root / "state.json").unlink(missing_ok=True)
        return stopped


def restart_database(state: ServiceState) -> None:
    """Restart PostgreSQL under the running service (a gate's database-restart experiment)."""
    Cluster(Path(state.run_dir), state.ports["postgres"]).restart()


def stop_database(state: ServiceState) -> None:
    Cluster(Path(state.run_dir), state.ports["postgres"]).stop()


def start_database(state: ServiceState) -> None:
    Cluster(Path(state.run_dir), state.ports["postgres"]).start()
