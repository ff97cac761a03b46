"""Canonical request-data sources and durations, with their NGINX and HAProxy spellings.

A source is what a header value, a log field or a hash key reads: ``host``,
``client``, ``uri``, ``header:user-agent``, ``literal:text``. Each proxy
spells it differently (``$remote_addr`` / ``%ci``); a source one proxy cannot
express is ``None`` and the caller records it as untranslated.
"""

from __future__ import annotations

import re

#: canonical source -> (NGINX variable, HAProxy log-format item, HAProxy sample for a header value)
SOURCES: dict[str, tuple[str, str | None, str | None]] = {
    "time": ("$time_iso8601", "%[date,utime(%Y-%m-%dT%H:%M:%S+00:00)]", None),
    "msec": ("$msec", "%Ts.%ms", None),
    "request_id": ("$request_id", "%ID", "%[unique-id]"),
    "host": ("$host", "%[var(txn.host),json(utf8s)]", "%[req.hdr(host)]"),
    "client": ("$remote_addr", "%ci", "%[src]"),
    "client_port": ("$remote_port", "%cp", "%[src_port]"),
    "listener": ("$server_port", "%fp", "%[dst_port]"),
    "method": ("$request_method", "%HM", "%[method]"),
    "uri": ("$request_uri", "%HU", "%[url]"),
    "protocol": ("$server_protocol", "%HV", None),
    "status": ("$status", "%ST", None),
    "request_time": ("$request_time", "%Ta", None),
    "bytes_sent": ("$bytes_sent", "%B", None),
    "body_bytes_sent": ("$body_bytes_sent", "%B", None),
    "request_length": ("$request_length", "%U", None),
    "upstream_addr": ("$upstream_addr", "%si:%sp", None),
    "upstream_status": ("$upstream_status", "%ST", None),
    "upstream_connect_time": ("$upstream_connect_time", "%Tc", None),
    "upstream_header_time": ("$upstream_header_time", "%Tr", None),
    # HAProxy 2.6 has no one item for the time from request sent to response end: %Tr (until the headers) is
    # the nearest; %Td alone (the body) would log 0 for a slow upstream
    "upstream_response_time": ("$upstream_response_time", "%Tr", None),
    "cache_status": ("$upstream_cache_status", "%[var(txn.cache_status)]", "%[var(txn.cache_status)]"),
    "ssl_protocol": ("$ssl_protocol", "%sslv", "%[ssl_fc_protocol]"),
    "ssl_client_verify": ("$ssl_client_verify", "%[ssl_c_verify]", None),
    "scheme": ("$scheme", None, None),
    "xff_appended": ("$proxy_add_x_forwarded_for", None, None),
    "connection": ("$connection", None, None),
    "connection_requests": ("$connection_requests", None, None),
}
_BY_NGINX = {nginx: name for name, (nginx, _, _) in SOURCES.items()}
_BY_HAPROXY_LOG: dict[str, str] = {}
for _name, _spellings in SOURCES.items():
    if _spellings[1] is not None:
        _BY_HAPROXY_LOG.setdefault(_spellings[1], _name)
_BY_HAPROXY_LOG.update({"%t": "time", "%tr": "time", "%Tt": "request_time", "%Tr": "upstream_header_time",
                        # the server that answered: HAProxy logs its name, NGINX can only log its address
                        "%s": "upstream_addr",
                        # the body's time: NGINX has no such item, its time until the response's end is the nearest
                        "%Td": "upstream_response_time"})
_BY_HAPROXY_SAMPLE = {sample: name for name, (_, _, sample) in SOURCES.items() if sample is not None}

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|us)?$")
_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def header_source(name: str) -> str:
    return f"header:{name.lower()}"


def from_nginx(value: str, aliases: dict[str, str] | None = None) -> str | None:
    """The canonical source of an NGINX value: one variable, ``$http_*``, a literal, or None."""
    if aliases and value in aliases:
        return aliases[value]
    if value == "":
        return ""
    if value in _BY_NGINX:
        return _BY_NGINX[value]
    match = re.fullmatch(r"\$http_([a-z0-9_]+)", value)
    if match:
        return header_source(match.group(1).replace("_", "-"))
    if "$" not in value:
        return f"literal:{value}"
    return None


def to_nginx(source: str) -> str | None:
    if source == "":
        return '""'
    if source.startswith("header:"):
        return "$http_" + source.split(":", 1)[1].replace("-", "_")
    if source.startswith("literal:"):
        text = source.split(":", 1)[1]
        return text if re.fullmatch(r"[A-Za-z0-9._/:,=-]+", text) else '"' + text.replace('"', '\\"') + '"'
    entry = SOURCES.get(source)
    return entry[0] if entry else None


def from_haproxy_log(item: str) -> str | None:
    """The canonical source of one HAProxy log-format item (``%ci``, ``%[var(txn.x)]``)."""
    if item in _BY_HAPROXY_LOG:
        return _BY_HAPROXY_LOG[item]
    match = re.fullmatch(r"%\[var\(txn\.h_([a-z0-9_]+)\)(?:,json\(utf8s\))?\]", item)
    if match:
        return header_source(match.group(1).replace("_", "-"))
    return None


def to_haproxy_log(source: str) -> str | None:
    if source.startswith("header:"):
        return f"%[var(txn.h_{source.split(':', 1)[1].replace('-', '_')}),json(utf8s)]"
    entry = SOURCES.get(source)
    return entry[1] if entry else None


def from_haproxy_sample(value: str) -> str | None:
    """The canonical source of a header value in an HAProxy rule (``%[src]``, ``%[req.hdr(x)]``, text)."""
    if value in _BY_HAPROXY_SAMPLE:
        return _BY_HAPROXY_SAMPLE[value]
    match = re.fullmatch(r"%\[req\.f?hdr\(([A-Za-z0-9-]+)\)\]", value)
    if match:
        return header_source(match.group(1))
    if "%[" not in value and "%" not in value:
        return f"literal:{value}"
    return None


def to_haproxy_sample(source: str) -> str | None:
    if source.startswith("header:"):
        return f"%[req.hdr({source.split(':', 1)[1]})]"
    if source.startswith("literal:"):
        text = source.split(":", 1)[1]
        return f'"{text}"' if (" " in text or not text) else text
    entry = SOURCES.get(source)
    return entry[2] if entry else None


def duration_ms(text: str) -> int | None:
    """Milliseconds of an NGINX or HAProxy duration (``10s``, ``500ms``, ``1m``; a bare number is seconds in NGINX
    and milliseconds in HAProxy, so callers pass the unit they mean with ``bare``)."""
    total = 0.0
    rest = text.strip()
    if not rest:
        return None
    for part in re.findall(r"\d+[a-z]*", rest):
        match = _DURATION.match(part)
        if not match:
            return None
        total += int(match.group(1)) * _UNITS_MS[match.group(2) or "s"]
    if "".join(re.findall(r"\d+[a-z]*", rest)) != rest.replace(" ", ""):
        return None
    return int(total)


def haproxy_ms(text: str) -> int | None:
    """Milliseconds of an HAProxy timeout: a bare number is milliseconds."""
    return int(text) if text.isdigit() else duration_ms(text)


def format_ms(ms: int) -> str:
    """A duration both proxies read: whole seconds as ``Ns``, else ``Nms``."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
