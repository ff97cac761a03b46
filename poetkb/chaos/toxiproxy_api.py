"""A Toxiproxy-compatible HTTP API over poetkb's fault proxy, so existing Toxiproxy clients can drive it.

``poet chaos toxiproxy [--port 8474]`` serves, on 127.0.0.1 only, the documented Toxiproxy endpoints:

- ``GET /version``, ``POST /reset`` (every proxy enabled again, every toxic removed);
- ``GET /proxies``, ``POST /proxies`` ``{name, listen, upstream, enabled}``, ``POST /populate`` (a list);
- ``GET|POST|DELETE /proxies/{name}`` (POST changes ``enabled``, ``listen``, ``upstream``);
- ``GET|POST /proxies/{name}/toxics`` ``{name, type, stream, toxicity, attributes}``;
- ``GET|POST|DELETE /proxies/{name}/toxics/{toxic}``.

Toxic types map onto :class:`~poetkb.chaos.models.Toxics`: ``latency`` (``latency``, ``jitter`` ms),
``bandwidth`` (``rate`` KB/s), ``slow_close`` (``delay`` ms), ``timeout`` (``timeout`` ms, 0 = hold),
``reset_peer`` (a reset when the connection opens; its ``timeout`` attribute is not honoured) and
``limit_data`` (``bytes``). ``toxicity`` becomes the share of connections affected (the smallest toxicity of a
proxy's toxics: poetkb applies one set per connection). ``slicer`` is refused with 400, naming what is
supported. Listen addresses must be on loopback, and so must upstreams unless the server was started with
``allow_remote``. At most :data:`MAX_PROXIES` proxies of :data:`MAX_TOXICS` toxics each. Toxics apply to
connections opened after the change, as poetkb's proxy decides toxics when it accepts a connection.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from poetkb.chaos.faultproxy import FaultProxy, split_target
from poetkb.chaos.models import Toxics
from poetkb.demo.httpserver import Request, Response
from poetkb.errors import PoetError

VERSION = "2.9.0-poetkb"
MAX_PROXIES = 64
MAX_TOXICS = 16
SUPPORTED = ("latency", "bandwidth", "slow_close", "timeout", "reset_peer", "limit_data")
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class ApiError(Exception):
    """An answer other than success: status and message (Toxiproxy's ``{"error": ..., "status": ...}``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Entry:
    """One named proxy: its settings, its toxics, and the running fault proxy when enabled."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True
    toxics: dict[str, dict[str, Any]] = field(default_factory=dict)
    proxy: FaultProxy | None = None

    def as_json(self) -> dict[str, Any]:
        listen = self.proxy.listen if self.proxy is not None and self.proxy.running else self.listen
        return {"name": self.name, "listen": listen, "upstream": self.upstream, "enabled": self.enabled,
                "toxics": list(self.toxics.values())}


def toxics_of(toxics: dict[str, dict[str, Any]]) -> Toxics:
    """The poetkb toxics equivalent to a proxy's Toxiproxy toxics."""
    values: dict[str, Any] = {}
    streams: set[str] = set()
    shares = [float(t.get("toxicity", 1.0)) for t in toxics.values()]
    for toxic in toxics.values():
        attrs = toxic.get("attributes") or {}
        kind = toxic["type"]
        if kind == "latency":
            values["latency_ms"] = int(attrs.get("latency", 0))
            values["jitter_ms"] = int(attrs.get("jitter", 0))
            streams.add(toxic.get("stream", "downstream"))
        elif kind == "bandwidth":
            values["bandwidth_kbps"] = max(1, int(attrs.get("rate", 0)) * 8)
        elif kind == "slow_close":
            values["slow_close_ms"] = int(attrs.get("delay", 0))
        elif kind == "timeout":
            values["timeout_ms"] = int(attrs.get("timeout", 0))
        elif kind == "reset_peer":
            values["reset"] = True
        elif kind == "limit_data":
            values["cut_after_bytes"] = int(attrs.get("bytes", 0))
    if streams:
        values["direction"] = "both" if len(streams) > 1 else streams.pop()
    if shares:
        values["probability"] = min(shares)
    return Toxics.model_validate(values)


class ToxiproxyAPI:
    """The API's state and request handling (see the module docstring)."""

    def __init__(self, *, allow_remote: bool = False) -> None:
        self.allow_remote = allow_remote
        self.entries: dict[str, Entry] = {}
        self.lock = threading.Lock()

    # -- HTTP ----------------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        try:
            status, body = self.route(req.method, [p for p in req.path.split("/") if p], req.body)
        except ApiError as exc:
            status, body = exc.status, {"error": exc.message, "status": exc.status}
        except PoetError as exc:
            status, body = 400, {"error": exc.message, "status": 400}
        if body is None:
            return Response(status, [("Content-Length", "0")], b"")
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        kind = "text/plain" if isinstance(body, str) else "application/json"
        return Response(status, [("Content-Type", kind)], data)

    def route(self, method: str, parts: list[str], raw: bytes) -> tuple[int, Any]:
        with self.lock:
            if parts == ["version"] and method == "GET":
                return 200, VERSION
            if parts == ["reset"] and method == "POST":
                self.reset()
                return 204, None
            if parts == ["populate"] and method == "POST":
                items = _json(raw)
                if not isinstance(items, list):
                    raise ApiError(400, "populate takes a JSON list of proxies")
                return 201, {"proxies": [self.create(item, replace=True).as_json() for item in items]}
            if parts == ["proxies"]:
                if method == "GET":
                    return 200, {name: e.as_json() for name, e in self.entries.items()}
                if method == "POST":
                    return 201, self.create(_json(raw)).as_json()
            if len(parts) >= 2 and parts[0] == "proxies":
                return self.proxy_route(method, self._entry(parts[1]), parts[2:], raw)
        raise ApiError(404, f"no endpoint {method} /{'/'.join(parts)}")

    def proxy_route(self, method: str, entry: Entry, rest: list[str], raw: bytes) -> tuple[int, Any]:
        if not rest:
            if method == "GET":
                return 200, entry.as_json()
            if method in ("POST", "PATCH"):
                return 200, self.update(entry, _json(raw)).as_json()
            if method == "DELETE":
                self._stop(entry)
                del self.entries[entry.name]
                return 204, None
        elif rest == ["toxics"]:
            if method == "GET":
                return 200, list(entry.toxics.values())
            if method == "POST":
                return 200, self.add_toxic(entry, _json(raw))
        elif len(rest) == 2 and rest[0] == "toxics":
            toxic = entry.toxics.get(rest[1])
            if toxic is None:
                raise ApiError(404, f"toxic not found: {rest[1]}")
            if method == "GET":
                return 200, toxic
            if method == "DELETE":
                del entry.toxics[rest[1]]
                self._apply(entry)
                return 204, None
            if method in ("POST", "PATCH"):
                update = _json(raw)
                merged = {**toxic, **{k: v for k, v in update.items() if k in ("toxicity", "stream")}}
                merged["attributes"] = {**toxic.get("attributes", {}), **(update.get("attributes") or {})}
                entry.toxics[rest[1]] = merged
                self._apply(entry)
                return 200, merged
        raise ApiError(405, f"{method} is not allowed here")

    # -- operations -----------------------------------------------------------------------------------
    def _entry(self, name: str) -> Entry:
        entry = self.entries.get(name)
        if entry is None:
            raise ApiError(404, f"proxy not found: {name}")
        return entry

    def _check_addresses(self, listen: str, upstream: str) -> None:
        host, _ = _listen(listen)
        if host not in _LOOPBACK:
            raise ApiError(400, f"listen {listen!r}: poetkb's proxy listens on loopback only (127.0.0.1:PORT)")
        try:
            up_host, _ = split_target(upstream)
        except PoetError as exc:
            raise ApiError(400, f"upstream {upstream!r} is not host:port") from exc
        if not self.allow_remote and up_host not in _LOOPBACK:
            from poetkb.gates.probes import is_loopback_host

            if not is_loopback_host(up_host):
                raise ApiError(400, f"upstream {upstream!r} is not on loopback; start the server with "
                                    "--allow-remote to allow it")

    def create(self, data: Any, *, replace: bool = False) -> Entry:
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("name", "upstream")):
            raise ApiError(400, "a proxy needs name, listen and upstream (strings)")
        name = data["name"]
        if name in self.entries:
            if not replace:
                raise ApiError(409, f"proxy already exists: {name}")
            self._stop(self.entries.pop(name))
        if len(self.entries) >= MAX_PROXIES:
            raise ApiError(400, f"at most {MAX_PROXIES} proxies")
        listen = data.get("listen") or "127.0.0.1:0"
        self._check_addresses(listen, data["upstream"])
        entry = Entry(name=name, listen=listen, upstream=data["upstream"], enabled=bool(data.get("enabled", True)))
        if entry.enabled:
            self._start(entry)
        self.entries[name] = entry
        return entry

    def update(self, entry: Entry, data: Any) -> Entry:
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        listen, upstream = data.get("listen", entry.listen), data.get("upstream", entry.upstream)
        self._check_addresses(listen, upstream)
        moved = (listen, upstream) != (entry.listen, entry.upstream)
        enabled = bool(data.get("enabled", entry.enabled))
        if moved or not enabled:
            self._stop(entry)
        entry.listen, entry.upstream, entry.enabled = listen, upstream, enabled
        if enabled and (entry.proxy is None or not entry.proxy.running):
            self._start(entry)
        return entry

    def add_toxic(self, entry: Entry, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise ApiError(400, "a toxic needs a type")
        if data["type"] not in SUPPORTED:
            raise ApiError(400, f"toxic type {data['type']!r} is not supported; supported: {', '.join(SUPPORTED)}")
        stream = data.get("stream", "downstream")
        if stream not in ("upstream", "downstream"):
            raise ApiError(400, "stream must be upstream or downstream")
        name = data.get("name") or f"{data['type']}_{stream}"
        if name in entry.toxics:
            raise ApiError(409, f"toxic already exists: {name}")
        if len(entry.toxics) >= MAX_TOXICS:
            raise ApiError(400, f"at most {MAX_TOXICS} toxics per proxy")
        toxic = {"name": name, "type": data["type"], "stream": stream,
                 "toxicity": float(data.get("toxicity", 1.0)), "attributes": dict(data.get("attributes") or {})}
        candidate = {**entry.toxics, name: toxic}
        try:
            toxics_of(candidate)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"invalid toxic attributes: {exc}") from exc
        entry.toxics[name] = toxic
        self._apply(entry)
        return toxic

    def reset(self) -> None:
        for entry in self.entries.values():
            entry.toxics.clear()
            entry.enabled = True
            if entry.proxy is None or not entry.proxy.running:
                self._start(entry)
            else:
                self._apply(entry)

    def close(self) -> None:
        """Stop every proxy (the server is going away)."""
        with self.lock:
            for entry in self.entries.values():
                self._stop(entry)

    def _start(self, entry: Entry) -> None:
        _, port = _listen(entry.listen)
        try:
            entry.proxy = FaultProxy(entry.upstream, toxics_of(entry.toxics), listen_port=port).start()
        except PoetError as exc:
            raise ApiError(409, exc.message) from exc
        if port == 0:
            entry.listen = entry.proxy.listen
        entry.enabled = True

    def _stop(self, entry: Entry) -> None:
        if entry.proxy is not None:
            entry.proxy.stop()
            entry.proxy = None

    def _apply(self, entry: Entry) -> None:
        if entry.proxy is not None:
            entry.proxy.update(toxics_of(entry.toxics))


def _listen(listen: str) -> tuple[str, int]:
    """``host:port`` of a listen address, where port 0 means "any free port"."""
    host, sep, port = listen.rpartition(":")
    if sep and port == "0" and host:
        return host.strip("[]"), 0
    try:
        return split_target(listen)
    except PoetError as exc:
        raise ApiError(400, f"listen {listen!r} is not host:port") from exc


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"{}")
    except ValueError as exc:
        raise ApiError(400, f"body is not JSON: {exc}") from exc


async def serve(api: ToxiproxyAPI, port: int) -> None:
    """Serve the API on 127.0.0.1:port until SIGINT/SIGTERM; stop every proxy afterwards."""
    from poetkb.demo.httpserver import serve_until_signalled

    try:
        await serve_until_signalled(api.handle, "127.0.0.1", port)
    finally:
        api.close()
