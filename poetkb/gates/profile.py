"""Target profiles: how a gate probes a live edge poetkb did not bring up (staging, production).

A live edge has the user's routes and application behind it, not the demo's
echo, cache and fault endpoints. A target profile (YAML or JSON, ``poet schema
target-profile``) names, per check kind, the route to probe (a cacheable path,
a path behind the rate limit, an endpoint that echoes request headers), the
host names, what is safe to send, and where the access log and metrics are.

A check the profile gives nothing for is not run: it comes out ``no-evidence``
naming the key to add, never ``fail``. Checks that inject faults run only when
a fault-capable upstream is declared (``upstream_admin``), and non-idempotent
requests only when ``safe_methods`` allows them. Only collection parameters
(paths, hosts, server names) are taken from the profile; what an obligation
requires stays the catalog's.

    target: https://staging.example.com
    hosts: [staging.example.com]
    default_path: /healthz              # any path that reaches the application
    echo_path: /debug/headers           # an endpoint that echoes request headers, if you have one
    routes:
      cache_key_stable: {path: /static/app.css}
      rate_limit_sheds: {path: /login}
    safe_methods: [GET, HEAD]
    access_log: /var/log/nginx/access.json
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, ValidationError

from poetkb.errors import InputError
from poetkb.models import PoetModel

if TYPE_CHECKING:
    from poetkb.gates.probes import RequestSpec, Router

#: what each kind needs from a live edge beyond "a path that reaches the application"
NEEDS: dict[str, str] = {
    **{k: "cache" for k in ("cache_key_stable", "cache_key_complete", "vary_variants_isolated",
                            "private_not_cached", "ttl_honored")},
    **{k: "echo" for k in ("hop_by_hop_stripped", "forwarded_for_appended", "request_id_propagated",
                           "same_key_same_backend", "host_isolated")},
    **{k: "fault" for k in ("upstream_attempts_bounded", "no_retry_non_idempotent", "unhealthy_backend_avoided",
                            "latency_bounded_under_fault", "status_on_upstream_fault", "stale_bounded")},
    "rate_limit_sheds": "rate limit", "connection_limit_sheds": "connection limit",
    "upstream_timing_logged": "known delay",
}
#: kinds that send methods other than GET and HEAD
WRITES: dict[str, str] = {"no_retry_non_idempotent": "POST", "access_log_complete": "POST"}
_WHAT = {
    "cache": "a cacheable path (its responses carry Cache-Control: public, max-age)",
    "echo": "an endpoint that echoes the request headers it received (echo_path)",
    "fault": "a fault-capable upstream (upstream_admin: an instrumented upstream behind the edge)",
    "rate limit": "a path behind the rate limit",
    "connection limit": "a path behind the connection limit that answers slowly",
    "known delay": "a path that answers after a known delay",
}


class RouteSpec(PoetModel):
    """The collection parameters of one check kind on this edge."""

    path: str | None = Field(default=None, pattern=r"^/")
    paths: list[str] | None = None
    hosts: list[str] | None = None
    server_name: str | None = None


class TargetProfile(PoetModel):
    """A live edge described for a gate: routes per check, safe methods, access log, metrics."""

    target: str | None = None
    proxy: Literal["nginx", "haproxy"] | None = None
    hosts: list[str] = Field(default_factory=list)
    default_path: str = Field(default="/", pattern=r"^/")
    echo_path: str | None = Field(default=None, pattern=r"^/")
    routes: dict[str, RouteSpec] = Field(default_factory=dict)
    safe_methods: list[str] = Field(default_factory=lambda: ["GET", "HEAD"])
    access_log: str | None = None
    metrics_url: str | None = None
    upstream_admin: list[str] = Field(default_factory=list)
    reload_command: str | None = None

    #: what the runner records for a check this profile gives nothing for (the plan interface of
    #: :class:`poetkb.ownedge.plan.ProbePlan`): on a live edge a missing route is no evidence, never a fail
    unclaimed_verdict: ClassVar[str] = "no-evidence"

    def adapt(self, kind: str, params: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """``(overrides, None)`` to probe this edge, or ``({}, what is missing)``."""
        method = WRITES.get(kind)
        if method and method not in {m.upper() for m in self.safe_methods}:
            return {}, f"{kind} sends {method} requests; add {method} to safe_methods in the target profile " \
                       "if that is safe on this edge"
        need = NEEDS.get(kind)
        if need == "fault" and not self.upstream_admin:
            return {}, f"{kind} injects faults and needs {_WHAT['fault']}; checks that inject faults are " \
                       "skipped on live targets unless the target profile declares one under upstream_admin"
        route = self.routes.get(kind)
        if route is not None:
            return {k: v for k, v in route.model_dump().items() if v is not None}, None
        if need == "echo" and self.echo_path:
            return {"path": self.echo_path}, None
        if need is not None and need != "fault":
            return {}, f"{kind} needs {_WHAT[need]}; name it in the target profile under routes.{kind}.path"
        if kind == "content_length_matches":
            return {"paths": [self.default_path]}, None
        if kind == "private_not_cached":
            return {}, f"{kind} needs private responses to probe; name them under routes.{kind}.paths"
        overrides: dict[str, Any] = {"path": self.default_path}
        if kind in ("tls_chain_valid", "mtls_client_required") and self.hosts:
            overrides = {"server_name": self.hosts[0], "path": self.default_path}
        return overrides, None

    def probe_host(self) -> str | None:
        return self.hosts[0] if self.hosts else None


def load_target_profile(path: str | Path) -> TargetProfile:
    """Read and validate a target profile; bad input names the file, line and field."""
    from poetkb.yamlfile import load_with_lines, problems_from_validation

    source = Path(path)
    if not source.is_file():
        raise InputError("target profile not found", file=source, field="target-profile",
                         hint="pass a YAML file (see `poet schema target-profile` and docs/own-edge.md)")
    data = load_with_lines(source)
    if not isinstance(data, dict):
        raise InputError("a target profile is a mapping (target, hosts, routes, ...)", file=source)
    try:
        profile = TargetProfile.model_validate(data)
    except ValidationError as exc:
        first = problems_from_validation(exc, data, file=str(source))[0]
        raise InputError(first.message, file=source, line=first.line, field=first.field,
                         hint="see `poet schema target-profile`") from None
    from poetkb.gates.kinds import KINDS

    unknown = sorted(set(profile.routes) - set(KINDS))
    if unknown:
        raise InputError(f"routes name unknown check kinds: {', '.join(unknown)}", file=source, field="routes",
                         hint="see `poet gate kinds`")
    return profile


def router(profile: TargetProfile) -> Router:
    """Probe requests carry the profile's first host name unless a check chose one."""
    import dataclasses

    def dress(spec: RequestSpec) -> RequestSpec:
        if spec.host is None and profile.hosts and not any(k.lower() == "host" for k in spec.headers):
            return dataclasses.replace(spec, host=profile.hosts[0])
        return spec

    return dress
