"""A small, fast HTTP/1.1 server on asyncio, for the demo upstreams and the NGINX metrics bridge.

Why not ``http.server``: the demo upstreams must never be the bottleneck of a
check, and the standard library's threaded server manages a few thousand
requests per second at best. This server parses requests on an
``asyncio.Protocol`` and answers synchronous handlers in the same call, so a
keep-alive connection costs one parse and one write per request.

It implements what the demo needs and no more: request line and headers,
bodies framed by Content-Length or chunked, keep-alive (HTTP/1.1 by default,
HTTP/1.0 on request), and three ways for a handler to misbehave on purpose
(reset, close, hang) so the edge can be tested against broken upstreams.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024


@dataclass
class Request:
    """One parsed request."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def path(self) -> str:
        return unquote(self.target.split("?", 1)[0])

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def header(self, name: str, default: str = "") -> str:
        """All values of a header joined with ", " (how a recipient may combine repeated fields)."""
        lname = name.lower()
        values = [v for k, v in self.headers if k.lower() == lname]
        return ", ".join(values) if values else default


@dataclass
class Response:
    """A response to write, or an instruction to misbehave (``action``)."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    #: "none" (answer), "reset" (TCP RST), "close" (FIN without an answer), "hang" (say nothing)
    action: str = "none"
    hang_s: float = 0.0


Handler = Callable[[Request], "Response | Awaitable[Response]"]


class BadRequest(Exception):
    """The bytes received are not an HTTP/1.x request this server accepts."""


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def encode_response(resp: Response, *, keep_alive: bool, head: bool) -> bytes:
    """Serialise a response; Content-Length always matches the body."""
    lines = [f"HTTP/1.1 {resp.status} {_reason(resp.status)}"]
    for name, value in resp.headers:
        if name.lower() not in ("content-length", "connection", "transfer-encoding"):
            lines.append(f"{name}: {value}")
    if resp.status >= 200 and resp.status not in (204, 304):
        lines.append(f"Content-Length: {len(resp.body)}")
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data if head else data + resp.body


class _Parser:
    """Incremental parser: feed bytes, take complete requests."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next(self) -> Request | None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                raise BadRequest("request head too large")
            return None
        head = bytes(self.buf[:end]).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest("malformed request line")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise BadRequest("malformed header line")
            headers.append((name, value.strip()))
        req = Request(parts[0], parts[1], parts[2], headers)
        start = end + 4
        te = req.header("transfer-encoding").lower()
        if te:
            if te != "chunked" or req.header("content-length"):
                raise BadRequest("unsupported or ambiguous framing")
            parsed = _parse_chunked(self.buf, start)
            if parsed is None:
                return None
            req.body, consumed = parsed
            del self.buf[:consumed]
            return req
        length_text = req.header("content-length")
        length = 0
        if length_text:
            if not length_text.isdigit():
                raise BadRequest("bad Content-Length")
            length = int(length_text)
            if length > MAX_BODY:
                raise BadRequest("body too large")
        if len(self.buf) - start < length:
            return None
        req.body = bytes(self.buf[start : start + length])
        del self.buf[: start + length]
        return req


def _parse_chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``pos``; None while incomplete."""
    body = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise BadRequest("bad chunk size") from exc
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)
            if end < 0:
                return None
            return bytes(body), end + 4
        if len(buf) < pos + size + 2:
            return None
        body += buf[pos : pos + size]
        if len(body) > MAX_BODY:
            raise BadRequest("body too large")
        pos += size + 2


class _Connection(asyncio.Protocol):
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.parser = _Parser()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.closed = False
        self.hang_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.hang_timer is not None:
            self.hang_timer.cancel()

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        if not self.busy:
            self._drain()

    def _drain(self) -> None:
        while not self.closed and not self.busy:
            try:
                req = self.parser.next()
            except BadRequest as exc:
                self._write(Response(400, [("Content-Type", "text/plain")], f"{exc}\n".encode()), False, False)
                return
            if req is None:
                return
            result = self.handler(req)
            if isinstance(result, Response):
                self._finish(req, result)
            else:
                self.busy = True
                task = asyncio.ensure_future(result)
                task.add_done_callback(lambda t, r=req: self._async_done(r, t))  # type: ignore[misc]

    def _async_done(self, req: Request, task: asyncio.Future[Response]) -> None:
        self.busy = False
        if self.closed:
            return
        if task.cancelled() or task.exception() is not None:
            self._write(Response(500, [("Content-Type", "text/plain")], b"handler failed\n"), False, False)
            return
        self._finish(req, task.result())
        self._drain()

    def _finish(self, req: Request, resp: Response) -> None:
        assert self.transport is not None
        if resp.action == "reset":
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
            self.closed = True
            return
        if resp.action == "close":
            self.transport.close()
            self.closed = True
            return
        if resp.action == "hang":
            self.busy = True  # read nothing more; close when the hang is over
            self.hang_timer = asyncio.get_running_loop().call_later(max(resp.hang_s, 0.0), self.transport.close)
            return
        conn = req.header("connection").lower()
        keep = "close" not in conn if req.version == "HTTP/1.1" else "keep-alive" in conn
        self._write(resp, keep, req.method == "HEAD")

    def _write(self, resp: Response, keep_alive: bool, head: bool) -> None:
        assert self.transport is not None
        self.transport.write(encode_response(resp, keep_alive=keep_alive, head=head))
        if not keep_alive:
            self.transport.close()
            self.closed = True


async def serve(handler: Handler, host: str, port: int, *, backlog: int = 1024) -> asyncio.Server:
    """Start serving ``handler`` on ``host:port`` (SO_REUSEADDR so a quick restart can bind again)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Connection(handler), host, port, backlog=backlog, reuse_address=True)


async def serve_until_signalled(handler: Handler, host: str, port: int) -> None:
    """Serve ``handler`` until the process gets SIGTERM or SIGINT, then close the listener."""
    server = await serve(handler, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
