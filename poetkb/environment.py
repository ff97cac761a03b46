"""What this machine has for testing an edge: proxy binaries, capture tools, the knowledge base.

Used by ``poet init`` and by features that need a binary (the demo edge, packet
captures) to say clearly what is missing and how to install it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from pydantic import BaseModel

from poetkb.paths import default_db_path, work_dir

#: tool -> (version arguments, Debian package that provides it)
TOOLS: dict[str, tuple[list[str], str]] = {
    "nginx": (["-v"], "nginx"),
    "haproxy": (["-v"], "haproxy"),
    "varnishd": (["-V"], "varnish"),
    "tcpdump": (["--version"], "tcpdump"),
    "openssl": (["version"], "openssl"),
    "node": (["--version"], "nodejs"),
    # the service tier's database server (Debian keeps it in /usr/lib/postgresql/N/bin, off PATH)
    "postgres": (["--version"], "postgresql"),
}

_VERSION_RE = re.compile(r"(\d+\.\d+(?:\.\d+)?)")
_EXTRA_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


class ToolInfo(BaseModel):
    """One external tool: whether it is here, where, which version, and how to install it."""

    name: str
    found: bool
    path: str | None = None
    version: str | None = None
    install_hint: str


class MachineReport(BaseModel):
    """What ``poet init`` reports."""

    tools: list[ToolInfo]
    db_path: str
    db_exists: bool
    work_dir: str


def find_binary(name: str) -> str | None:
    """Locate a binary on PATH or in the sbin directories where distributions put daemons."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _EXTRA_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file():
            return str(candidate)
    if name == "postgres":
        import glob

        found_pg = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        return found_pg[-1] if found_pg else None
    return None


def install_hint(name: str) -> str:
    package = TOOLS.get(name, ([], name))[1]
    return f"apt-get install -y {package}"


def tool_info(name: str) -> ToolInfo:
    args, _ = TOOLS.get(name, (["--version"], name))
    path = find_binary(name)
    version = None
    if path:
        try:
            out = subprocess.run([path, *args], capture_output=True, text=True, timeout=5)
            match = _VERSION_RE.search(out.stdout + out.stderr)
            version = match.group(1) if match else None
        except (OSError, subprocess.TimeoutExpired):
            version = None
    return ToolInfo(name=name, found=path is not None, path=path, version=version, install_hint=install_hint(name))


def machine_report(db_path: Path | None = None) -> MachineReport:
    target = db_path or default_db_path()
    return MachineReport(
        tools=[tool_info(name) for name in TOOLS],
        db_path=str(target),
        db_exists=target.exists(),
        work_dir=str(work_dir()),
    )
