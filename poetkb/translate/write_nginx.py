"""Write the translation subset as an NGINX 1.22 configuration.

Listeners whose TLS settings differ (a plain TLS port and an mTLS port) get
their own server blocks, because ``ssl_verify_client`` belongs to a server.
Retries, timeouts, caching and limits are written where they apply (http level
for the whole edge, location level for a route), so inheritance gives each route
what it had.
"""

from __future__ import annotations

from poetkb.translate import sources
from poetkb.translate.model import EdgeSpec, Header, Listener, Retry, Route, Timeouts, VirtualHost

_NEXT = {"error": "error", "timeout": "timeout", "500": "http_500", "502": "http_502", "503": "http_503",
         "504": "http_504", "429": "http_429"}


def write_nginx(spec: EdgeSpec) -> str:
    return _Writer(spec).text()


class _Writer:
    def __init__(self, spec: EdgeSpec) -> None:
        self.spec = spec
        self.zones: dict[str, str] = {}

    def text(self) -> str:
        spec = self.spec
        out = [f"# translated by poetkb from {spec.source_file} ({spec.source_proxy}); see docs/translate.md",
               "worker_processes 1;", "error_log logs/error.log notice;", "events {", "    worker_connections 1024;",
               "}", "http {"]
        if spec.log:
            out.append(f"    log_format poet_json escape=json '{self.log_format()}';")
            out.append("    access_log logs/access.log poet_json;")
        out += self.timeouts(spec.timeouts, "    ", top=True)
        out += self.retry(spec.retry, "    ", top=True)
        caches = {r.cache.zone: r.cache for v in spec.vhosts for r in v.routes if r.cache}
        for zone, cache in caches.items():
            out.append(f"    proxy_cache_path cache/{zone} levels=1:2 keys_zone={zone}:10m "
                       f"max_size={cache.max_size_mb}m inactive=10m use_temp_path=off;")
        rates = {(r.rate_limit.rate, r.rate_limit.status) for v in spec.vhosts for r in v.routes if r.rate_limit}
        for rate, _ in sorted(rates):
            out.append(f"    limit_req_zone $binary_remote_addr zone=rate_{rate}:1m rate={rate}r/s;")
        if any(r.conn_limit for v in spec.vhosts for r in v.routes):
            out.append("    limit_conn_zone $binary_remote_addr zone=conn_limit:1m;")
        statuses = {r.rate_limit.status for v in spec.vhosts for r in v.routes if r.rate_limit}
        if statuses:
            out.append(f"    limit_req_status {min(statuses)};")
        statuses = {r.conn_limit.status for v in spec.vhosts for r in v.routes if r.conn_limit}
        if statuses:
            out.append(f"    limit_conn_status {min(statuses)};")
        for ups in spec.upstreams:
            out += self.upstream(ups)
        out.append("    proxy_http_version 1.1;")
        headers = list(spec.request_headers)
        if not any(h.name.lower() == "host" for h in headers):
            headers.insert(0, Header(name="Host", source="host"))  # HAProxy passes the client's Host on
        if not any(h.name.lower() == "connection" for h in headers):
            headers.append(Header(name="Connection", source=""))
        for h in headers:
            value = sources.to_nginx(h.source)
            if value is None:
                self.spec.skip(spec.source_file, h.line, f"header {h.name}",
                               f"the value {h.source!r} has no NGINX variable")
            else:
                out.append(f"    proxy_set_header {h.name} {value};")
        out += self.add_headers(spec.response_headers, "    ")
        for vhost in spec.vhosts:
            for group in _tls_groups(vhost.listeners):
                out += self.server(vhost, group)
        out.append("}")
        return "\n".join(out) + "\n"

    def log_format(self) -> str:
        parts = []
        for f in self.spec.log:
            value = sources.to_nginx(f.source)
            if value is None or f.source.startswith("literal:"):
                self.spec.skip(self.spec.source_file, f.line, f"log field {f.key}", "no NGINX variable for this value")
                continue
            # NGINX writes "-" or a list for upstream values and "" for no TLS: only plain numbers stay unquoted
            number = f.number and f.source in ("status", "request_time", "bytes_sent", "body_bytes_sent",
                                               "request_length", "msec", "connection_requests")
            parts.append(f'"{f.key}":{value}' if number else f'"{f.key}":"{value}"')
        return "{" + ",".join(parts) + "}"

    def timeouts(self, t: Timeouts, pad: str, *, top: bool = False) -> list[str]:
        out = []
        for field, directive in (("connect_ms", "proxy_connect_timeout"), ("read_ms", "proxy_read_timeout")):
            value = getattr(t, field)
            if value:
                out.append(f"{pad}{directive} {sources.format_ms(value)};")
        if t.read_ms and not t.send_ms:
            out.append(f"{pad}proxy_send_timeout {sources.format_ms(t.read_ms)};")
        if t.send_ms:
            out.append(f"{pad}proxy_send_timeout {sources.format_ms(t.send_ms)};")
        if top:
            if t.keepalive_ms:
                out.append(f"{pad}keepalive_timeout {sources.format_ms(t.keepalive_ms)};")
            if t.request_header_ms:
                out.append(f"{pad}client_header_timeout {sources.format_ms(t.request_header_ms)};")
            if t.client_ms:
                out.append(f"{pad}send_timeout {sources.format_ms(t.client_ms)};")
        return out

    def retry(self, retry: Retry, pad: str, *, top: bool = False) -> list[str]:
        if retry == Retry() and not top:
            return []
        on = [_NEXT[c] for c in retry.on if c in _NEXT] or (["error", "timeout"] if top else [])
        out = []
        if on:
            out.append(f"{pad}proxy_next_upstream {' '.join(dict.fromkeys(on))}"
                       f"{' non_idempotent' if retry.non_idempotent else ''};")
        if retry.tries is not None:
            out.append(f"{pad}proxy_next_upstream_tries {retry.tries};")
        return out

    def upstream(self, ups) -> list[str]:  # noqa: ANN001
        out = [f"    upstream {ups.name} {{", f"        zone {ups.name} 64k;"]
        if ups.balance == "leastconn":
            out.append("        least_conn;")
        elif ups.balance == "random":
            out.append("        random;")
        elif ups.balance == "hash":
            key = ups.hash_key or "uri"
            var = {"uri": "$request_uri", "path": "$uri", "client": "$remote_addr"}.get(key)
            if var is None and key.startswith("header:"):
                var = "$http_" + key.split(":", 1)[1].replace("-", "_").lower()
            if var is None and key.startswith("arg:"):
                var = "$arg_" + key.split(":", 1)[1]
            out.append(f"        hash {var}{' consistent' if ups.consistent else ''};")
        h = ups.health
        # a server HAProxy marked down comes back after `rise` good checks: NGINX retries it after fail_timeout
        back_ms = h.fail_timeout_ms or (h.interval_ms * h.rise if h.path else 10_000)
        passive = f" max_fails={h.max_fails} fail_timeout={sources.format_ms(back_ms)}" if h.max_fails else ""
        if h.path:
            self.spec.skip(self.spec.source_file, h.line or ups.line, f"option httpchk GET {h.path} ({ups.name})",
                           "NGINX (open source) has no active health checks; it takes a server out after failed "
                           "requests (max_fails) instead")
        for s in ups.servers:
            out.append(f"        server {s.address}{f' weight={s.weight}' if s.weight else ''}{passive}"
                       f"{' backup' if s.backup else ''};")
        out.append("    }")
        return out

    def add_headers(self, headers: list[Header], pad: str) -> list[str]:
        out = []
        for h in headers:
            value = sources.to_nginx(h.source)
            if value is None or h.source == "":
                self.spec.skip(self.spec.source_file, h.line, f"response header {h.name}",
                               f"the value {h.source!r} has no NGINX add_header form")
                continue
            out.append(f"{pad}add_header {h.name} {value}{' always' if h.always else ''};")
        return out

    def server(self, vhost: VirtualHost, listeners: list[Listener]) -> list[str]:
        out = ["    server {"]
        for lis in listeners:
            address = "" if lis.address in ("0.0.0.0", "*", "") else f"{lis.address}:"  # noqa: S104
            out.append(f"        listen {address}{lis.port}{' ssl' if lis.tls else ''}"
                       f"{' default_server' if lis.default else ''};")
        if vhost.names:
            out.append(f"        server_name {' '.join(vhost.names)};")
        tls = next((lis for lis in listeners if lis.tls), None)
        if tls is not None:
            cert = tls.certificate or "server.pem"
            out += [f"        ssl_certificate {cert};", f"        ssl_certificate_key {tls.key or cert};",
                    f"        ssl_protocols {'TLSv1.2 TLSv1.3' if tls.min_tls in (None, 'TLSv1.2') else 'TLSv1.3'};"]
            if tls.verify:
                out += [f"        ssl_client_certificate {tls.client_ca or 'ca.pem'};",
                        f"        ssl_verify_client {'on' if tls.verify == 'required' else 'optional'};",
                        "        ssl_verify_depth 2;"]
        seen = set()
        for route in vhost.routes:
            key = (route.path, route.exact)
            if key in seen:
                continue
            seen.add(key)
            out += self.location(route)
        out.append("    }")
        return out

    def location(self, route: Route) -> list[str]:
        pad = "            "
        head = f"location = {route.path}" if route.exact else f"location {route.path}"
        if not route.exact and route.path != "/" and route.status is not None:
            head = f"location ^~ {route.path}"
        out = [f"        {head} {{"]
        if route.status is not None:
            out.append(f"{pad}return {route.status};")
        if route.upstream is not None:
            if route.rate_limit:
                rl = route.rate_limit
                out.append(f"{pad}limit_req zone=rate_{rl.rate}{f' burst={rl.burst} nodelay' if rl.burst else ''};")
            if route.conn_limit:
                out.append(f"{pad}limit_conn conn_limit {route.conn_limit.connections};")
            out.append(f"{pad}proxy_pass http://{route.upstream};")
            out += self.timeouts(route.timeouts, pad)
            if route.retry is not None:
                out += self.retry(route.retry, pad)
            if route.cache:
                out += self.cache(route, pad)
            out += self.add_headers(route.response_headers, pad)
        out.append("        }")
        return out

    def cache(self, route: Route, pad: str) -> list[str]:
        cache = route.cache
        assert cache is not None
        variables = {"scheme": "$scheme", "host": "$host", "uri": "$request_uri", "path": "$uri",
                     "query": "$is_args$args"}
        key = "".join(variables[k] + ("://" if k == "scheme" else "") for k in cache.key if k in variables)
        out = [f"{pad}proxy_cache {cache.zone};", f"{pad}proxy_cache_key {key or '$scheme://$host$request_uri'};"]
        if not cache.honor_vary:
            out.append(f"{pad}proxy_ignore_headers Vary;")
        if cache.status_header:
            out.append(f"{pad}add_header {cache.status_header} $upstream_cache_status always;")
        if cache.max_age_s is not None and route.line:
            self.spec.skip(self.spec.source_file, route.line, f"cache max-age {cache.max_age_s}",
                           "NGINX follows the response's Cache-Control; HAProxy's max-age cap is not carried over")
        return out


def _tls_groups(listeners: list[Listener]) -> list[list[Listener]]:
    """Listeners that can share one server block: the same certificate and client-certificate settings."""
    groups: dict[tuple, list[Listener]] = {}
    for lis in listeners:
        key = (lis.certificate, lis.verify, lis.client_ca) if lis.tls else (None, None, None)
        if lis.tls and (None, None, None) in groups and not lis.verify:
            key = (None, None, None)  # plain HTTP and TLS share a server block, as NGINX configurations do
        groups.setdefault(key, []).append(lis)
    return list(groups.values())


__all__ = ["write_nginx"]
