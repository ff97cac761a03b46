"""What a gate runs against: the running demo edge, or an edge described by options.

With no ``--target`` the gate reads the demo's state (``poet demo up`` writes
it) and takes every address from there: listeners, metrics, access log, the
upstreams' admin APIs, certificates and a graceful reload. With ``--target``
the options describe the edge; anything not given simply leaves the checks that
need it with an ``error`` verdict saying what to pass. Every address must be on
loopback unless the user allows remote targets explicitly, and the target must
answer before any check starts (else exit 2, "unreachable").
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poetkb.errors import InputError, TargetUnreachable
from poetkb.gates.checks.base import CollectError
from poetkb.gates.faults import UpstreamAdmin
from poetkb.gates.probes import ensure_allowed, make_client
from poetkb.gates.schema import Edge, EdgeAddresses, TargetInfo, UpstreamInfo

if TYPE_CHECKING:  # annotations only: the own edge and the profile load when a gate uses them
    from poetkb.gates.probes import Router
    from poetkb.gates.profile import TargetProfile
    from poetkb.ownedge.plan import ProbePlan

PROXIES = ("nginx", "haproxy")


@dataclass
class ResolvedTarget:
    """The target description plus how to reload it (None when no reload is known).

    For a user's own configuration brought up by poetkb (``--config``), ``plan`` is its probe plan: checks
    probe its routes and hosts (``router`` dresses each request for the route it falls under), and
    obligations it does not claim are not-applicable unless named in ``required``. A running edge described
    by a target profile (``--target-profile``) plays the same part with the profile.
    """

    info: TargetInfo
    reload: Callable[[], None] | None = None
    plan: ProbePlan | TargetProfile | None = None
    router: Router | None = None
    required: frozenset[str] = frozenset()
    extras: dict[str, tuple[bytes, str, str]] = field(default_factory=dict)
    plan_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the demo's service tier runs (``poet demo up --tier service|all``): ``--all`` also selects its obligations
    service: bool = False
    #: False when the service tier runs alone: ``--all`` then selects its obligations only
    edge: bool = True
    #: reload the edge once before the checks, so servers an earlier run's faults had taken out by passive
    #: health (which healing the fault does not bring back) do not skew this run; set for the demo
    reload_first: bool = False


def _demo_state() -> Any:
    try:
        from poetkb.demo import load_state
    except ImportError:
        return None
    return load_state()


def _parse_admin(spec: str, index: int) -> UpstreamInfo:
    """``URL``, ``NAME=URL`` or ``NAME:ROLE=URL`` -> an upstream (role: faulty when the name says so)."""
    name, _, url = spec.rpartition("=") if "=" in spec.split("://", 1)[0] else ("", "", spec)
    role = None
    if ":" in name:
        name, role = name.split(":", 1)
    name = name or f"upstream-{index + 1}"
    role = role or ("faulty" if "faulty" in name else "healthy")
    if role not in ("healthy", "faulty"):
        raise InputError(f"upstream role {role!r} in --upstream-admin {spec!r} is neither healthy nor faulty",
                         field="upstream-admin", hint="write NAME:healthy=URL or NAME:faulty=URL")
    return UpstreamInfo(name=name, role=role, url=url.rstrip("/"), admin_url=url.rstrip("/"))


def resolve(edge: Edge) -> ResolvedTarget:
    """Describe the edge to gate; raise InputError for bad options and when there is nothing to gate."""
    if edge.target is None:
        resolved = _from_demo(edge.proxy)
        if edge.access_log is not None:
            resolved.info = resolved.info.model_copy(update={"access_log": edge.access_log})
    else:
        upstreams = [_parse_admin(spec, i) for i, spec in enumerate(edge.upstream_admin)]
        info = TargetInfo(source="options", base_url=edge.target.rstrip("/"), upstreams=upstreams,
                          can_reload=edge.reload_command is not None,
                          **edge.model_dump(include=set(EdgeAddresses.model_fields)))
        resolved = ResolvedTarget(info, _command_reload(edge.reload_command) if edge.reload_command else None)
    info = resolved.info
    for what, url in (("target", info.base_url), ("tls-url", info.tls_url), ("mtls-url", info.mtls_url),
                      ("metrics-url", info.metrics_url)):
        if url:
            ensure_allowed(url, allow_remote=edge.allow_remote, what=what)
    for upstream in info.upstreams:
        if upstream.admin_url:
            ensure_allowed(upstream.admin_url, allow_remote=edge.allow_remote, what="upstream-admin")
    if info.access_log and not Path(info.access_log).is_file():
        raise InputError("access log not found", file=info.access_log, field="access-log",
                         hint="pass --access-log with the path the edge writes its JSON access log to")
    return resolved


def _service_state() -> Any:
    try:
        from poetkb.demo.service.tier import load_service_state
    except ImportError:
        return None
    return load_service_state()


def _from_demo(proxy: str | None) -> ResolvedTarget:
    state = _demo_state()
    service = _service_state()
    if state is None and service is not None and proxy is None:
        # the service tier alone (`poet demo up --tier service`): the service is the target
        return ResolvedTarget(TargetInfo(source="demo", base_url=service.service_url,
                                         variant=f"service:{service.variant}"), None, service=True, edge=False)
    if state is None:
        raise InputError("no --target given and no demo edge is running",
                         hint="start one with `poet demo up` (or `make demo`), or pass --target URL")
    if proxy is not None and proxy != state.proxy:
        raise InputError(f"--proxy {proxy} was given, but the running demo edge is {state.proxy}",
                         field="proxy", hint=f"drop --proxy, or restart the demo with `poet demo up --proxy {proxy}`")
    upstreams = [UpstreamInfo(name=u.name, role=u.role, url=u.url, admin_url=u.admin_url) for u in state.upstreams]
    info = TargetInfo(source="demo", base_url=state.base_url, tls_url=state.tls_url, mtls_url=state.mtls_url,
                      metrics_url=state.metrics_url, access_log=state.access_log, proxy=state.proxy,
                      variant=state.variant, ca_cert=state.ca_cert, client_cert=state.client_cert,
                      client_key=state.client_key, upstreams=upstreams, can_reload=True)

    def reload() -> None:
        from poetkb.demo import reload as demo_reload
        from poetkb.errors import PoetError

        try:
            demo_reload(state)
        except PoetError as exc:
            raise CollectError(f"reloading the demo edge failed: {exc.message}") from exc

    return ResolvedTarget(info, reload, service=service is not None)


def _command_reload(command: str) -> Callable[[], None]:
    argv = shlex.split(command)
    if not argv:
        raise InputError("--reload-command is empty", field="reload-command")

    def reload() -> None:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CollectError(f"reload command {command!r} could not run: {exc}") from exc
        if done.returncode != 0:
            raise CollectError(f"reload command {command!r} exited {done.returncode}: "
                               f"{(done.stderr or done.stdout).strip()[:300]}")

    return reload


def preflight(info: TargetInfo, *, transport: Any = None, host: str | None = None) -> TargetInfo:
    """Check the target answers (TargetUnreachable if not) and the proxy kind matches; learn upstream names.

    Upstreams given by URL only are renamed to the name their admin API reports (the name their
    ``X-Upstream`` header carries), so evaluators can tell backends apart by address.
    """
    import httpx

    assert info.base_url
    with make_client(info.base_url, timeout=3.0, transport=transport) as client:
        try:
            response = client.get("/", headers={"Host": host} if host else None)
        except httpx.HTTPError as exc:
            raise TargetUnreachable(
                f"target {info.base_url} is unreachable: {exc or type(exc).__name__}",
                hint="is the edge running? `poet demo status` shows the demo; or fix --target",
            ) from exc
        server = response.headers.get("server", "")
        if info.proxy is not None:
            named = next((name for name in PROXIES if name in server.lower()), None)
            if named is not None and named != info.proxy:
                raise InputError(f"--proxy {info.proxy} was given, but {info.base_url} answers as {named} "
                                 f"(Server: {server})", field="proxy",
                                 hint=f"pass --proxy {named}, or the right --target")
        renamed: list[UpstreamInfo] = []
        for upstream in info.upstreams:
            data = UpstreamAdmin(upstream, client).counters()
            if info.source == "options" and isinstance(data, dict) and isinstance(data.get("name"), str):
                role = upstream.role if upstream.name != f"upstream-{len(renamed) + 1}" else (
                    "faulty" if "faulty" in data["name"] else upstream.role)
                upstream = upstream.model_copy(update={"name": data["name"], "role": role})
            renamed.append(upstream)
        return info.model_copy(update={"upstreams": renamed})
