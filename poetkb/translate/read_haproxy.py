"""Read an HAProxy configuration (through :mod:`poetkb.edgeconfig`) into the translation subset.

Frontends become virtual hosts (one per host ACL their ``use_backend`` rules
name, plus the default), ``use_backend ... if { path_beg P }`` becomes a route,
and the backend's settings (balance, retries, timeouts, cache, checks, headers)
become the route's. Limits are the ``deny`` rules on ``sc_http_req_rate`` and
``sc_conn_cur`` with the paths their conditions name.
"""

from __future__ import annotations

import re

from poetkb.edgeconfig import Directive, EdgeConfig
from poetkb.translate import sources
from poetkb.translate.model import (
    Cache,
    ConnLimit,
    EdgeSpec,
    Header,
    HealthCheck,
    Listener,
    LogField,
    RateLimit,
    Retry,
    Route,
    Server,
    Timeouts,
    Upstream,
    VirtualHost,
)

ENVIRONMENT = frozenset({"mode", "log", "pidfile", "stats", "hard-stop-after", "nbthread", "maxconn", "daemon",
                         "user", "group", "chroot", "master-worker", "ssl-default-bind-options",
                         "ssl-default-bind-ciphers", "ssl-default-bind-ciphersuites", "tune.ssl.default-dh-param",
                         "description", "no", "unique-id-format"})
_OPTIONS_IGNORED = {"dontlognull", "http-buffer-request", "httplog", "http-server-close", "http-keep-alive"}
_RETRY_ON = {"conn-failure": "error", "empty-response": "error", "response-timeout": "timeout",
             "all-retryable-errors": "error"}
_BALANCE = {"roundrobin": "roundrobin", "static-rr": "roundrobin", "leastconn": "leastconn", "random": "random",
            "first": "roundrobin"}
_LOG_EXTRA = {"%[capture.req.method,json(utf8s)]": "method", "%[capture.req.uri,json(utf8s)]": "uri",
              "%[capture.req.method]": "method", "%[capture.req.uri]": "uri", "%[unique-id]": "request_id"}


def read_haproxy(config: EdgeConfig) -> EdgeSpec:
    spec = EdgeSpec(source_proxy="haproxy", source_file=config.path)
    reader = _Reader(spec)
    sections = {(d.name, d.args[0] if d.args else ""): d for d in config.directives}
    for d in config.directives:
        if d.name == "defaults":
            reader.defaults(d)
        elif d.name == "cache" and d.args:
            reader.cache_section(d)
        elif d.name in ("backend", "listen") and d.args:
            reader.backend(d)
    for d in config.directives:
        if d.name in ("frontend", "listen"):
            reader.frontend(d)
        elif d.name not in ("global", "defaults", "cache", "backend"):
            reader.skip(d, f"a {d.name} section is not part of the translated subset")
    reader.finish(sections)
    return spec


class _Backend:
    def __init__(self, name: str) -> None:
        self.upstream = Upstream(name=name, servers=[])
        self.retry: Retry | None = None
        self.timeouts = Timeouts()
        self.cache: Cache | None = None
        self.headers: list[Header] = []
        self.table: str | None = None
        self.line = 1


class _Reader:
    def __init__(self, spec: EdgeSpec) -> None:
        self.spec = spec
        self.health = HealthCheck()
        self.caches: dict[str, Cache] = {}
        self.backends: dict[str, _Backend] = {}
        self.vars: dict[str, str] = {}
        self.log_line: Directive | None = None
        self.paths: dict[str, str] = {}

    def skip(self, d: Directive, reason: str) -> None:
        self.spec.skip(d.file, d.line, " ".join([d.name, *d.args])[:160], reason)

    # -- defaults and cache ----------------------------------------------------------------------------
    def defaults(self, section: Directive) -> None:
        for d in section.block or []:
            if d.name in ENVIRONMENT:
                continue
            if d.name == "option" and d.args[:1] == ["forwardfor"]:
                self.spec.request_headers.append(Header(name="X-Forwarded-For", source="xff_appended", line=d.line))
            elif d.name == "log-format":
                self.log_line = d
            elif not self.common(d, self.spec.timeouts, None, self.health, section="defaults"):
                self.skip(d, "not part of the translated subset")

    def cache_section(self, section: Directive) -> None:
        cache = Cache(zone=section.args[0])
        for d in section.block or []:
            if d.name == "total-max-size":
                cache.max_size_mb = int(d.args[0])
            elif d.name == "max-age":
                cache.max_age_s = int(d.args[0])
            elif d.name == "process-vary":
                cache.honor_vary = d.args[:1] == ["on"]
        self.caches[cache.zone] = cache

    def common(self, d: Directive, timeouts: Timeouts, be: _Backend | None, health: HealthCheck,
               section: str) -> bool:
        name, args = d.name, d.args
        if name == "timeout" and len(args) == 2:
            field = {"connect": "connect_ms", "server": "read_ms", "client": "client_ms",
                     "http-keep-alive": "keepalive_ms", "http-request": "request_header_ms"}.get(args[0])
            if field is None:
                self.skip(d, f"timeout {args[0]} has no NGINX equivalent")
            else:
                setattr(timeouts, field, sources.haproxy_ms(args[1]))
            return True
        retry = self.spec.retry if be is None else (be.retry or Retry())
        if name == "retries":
            retry.tries = int(args[0]) + 1
        elif name == "retry-on":
            on = []
            for word in args:
                cond = _RETRY_ON.get(word) or (word if word.isdigit() else None)
                if cond is None:
                    self.skip(d, f"retry-on {word} has no NGINX equivalent")
                elif cond not in on:
                    on.append(cond)
            retry.on = on
        elif name == "option" and args[:1] == ["redispatch"]:
            pass
        elif name == "option" and args[:1] == ["httpchk"]:
            health.path = args[-1] if len(args) > 1 else "/"
            health.line = d.line
        elif name == "default-server":
            self.server_options(d, args, health, None)
        elif name == "option" and args[:1] and args[0] in _OPTIONS_IGNORED:
            pass
        else:
            return False
        if be is not None and name in ("retries", "retry-on"):
            be.retry = retry
        return True

    def server_options(self, d: Directive, args: list[str], health: HealthCheck, server: Server | None) -> None:
        i = 0
        while i < len(args):
            word = args[i]
            value = args[i + 1] if i + 1 < len(args) else ""
            if word == "inter":
                health.interval_ms = sources.haproxy_ms(value) or health.interval_ms
            elif word in ("fall", "rise"):
                setattr(health, word, int(value))
            elif word == "error-limit":
                health.max_fails = int(value)
            elif word == "weight" and server is not None:
                server.weight = int(value)
            elif word in ("observe", "on-error"):
                pass
            elif word == "backup" and server is not None:
                server.backup = True
                i += 1
                continue
            elif word == "check":
                i += 1
                continue
            else:
                self.skip(d, f"server option {word!r} is not translated")
                i += 1
                continue
            i += 2

    # -- backends ------------------------------------------------------------------------------------
    def backend(self, section: Directive) -> None:
        be = _Backend(re.sub(r"^be_", "", section.args[0]))
        be.line = section.line
        be.upstream.line = section.line
        health = self.health.model_copy()
        for d in section.block or []:
            name, args = d.name, d.args
            if name in ENVIRONMENT:
                continue
            if name == "stick-table":
                be.table = " ".join(args)
            elif name == "balance":
                if args[0] in _BALANCE:
                    be.upstream.balance = _BALANCE[args[0]]  # type: ignore[assignment]
                    if args[0] == "first":
                        self.skip(d, "NGINX has no `balance first`: the servers after the first become backup servers")
                else:
                    key = {"uri": "uri" if "whole" in args else "path", "source": "client"}.get(args[0])
                    match = re.fullmatch(r"hdr\(([A-Za-z0-9-]+)\)", args[0])
                    key = key or (sources.header_source(match.group(1)) if match else None)
                    key = key or (f"arg:{args[1]}" if args[0] == "url_param" and len(args) > 1 else None)
                    if key is None:
                        self.skip(d, "this balance algorithm has no NGINX equivalent")
                    else:
                        be.upstream.balance, be.upstream.hash_key = "hash", key
            elif name == "hash-type":
                be.upstream.consistent = args[:1] == ["consistent"]
            elif name == "server" and len(args) >= 2:
                server = Server(address=args[1])
                self.server_options(d, args[2:], health, server)
                be.upstream.servers.append(server)
            elif name == "http-request" and args[:1] == ["cache-use"]:
                be.cache = (self.caches.get(args[1]) or Cache(zone=args[1])).model_copy()
            elif name == "http-request" and args[:1] == ["disable-l7-retry"]:
                pass  # idempotent-only retries, NGINX's default
            elif name == "http-response" and args[:1] == ["cache-store"]:
                pass
            elif name == "http-response" and args[:2] == ["del-header", "Vary"] and be.cache:
                be.cache.honor_vary = False
            elif name in ("http-response", "http-after-response") and args[:1] and \
                    args[0].startswith("set-var") and "cache_status" in args[0]:
                pass
            elif name in ("http-response", "http-after-response") and args[:1] == ["set-header"]:
                if "cache_status" in " ".join(args) and be.cache:
                    be.cache.status_header = args[1]
                else:
                    self.header_rule(d, be.headers, always=name == "http-after-response")
            elif not self.common(d, be.timeouts, be, health, section="backend"):
                self.skip(d, "not part of the translated subset")
        if any(d.name == "balance" and d.args[:1] == ["first"] for d in section.block or []):
            for server in be.upstream.servers[1:]:
                server.backup = True  # `first` keeps to the first server while it is up: the others back it up
        be.upstream.health = health
        if be.retry is not None and be.retry.tries is None:
            be.retry.tries = self.spec.retry.tries
        self.backends[section.args[0]] = be

    def header_rule(self, d: Directive, into: list[Header], *, always: bool) -> None:
        guard = re.fullmatch(r"if \{ var\(([a-z]+\.[A-Za-z0-9_]+)\) -m found \}", " ".join(d.args[3:]))
        if guard and d.args[2] == f"%[var({guard.group(1)})]":
            d = d.model_copy(update={"args": d.args[:3]})  # set only when the variable is: the same header
        if len(d.args) < 3 or "if" in d.args or "unless" in d.args:
            self.skip(d, "a conditional header rule is not translated")
            return
        value = self.resolve(d.args[2])
        if value is None:
            self.skip(d, f"the value {d.args[2]!r} has no NGINX equivalent")
        else:
            into.append(Header(name=d.args[1], source=value, always=always, line=d.line))

    def resolve(self, value: str) -> str | None:
        match = re.fullmatch(r"%\[var\(([a-z]+\.[A-Za-z0-9_]+)\)(?:,json\(utf8s\))?\]", value)
        if match:
            return self.vars.get(match.group(1))
        return sources.from_haproxy_sample(value)

    # -- frontends -----------------------------------------------------------------------------------
    def frontend(self, section: Directive) -> None:
        listeners: list[Listener] = []
        acls: dict[str, list[str]] = {}
        vhosts: dict[str, VirtualHost] = {}
        routes: list[tuple[str, Route]] = []
        limits: list[tuple[str, list[str], Directive]] = []
        for d in section.block or []:
            name, args = d.name, d.args
            if name == "bind":
                listeners.append(self.bind(d))
            elif name == "acl" and len(args) >= 4 and args[1].startswith(("req.hdr(host)", "hdr(host)")):
                acls[args[0]] = [a for a in args[2:] if not a.startswith("-")]
            elif name == "acl" and len(args) == 3 and args[1] in ("path_beg", "path"):
                self.paths[args[0]] = f"{args[1]} {args[2]}"
            elif name in ("use_backend", "default_backend"):
                host, route = self.use(d, acls)
                if route is not None:
                    routes.append((host, route))
            elif name == "http-request":
                self.frontend_rule(d, routes, limits)
            elif name == "http-after-response" and args[:1] == ["set-header"]:
                self.header_rule(d, self.spec.response_headers, always=True)
            elif name == "http-response" and args[:1] == ["set-header"]:
                self.header_rule(d, self.spec.response_headers, always=False)
            elif name == "http-response" and args[:2] == ["set-log-level", "silent"]:
                self.spec.log_errors = False
                self.skip(d, "a conditional access log is not translated: every request is logged")
            elif name in ENVIRONMENT:
                continue
            elif not self.common(d, self.spec.timeouts, None, self.health, section="frontend"):
                self.skip(d, "not part of the translated subset")
        for kind, conds, d in limits:
            paths = [c for c in conds if c.startswith(("path_beg ", "path "))]
            hits = [r for _, r in routes if not paths or any(c.split()[1] == r.path for c in paths)]
            fallback = next((r for _, r in routes if r.path == "/" and r.upstream), None)
            if not hits and paths and fallback is not None:  # the limited path goes to the default backend
                for c in paths:
                    extra = fallback.model_copy(update={"path": c.split()[1], "exact": c.startswith("path "),
                                                        "line": d.line}, deep=True)
                    routes.append(("", extra))
                    hits.append(extra)
            if not hits:
                self.skip(d, "the limit's path matches no route")
            for route in hits:
                number = int(re.search(r"gt (\d+)", " ".join(conds)).group(1))  # type: ignore[union-attr]
                status = int(d.args[d.args.index("deny_status") + 1]) if "deny_status" in d.args else 403
                if kind == "rate":
                    route.rate_limit = RateLimit(rate=number, burst=number, status=status)
                else:
                    route.conn_limit = ConnLimit(connections=number, status=status)
        for host, route in routes:
            vhost = vhosts.setdefault(host, VirtualHost(names=acls.get(host, []),
                                                        listeners=[lis.model_copy() for lis in listeners],
                                                        line=section.line))
            vhost.routes.append(route)
        if "" not in vhosts and vhosts:
            vhosts[""] = VirtualHost(listeners=[lis.model_copy() for lis in listeners], line=section.line,
                                     routes=[Route(path="/", status=503, line=section.line)])
        for key, vhost in vhosts.items():
            if key == "":
                for lis in vhost.listeners:
                    lis.default = True
            self.spec.vhosts.append(vhost)

    def bind(self, d: Directive) -> Listener:
        host, _, port = d.args[0].rpartition(":")
        lis = Listener(address=host or "0.0.0.0", port=int(port), tls="ssl" in d.args)  # noqa: S104
        words = d.args
        for i, word in enumerate(words[:-1]):
            if word == "crt":
                lis.certificate = lis.key = words[i + 1]
            elif word == "ca-file":
                lis.client_ca = words[i + 1]
            elif word == "verify" and words[i + 1] in ("required", "optional"):
                lis.verify = words[i + 1]  # type: ignore[assignment]
            elif word == "ssl-min-ver":
                lis.min_tls = words[i + 1]
        return lis

    def use(self, d: Directive, acls: dict[str, list[str]]) -> tuple[str, Route | None]:
        backend = self.backends.get(d.args[0])
        if backend is None:
            self.skip(d, "its backend was not read")
            return "", None
        conds = [self.paths.get(c, c) for c in _conditions(d.args[1:])]
        host = next((c for c in conds if c in acls), "")
        path = next((c for c in conds if c.startswith(("path_beg ", "path "))), None)
        others = [c for c in conds if c != host and c != path]
        if others:
            self.skip(d, f"conditions {others} are not translated; routed on the path only")
        route = Route(path=path.split()[1] if path else "/", exact=bool(path and path.startswith("path ")),
                      upstream=backend.upstream.name, cache=backend.cache, retry=backend.retry,
                      timeouts=backend.timeouts, response_headers=list(backend.headers), line=d.line)
        if self.spec.upstream(backend.upstream.name) is None:
            self.spec.upstreams.append(backend.upstream)
        return host, route

    def frontend_rule(self, d: Directive, routes: list[tuple[str, Route]],
                      limits: list[tuple[str, list[str], Directive]]) -> None:
        args = d.args
        action = args[0]
        conds = [self.paths.get(c, c) for c in _conditions(args[1:])]
        if action.startswith("set-var(") and len(args) >= 2:
            var = action[len("set-var("):-1]
            expr = args[1]
            match = re.match(r"req\.f?hdr\(([A-Za-z0-9-]+)\)", expr)
            if expr.startswith("uuid") or expr.startswith("unique-id"):
                self.vars[var] = "request_id"
            elif match and match.group(1).lower() == "host":
                self.vars[var] = "host"
            elif match and "if" not in args:
                self.vars.setdefault(var, sources.header_source(match.group(1).lower()))
            else:
                self.skip(d, "this variable has no NGINX equivalent")
        elif action.startswith("track-sc"):
            return
        elif action == "deny" and any("sc_http_req_rate" in c for c in conds):
            limits.append(("rate", conds, d))
        elif action == "deny" and any("sc_conn_cur" in c for c in conds):
            limits.append(("conn", conds, d))
        elif action == "deny" and conds and all(c.startswith(("path_beg ", "path ")) for c in conds):
            status = int(args[args.index("deny_status") + 1]) if "deny_status" in args else 403
            for c in conds:
                routes.insert(0, ("", Route(path=c.split()[1], exact=c.startswith("path "), status=status,
                                            line=d.line)))
        elif action == "del-header" and len(args) == 2:
            self.spec.request_headers.append(Header(name=args[1], source="", line=d.line))
        elif action == "set-header" and len(args) >= 3:
            if args[3:] in (["if", "{", "ssl_fc", "}"], ["unless", "{", "ssl_fc", "}"]):
                if not any(h.name == args[1] for h in self.spec.request_headers):
                    self.spec.request_headers.append(Header(name=args[1], source="scheme", line=d.line))
                return
            self.header_rule(d, self.spec.request_headers, always=False)
        else:
            self.skip(d, "this request rule is not part of the translated subset")

    def finish(self, sections: dict) -> None:  # noqa: ARG002
        if self.log_line is None:
            return
        d = self.log_line
        text = " ".join(d.args)
        for key, quoted, item in re.findall(r'"([A-Za-z0-9_]+)":(")?(%\[[^\]]*\]|%[A-Za-z]+(?:[.:]%[A-Za-z]+)?)',
                                            text):
            source = _LOG_EXTRA.get(item) or sources.from_haproxy_log(item) or self.resolve(item)
            if source is None or sources.to_nginx(source) is None:
                self.spec.skip(d.file, d.line, f"log field {key}={item}", "this value has no NGINX equivalent")
                continue
            self.spec.log.append(LogField(key=key, source=source, number=not quoted, line=d.line))


def _conditions(words: list[str]) -> list[str]:
    """The terms of an ``if`` condition: anonymous ACLs ``{ ... }`` and ACL names (``||`` and ``!`` kept)."""
    start = next((i for i, w in enumerate(words) if w in ("if", "unless")), None)
    if start is None:
        return []
    out: list[str] = []
    current: list[str] = []
    inside = False
    for word in words[start + 1:]:
        if word == "{":
            inside, current = True, []
        elif word == "}":
            inside = False
            out.append(" ".join(current))
        elif inside:
            current.append(word)
        elif word != "||":
            out.append(word)
    return out
