"""Read an NGINX configuration (through :mod:`poetkb.edgeconfig`) into the translation subset."""

from __future__ import annotations

import re

from poetkb.edgeconfig import Directive, EdgeConfig
from poetkb.translate import sources
from poetkb.translate.model import (
    Cache,
    ConnLimit,
    EdgeSpec,
    Header,
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

#: Directives that tie a file to its host (paths, processes, buffers) and carry no obligation: not translated,
#: not listed either (the own-edge bring-up sets them for a process on loopback).
ENVIRONMENT = frozenset({
    "user", "daemon", "master_process", "worker_processes", "pid", "error_log", "events", "worker_connections",
    "default_type", "server_tokens", "client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path",
    "uwsgi_temp_path", "scgi_temp_path", "zone", "keepalive", "ssl_session_cache", "ssl_session_timeout",
    "proxy_http_version", "include", "types", "sendfile", "tcp_nopush", "tcp_nodelay", "worker_rlimit_nofile",
    "multi_accept", "use", "gzip", "charset", "resolver", "proxy_buffering", "proxy_buffers", "proxy_buffer_size",
    "client_max_body_size", "ssl_prefer_server_ciphers", "ssl_ciphers", "access_log_off",
})
_NEXT = {"error": "error", "timeout": "timeout", "http_500": "500", "http_502": "502", "http_503": "503",
         "http_504": "504", "http_429": "429"}
_HASH_KEYS = {"$request_uri": "uri", "$remote_addr": "client", "$binary_remote_addr": "client", "$uri": "path"}


def read_nginx(config: EdgeConfig) -> EdgeSpec:
    spec = EdgeSpec(source_proxy="nginx", source_file=config.path)
    state = _State(spec)
    for top in config.directives:
        if top.name == "http":
            state.http(top.block or [])
        elif top.name not in ENVIRONMENT:
            state.skip(top, "outside the http block (stream, mail) is not part of the subset")
    state.finish()
    return spec


class _State:
    def __init__(self, spec: EdgeSpec) -> None:
        self.spec = spec
        self.formats: dict[str, tuple[Directive, str]] = {}
        self.zones: dict[str, Directive] = {}
        self.rate_zones: dict[str, int] = {}
        self.conn_zones: set[str] = set()
        self.limit_status = {"req": 503, "conn": 503}
        self.tls: dict[str, str] = {}
        self.access: Directive | None = None
        self.aliases: dict[str, str] = {}

    def skip(self, d: Directive, reason: str) -> None:
        self.spec.skip(d.file, d.line, " ".join([d.name, *d.args])[:160], reason)

    # -- http level -------------------------------------------------------------------------------
    def http(self, block: list[Directive]) -> None:
        servers = []
        for d in block:
            name, args = d.name, d.args
            if name in ENVIRONMENT:
                continue
            if name == "map":
                self.map(d)
            elif name == "upstream":
                self.upstream(d)
            elif name == "server":
                servers.append(d)
            elif name == "log_format" and len(args) >= 2:
                text = "".join(a for a in args[1:] if not a.startswith("escape="))
                self.formats[args[0]] = (d, text)
            elif name == "access_log":
                self.access = d
                if any(a.startswith("if=") for a in args):
                    self.spec.log_errors = False
                    self.skip(d, "a conditional access log (if=) is not translated: every request is logged")
            elif name == "proxy_cache_path":
                for a in args:
                    if a.startswith("keys_zone="):
                        self.zones[a.split("=", 1)[1].split(":")[0]] = d
            elif name == "limit_req_zone":
                self.rate_zone(d)
            elif name == "limit_conn_zone":
                self.conn_key(d)
            elif name in ("limit_req_status", "limit_conn_status"):
                self.limit_status[name.split("_")[1]] = int(args[0])
            elif name in ("ssl_certificate", "ssl_certificate_key", "ssl_protocols", "ssl_client_certificate",
                          "ssl_verify_client", "ssl_verify_depth", "ssl_trusted_certificate"):
                self.tls[name] = " ".join(args)
            elif not self.common(d, self.spec.timeouts, self.spec.retry, self.spec.request_headers,
                                 self.spec.response_headers):
                self.skip(d, _why(d))
        for d in servers:
            self.server(d)

    def map(self, d: Directive) -> None:
        """A map whose default is a known variable stands for that variable (its other entries are listed)."""
        default = next((item.args[0] for item in d.block or [] if item.name == "default" and item.args), None)
        source = sources.from_nginx(default) if default is not None else None
        if len(d.args) == 2 and source and not source.startswith("literal:") and source != "":
            self.aliases[d.args[1]] = source
            self.skip(d, f"read as its default {default}; the map's other entries are not translated")
        else:
            self.skip(d, "NGINX `map` logic has no general HAProxy translation")

    def rate_zone(self, d: Directive) -> None:
        zone = next((a.split("=", 1)[1].split(":")[0] for a in d.args if a.startswith("zone=")), None)
        rate = next((a.split("=", 1)[1] for a in d.args if a.startswith("rate=")), "")
        match = re.fullmatch(r"(\d+)r/(s|m)", rate)
        if zone is None or match is None or d.args[0] not in ("$binary_remote_addr", "$remote_addr"):
            self.skip(d, "only per-client rate zones (key $binary_remote_addr, rate N r/s or r/m) are translated")
            return
        per_s = int(match.group(1)) if match.group(2) == "s" else max(1, int(match.group(1)) // 60)
        self.rate_zones[zone] = per_s

    def conn_key(self, d: Directive) -> None:
        zone = next((a.split("=", 1)[1].split(":")[0] for a in d.args if a.startswith("zone=")), None)
        if zone is None or d.args[0] not in ("$binary_remote_addr", "$remote_addr"):
            self.skip(d, "only per-client connection zones are translated")
            return
        self.conn_zones.add(zone)

    def common(self, d: Directive, timeouts: Timeouts, retry: Retry, request: list[Header],
               response: list[Header]) -> bool:
        """Directives valid at http, server and location level; False when ``d`` is none of them."""
        name, args = d.name, d.args
        timeout_fields = {"proxy_connect_timeout": "connect_ms", "proxy_read_timeout": "read_ms",
                          "proxy_send_timeout": "send_ms", "keepalive_timeout": "keepalive_ms",
                          "client_header_timeout": "request_header_ms", "send_timeout": "client_ms"}
        if name in timeout_fields:
            ms = sources.duration_ms(args[0]) if args else None
            if ms is None:
                self.skip(d, "unreadable duration")
            else:
                setattr(timeouts, timeout_fields[name], ms)
            return True
        if name == "proxy_next_upstream":
            retry.on = [] if args == ["off"] else [_NEXT[a] for a in args if a in _NEXT]
            retry.non_idempotent = "non_idempotent" in args
            if args != ["off"] and any(a not in _NEXT and a != "non_idempotent" for a in args):
                self.skip(d, "conditions other than error, timeout and http_5xx/429 are not translated")
            if args == ["off"]:
                retry.tries = 1
            return True
        if name == "proxy_next_upstream_tries":
            retry.tries = int(args[0])
            return True
        if name == "proxy_next_upstream_timeout":
            return True
        if name == "proxy_set_header" and len(args) == 2:
            source = sources.from_nginx(args[1], self.aliases)
            if source is None:
                self.skip(d, f"the value {args[1]!r} has no HAProxy equivalent here")
            else:
                request.append(Header(name=args[0], source=source, line=d.line))
            return True
        if name == "add_header" and len(args) >= 2:
            source = sources.from_nginx(args[1], self.aliases)
            if source is None:
                self.skip(d, f"the value {args[1]!r} has no HAProxy equivalent here")
            else:
                response.append(Header(name=args[0], source=source, always="always" in args[2:], line=d.line))
            return True
        return False

    # -- upstreams ----------------------------------------------------------------------------------
    def upstream(self, d: Directive) -> None:
        ups = Upstream(name=d.args[0], servers=[], line=d.line)
        for item in d.block or []:
            if item.name == "server":
                self.upstream_server(ups, item)
            elif item.name == "least_conn":
                ups.balance = "leastconn"
            elif item.name == "random":
                ups.balance = "random"
            elif item.name == "ip_hash":
                ups.balance, ups.hash_key = "hash", "client"
            elif item.name == "hash":
                key = _HASH_KEYS.get(item.args[0]) if item.args else None
                if key is None and item.args and item.args[0].startswith("$http_"):
                    key = sources.header_source(item.args[0][6:].replace("_", "-"))
                if key is None and item.args and item.args[0].startswith("$arg_"):
                    key = "arg:" + item.args[0][5:]
                if key is None:
                    self.skip(item, "only $request_uri, $uri, $remote_addr, $http_* and $arg_* hash keys translate")
                else:
                    ups.balance, ups.hash_key = "hash", key
                    ups.consistent = "consistent" in item.args[1:]
            elif item.name not in ENVIRONMENT:
                self.skip(item, _why(item))
        self.spec.upstreams.append(ups)

    def upstream_server(self, ups: Upstream, d: Directive) -> None:
        server = Server(address=d.args[0], backup="backup" in d.args)
        for a in d.args[1:]:
            key, _, value = a.partition("=")
            if key == "weight":
                server.weight = int(value)
            elif key == "max_fails":
                ups.health.max_fails = int(value)
            elif key == "fail_timeout":
                ups.health.fail_timeout_ms = sources.duration_ms(value)
            elif a not in ("backup",):
                self.skip(d, f"server option {a!r} is not translated")
        ups.servers.append(server)

    # -- servers and locations ------------------------------------------------------------------------
    def server(self, d: Directive) -> None:
        vhost = VirtualHost(listeners=[], line=d.line)
        tls = dict(self.tls)
        locations = []
        server_headers: list[Header] = []
        for item in d.block or []:
            if item.name == "listen":
                vhost.listeners.append(_listener(item))
            elif item.name == "server_name":
                vhost.names = [n for n in item.args if n not in ("_", '""', "")]
            elif item.name.startswith("ssl_"):
                tls[item.name] = " ".join(item.args)
            elif item.name == "location":
                locations.append(item)
            elif item.name in ENVIRONMENT or item.name in ("access_log",):
                continue
            elif item.name == "return":
                vhost.routes.append(Route(path="/", status=int(item.args[0]), line=item.line))
            elif item.name == "add_header" and len(item.args) >= 2:
                self.common(item, Timeouts(), Retry(), [], server_headers)
            else:
                self.skip(item, _why(item))
        for lis in vhost.listeners:
            if lis.tls:
                lis.certificate, lis.key = tls.get("ssl_certificate"), tls.get("ssl_certificate_key")
                if "TLSv1" not in tls.get("ssl_protocols", "TLSv1.2").split():
                    lis.min_tls = "TLSv1.2" if "TLSv1.1" not in tls.get("ssl_protocols", "") else None
                if tls.get("ssl_verify_client") in ("on", "optional"):
                    lis.verify = "required" if tls["ssl_verify_client"] == "on" else "optional"
                    lis.client_ca = tls.get("ssl_client_certificate")
        for loc in locations:
            self.location(vhost, loc)
            if server_headers and not any(item.name == "add_header" for item in loc.block or []):
                vhost.routes[-1].response_headers[:0] = server_headers  # NGINX inherits add_header only then
        self.spec.vhosts.append(vhost)

    def location(self, vhost: VirtualHost, d: Directive) -> None:
        args = d.args
        if len(args) == 2 and args[0] in ("=", "^~"):
            route = Route(path=args[1], exact=args[0] == "=", line=d.line)
        elif len(args) == 1:
            route = Route(path=args[0], line=d.line)
        else:
            self.skip(d, "regular-expression locations are not translated")
            return
        retry = Retry()
        headers: list[Header] = []
        for item in d.block or []:
            name, a = item.name, item.args
            if name == "proxy_pass":
                match = re.fullmatch(r"https?://([^/]+)/?", a[0])
                if match is None:
                    self.skip(item, "a proxy_pass with a URI part or a variable is not translated")
                elif self.spec.upstream(match.group(1)) is None:
                    name_ = f"up_{len(self.spec.upstreams) + 1}"
                    self.spec.upstreams.append(Upstream(name=name_, servers=[Server(address=match.group(1))],
                                                        line=item.line))
                    route.upstream = name_
                else:
                    route.upstream = match.group(1)
            elif name == "return" and a and a[0].isdigit():
                route.status = int(a[0])
                if len(a) > 1:
                    self.skip(item, "the response body of return is not translated (the status is)")
            elif name == "proxy_cache":
                route.cache = Cache(zone=a[0])
            elif name == "limit_req":
                zone = next((x.split("=", 1)[1] for x in a if x.startswith("zone=")), "")
                burst = next((int(x.split("=", 1)[1]) for x in a if x.startswith("burst=")), 0)
                if zone in self.rate_zones:
                    route.rate_limit = RateLimit(rate=self.rate_zones[zone], burst=burst,
                                                 status=self.limit_status["req"])
                    if "nodelay" not in a and burst:
                        self.skip(item, "a burst without nodelay is delayed by NGINX; HAProxy refuses it instead")
                else:
                    self.skip(item, "its zone was not translated")
            elif name == "limit_conn":
                if a[0] in self.conn_zones:
                    route.conn_limit = ConnLimit(connections=int(a[1]), status=self.limit_status["conn"])
                else:
                    self.skip(item, "its zone was not translated")
            elif name in ("proxy_cache_key", "proxy_ignore_headers", "proxy_cache_valid", "proxy_cache_use_stale"):
                continue  # read below, once proxy_cache is known
            elif name in ENVIRONMENT or name in ("internal",):
                continue
            elif not self.common(item, route.timeouts, retry, headers, route.response_headers):
                self.skip(item, _why(item))
        if headers:
            for item in d.block or []:
                if item.name == "proxy_set_header":
                    self.skip(item, "location-level request headers are translated to the whole edge only when "
                                    "set at http level; this one is not carried over")
        if retry != Retry():
            route.retry = retry
        if route.cache is not None:
            self.cache(route, d)
        else:
            for item in d.block or []:
                if item.name.startswith("proxy_cache_") or item.name == "proxy_ignore_headers":
                    self.skip(item, "a cache setting where this location has no proxy_cache is not translated")
        vhost.routes.append(route)

    def cache(self, route: Route, d: Directive) -> None:
        assert route.cache is not None
        zone = self.zones.get(route.cache.zone)
        if zone is not None:
            size = next((a.split("=", 1)[1] for a in zone.args if a.startswith("max_size=")), "")
            if re.fullmatch(r"\d+[mM]", size):
                route.cache.max_size_mb = int(size[:-1])
        for item in d.block or []:
            if item.name == "proxy_cache_key":
                key = re.findall(r"\$[a-z_]+", item.args[0])
                names = [{"$scheme": "scheme", "$host": "host", "$request_uri": "uri", "$uri": "path",
                          "$args": "query", "$is_args": None}.get(k, "?") for k in key]
                if "?" in names:
                    self.skip(item, "only $scheme, $host, $request_uri, $uri, $args make a translatable cache key")
                route.cache.key = [n for n in names if n and n != "?"]
            elif item.name == "proxy_ignore_headers":
                if "Vary" in item.args:
                    route.cache.honor_vary = False
                if set(item.args) - {"Vary"}:
                    self.skip(item, "ignoring headers other than Vary is not translated")
            elif item.name == "proxy_cache_valid":
                ms = sources.duration_ms(item.args[-1])
                route.cache.max_age_s = ms // 1000 if ms else None
            elif item.name == "proxy_cache_use_stale":
                self.skip(item, "HAProxy's cache does not serve stale responses")
        for h in route.response_headers:
            if h.source == "cache_status":
                route.cache.status_header = h.name
        route.response_headers = [h for h in route.response_headers if h.source != "cache_status"]

    def finish(self) -> None:
        if self.access is not None and len(self.access.args) >= 2 and self.access.args[1] in self.formats:
            d, text = self.formats[self.access.args[1]]
            self.spec.log = _json_fields(text, lambda v: sources.from_nginx(v, self.aliases), d, self.spec)
        elif self.access is not None and self.access.args[:1] != ["off"]:
            self.skip(self.access, "only a JSON log_format is translated")


def _json_fields(text: str, convert, d: Directive, spec: EdgeSpec) -> list[LogField]:  # noqa: ANN001
    """The keys and sources of a one-object JSON log format."""
    fields = []
    for key, quoted, value in re.findall(r'"([A-Za-z0-9_]+)":(")?([^",}]*)', text):
        source = convert(value)
        if source is None or source.startswith("literal:"):
            spec.skip(d.file, d.line, f"log field {key}={value}", "this value has no equivalent on the other proxy")
            continue
        fields.append(LogField(key=key, source=source, number=not quoted, line=d.line))
    return fields


def _listener(d: Directive) -> Listener:
    where = d.args[0]
    host, _, port = where.rpartition(":")
    if not port.isdigit():
        host, port = "", where
    lis = Listener(address=host or "0.0.0.0", port=int(port), tls="ssl" in d.args[1:],  # noqa: S104
                   default="default_server" in d.args[1:])
    return lis


def _why(d: Directive) -> str:
    if d.name in ("if", "set", "map", "rewrite"):
        return f"NGINX `{d.name}` logic has no general HAProxy translation"
    return "not part of the translated subset"
