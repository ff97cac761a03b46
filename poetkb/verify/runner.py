"""Run probes against the real NGINX and HAProxy binaries on loopback.

One :class:`Harness` per run starts two demo upstreams (``poetkb.demo.upstream``,
with their fault and counter API) and a run directory; each probe then gets its
own proxy process on a free loopback port, its steps run in order, and the
proxy is stopped whatever happens. Every wait is bounded; the first step that
does not show what the probe expects ends the probe with a message saying what
was expected and what came back.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import Field

from poetkb.demo import health, procs
from poetkb.errors import EnvironmentProblem
from poetkb.models import PoetModel
from poetkb.verify.config_frame import render_config
from poetkb.verify.probes import Expect, Probe, ProbeRequest, Proxy, RemapStep, RuntimeStep, Step

HOST = "127.0.0.1"
START_TIMEOUT = 5.0
MAX_REPLY = 256 * 1024
PROBE_HOST = "probe.test"
#: time for the new workers of a reloaded NGINX to take over the listening socket
RELOAD_SETTLE_S = 0.6


class ProbeResult(PoetModel):
    """The outcome of one probe on one proxy binary."""

    id: str
    proxy: Proxy
    version: str | None = None
    passed: bool
    failures: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    #: claims this probe verifies (filled in by the caller from the catalog)
    claims: list[str] = Field(default_factory=list)
    recorded_version: str | None = None


class Reply(PoetModel):
    """What came back for one request: status (0 when the connection closed without an answer)."""

    status: int
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = ""
    echo: dict[str, Any] | None = None


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


class Harness:
    """A run directory and three demo upstreams (``a``, ``b``, ``c``) shared by the probes of one run."""

    def __init__(self, run_dir: Path | None = None) -> None:
        self._own_dir = run_dir is None
        self.root = Path(run_dir or tempfile.mkdtemp(prefix="poet-verify-")).resolve()
        self.ports: dict[str, int] = {}
        self.pids: dict[str, int] = {}
        self.dead = 0

    @property
    def marker(self) -> str:
        return str(self.root)

    def __enter__(self) -> Harness:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            for name in ("a", "b", "c"):
                port = free_port()
                argv = [sys.executable, "-m", "poetkb.demo.upstream", "--name", f"verify-{name}", "--host", HOST,
                        "--port", str(port), "--run-dir", self.marker]
                self.pids[name] = procs.spawn(argv, self.root / f"upstream-{name}.log")
                self.ports[name] = port
            for name, port in self.ports.items():
                ok, last = health.wait_for(lambda p=port: health.http_request(  # type: ignore[misc]
                    f"http://{HOST}:{p}/__poet/health", timeout=1).status == 200, timeout=START_TIMEOUT)
                if not ok:
                    raise EnvironmentProblem(f"probe upstream {name} did not start on port {port}: {last}",
                                             hint=f"see {self.root / f'upstream-{name}.log'}")
            self.dead = free_port()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the upstreams this harness started; remove the run directory it created."""
        for pid in self.pids.values():
            if procs.owned(pid, self.marker):
                procs.stop(pid)
        self.pids.clear()
        if self._own_dir:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- upstream control ------------------------------------------------------------------------
    def admin(self, name: str, method: str, what: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"http://{HOST}:{self.ports[name]}/__poet/{what}"
        data = json.dumps(body).encode() if body is not None else None
        reply = health.http_request(url, method=method, body=data, timeout=2,
                                    headers={"Content-Type": "application/json"} if data else None)
        if reply.status != 200:
            raise EnvironmentProblem(f"upstream {name}: {method} {what} answered {reply.status}: {reply.body[:200]!r}")
        result: dict[str, Any] = json.loads(reply.body)
        return result

    def reset(self) -> None:
        """Clear faults and counters on both upstreams."""
        for name in self.ports:
            self.admin(name, "DELETE", "fault")
            self.admin(name, "POST", "counters/reset")

    def placeholders(self, run: Path, listen: int) -> dict[str, str]:
        return {"listen": str(listen), "a": f"{HOST}:{self.ports['a']}", "b": f"{HOST}:{self.ports['b']}",
                "c": f"{HOST}:{self.ports['c']}",
                "dead": f"{HOST}:{self.dead}", "run": str(run)}


# -- one probe ---------------------------------------------------------------------------------------
def run_probe(probe: Probe, harness: Harness, binary: str, version: str | None = None) -> ProbeResult:
    """Start ``binary`` with the probe's configuration, run its steps, stop it; never raises for a mismatch."""
    started = time.monotonic()
    run = harness.root / probe.id
    shutil.rmtree(run, ignore_errors=True)
    (run / "tmp").mkdir(parents=True)
    listen = free_port()
    try:
        config = render_config(probe.proxy, probe.config, harness.placeholders(run, listen))
    except KeyError as exc:
        return ProbeResult(id=probe.id, proxy=probe.proxy, version=version, passed=False,
                           failures=[f"config: {exc.args[0]}"])
    for name, content in probe.files.items():
        if "/" in name or name.startswith("."):
            return ProbeResult(id=probe.id, proxy=probe.proxy, version=version, passed=False,
                               failures=[f"files: {name!r} must be a plain file name"])
        (run / name).write_text(content, encoding="utf-8")
    conf = run / ("nginx.conf" if probe.proxy == "nginx" else "haproxy.cfg")
    conf.write_text(config, encoding="utf-8")
    log = run / "proxy.log"
    if probe.proxy == "nginx":
        argv = [binary, "-p", str(run), "-c", str(conf), "-e", str(run / "error.log")]
    else:
        argv = [binary, "-db", "-f", str(conf)]
    harness.reset()
    pid = procs.spawn(argv, log)
    failures: list[str] = []
    try:
        ok, _ = health.wait_for(lambda: _accepts(listen), timeout=START_TIMEOUT,
                                abort=lambda: None if procs.alive(pid) else "exited")
        if not ok:
            failures.append(f"{probe.proxy} did not start: {_tail(log)} {_tail(run / 'error.log')}".strip())
        else:
            failures = _run_steps(probe, harness, _Live(run=run, listen=listen, pid=pid, conf=conf))
    finally:
        if procs.owned(pid, harness.marker):
            procs.stop(pid, timeout=3.0)
    return ProbeResult(id=probe.id, proxy=probe.proxy, version=version, passed=not failures, failures=failures,
                       seconds=round(time.monotonic() - started, 2))


def _tail(path: Path, lines: int = 4) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    return ""


@dataclass(frozen=True)
class _Live:
    """The running proxy of one probe: its run directory, port, pid and configuration file."""

    run: Path
    listen: int
    pid: int
    conf: Path


def _run_steps(probe: Probe, harness: Harness, live: _Live) -> list[str]:
    saved: dict[str, tuple[int | None, str | None]] = {}
    for number, step in enumerate(probe.steps, start=1):
        problem = _run_step(step, harness, live, saved)
        if problem:
            return [f"step {number}: {problem}"]
    return []


def _run_step(step: Step, harness: Harness, live: _Live,
              saved: dict[str, tuple[int | None, str | None]]) -> str | None:
    listen, run = live.listen, live.run
    if step.sleep_s is not None:
        time.sleep(step.sleep_s)
        return None
    if step.fault is not None:
        if step.fault.clear:
            harness.admin(step.fault.upstream, "DELETE", "fault")
        else:
            body = step.fault.model_dump(exclude={"upstream", "clear"})
            harness.admin(step.fault.upstream, "PUT", "fault", body)
        return None
    if step.counters is not None:
        return _check_counters(step, harness)
    if step.remap is not None:
        return _check_remap(step.remap, saved)
    if step.runtime is not None:
        return _runtime(step.runtime, run / "admin.sock")
    if step.reconfigure is not None:
        return _reconfigure(step.reconfigure, harness, live)
    assert step.request is not None
    if step.parallel > 1:
        return _parallel(step, step.request, listen)
    for attempt in range(step.repeat):
        try:
            reply = send(step.request, listen)
        except (OSError, http.client.HTTPException) as exc:
            return f"{_what(step.request)}: no reply ({exc})"
        if step.expect is not None:
            problem = compare(step.expect, reply, saved)
            if problem:
                where = f" (request {attempt + 1} of {step.repeat})" if step.repeat > 1 else ""
                return f"{_what(step.request)}{where}: {problem}"
        if step.save:
            saved[step.save] = (_serial(reply), _upstream(reply))
    return None


def _reconfigure(fragment: str, harness: Harness, live: _Live) -> str | None:
    """Rewrite an NGINX probe's configuration and reload it (SIGHUP to the master), as an operator would."""
    try:
        config = render_config("nginx", fragment, harness.placeholders(live.run, live.listen))
    except KeyError as exc:
        return f"reconfigure: {exc.args[0]}"
    live.conf.write_text(config, encoding="utf-8")
    if not procs.alive(live.pid):
        return "reconfigure: nginx is no longer running"
    os.kill(live.pid, signal.SIGHUP)
    time.sleep(RELOAD_SETTLE_S)
    if not procs.alive(live.pid):
        return f"reconfigure: nginx exited on reload: {_tail(live.run / 'error.log')}"
    return None


def _runtime(step: RuntimeStep, sock_path: Path) -> str | None:
    """Send one command to HAProxy's runtime API and check its answer."""
    chunks: list[bytes] = []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(sock_path))
            sock.sendall(step.command.encode() + b"\n")
            while sum(map(len, chunks)) < MAX_REPLY:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError as exc:
        return f"runtime API: {step.command!r} failed: {exc}"
    answer = b"".join(chunks).decode(errors="replace").strip()
    if step.reply_contains is not None and step.reply_contains not in answer:
        return f"runtime API: {step.command!r} answered {answer[:200]!r}, expected {step.reply_contains!r} in it"
    return None


def _check_remap(remap: RemapStep, saved: dict[str, tuple[int | None, str | None]]) -> str | None:
    missing = [label for label in [*remap.before, *remap.after] if label not in saved]
    if missing:
        return f"no request was saved under {', '.join(missing)}"
    pairs = [(saved[b][1], saved[a][1]) for b, a in zip(remap.before, remap.after, strict=True)]
    counted = [(was, now) for was, now in pairs if was not in remap.ignore_from]
    moved = sum(1 for was, now in counted if was != now)
    where = f"{moved} of {len(counted)} keys moved to another upstream"
    if remap.moved_at_least is not None and moved < remap.moved_at_least:
        return f"{where}, expected at least {remap.moved_at_least}"
    if remap.moved_at_most is not None and moved > remap.moved_at_most:
        return f"{where}, expected at most {remap.moved_at_most}"
    return None


def _parallel(step: Step, request: ProbeRequest, listen: int) -> str | None:
    """Send ``step.parallel`` copies of the request at once and count the replies by status (0: no reply)."""
    from collections import Counter
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> int:
        try:
            return send(request, listen).status
        except (OSError, http.client.HTTPException):
            return 0

    with ThreadPoolExecutor(max_workers=step.parallel) as pool:
        got = Counter(pool.map(one, range(step.parallel)))
    if dict(got) != step.statuses:
        return f"{_what(request)} x{step.parallel} at once: replies by status {dict(sorted(got.items()))}, " \
               f"expected {dict(sorted(step.statuses.items()))}"
    return None


def _what(request: ProbeRequest) -> str:
    if request.raw is not None:
        return "raw " + (request.raw.split("\r\n", 1)[0] or "request")
    return f"{request.method} {request.path}"


def _check_counters(step: Step, harness: Harness) -> str | None:
    count = step.counters
    assert count is not None
    names = count.upstream if isinstance(count.upstream, list) else [count.upstream]
    total = sum(int(harness.admin(name, "GET", "counters")["total"]) for name in names)
    if count.reset:
        for name in names:
            harness.admin(name, "POST", "counters/reset")
    who = "+".join(names)
    if count.total is not None and total != count.total:
        return f"upstream {who} received {total} requests, expected {count.total}"
    if count.at_most is not None and total > count.at_most:
        return f"upstream {who} received {total} requests, expected at most {count.at_most}"
    if count.at_least is not None and total < count.at_least:
        return f"upstream {who} received {total} requests, expected at least {count.at_least}"
    return None


def send(request: ProbeRequest, port: int) -> Reply:
    """Send one request to the proxy and read the reply (bounded in size and time)."""
    if request.raw is not None:
        return _send_raw(request, port)
    conn = http.client.HTTPConnection(HOST, port, timeout=request.timeout_s)
    headers = {"Host": PROBE_HOST, **request.headers}
    try:
        conn.request(request.method, request.path, body=request.body, headers=headers)
        resp = conn.getresponse()
        body = resp.read(MAX_REPLY)
        return _reply(resp.status, [(k, v) for k, v in resp.getheaders()], body)
    finally:
        conn.close()


def _send_raw(request: ProbeRequest, port: int) -> Reply:
    data = (request.raw or "").encode("latin-1")
    chunks: list[bytes] = []
    deadline = time.monotonic() + request.timeout_s
    with socket.create_connection((HOST, port), timeout=request.timeout_s) as sock:
        sock.sendall(data)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while time.monotonic() < deadline and sum(map(len, chunks)) < MAX_REPLY:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if _complete(b"".join(chunks)):
                    break
    raw = b"".join(chunks)
    if not raw.startswith(b"HTTP/"):
        return Reply(status=0, body=raw[:200].decode("latin-1"))
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = [tuple(line.split(":", 1)) for line in lines[1:] if ":" in line]
    return _reply(status, [(k.strip(), v.strip()) for k, v in headers], body)


def _complete(raw: bytes) -> bool:
    """True when a whole response with a Content-Length has arrived."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value.strip())
    return False


def _reply(status: int, headers: list[tuple[str, str]], body: bytes) -> Reply:
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    text = body.decode("utf-8", errors="replace")
    echo = None
    if "json" in merged.get("content-type", ""):
        with contextlib.suppress(ValueError):
            parsed = json.loads(text)
            echo = parsed if isinstance(parsed, dict) else None
    return Reply(status=status, headers=merged, body=text[:4000], echo=echo)


def _serial(reply: Reply) -> int | None:
    value = (reply.echo or {}).get("serial")
    return value if isinstance(value, int) else None


def _upstream(reply: Reply) -> str | None:
    name = (reply.echo or {}).get("upstream")
    return name[len("verify-"):] if isinstance(name, str) and name.startswith("verify-") else None


def _matches(expected: str, actual: str | None) -> bool:
    if actual is None:
        return False
    return expected == "*" or actual == expected


def compare(expect: Expect, reply: Reply, saved: dict[str, tuple[int | None, str | None]]) -> str | None:
    """None when ``reply`` shows what ``expect`` says, else what differs."""
    if expect.status is not None:
        wanted = expect.status if isinstance(expect.status, list) else [expect.status]
        if reply.status not in wanted:
            shown = "no response (connection closed)" if reply.status == 0 else f"status {reply.status}"
            return f"expected status {' or '.join(map(str, wanted))}, got {shown}"
    for name, value in expect.headers.items():
        actual = reply.headers.get(name.lower())
        if not _matches(value, actual):
            return f"expected response header {name}: {value}, got {actual!r}"
    for name in expect.absent:
        if name.lower() in reply.headers:
            return f"expected no response header {name}, got {reply.headers[name.lower()]!r}"
    if expect.body_contains is not None and expect.body_contains not in reply.body:
        return f"expected the body to contain {expect.body_contains!r}, got {reply.body[:160]!r}"
    needs_echo = expect.upstream_headers or expect.upstream_absent or expect.upstream or \
        expect.same_serial_as or expect.new_serial_than or expect.same_upstream_as
    if needs_echo and reply.echo is None:
        return f"expected an answer from an upstream, got status {reply.status} with body {reply.body[:120]!r}"
    echo = reply.echo or {}
    headers = echo.get("headers")
    received: dict[str, Any] = headers if isinstance(headers, dict) else {}
    for name, value in expect.upstream_headers.items():
        actual = received.get(name.lower())
        if not _matches(value, actual):
            return f"expected the upstream to receive {name}: {value}, it received {actual!r}"
    for name in expect.upstream_absent:
        if name.lower() in received:
            return f"expected the upstream not to receive {name}, it received {received[name.lower()]!r}"
    if expect.upstream is not None and _upstream(reply) != expect.upstream:
        return f"expected upstream {expect.upstream} to answer, got {echo.get('upstream')!r}"
    if expect.same_upstream_as is not None:
        was = saved.get(expect.same_upstream_as, (None, None))[1]
        now = _upstream(reply)
        if was in expect.allow_moved_from:
            if now == was:
                return f"expected the request to leave upstream {was}, it still went there"
        elif now != was:
            return f"expected upstream {was} again (as for {expect.same_upstream_as!r}), got {now}"
    serial = _serial(reply)
    if expect.same_serial_as is not None:
        before = saved.get(expect.same_serial_as, (None, None))[0]
        if before is None or serial != before:
            return f"expected the stored answer (serial {before}), got serial {serial}"
    if expect.new_serial_than is not None:
        before = saved.get(expect.new_serial_than, (None, None))[0]
        if serial is None or serial == before:
            return f"expected a fresh answer (serial other than {before}), got serial {serial}"
    return None
