"""Write the translation subset as an HAProxy 2.6 configuration.

One frontend per distinct set of listeners; virtual hosts sharing a frontend are
told apart by named ACLs on the Host header (the default one is "none of the
others"). Each route gets its own backend when its settings differ (timeouts,
retries, cache), so per-location NGINX settings keep their scope. Rule order
follows NGINX location matching: exact paths first, then prefixes longest first.
"""

from __future__ import annotations

import re

from poetkb.translate import sources
from poetkb.translate.model import EdgeSpec, Retry, Route, Upstream, VirtualHost

DEFAULT_MS = 60_000


def write_haproxy(spec: EdgeSpec) -> str:
    return _Writer(spec).text()


def _name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "root"


def route_order(routes: list[Route]) -> list[Route]:
    """NGINX matching order: exact locations, then prefixes from the longest."""
    return sorted(routes, key=lambda r: (not r.exact, -len(r.path)))


class _Writer:
    def __init__(self, spec: EdgeSpec) -> None:
        self.spec = spec
        self.lines: list[str] = []
        self.backends: dict[str, list[str]] = {}
        self.tables: list[str] = []
        self.caches: dict[str, list[str]] = {}
        uses = [h.source for h in [*spec.request_headers, *spec.response_headers]] + [f.source for f in spec.log]
        uses += [h.source for v in spec.vhosts for r in v.routes for h in r.response_headers]
        self.uses = set(uses)

    def text(self) -> str:
        spec = self.spec
        out = [f"# translated by poetkb from {spec.source_file} ({spec.source_proxy}); see docs/translate.md",
               "global", "    log stdout format raw local0 info", "", "defaults", "    mode http", "    log global"]
        t = spec.timeouts
        if any(h.name.lower() == "x-forwarded-for" and h.source == "xff_appended" for h in spec.request_headers):
            out.append("    option forwardfor")
        out += [f"    timeout connect {sources.format_ms(t.connect_ms or DEFAULT_MS)}",
                f"    timeout client {sources.format_ms(t.client_ms or DEFAULT_MS)}",
                f"    timeout server {sources.format_ms(t.read_ms or DEFAULT_MS)}"]
        if t.request_header_ms:
            out.append(f"    timeout http-request {sources.format_ms(t.request_header_ms)}")
        if t.keepalive_ms:
            out.append(f"    timeout http-keep-alive {sources.format_ms(t.keepalive_ms)}")
        if spec.log:
            out.append(f"    log-format '{self.log_format()}'")
        frontends = self.frontends()
        for zone, body in self.caches.items():
            out += ["", f"cache {zone}", *body]
        for table in self.tables:
            out += ["", *table.split("\n")]
        out += frontends
        for name, body in self.backends.items():
            out += ["", f"backend {name}", *body]
        return "\n".join(out) + "\n"

    def log_format(self) -> str:
        parts = []
        for f in self.spec.log:
            item = sources.to_haproxy_log(f.source)
            if item is None:
                self.spec.skip(self.spec.source_file, f.line, f"log field {f.key}",
                               "no HAProxy log item for this value")
                continue
            parts.append(f'"{f.key}":{item}' if f.number else f'"{f.key}":"{item}"')
        return "{" + ",".join(parts) + "}"

    # -- frontends -----------------------------------------------------------------------------------
    def frontends(self) -> list[str]:
        groups: dict[tuple, list[VirtualHost]] = {}
        for v in self.spec.vhosts:
            key = tuple(sorted((lis.address, lis.port) for lis in v.listeners))
            groups.setdefault(key, []).append(v)
        out: list[str] = []
        for index, vhosts in enumerate(groups.values(), start=1):
            out += ["", f"frontend fe_{index}", *self.frontend(index, vhosts)]
        return out

    def frontend(self, index: int, vhosts: list[VirtualHost]) -> list[str]:
        body = []
        for lis in vhosts[0].listeners:
            bind = f"    bind {lis.address}:{lis.port}"
            if lis.tls:
                bind += f" ssl crt {lis.certificate or 'server.pem'}"
                if lis.verify:
                    bind += f" ca-file {lis.client_ca or 'ca.pem'} verify {lis.verify}"
                if lis.min_tls:
                    bind += f" ssl-min-ver {lis.min_tls}"
                bind += " alpn http/1.1"
            body.append(bind)
        if "request_id" in self.uses:
            body.append("    unique-id-format %[uuid()]")
        if any(f.source == "host" for f in self.spec.log):
            body.append("    http-request set-var(txn.host) req.hdr(host),lower,field(1,:)")
        for f in self.spec.log:
            if f.source.startswith("header:"):
                header = f.source.split(":", 1)[1]
                body.append(f"    http-request set-var(txn.h_{header.replace('-', '_')}) req.fhdr({header})")
        default = next((v for v in vhosts if any(lis.default for lis in v.listeners)), vhosts[0])
        acls = {}
        for i, v in enumerate(vhosts):
            if v.names and (v is not default or len(vhosts) > 1):
                acls[i] = f"host_{index}_{i}"
                # exact names, any case, the port dropped (a string sample's default match is exact)
                body.append(f"    acl host_{index}_{i} req.hdr(host),field(1,:),lower -i {' '.join(v.names)}")
        for h in self.spec.request_headers:
            body += self.request_header(h.name, h.source, h.line)
        ordered = [v for v in vhosts if v is not default] + [default]
        paths: dict[tuple[str, bool], str] = {}
        for v in ordered:
            for route in v.routes:
                if route.path != "/" or route.exact:
                    key = (route.path, route.exact)
                    if key not in paths:
                        name = f"{'exact' if route.exact else 'path'}_{_name(route.path)}"
                        paths[key] = name if name not in paths.values() else f"{name}_{len(paths)}"
                        body.append(f"    acl {paths[key]} {'path' if route.exact else 'path_beg'} {route.path}")
        uses, denies, after, catch_all = [], [], [], []  # catch_all: the default host for unknown host names
        for v in ordered:
            i = vhosts.index(v)
            if v is not default and i not in acls:
                continue
            # deny rules all run before any use_backend: the default host's excludes the other hosts;
            # use_backend takes the first match, so the default host's come last without a host condition
            others = [f"!{a}" for j, a in acls.items() if vhosts[j] is not default]
            only = others if v is default else [acls[i]]
            first = [acls[i]] if i in acls else []
            for n, route in enumerate(route_order(v.routes)):
                path = [paths[(route.path, route.exact)]] if (route.path, route.exact) in paths else []
                where = f" if {' '.join(only + path)}" if only + path else ""
                if route.status is not None:
                    denies.append(f"    http-request deny deny_status {route.status}{where}")
                    continue
                if route.rate_limit:
                    table = f"st_rate_{index}_{i}_{n}"
                    self.tables.append(f"backend {table}\n    stick-table type ip size 100k expire 30s "
                                       "store http_req_rate(1s)")
                    rl = route.rate_limit
                    limit = max(rl.rate, rl.burst)
                    denies.append(f"    http-request track-sc0 src table {table}{where}")
                    denies.append(f"    http-request deny deny_status {rl.status} if {' '.join(only + path)} "
                                  f"{{ sc_http_req_rate(0) gt {limit} }}")
                if route.conn_limit:
                    table = f"st_conn_{index}_{i}_{n}"
                    self.tables.append(f"backend {table}\n    stick-table type ip size 100k expire 30s store conn_cur")
                    cl = route.conn_limit
                    denies.append(f"    http-request track-sc1 src table {table}{where}")
                    denies.append(f"    http-request deny deny_status {cl.status} if {' '.join(only + path)} "
                                  f"{{ sc_conn_cur(1) gt {cl.connections} }}")
                if route.upstream is None:
                    self.spec.skip(self.spec.source_file, route.line, f"location {route.path}",
                                   "a route neither proxied nor answering a status is not translated")
                    continue
                backend = self.backend(route)
                cond = first + path
                if cond:
                    uses.append(f"    use_backend {backend} if {' '.join(cond)}")
                if v is default and first:
                    catch_all.append(f"    use_backend {backend} if {' '.join(path)}" if path else
                                     f"    default_backend {backend}")
                elif not cond:
                    uses.append(f"    default_backend {backend}")
        for h in self.spec.response_headers:
            after += self.response_header(h.name, h.source, h.always, "", h.line)
        uses += catch_all
        defaults = [u for u in uses if u.startswith("    default_backend")]
        body += denies + after + [u for u in uses if not u.startswith("    default_backend")] + defaults[:1]
        return body

    def path_cond(self, route: Route) -> list[str]:
        if route.exact:
            return [f"{{ path {route.path} }}"]
        if route.path == "/":
            return []
        return [f"{{ path_beg {route.path} }}"]

    def request_header(self, name: str, source: str, line: int = 1) -> list[str]:
        if source == "":
            return [f"    http-request del-header {name}"]
        if name.lower() == "host" and source == "host":
            return []  # HAProxy passes the client's Host on
        if source == "xff_appended":
            return [] if name.lower() == "x-forwarded-for" else self._skip_header(name, source, line)
        if source == "scheme":
            return [f"    http-request set-header {name} https if {{ ssl_fc }}",
                    f"    http-request set-header {name} http unless {{ ssl_fc }}"]
        value = sources.to_haproxy_sample(source)
        if value is None:
            return self._skip_header(name, source, line)
        return [f"    http-request set-header {name} {value}"]

    def response_header(self, name: str, source: str, always: bool, where: str, line: int = 1) -> list[str]:
        value = sources.to_haproxy_sample(source)
        if source == "":
            return [f"    http-after-response del-header {name}{where}"]
        if value is None:
            return self._skip_header(name, source, line)
        rule = "http-after-response" if always else "http-response"
        return [f"    {rule} set-header {name} {value}{where}"]

    def _skip_header(self, name: str, source: str, line: int = 1) -> list[str]:
        self.spec.skip(self.spec.source_file, line, f"header {name}", f"the value {source!r} has no HAProxy sample")
        return []

    # -- backends ------------------------------------------------------------------------------------
    def backend(self, route: Route) -> str:
        ups = self.spec.upstream(route.upstream or "")
        assert ups is not None
        special = route.cache is not None or route.retry is not None or route.timeouts.read_ms is not None \
            or route.timeouts.connect_ms is not None or bool(route.response_headers)
        body = self.backend_body(ups, route)
        same = next((name for name, other in self.backends.items() if other == body), None)
        if same is not None:
            return same
        name = f"be_{_name(ups.name)}" + (f"_{_name(route.path)}" if special else "")
        base, suffix = name, 1
        while name in self.backends:
            suffix += 1
            name = f"{base}_{suffix}"
        self.backends[name] = body
        return name

    def backend_body(self, ups: Upstream, route: Route) -> list[str]:
        body = []
        if ups.balance == "hash":
            key = ups.hash_key or "uri"
            fetch = {"uri": "uri whole", "path": "uri", "client": "source"}.get(key)
            if fetch is None and key.startswith("header:"):
                fetch = f"hdr({key.split(':', 1)[1]})"
            if fetch is None and key.startswith("arg:"):
                fetch = f"url_param {key.split(':', 1)[1]}"
            body.append(f"    balance {fetch or 'roundrobin'}")
            if ups.consistent:
                body.append("    hash-type consistent")
        else:
            body.append(f"    balance {ups.balance}")
        body += self.retries(ups, route)
        if route.timeouts.read_ms:
            body.append(f"    timeout server {sources.format_ms(route.timeouts.read_ms)}")
        if route.timeouts.connect_ms:
            body.append(f"    timeout connect {sources.format_ms(route.timeouts.connect_ms)}")
        if route.cache:
            body += self.cache(route)
        for header in route.response_headers:  # in the backend: a response rule cannot test the request's path
            body += self.response_header(header.name, header.source, header.always, "", header.line)
        h = ups.health
        check = f"check inter {sources.format_ms(h.interval_ms)} fall {h.fall} rise {h.rise}"
        if h.path:
            body.append(f"    option httpchk GET {h.path}")
        if h.max_fails:
            check += f" observe layer7 error-limit {h.max_fails} on-error mark-down"
        if h.path or h.max_fails:
            body.append(f"    default-server {check}")
        for n, server in enumerate(ups.servers, start=1):
            line = f"    server s{n} {server.address}"
            if server.weight is not None:
                line += f" weight {server.weight}"
            if server.backup:
                line += " backup"
            body.append(line)
        return body

    def retries(self, ups: Upstream, route: Route) -> list[str]:
        glob = self.spec.retry
        retry = route.retry or glob
        tries = retry.tries if retry.tries is not None else glob.tries
        on = retry.on if (route.retry and route.retry.on) or not route.retry else glob.on
        on = on if on or retry != Retry() else ["error", "timeout"]
        if not on or tries == 1:
            return ["    retries 0"]
        if not tries:
            tries = len(ups.servers)
        words = []
        for cond in on:
            if cond == "error":
                words += ["conn-failure", "empty-response"]
            elif cond == "timeout":
                words.append("response-timeout")
            elif cond.isdigit():
                if ups.health.max_fails:
                    self.spec.skip(self.spec.source_file, ups.line, f"retry on {cond} (upstream {ups.name})",
                                   "HAProxy 2.6 does not count a response it retries on its status toward passive "
                                   "health; kept passive health, dropped this retry condition")
                else:
                    words.append(cond)
        lines = [f"    retries {max(0, tries - 1)}", "    option redispatch 1", f"    retry-on {' '.join(words)}"]
        if not retry.non_idempotent:
            lines += ["    option http-buffer-request",
                      "    http-request disable-l7-retry if { method POST PATCH LOCK }"]
        return lines

    def cache(self, route: Route) -> list[str]:
        cache = route.cache
        assert cache is not None
        if cache.zone not in self.caches:
            self.caches[cache.zone] = [f"    total-max-size {cache.max_size_mb}", "    max-object-size 1048576",
                                       f"    max-age {cache.max_age_s or 3600}",
                                       f"    process-vary {'on' if cache.honor_vary else 'off'}"]
            if cache.honor_vary:
                self.caches[cache.zone].append("    max-secondary-entries 10")
        if "host" not in cache.key or not ({"uri"} <= set(cache.key) or {"path", "query"} <= set(cache.key)):
            self.spec.skip(self.spec.source_file, route.line, f"cache key {'+'.join(cache.key)}",
                           "HAProxy's cache key is always the host and the full URI")
        lines = [f"    http-request cache-use {cache.zone}"]
        if not cache.honor_vary:
            lines.append("    http-response del-header Vary")
        lines += ["    http-response set-var(txn.cache_status) str(MISS)",
                  f"    http-response cache-store {cache.zone} unless {{ res.hdr_cnt(set-cookie) gt 0 }}",
                  "    http-after-response set-var(txn.cache_status) str(HIT) if { res.cache_hit }"]
        if cache.status_header:
            lines.append(f"    http-after-response set-header {cache.status_header} %[var(txn.cache_status)] "
                         "if { var(txn.cache_status) -m found }")
        return lines
