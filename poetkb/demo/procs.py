"""Start, watch and stop the demo's processes without leaving any behind.

Every demo process is started *detached*: a short-lived ``sh`` starts it in a
new session with its output appended to a log file and prints its pid, then
exits. The process is therefore never a child of the caller (a CLI that exits,
or a test runner), so nothing has to reap it and no zombie keeps a pid alive.
Stopping checks that a pid still belongs to the demo (its command line names
the run directory) before signalling it, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from poetkb.errors import EnvironmentProblem

#: the child gets stdout from the caller (a log file), stderr appended to a file; sh reports the pid on stderr
_LAUNCH = '"$@" </dev/null 2>>"$POET_DEMO_ERR" &\necho $! >&2'


def spawn(argv: Sequence[str], log_path: Path, *, stderr_path: Path | None = None,
          env: dict[str, str] | None = None) -> int:
    """Start ``argv`` detached, stdout appended to ``log_path`` (stderr too unless ``stderr_path``); return its pid.

    The log file is opened here and positioned at its end. HAProxy switches its
    stdout to non-blocking with ``F_SETFL``, which also clears ``O_APPEND``; an
    offset already at the end keeps it from writing over earlier lines.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ if env is None else env)
    full_env["POET_DEMO_ERR"] = str(stderr_path or log_path)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.lseek(fd, 0, os.SEEK_END)
        out = subprocess.run(
            ["/bin/sh", "-c", _LAUNCH, "sh", *argv], env=full_env, stdout=fd, stderr=subprocess.PIPE,
            text=True, timeout=10, start_new_session=True, check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvironmentProblem(f"cannot start {argv[0]}: {exc}", hint=f"see {log_path}") from exc
    finally:
        os.close(fd)
    return int(out.stderr.strip().splitlines()[-1])


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rfind(")") + 2 :].split()
    return rest[0], int(rest[1])


def alive(pid: int | None) -> bool:
    """True when ``pid`` is a running process (a zombie counts as gone)."""
    if not pid or pid <= 0:
        return False
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def owned(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is alive and its command line contains ``marker`` (the run directory)."""
    return pid is not None and alive(pid) and marker in cmdline(pid)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (nginx or HAProxy workers of a master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid and stat[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def find_by_marker(marker: str) -> list[int]:
    """Every live process whose command line contains ``marker``."""
    me = os.getpid()
    return [
        int(entry.name) for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and int(entry.name) != me and alive(int(entry.name))
        and marker in cmdline(int(entry.name))
    ]


def wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait until every pid has exited; return the ones still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if alive(p)]
    return left


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def stop(pid: int, *, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
    """Stop a process and its direct children: ``sig``, then SIGKILL for whatever outlives ``timeout``."""
    if not alive(pid):
        return
    family = [pid, *children(pid)]
    _signal(pid, sig)
    left = wait_gone(family, timeout)
    for other in left:
        _signal(other, signal.SIGKILL)
    left = wait_gone(left, 2.0)
    if left:
        raise EnvironmentProblem(f"processes {left} did not exit after SIGKILL",
                                 hint="check `ps -o pid,stat,cmd -p " + ",".join(map(str, left)) + "`")
