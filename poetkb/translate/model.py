"""The obligation-relevant subset of an edge configuration, independent of the proxy that runs it.

Translation reads a configuration into :class:`EdgeSpec` and writes the spec for
the other proxy. The spec holds only what the obligations judge: listeners (TLS,
mTLS), virtual hosts and their routes, upstream groups with their balancing key
and health settings, retries and timeouts, caching, request and response
headers, rate and connection limits, and the JSON access log. Everything a
reader meets and cannot express here is an :class:`Untranslated` entry naming
its line, never a silent drop.

Values that name request data (a header value, a log field, a hash key) are
kept as *canonical sources* such as ``host``, ``client``, ``uri``,
``header:user-agent`` (:mod:`poetkb.translate.sources` maps them to NGINX
variables and HAProxy samples).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from poetkb.models import PoetModel


class SpecModel(BaseModel):
    """Base of the spec's parts: strict about unknown fields, but filled in step by step while reading."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

Balance = Literal["roundrobin", "leastconn", "hash", "random"]


class Untranslated(PoetModel):
    """A directive the translation could not carry over (or carried over only in part), and why."""

    file: str
    line: int
    directive: str
    reason: str


class Listener(SpecModel):
    """One listening address: plain HTTP, TLS, or TLS asking for a client certificate (mTLS)."""

    address: str = "127.0.0.1"
    port: int
    tls: bool = False
    certificate: str | None = None
    key: str | None = None
    client_ca: str | None = None
    verify: Literal["required", "optional"] | None = None
    min_tls: str | None = None
    default: bool = False

    @property
    def mtls(self) -> bool:
        return self.verify is not None


class Server(SpecModel):
    """One upstream server of a group."""

    address: str
    weight: int | None = None
    backup: bool = False


class HealthCheck(SpecModel):
    """Active checks (HAProxy) and passive failure counting (both proxies)."""

    path: str | None = None
    interval_ms: int = 2000
    fall: int = 3
    rise: int = 2
    max_fails: int | None = None
    fail_timeout_ms: int | None = None
    line: int | None = None


class Upstream(SpecModel):
    """A group of upstream servers and how a request picks one."""

    name: str
    servers: list[Server]
    balance: Balance = "roundrobin"
    hash_key: str | None = None
    consistent: bool = False
    health: HealthCheck = Field(default_factory=HealthCheck)
    line: int = 1


class Retry(SpecModel):
    """Which failures are retried on another server, how often, and for which methods."""

    tries: int | None = None
    on: list[str] = Field(default_factory=list)
    non_idempotent: bool = False


class Timeouts(SpecModel):
    """Timeouts in milliseconds (None: the proxy's default)."""

    connect_ms: int | None = None
    read_ms: int | None = None
    send_ms: int | None = None
    client_ms: int | None = None
    keepalive_ms: int | None = None
    request_header_ms: int | None = None


class Header(SpecModel):
    """A header set on the request upstream or on the response; an empty ``source`` removes it."""

    name: str
    source: str
    always: bool = False
    line: int = 1


class Cache(SpecModel):
    """A response cache on a route."""

    zone: str
    key: list[str] = Field(default_factory=lambda: ["scheme", "host", "uri"])
    max_age_s: int | None = None
    max_size_mb: int = 64
    honor_vary: bool = True
    status_header: str | None = None


class RateLimit(SpecModel):
    """At most ``rate`` requests per second per client (with ``burst`` extra), refused with ``status``."""

    rate: int
    burst: int = 0
    status: int = 429


class ConnLimit(SpecModel):
    """At most ``connections`` concurrent connections per client, refused with ``status``."""

    connections: int
    status: int = 429


class Route(SpecModel):
    """A path prefix (or exact path) of a virtual host and what the edge does with it."""

    path: str
    exact: bool = False
    upstream: str | None = None
    status: int | None = None
    cache: Cache | None = None
    rate_limit: RateLimit | None = None
    conn_limit: ConnLimit | None = None
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retry: Retry | None = None
    response_headers: list[Header] = Field(default_factory=list)
    line: int = 1


class VirtualHost(SpecModel):
    """A server block (NGINX) or the part of a frontend serving some host names (HAProxy)."""

    names: list[str] = Field(default_factory=list)
    listeners: list[Listener]
    routes: list[Route] = Field(default_factory=list)
    line: int = 1


class LogField(SpecModel):
    """One key of the JSON access log and the canonical source of its value."""

    key: str
    source: str
    number: bool = False
    line: int = 1


class EdgeSpec(SpecModel):
    """Everything translation carries from one proxy to the other, and what it could not."""

    source_proxy: Literal["nginx", "haproxy"]
    source_file: str
    upstreams: list[Upstream] = Field(default_factory=list)
    vhosts: list[VirtualHost] = Field(default_factory=list)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retry: Retry = Field(default_factory=Retry)
    request_headers: list[Header] = Field(default_factory=list)
    response_headers: list[Header] = Field(default_factory=list)
    log: list[LogField] = Field(default_factory=list)
    log_errors: bool = True
    untranslated: list[Untranslated] = Field(default_factory=list)

    def upstream(self, name: str) -> Upstream | None:
        return next((u for u in self.upstreams if u.name == name), None)

    def skip(self, file: str, line: int, directive: str, reason: str) -> None:
        """Record what could not be translated (once per line and directive)."""
        if any(u.line == line and u.directive == directive and u.file == file for u in self.untranslated):
            return
        self.untranslated.append(Untranslated(file=file, line=line, directive=directive, reason=reason))
