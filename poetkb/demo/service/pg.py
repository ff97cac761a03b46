"""A real PostgreSQL cluster for the service tier: ``initdb`` at ``up``, ``pg_ctl`` to start, stop and restart.

The cluster lives in the service tier's run directory (``pgdata/``) and listens
on 127.0.0.1 only, on the tier's port; its unix socket is off. PostgreSQL
refuses to run as root, so when poetkb runs as root every command runs as the
``postgres`` system user (``runuser``), and the data directory is owned by it.
When that user cannot reach the run directory (a parent is private, as pytest's
temporary directories are), the cluster is made in a directory of its own under
the system's temporary directory instead (``poet-pg-<digest of the run
directory>/data``, its log beside it), and ``pgdata`` in the run directory links
to it. Local connections are trusted (the
demo's database holds only demo data and listens on loopback only).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from poetkb.errors import EnvironmentProblem

SUPERUSER = "poet"
DATABASE = "poet"
INSTALL_HINT = "install PostgreSQL with `apt-get install -y postgresql` (Debian/Ubuntu)"


def find_bin(name: str) -> str:
    """The path of a PostgreSQL server program (Debian keeps them under /usr/lib/postgresql/N/bin)."""
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if candidates:
        return candidates[-1]
    found = shutil.which(name)
    if found:
        return found
    raise EnvironmentProblem(f"PostgreSQL's {name} is not installed (looked in /usr/lib/postgresql/*/bin and on "
                             "PATH); the service tier needs a real PostgreSQL server", hint=INSTALL_HINT)


def _as_root() -> bool:
    return os.geteuid() == 0


def _pg_user() -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise EnvironmentProblem("poetkb runs as root and there is no `postgres` system user to run PostgreSQL as",
                                 hint=INSTALL_HINT + " (it creates the user), or run poetkb as a normal user") from exc
    return entry.pw_uid, entry.pw_gid


class Cluster:
    """One PostgreSQL cluster of the service tier."""

    def __init__(self, run_dir: Path, port: int) -> None:
        self.run_dir = run_dir
        self.port = port
        self.link = run_dir / "pgdata"

    @property
    def log(self) -> Path:
        """PostgreSQL's log: in the run directory's ``logs/``, or beside a private data directory."""
        if self.link.is_symlink():
            return self.data_dir.parent / "postgres.log"
        return self.run_dir / "logs" / "postgres.log"

    # -- where --------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        """The data directory: ``pgdata`` in the run directory, or where its link points."""
        return self.link.resolve() if self.link.is_symlink() else self.link

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={DATABASE} connect_timeout=3"

    def _wrap(self, argv: list[str]) -> list[str]:
        if _as_root():
            _pg_user()
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _run(self, argv: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(self._wrap(argv), capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise EnvironmentProblem(f"{Path(argv[0]).name} did not finish within {timeout:g} s",
                                     hint=f"see {self.log}") from exc
        except OSError as exc:
            raise EnvironmentProblem(f"cannot run {argv[0]}: {exc.strerror}", hint=INSTALL_HINT) from exc

    def _reachable_by_postgres(self, directory: Path) -> bool:
        """True when the postgres user can reach ``directory`` (every parent lets it through)."""
        done = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(directory)],
                              capture_output=True, timeout=10)
        return done.returncode == 0

    def _prepare_dir(self) -> Path:
        """Create the (empty) data directory, owned by whoever runs PostgreSQL."""
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        if self.link.is_symlink() or self.link.exists():
            return self.data_dir
        if not _as_root():
            self.link.mkdir(mode=0o700)
            return self.link
        uid, gid = _pg_user()
        self.run_dir.chmod(0o755)
        os.chown(self.run_dir / "logs", uid, gid)
        if self._reachable_by_postgres(self.run_dir):
            self.link.mkdir(mode=0o700)
            os.chown(self.link, uid, gid)
            return self.link
        digest = hashlib.sha256(str(self.run_dir).encode()).hexdigest()[:12]
        private = Path(tempfile.gettempdir()) / f"poet-pg-{digest}"
        if private.exists():
            shutil.rmtree(private)
        private.mkdir(mode=0o700)
        os.chown(private, uid, gid)
        self.link.symlink_to(private / "data")
        return private / "data"

    # -- lifecycle ----------------------------------------------------------------------------------
    def init(self) -> None:
        """``initdb`` once; later ``up`` calls reuse the cluster (the service migrates it)."""
        data = self._prepare_dir()
        if (data / "PG_VERSION").is_file():
            return
        done = self._run([find_bin("initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                          "--no-sync", "--no-instructions"], timeout=120)
        if done.returncode != 0:
            raise EnvironmentProblem(f"initdb failed for {data}: {(done.stderr or done.stdout).strip()[-400:]}",
                                     hint="remove the service tier's run directory with `poet demo down` and try "
                                          "again; check the disk has space")

    def start(self) -> None:
        """Start the server and wait until it accepts connections; a clear error with its log otherwise."""
        if _as_root():
            uid, gid = _pg_user()
            if not self.log.exists():
                self.log.touch()
            os.chown(self.log, uid, gid)
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=40 "
                   "-c deadlock_timeout=200ms")
        done = self._run([find_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log), "-o", options,
                          "-w", "-t", "30", "start"], timeout=45)
        if done.returncode != 0:
            raise EnvironmentProblem(f"PostgreSQL did not start on 127.0.0.1:{self.port}: "
                                     f"{(done.stderr or done.stdout).strip()[-300:]}\n{self.tail()}",
                                     hint=f"see {self.log}; if the port is in use, free it or choose another "
                                          "--base-port")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (fast: disconnect clients, roll back, shut down cleanly); no-op when it is down."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        done = self._run([find_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "-t", "20", "stop"],
                         timeout=30)
        if done.returncode != 0 and (self.data_dir / "postmaster.pid").exists() and mode != "immediate":
            self.stop("immediate")

    def restart(self) -> None:
        self.stop()
        self.start()

    def pid(self) -> int | None:
        """The postmaster's pid from ``postmaster.pid``, or None when the server is down."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        return int(first) if first.strip().isdigit() else None

    def remove(self) -> None:
        """Delete the cluster's files (after ``stop``), the private directory included."""
        data = self.data_dir
        if self.link.is_symlink():
            self.link.unlink()
            if data.parent.name.startswith("poet-pg-"):
                data = data.parent
        if data.exists():
            shutil.rmtree(data, ignore_errors=True)

    def tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no postgres log)"
