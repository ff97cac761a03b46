"""The probe plan: what a configuration routes, caches, limits and retries, and how each check probes it.

:func:`build_plan` reads the configuration model (before it is rewritten, so
lines point at the user's file) and lists its routes: host names, location or
path prefix, the upstream group behind it, whether it caches (and its key),
carries a rate or connection limit, retries, hashes, and whether its listener
is TLS or mTLS. :meth:`ProbePlan.adapt` then says, for one check kind, which of
its collection parameters point at the user's own routes and hosts instead of
the demo's endpoints, or why the obligation is not claimed by this
configuration (``not-applicable``: no cache, no mTLS listener, ...).

Only parameters that steer collection are ever changed (paths, hosts, server
names); what an obligation requires (attempt bounds, statuses, fields) stays
the catalog's.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from poetkb.edgeconfig import Directive, EdgeConfig
from poetkb.models import PoetModel

if TYPE_CHECKING:
    from poetkb.gates.probes import RequestSpec, Router

#: the demo's route prefixes: the logical endpoint of ``/flaky/echo`` is ``/echo``
DEMO_PREFIXES = ("/api/", "/flaky/", "/limited/")
#: parameters a plan may set, per kind; nothing else of the catalog's is ever changed
STEERING = frozenset({"path", "paths", "hosts", "server_name", "cache_path", "also_paths", "also_via"})
#: parameters that point a check at the demo's other virtual host, mTLS listener or a pinned upstream: on your
#: own configuration such an entry is left out (not applicable); its main entry probes your routes
DEMO_VANTAGE = frozenset({"via_host", "listener", "pinned_to"})
#: list parameters a plan may only shorten (a field about a feature the configuration does not have)
NARROWING = frozenset({"fields", "non_empty"})


def apply_overrides(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the plan's steering values, and narrowed lists only where they are subsets."""
    out = dict(params)
    for key, value in overrides.items():
        narrowed = key in NARROWING and isinstance(value, list) and isinstance(params.get(key), list) \
            and set(value) <= set(params[key])
        if key in STEERING or narrowed:
            out[key] = value
    return out


class Route(PoetModel):
    """One route of the configuration: hosts, location, upstream and what it does."""

    port: str
    tls: bool = False
    mtls: bool = False
    hosts: list[str] = Field(default_factory=list)
    location: str = "/"
    match: str = "prefix"
    upstream: str | None = None
    servers: int = 0
    cache: str | None = None
    cache_key: str | None = None
    rate_limit: bool = False
    conn_limit: bool = False
    retry: bool = False
    hashing: bool = False
    read_timeout_ms: float | None = None
    file: str = ""
    line: int = 1

    def where(self) -> str:
        host = self.hosts[0] if self.hosts else "*"
        return f"{host}{self.location} ({self.file}:{self.line})"


class ProbePlan(PoetModel):
    """Routes of the configuration and the facts the checks need."""

    proxy: str
    routes: list[Route] = Field(default_factory=list)
    access_log: bool = False
    access_log_json: bool = False
    request_id_header: str | None = None
    forwarded_for: bool = False
    metrics_path: str | None = None
    tls_names: list[str] = Field(default_factory=list)
    primary_port: str | None = None

    #: what the runner records for a check the configuration does not claim
    unclaimed_verdict: ClassVar[str] = "not-applicable"

    # -- choosing routes ---------------------------------------------------------------------------
    def proxied(self, port: str | None = None) -> list[Route]:
        return [r for r in self.routes if r.upstream and (port is None or r.port == port)]

    def primary(self, need: str = "any") -> Route | None:
        """The route a check of kind ``need`` probes on the primary listener (None when none fits)."""
        routes = self.proxied(self.primary_port)
        if need == "cache":
            routes = [r for r in routes if r.cache and r.match == "prefix"]
        elif need == "rate":
            routes = [r for r in routes if r.rate_limit]
        elif need == "conn":
            routes = [r for r in routes if r.conn_limit]
        elif need == "hash":
            routes = [r for r in routes if r.hashing]
        elif need == "multi":
            routes = [r for r in routes if r.servers >= 2]
        else:  # plain traffic: stay off caches and limits when the configuration has such a route
            # the most general route first (a catch-all before /ws/ or /login/): it is the route most traffic takes
            plain = sorted([r for r in routes if not (r.rate_limit or r.conn_limit) and r.match == "prefix"],
                           key=lambda r: len(r.location))
            uncached = [r for r in plain if not r.cache]
            routes = uncached or plain or routes
        return routes[0] if routes else None

    def translate(self, route: Route, demo_path: str) -> str:
        """The demo path moved under the route: ``/flaky/echo`` on ``/api/`` is ``/api/echo``.

        The instrumented upstream serves the part of the path below the route a request falls under
        (:func:`router`). When a more specific route of the configuration captures the moved path (``/slow/200``
        on ``/`` while the configuration has its own ``location /slow/``), the path is moved under that route
        instead (``/slow/slow/200``), so the behaviour served is still the demo's ``/slow/200``.
        """
        logical = demo_path
        for prefix in DEMO_PREFIXES:
            if logical.startswith(prefix):
                logical = "/" + logical[len(prefix):]
                break
        if route.match != "prefix":
            return route.location
        path = route.location.rstrip("/") + logical
        if route.port != self.primary_port:
            return path
        for _ in range(3):  # each step moves to a longer location, so this settles at once in practice
            captured = self.route_for_path(path)
            if captured is None or captured is route or captured.match != "prefix" \
                    or not path.startswith(captured.location) or captured.location == route.location:
                break
            route, path = captured, captured.location.rstrip("/") + logical
        return path

    def adapt(self, kind: str, params: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """``(overrides, None)`` to probe the user's routes, or ``({}, reason)`` when not claimed."""
        def path_on(route: Route, key: str, default: str) -> dict[str, Any]:
            return {key: self.translate(route, str(params.get(key) or default))}

        need = {"cache_key_stable": "cache", "cache_key_complete": "cache", "vary_variants_isolated": "cache",
                "private_not_cached": "cache", "ttl_honored": "cache", "stale_bounded": "cache",
                "rate_limit_sheds": "rate", "connection_limit_sheds": "conn", "same_key_same_backend": "hash",
                "unhealthy_backend_avoided": "multi"}.get(kind, "any")
        route = self.primary(need)
        if route is None:
            reason = {
                "cache": "no route of the configuration caches responses (no proxy_cache / cache-use)",
                "rate": "no route of the configuration carries a request-rate limit",
                "conn": "no route of the configuration carries a connection limit",
                "hash": "no upstream group balances by the request URI (hash $request_uri, balance uri)",
                "multi": "no route reaches an upstream group of two or more servers",
            }.get(need, "the configuration proxies no route to an upstream")
            return {}, reason
        if kind == "tls_chain_valid":
            if not any(r.tls for r in self.routes) and not self.tls_names:
                return {}, "the configuration has no TLS listener"
            return {"server_name": (self.tls_names or ["localhost"])[0]}, None
        if kind == "mtls_client_required":
            if not any(r.mtls for r in self.routes):
                return {}, "the configuration has no listener that verifies client certificates (mTLS)"
            names = [h for r in self.routes if r.mtls for h in r.hosts]
            return {"server_name": (names or self.tls_names or ["localhost"])[0]}, None
        if kind == "host_isolated":
            hosts: list[str] = []
            for r in self.proxied(self.primary_port):
                if r.hosts and r.hosts[0] not in hosts:
                    hosts.append(r.hosts[0])
            if len(hosts) < 2:
                return {}, "the configuration serves one virtual host on its listener"
            return {"hosts": hosts[:2], "path": "/"}, None
        if kind == "cache_key_complete":
            out = path_on(route, "path", "/cache/max-age/60")
            if "host" in (params.get("differing") or ["query"]):
                pair = self.same_server_hosts(route)
                if pair is None:
                    return {}, (f"the cached route {route.where()} is reached by one host name only, so a key "
                                "without the host cannot be told apart")
                out["hosts"] = pair
            return out, None
        if kind == "private_not_cached":
            paths = params.get("paths") or ([params["path"]] if params.get("path") else
                                            ["/cache/private", "/cache/no-store", "/cache/set-cookie"])
            return {"path": None, "paths": [self.translate(route, p) for p in paths]}, None
        if kind in ("access_log_complete", "request_id_propagated", "upstream_timing_logged"):
            if not self.access_log:
                return {}, "the configuration writes no access log"
            if kind == "request_id_propagated" and not self.request_id_header:
                return {}, "the configuration sends no request id upstream"
            if kind == "access_log_complete":
                if self.primary("cache") is None:  # a cache status means nothing without a cache
                    return {key: [f for f in params.get(key) or [] if f != "cache_status"]
                            for key in NARROWING if "cache_status" in (params.get(key) or [])}, None
                return {}, None
            return path_on(route, "path", "/echo"), None
        if kind == "forwarded_for_appended" and not self.forwarded_for:
            return {}, "the configuration does not set X-Forwarded-For"
        if kind == "metrics_exposed" and not self.metrics_path:
            return {}, "the configuration exposes no metrics endpoint"
        if kind == "content_length_matches":
            paths = params.get("paths") or ["/bytes/0", "/bytes/1", "/bytes/4096", "/bytes/100000"]
            cached = self.primary("cache")
            # a cacheable demo path goes to a caching route (HEAD is answered from the stored GET there);
            # without one it is left out: an uncached echo differs between GET and HEAD by design
            moved = [self.translate(cached if "/cache/" in p and cached else route, p) for p in paths
                     if "/cache/" not in p or cached]
            return {"paths": moved or [self.translate(route, "/bytes/4096")]}, None
        if kind in ("upstream_attempts_bounded", "no_retry_non_idempotent", "latency_bounded_under_fault",
                    "status_on_upstream_fault", "unhealthy_backend_avoided", "rate_limit_sheds",
                    "connection_limit_sheds", "reload_no_errors", "same_key_same_backend", "hop_by_hop_stripped",
                    "ambiguous_framing_rejected", "forwarded_for_appended", "cache_key_stable",
                    "vary_variants_isolated", "ttl_honored", "stale_bounded", "metrics_exposed"):
            defaults = {"upstream_attempts_bounded": "/flaky/echo", "no_retry_non_idempotent": "/flaky/echo",
                        "latency_bounded_under_fault": "/flaky/echo", "status_on_upstream_fault": "/flaky/echo",
                        "unhealthy_backend_avoided": "/flaky/echo", "rate_limit_sheds": "/limited/echo",
                        "connection_limit_sheds": "/limited/slow/1500", "reload_no_errors": "/api/echo",
                        "cache_key_stable": "/cache/max-age/60", "vary_variants_isolated": "/cache/vary/lang",
                        "ttl_honored": "/cache/max-age/2", "stale_bounded": "/cache/stale-if-error/1/2"}
            if kind == "connection_limit_sheds" and route.read_timeout_ms:
                # hold each connection for a while, but well inside the route's own read timeout
                slow = int(max(200, min(1500, route.read_timeout_ms * 0.6)))
                return {"path": self.translate(route, f"/slow/{slow}")}, None
            return path_on(route, "path", defaults.get(kind, "/echo")), None
        return {}, None

    def probe_host(self) -> str | None:
        """The host name plain requests carry (the primary route's first name)."""
        route = self.primary("any")
        return route.hosts[0] if route and route.hosts else None

    def same_server_hosts(self, route: Route) -> list[str] | None:
        """Two host names that reach the same route, or None when only one does.

        When the route's listener serves no other virtual host (or the route matches any host), a made-up
        second name reaches it too; otherwise a second ``server_name`` of the same server block is needed.
        """
        first = route.hosts[0] if route.hosts else "edge.test"
        others = {tuple(r.hosts) for r in self.routes if r.port == route.port} - {tuple(route.hosts)}
        if not route.hosts or not others:
            return [first, f"other.{first}"]
        if len(route.hosts) >= 2:
            return route.hosts[:2]
        return None

    def route_for_path(self, path: str) -> Route | None:
        """The route a request path falls under (longest prefix), on the primary listener."""
        best: Route | None = None
        for r in self.proxied(self.primary_port):
            if (r.match == "prefix" and path.startswith(r.location) or r.match != "prefix" and path == r.location) \
                    and (best is None or len(r.location) > len(best.location)):
                best = r
        return best


# -- NGINX --------------------------------------------------------------------------------------------
def duration_ms(text: str) -> float | None:
    """``1500ms``, ``2s``, ``1m``, ``60`` (seconds for NGINX, milliseconds for HAProxy: callers say which)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?", text.strip())
    if m is None:
        return None
    unit = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}.get(m.group(2) or "s", 1000)
    return float(m.group(1)) * unit


def _inherited(chain: list[Directive], name: str, top: list[Directive]) -> Directive | None:
    """The directive ``name`` as NGINX inherits it: the innermost block that sets it, else ``http``."""
    for block in reversed(chain):
        for d in block.block or []:
            if d.name == name:
                return d
    for d in top:
        if d.name == name:
            return d
    return None


def _listen_port(args: list[str]) -> str:
    return listen_port(args[0] if args else "80") or "80"


def listen_port(addr: str) -> str | None:
    """The port of an NGINX ``listen`` address (``80``, ``*:80``, ``[::]:443``, ``host``: 80)."""
    if addr.isdigit():
        return addr
    tail = addr.rsplit(":", 1)[-1] if ":" in addr else ""
    return tail if tail.isdigit() else ("80" if not addr.startswith("unix:") else None)


def _nginx_plan(config: EdgeConfig) -> ProbePlan:
    http = next((d for d in config.directives if d.name == "http"), None)
    top = http.block or [] if http else []
    groups = {d.args[0]: d for d in config.find("upstream") if d.args}
    routes: list[Route] = []
    tls_names: list[str] = []
    json_formats = {d.args[0] for d in config.find("log_format") if "{" in " ".join(d.args[1:])}
    access = [d for d in config.find("access_log") if d.args and d.args[0] != "off"]
    for server in config.find("server"):
        if not server.context or not server.context[-1].startswith("http") or server.block is None:
            continue
        ports = list(dict.fromkeys((_listen_port(d.args), "ssl" in d.args[1:]) for d in server.block
                                   if d.name == "listen")) or [("80", False)]
        names = [n for d in server.block if d.name == "server_name" for n in d.args if n not in ("_", '""', "")]
        mtls = any(d.name == "ssl_verify_client" and d.args[:1] in (["on"], ["optional"]) for d in server.block)
        if any(t for _, t in ports):
            tls_names += [n for n in names if n not in tls_names]
        for loc in (d for d in server.walk() if d.name == "location" and d.args):
            chain = [server] + [b for b in server.walk() if b.name == "location" and b.block is not None
                                and any(c is loc for c in b.walk())]
            match, location = ("prefix", loc.args[0]) if len(loc.args) == 1 else \
                ("exact" if loc.args[0] == "=" else "regex" if loc.args[0] in ("~", "~*") else "prefix", loc.args[1])
            own = {d.name: d for d in loc.block or []}
            target = own.get("proxy_pass")
            upstream = servers = None
            hashing = False
            if target is not None and target.args:
                host = re.sub(r"^[a-z]+://", "", target.args[0]).split("/", 1)[0]
                upstream = host
                group = groups.get(host)
                servers = len([d for d in group.block or [] if d.name == "server"]) if group else 1
                hashing = bool(group and any(d.name == "hash" and d.args and "uri" in d.args[0]
                                             for d in group.block or []))
            cache = _inherited(chain, "proxy_cache", top)
            key = _inherited(chain, "proxy_cache_key", top)
            retry = _inherited(chain, "proxy_next_upstream", top)
            read = _inherited(chain, "proxy_read_timeout", top)
            for port, tls in ports:
                routes.append(Route(
                    port=port, tls=tls, mtls=mtls and tls, hosts=names, location=location, match=match,
                    upstream=upstream, servers=servers or 0,
                    cache=cache.args[0] if cache and cache.args and cache.args[0] != "off" else None,
                    cache_key=" ".join(key.args) if key else ("$scheme$proxy_host$request_uri" if cache else None),
                    rate_limit=_inherited(chain, "limit_req", top) is not None,
                    conn_limit=_inherited(chain, "limit_conn", top) is not None,
                    retry=not (retry and retry.args == ["off"]), hashing=hashing,
                    read_timeout_ms=duration_ms(read.args[0]) if read and read.args else 60_000.0,
                    file=loc.file, line=loc.line))
    request_id = None
    for d in config.find("proxy_set_header"):
        if len(d.args) >= 2 and "$request_id" in d.args[1]:
            request_id = d.args[0]
    xff = any(len(d.args) >= 2 and d.args[0].lower() == "x-forwarded-for" for d in config.find("proxy_set_header"))
    # open-source NGINX has no Prometheus endpoint of its own (stub_status is another format): metrics are
    # claimed only through an exporter the configuration cannot show, so none is assumed
    plan = ProbePlan(proxy="nginx", routes=routes, access_log=bool(access),
                     access_log_json=any(len(d.args) > 1 and d.args[1] in json_formats for d in access),
                     request_id_header=request_id, forwarded_for=xff, metrics_path=None, tls_names=tls_names)
    return _choose_primary(plan)


# -- HAProxy ------------------------------------------------------------------------------------------
_HOST_FETCH = re.compile(r"^(?:req\.)?hdr(?:_dom|_end|_beg)?\((?:host|Host)\)")


def _limited(lines: list[Directive], acls: dict[str, tuple[str, list[str]]], marker: str) -> tuple[bool, set[str]]:
    """(frontend-wide, path prefixes) of a section's deny rules on ``marker`` (req_rate, conn_cur)."""
    wide, prefixes = False, set[str]()
    for d in lines:
        if d.name != "http-request" or not d.args or d.args[0] not in ("deny", "return", "tarpit"):
            continue
        text = " ".join(d.args)
        if marker not in text:
            continue
        paths = [v for a in d.args if a in acls and acls[a][0].startswith("path_beg") for v in acls[a][1]]
        paths += re.findall(r"path_beg\s+(\S+)", text)
        if paths:
            prefixes.update(p.rstrip("}").strip() for p in paths)
        else:
            wide = True
    return wide, prefixes


def _haproxy_plan(config: EdgeConfig) -> ProbePlan:
    sections = {(s.name, s.args[0] if s.args else ""): s for s in config.directives}
    backends = {s.args[0]: s for s in config.directives if s.name in ("backend", "listen") and s.args}
    routes: list[Route] = []
    tls_names: list[str] = []
    request_id = None
    xff = False
    access_json = False
    metrics = None

    def backend_facts(name: str) -> dict[str, Any]:
        b = backends.get(name)
        lines = b.block or [] if b else []
        words = [" ".join([d.name, *d.args]) for d in lines]
        defaults = next((s.block or [] for (k, _), s in sections.items() if k == "defaults"), [])
        dwords = [" ".join([d.name, *d.args]) for d in defaults]
        cache = next((d.args[1] for d in lines if d.name == "http-request" and d.args[:1] == ["cache-use"]
                      and len(d.args) > 1), None)
        return {
            "servers": len([d for d in lines if d.name == "server"]),
            "cache": cache,
            "cache_key": "host and URI (HAProxy cache)" if cache else None,
            # the checks key by URI: a balance on the source address or a header is another key
            "hashing": any(re.match(r"balance (uri|url_param)", w) for w in words),
            "retry": not any(w in ("retries 0",) for w in words + dwords),
            "rate_limit": any("req_rate" in w and ("deny" in w or "return" in w or "tarpit" in w) for w in words),
            "conn_limit": any("conn_cur" in w and ("deny" in w or "return" in w) for w in words),
            "read_timeout_ms": next((duration_ms(w.split()[2]) if w.split()[2][-1].isalpha()
                                     else float(w.split()[2]) for w in words + dwords
                                     if w.startswith("timeout server ") and len(w.split()) > 2), None),
        }

    for section in config.directives:
        if section.name not in ("frontend", "listen"):
            continue
        lines = section.block or []
        words = [" ".join([d.name, *d.args]) for d in lines]
        binds = [d for d in lines if d.name == "bind" and d.args]
        ports = []
        for b in binds:
            m = re.match(r"^.*:(\d+)$", b.args[0].split(",")[0])
            tls = "ssl" in b.args[1:]
            mtls = tls and any(b.args[i] == "verify" and b.args[i + 1] in ("required", "optional")
                               for i in range(1, len(b.args) - 1))
            ports.append((m.group(1) if m else "80", tls, mtls))
        acls: dict[str, tuple[str, list[str]]] = {}
        for d in lines:
            if d.name == "acl" and len(d.args) >= 2:
                acls.setdefault(d.args[0], (d.args[1], [a for a in d.args[2:] if not a.startswith("-")]))
        fe_rate, rate_paths = _limited(lines, acls, "req_rate")
        fe_conn, conn_paths = _limited(lines, acls, "conn_cur")
        if any(w.startswith("option forwardfor") for w in words):
            xff = True
        for d in lines:
            w = " ".join([d.name, *d.args])
            if d.name == "http-request" and "set-header" in d.args[:1] and len(d.args) > 2 and \
                    re.search(r"request-?id|correlation-?id", d.args[1], re.I):
                request_id = d.args[1]
            if d.name == "unique-id-header" and d.args:
                request_id = d.args[0]
            if d.name == "log-format" and " ".join(d.args).lstrip().startswith("{"):
                access_json = True
            if "prometheus-exporter" in w:
                metrics = "/metrics"
        rules: list[tuple[str, list[str], Directive]] = []
        for d in lines:
            if d.name == "use_backend" and d.args:
                rules.append((d.args[0], d.args[2:] if len(d.args) > 2 else [], d))
        default = next((d for d in lines if d.name == "default_backend" and d.args), None)
        if section.name == "listen" and section.args:
            default = section
        entries = rules + ([(default.args[0], [], default)] if default is not None else [])
        for backend, cond, where in entries:
            hosts: list[str] = []
            location, match = "/", "prefix"
            for name in cond:
                crit = acls.get(name.lstrip("!"))
                inline = " ".join(cond)
                if crit and _HOST_FETCH.match(crit[0]) or _HOST_FETCH.search(inline):
                    hosts += crit[1] if crit else re.findall(r"-i\s+(\S+)", inline)
                if crit and crit[0].startswith(("path_beg", "path")):
                    location = crit[1][0] if crit[1] else "/"
                    match = "prefix" if crit[0].startswith("path_beg") else "exact"
            facts = backend_facts(backend)
            for port, tls, mtls in ports:
                routes.append(Route(port=port, tls=tls, mtls=mtls, hosts=[h for h in hosts if h != "{"],
                                    location=location, match=match, upstream=backend, servers=facts["servers"],
                                    cache=facts["cache"], cache_key=facts["cache_key"],
                                    rate_limit=fe_rate or location in rate_paths or facts["rate_limit"],
                                    conn_limit=fe_conn or location in conn_paths or facts["conn_limit"],
                                    retry=facts["retry"],
                                    hashing=facts["hashing"], read_timeout_ms=facts["read_timeout_ms"],
                                    file=where.file, line=where.line))
                if tls:
                    tls_names += [h for h in hosts if h not in tls_names]
    if any(d.name == "option" and d.args[:1] == ["forwardfor"] for d in config.walk()):
        xff = True
    log_json = any(d.name == "log-format" and " ".join(d.args).lstrip().startswith("{") for d in config.walk())
    has_log = any(d.name == "log" for d in config.walk())
    plan = ProbePlan(proxy="haproxy", routes=routes, access_log=has_log and (access_json or log_json),
                     access_log_json=access_json or log_json, request_id_header=request_id, forwarded_for=xff,
                     metrics_path=metrics, tls_names=tls_names)
    return _choose_primary(plan)


def _choose_primary(plan: ProbePlan) -> ProbePlan:
    """The listener most proxied routes use (plain HTTP before TLS when they tie)."""
    counts: dict[str, tuple[int, int]] = {}
    for r in plan.proxied():
        n, plain = counts.get(r.port, (0, 0))
        counts[r.port] = (n + 1, plain + (0 if r.tls else 1))
    primary = max(counts, key=lambda p: counts[p]) if counts else None
    # a specific route comes before the catch-all: longer locations first, then file order
    routes = sorted(plan.routes, key=lambda r: (-len(r.location), r.file, r.line))
    return plan.model_copy(update={"primary_port": primary, "routes": routes})


def build_plan(config: EdgeConfig) -> ProbePlan:
    """The probe plan of a parsed configuration (see the module docstring)."""
    return _nginx_plan(config) if config.proxy == "nginx" else _haproxy_plan(config)


def explain(plan: ProbePlan) -> list[str]:
    """Lines describing the plan, for ``--explain`` and the evidence."""
    out = [f"primary listener: port {plan.primary_port}"]
    for r in plan.routes:
        feats = [f for f, on in (("TLS", r.tls), ("mTLS", r.mtls), (f"cache {r.cache} key {r.cache_key}", r.cache),
                                  ("rate limit", r.rate_limit), ("connection limit", r.conn_limit),
                                  ("retries", r.retry and bool(r.upstream)), ("hashing", r.hashing)) if on]
        target = f"-> {r.upstream} ({r.servers} server{'s' if r.servers != 1 else ''})" if r.upstream else \
            "-> not proxied"
        out.append(f"port {r.port} {','.join(r.hosts) or '*'} {r.match} {r.location} {target}"
                   + (f" [{'; '.join(feats)}]" if feats else "") + f"  ({r.file}:{r.line})")
    out.append(f"access log: {'JSON' if plan.access_log_json else 'yes' if plan.access_log else 'none'}; "
               f"request id header: {plan.request_id_header or 'none'}; X-Forwarded-For: "
               f"{'set' if plan.forwarded_for else 'not set'}; metrics: {plan.metrics_path or 'none'}")
    return out


def router(plan: ProbePlan) -> Router:
    """A function dressing each probe request for the route it falls under.

    It sets the route's host name (unless the check chose one), names the path the client asked for
    (``X-Poet-Path``: the instrumented upstream counts and scopes faults by it, whatever the proxy rewrote)
    and the demo behaviour to serve (``X-Poet-Serve``: the part of the path below the route's location).
    """
    import dataclasses
    from urllib.parse import urlsplit

    def dress(spec: RequestSpec) -> RequestSpec:
        only = urlsplit(spec.path).path if "://" in spec.path else spec.path.split("?", 1)[0]
        route = plan.route_for_path(only)
        if route is None:
            return spec
        headers = dict(spec.headers)
        lower = {k.lower() for k in headers}
        if "x-poet-path" not in lower:
            headers["X-Poet-Path"] = only
        if route.match == "prefix" and "x-poet-serve" not in lower:
            headers["X-Poet-Serve"] = "/" + only[len(route.location.rstrip("/")):].lstrip("/")
        host = spec.host
        if host is None and "host" not in lower and route.hosts:
            host = route.hosts[0]
        return dataclasses.replace(spec, headers=headers, host=host)

    return dress
