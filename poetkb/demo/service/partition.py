"""A loopback TCP relay between the service's pool and PostgreSQL that can be partitioned and healed.

While partitioned, the relay stops passing bytes in both directions on every
connection, open or new, without closing anything: what the service sees is a
network that silently drops packets (queries that never answer, connects that
never complete), not a refused connection. Healing resumes the flow on the
connections that are still open.

The relay can also be re-pointed (:meth:`PartitionRelay.retarget`): new connections then go to another
loopback ``host:port`` (a chaos experiment's fault proxy in front of PostgreSQL), and the connections
open at that moment are closed, so the pool replaces them through the new path. Pointing it back at
the database (:meth:`PartitionRelay.restore`, also done by healing the service) closes the
proxied ones the same way. Everything is bounded: at most
``max_connections`` relayed connections (extra ones are closed at once), and
each pump wakes every 0.2 s, so it notices a heal, a close or a stop.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from typing import Any

POLL_S = 0.2
CHUNK = 64 * 1024


class PartitionRelay:
    """Relay 127.0.0.1:<port> to ``target``; :attr:`partitioned` stalls every byte while set."""

    def __init__(self, target: tuple[str, int], *, max_connections: int = 32) -> None:
        self.target = target
        self.direct = target
        self.clients: set[socket.socket] = set()
        self.max_connections = max_connections
        self.partitioned = threading.Event()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.open = 0
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(POLL_S)
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, name="poet-partition-relay", daemon=True).start()

    def stats(self) -> dict[str, Any]:
        return {"port": self.port, "partitioned": self.partitioned.is_set(), "open": self.open,
                "target": f"{self.target[0]}:{self.target[1]}", "direct": self.target == self.direct}

    def retarget(self, target: tuple[str, int]) -> int:
        """Send new connections to ``target``; close the open ones (returns how many), so they are replaced."""
        with self.lock:
            self.target = target
            open_now = list(self.clients)
        for client in open_now:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        return len(open_now)

    def restore(self) -> int:
        """Back to the database itself (a no-op returning 0 when the relay already goes there)."""
        return self.retarget(self.direct) if self.target != self.direct else 0

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                if self.open >= self.max_connections:
                    client.close()
                    continue
                self.open += 1
                self.clients.add(client)
            threading.Thread(target=self._relay, args=(client,), name="poet-partition-pump", daemon=True).start()

    def _wait_healed(self, *socks: socket.socket) -> bool:
        """While partitioned, hold (reading nothing); False once stopped."""
        while self.partitioned.is_set():
            if self.stopped.wait(POLL_S):
                return False
        return not self.stopped.is_set()

    def _relay(self, client: socket.socket) -> None:
        server: socket.socket | None = None
        try:
            if not self._wait_healed():  # a connect during the partition never completes
                return
            try:
                server = socket.create_connection(self.target, timeout=3)
            except OSError:
                return  # the database is down: the client sees its connection closed, at once
            pair = {client: server, server: client}
            for sock in pair:
                sock.setblocking(True)
            while not self.stopped.is_set():
                if not self._wait_healed():
                    return
                ready, _, _ = select.select(list(pair), [], [], POLL_S)
                for sock in ready:
                    if self.partitioned.is_set():
                        break  # bytes that arrived stay unread until the heal
                    data = sock.recv(CHUNK)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            return
        finally:
            for end in (client, server):
                if end is not None:
                    with contextlib.suppress(OSError):
                        end.close()
            with self.lock:
                self.open -= 1
                self.clients.discard(client)

    def stop(self) -> None:
        self.stopped.set()
        with contextlib.suppress(OSError):
            self.listener.close()
