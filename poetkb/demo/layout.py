"""Where the demo's files are and which ports it uses.

- Templates and variant definitions: ``poetkb/_demo`` in an installed wheel,
  else the checkout's ``demo/`` directory (like the shipped catalog).
- Runtime state: one run directory, ``poetkb.paths.work_dir() / "demo"``.
- Ports: every listener derives from one base port (``--base-port``, env
  ``POET_DEMO_BASE_PORT``, default 18080) by a fixed offset, so a whole demo
  moves with one number and two demos never overlap when their bases are 20 apart.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from poetkb.errors import EnvironmentProblem, InputError
from poetkb.paths import work_dir

DEFAULT_BASE_PORT = 18080
HOST = "127.0.0.1"

#: listener name -> offset from the base port
PORT_OFFSETS: dict[str, int] = {
    "http": 0,
    "tls": 1,
    "mtls": 2,
    "metrics": 3,
    "metrics_bridge": 4,
    "healthy-a": 10,
    "healthy-b": 11,
    "faulty": 12,
}
#: how many consecutive ports one demo may use, counting from the base
PORT_SPAN = 20
UPSTREAMS: tuple[tuple[str, str], ...] = (("healthy-a", "healthy"), ("healthy-b", "healthy"), ("faulty", "faulty"))


def demo_root() -> Path:
    """The demo's templates and variants: inside the wheel, or ``demo/`` in a source checkout."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_demo"
    if (packaged / "variants.yaml").is_file():
        return packaged
    return here.parent / "demo"


def run_dir() -> Path:
    """The one directory holding every runtime file of the demo (configs, logs, pids, cache, certs)."""
    return work_dir() / "demo"


def base_port_from_env(value: int | None = None) -> int:
    """The base port: ``value`` when given, else ``POET_DEMO_BASE_PORT``, else 18080; validated."""
    if value is None:
        text = os.environ.get("POET_DEMO_BASE_PORT", "").strip()
        if not text:
            return DEFAULT_BASE_PORT
        if not text.isdigit():
            raise InputError(f"POET_DEMO_BASE_PORT={text!r} is not a port number",
                             field="POET_DEMO_BASE_PORT", hint="use a number such as 18080")
        value = int(text)
    if not 1024 <= value <= 65535 - PORT_SPAN:
        raise InputError(f"base port {value} is out of range", field="base_port",
                         hint=f"choose a base port between 1024 and {65535 - PORT_SPAN}")
    return value


def ports_for(base: int, names: list[str] | None = None) -> dict[str, int]:
    """The port of each listener for a base port."""
    return {name: base + off for name, off in PORT_OFFSETS.items() if names is None or name in names}


def port_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on ``host:port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def check_ports_free(ports: dict[str, int]) -> None:
    """Raise a clear error naming the first busy port (and every other busy one)."""
    busy = [(name, port) for name, port in ports.items() if not port_free(port)]
    if busy:
        listed = ", ".join(f"{port} ({name})" for name, port in busy)
        first = busy[0][1]
        raise EnvironmentProblem(
            f"{'port' if len(busy) == 1 else 'ports'} {listed} on {HOST} {'is' if len(busy) == 1 else 'are'} "
            f"already in use; the demo needs "
            f"ports {min(ports.values())}-{max(ports.values())} free",
            hint=f"stop what listens there (`ss -ltnp 'sport = :{first}'`) or choose another base port with "
                 f"--base-port or POET_DEMO_BASE_PORT",
        )
