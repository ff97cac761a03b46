"""Optional packet capture of a gate run's loopback traffic with tcpdump (``poet gate run --capture``).

The capture is evidence for protocol obligations (framing, resets, TLS). It is
best effort: when tcpdump is missing or not permitted, the run goes on and the
report says why there is no ``capture.pcap``. The capture is bounded in packets
and bytes per packet, listens on the loopback interface only, and stops when
the run ends.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from poetkb.environment import find_binary, install_hint
from poetkb.gates.schema import TargetInfo

MAX_PACKETS = 200_000
SNAPLEN = 2048


def ports_of(target: TargetInfo) -> list[int]:
    """The TCP ports of the edge's listeners and the upstreams."""
    urls = [target.base_url, target.tls_url, target.mtls_url, target.metrics_url,
            *(u.url for u in target.upstreams)]
    ports = set()
    for url in urls:
        if url:
            parts = urlsplit(url)
            ports.add(parts.port or (443 if parts.scheme == "https" else 80))
    return sorted(ports)


class PacketCapture:
    """A running tcpdump writing ``capture.pcap``; :meth:`stop` ends it and returns any problem."""

    def __init__(self, proc: subprocess.Popen[bytes] | None, path: Path, problem: str | None) -> None:
        self.proc = proc
        self.path = path
        self.problem = problem

    @classmethod
    def start(cls, root: Path, target: TargetInfo) -> PacketCapture:
        path = root / "capture.pcap"
        binary = find_binary("tcpdump")
        if binary is None:
            return cls(None, path, f"--capture: tcpdump is not installed ({install_hint('tcpdump')})")
        ports = ports_of(target)
        expr = " or ".join(f"tcp port {p}" for p in ports) or "tcp"
        # immediate mode: packets reach the file as they come, not in kernel blocks lost when tcpdump stops
        argv = [binary, "-i", "lo", "--immediate-mode", "-U", "-n", "-s", str(SNAPLEN), "-c", str(MAX_PACKETS),
                "-w", str(path), expr]
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            return cls(None, path, f"--capture: tcpdump could not start: {exc}")
        lines: list[str] = []
        listening = threading.Event()

        def read_stderr() -> None:  # tcpdump says "listening on lo" once packets are being captured
            assert proc.stderr is not None
            for raw in proc.stderr:
                lines.append(raw.decode(errors="replace").strip())
                if "listening on" in lines[-1]:
                    listening.set()

        threading.Thread(target=read_stderr, daemon=True, name="poet-tcpdump").start()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and proc.poll() is None and not listening.is_set():
            listening.wait(0.05)
        if proc.poll() is not None or not listening.is_set():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)
            time.sleep(0.05)  # let the reader drain what tcpdump said
            if proc.stderr is not None:
                proc.stderr.close()
            return cls(None, path, f"--capture: tcpdump did not start listening (permission?): "
                                   f"{' '.join(lines)[:200] or 'no output'}")
        return cls(proc, path, None)

    def stop(self) -> str | None:
        if self.proc is None:
            return self.problem
        time.sleep(0.2)  # the last packets of the run reach tcpdump
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        if self.proc.stderr is not None:
            time.sleep(0.05)  # the reader thread reaches end of file first
            self.proc.stderr.close()
        if not self.path.exists():
            return "--capture: tcpdump wrote no file"
        return None
