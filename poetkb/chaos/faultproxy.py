"""A TCP fault proxy on loopback: put it between a client (the edge) and a server (an upstream) to add faults.

It listens on 127.0.0.1 only and forwards each connection to one ``host:port`` target, applying the
:class:`~poetkb.chaos.models.Toxics` in force when the connection was accepted:

- ``latency_ms`` (+ uniform ``jitter_ms``) before each chunk is passed on, in ``direction``;
- ``bandwidth_kbps``: chunks are paced so the stream does not exceed the rate;
- ``reset``: the client connection is reset (RST) as soon as it is accepted;
- ``timeout_ms``: nothing is passed on; the connection is closed after the time (0: held until stop);
- ``cut_after_bytes``: the connection is reset once that many bytes went downstream;
- ``slow_close_ms``: when the server closes, the close reaches the client only after the delay;
- ``probability``: the share of new connections the toxics apply to (seeded, so runs repeat).

Everything is bounded: the number of open connections (extra ones are refused), the life of a held
connection, and :meth:`FaultProxy.stop`, which closes every connection and joins the thread within a
few seconds. The proxy runs an asyncio loop in its own daemon thread so a synchronous runner can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from poetkb.chaos.models import Toxics
from poetkb.errors import EnvironmentProblem, InputError

CHUNK = 16 * 1024
#: the longest any single connection is held by a timeout toxic with ``timeout_ms: 0``
MAX_HOLD_S = 300.0
CONNECT_TIMEOUT_S = 3.0


@dataclass
class ProxyStats:
    """What the proxy did: connections accepted, faulted, refused, bytes each way."""

    accepted: int = 0
    faulted: int = 0
    refused: int = 0
    reset: int = 0
    cut: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "faulted": self.faulted, "refused": self.refused, "reset": self.reset,
                "cut": self.cut, "bytes_up": self.bytes_up, "bytes_down": self.bytes_down,
                "errors": self.errors[-10:]}


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST: SO_LINGER on with a zero timeout, then close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def split_target(target: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); :class:`InputError` when it is not one."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"fault proxy target {target!r} is not host:port", field="upstream",
                         hint="give 127.0.0.1:PORT or the name of a demo upstream")
    return host.strip("[]"), int(port)


class FaultProxy:
    """One running proxy (see the module docstring). Use :meth:`start`, :meth:`update`, :meth:`stop`."""

    def __init__(self, target: str, toxics: Toxics | None = None, *, listen_port: int = 0,
                 max_connections: int = 256) -> None:
        self.target = split_target(target)
        self.toxics = toxics or Toxics()
        self.listen_port = listen_port
        self.max_connections = max_connections
        self.stats = ProxyStats()
        self._rng = random.Random(self.toxics.seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        """Bind 127.0.0.1:listen_port and serve in a daemon thread; returns once listening."""
        self._thread = threading.Thread(target=self._run, name=f"poet-faultproxy-{self.target[1]}", daemon=True)
        self._thread.start()
        if not self._ready.wait(5.0):
            raise EnvironmentProblem("the fault proxy did not start within 5 s")
        if self._error is not None:
            raise EnvironmentProblem(f"the fault proxy cannot listen on 127.0.0.1:{self.listen_port}: "
                                     f"{self._error}", hint="choose another listen_port, or 0 for a free one")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", self.listen_port, backlog=128))
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)

    def update(self, toxics: Toxics) -> None:
        """New toxics for connections accepted from now on."""
        self.toxics = toxics
        self._rng = random.Random(toxics.seed)

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection; join the thread (bounded)."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def listen(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- connections ----------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._tasks) >= self.max_connections:
            self.stats.refused += 1
            _reset(writer)
            return
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.transport.abort() if writer.transport.is_closing() else writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        toxics = self.toxics
        active = toxics.probability >= 1.0 or self._rng.random() < toxics.probability
        if active and self._any(toxics):
            self.stats.faulted += 1
        else:
            toxics = Toxics()
        if toxics.reset:
            self.stats.reset += 1
            _reset(writer)
            return
        if toxics.timeout_ms is not None:
            hold = toxics.timeout_ms / 1000 if toxics.timeout_ms else MAX_HOLD_S
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._drain_until_closed(reader), hold)
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            self.stats.errors.append(f"connect {self.target[0]}:{self.target[1]}: {exc or type(exc).__name__}")
            _reset(writer)
            return
        down_state = {"sent": 0}
        upstream = asyncio.ensure_future(self._pipe(reader, up_writer, toxics, "upstream", None))
        downstream = asyncio.ensure_future(self._pipe(up_reader, writer, toxics, "downstream", down_state))
        try:
            done, _pending = await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
            if downstream in done and downstream.result() == "cut":
                self.stats.cut += 1
                _reset(writer)
                upstream.cancel()
            elif downstream in done:
                # the server closed: pass the close on (after the slow-close delay)
                if toxics.slow_close_ms:
                    await asyncio.sleep(toxics.slow_close_ms / 1000)
                upstream.cancel()
            else:
                # the client finished sending: let the answer come back (bounded by the hold limit)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(downstream), MAX_HOLD_S)
                if downstream.done() and not downstream.cancelled() and downstream.result() == "cut":
                    self.stats.cut += 1
                    _reset(writer)
                elif toxics.slow_close_ms:
                    await asyncio.sleep(toxics.slow_close_ms / 1000)
        finally:
            for task in (upstream, downstream):
                task.cancel()
            up_writer.transport.abort()

    @staticmethod
    def _any(toxics: Toxics) -> bool:
        return bool(toxics.latency_ms or toxics.jitter_ms or toxics.bandwidth_kbps or toxics.reset
                    or toxics.slow_close_ms or toxics.timeout_ms is not None or toxics.cut_after_bytes is not None)

    async def _drain_until_closed(self, reader: asyncio.StreamReader) -> None:
        while await reader.read(CHUNK):
            pass

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, toxics: Toxics, way: str,
                    state: dict[str, int] | None) -> str:
        """Copy one direction until EOF; returns "eof" or "cut"."""
        delayed = toxics.direction in (way, "both")
        started, sent = time.monotonic(), 0
        while True:
            data = await reader.read(CHUNK)
            if not data:
                if way == "upstream" and writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return "eof"
            if delayed and (toxics.latency_ms or toxics.jitter_ms):
                jitter = self._rng.uniform(-toxics.jitter_ms, toxics.jitter_ms) if toxics.jitter_ms else 0.0
                await asyncio.sleep(max(0.0, toxics.latency_ms + jitter) / 1000)
            if state is not None and toxics.cut_after_bytes is not None:
                room = toxics.cut_after_bytes - state["sent"]
                if len(data) >= room:
                    if room > 0:
                        state["sent"] += room
                        self.stats.bytes_down += room
                        writer.write(data[:room])
                        await writer.drain()
                    return "cut"
            if delayed and toxics.bandwidth_kbps:
                # pace so that bytes sent so far never run ahead of the rate
                due = started + (sent + len(data)) * 8 / (toxics.bandwidth_kbps * 1000)
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            sent += len(data)
            if state is not None:
                state["sent"] += len(data)
            if way == "upstream":
                self.stats.bytes_up += len(data)
            else:
                self.stats.bytes_down += len(data)
            writer.write(data)
            await writer.drain()
