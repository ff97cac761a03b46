"""PostgreSQL under chaos: the SQL probe's query and the database actions, on loopback only.

Each function connects with psycopg (the service tier's driver) to the service tier's database, or to a DSN
the experiment names, after checking that the host is on loopback (unless remote targets are allowed).
Every connection has a connect timeout and every statement a ``statement_timeout``, so nothing here waits
without bound. The background actions (a held lock, slow statements) run in daemon threads that end by
themselves when their time is over; :meth:`Background.stop` cancels them early (the runner's cleanup).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from poetkb.errors import EnvironmentProblem, InputError

#: rows of a probe's answer kept in its output (and the journal)
MAX_ROWS = 50
CONNECT_TIMEOUT_S = 3


def service_dsn() -> str:
    """The running service tier's DSN; :class:`EnvironmentProblem` when the tier is not running."""
    from poetkb.demo.service.tier import load_service_state

    state = load_service_state()
    if state is None:
        raise EnvironmentProblem("this step needs the service tier's database, and the service tier is not running",
                                 hint="start it with `poet demo up --tier service` (or give the step a dsn)")
    return state.dsn


def resolve_dsn(dsn: str, *, allow_remote: bool) -> str:
    """``dsn`` (or the service tier's), refused unless its host is on loopback or remote targets are allowed."""
    import psycopg.conninfo

    chosen = dsn or service_dsn()
    try:
        params = psycopg.conninfo.conninfo_to_dict(chosen)
    except psycopg.ProgrammingError as exc:
        raise InputError(f"not a valid PostgreSQL connection string: {exc}", field="dsn") from None
    host = str(params.get("host") or params.get("hostaddr") or "")
    if not host or host.startswith("/"):
        raise InputError("the dsn must name a TCP host (host=127.0.0.1); unix sockets are not used", field="dsn")
    if not allow_remote:
        from poetkb.gates.probes import ensure_allowed

        ensure_allowed(f"http://{host}:{params.get('port') or 5432}/", allow_remote=False, what="dsn")
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
    params.setdefault("application_name", "poet-chaos")
    return psycopg.conninfo.make_conninfo("", **params)


def _connect(dsn: str, *, autocommit: bool = True) -> Any:
    import psycopg

    try:
        return psycopg.connect(dsn, autocommit=autocommit)
    except psycopg.Error as exc:
        raise EnvironmentProblem(f"cannot connect to PostgreSQL: {str(exc).strip().splitlines()[0]}") from None


def query(dsn: str, sql: str, timeout_s: float) -> dict[str, Any]:
    """Run ``sql`` read-only with a statement timeout; output as the SQL probe documents it.

    A database error (refused connection, timeout, a failing statement) is returned as ``error``, not
    raised: for a probe that is the system under test answering badly.
    """
    import psycopg

    t0 = time.perf_counter()
    try:
        with psycopg.connect(dsn, autocommit=False) as conn:
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
            cursor = conn.execute(sql)  # type: ignore[arg-type]  # the experiment's own query, read-only
            rows = cursor.fetchmany(MAX_ROWS + 1) if cursor.description else []
            total = cursor.rowcount if cursor.rowcount >= 0 else len(rows)
            conn.rollback()
    except psycopg.Error as exc:
        elapsed = round((time.perf_counter() - t0) * 1000, 1)
        return {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
                "elapsed_ms": elapsed}
    elapsed = round((time.perf_counter() - t0) * 1000, 1)
    kept = [[_plain(v) for v in row] for row in rows[:MAX_ROWS]]
    value = kept[0][0] if kept and kept[0] else None
    return {"rows": kept, "row_count": max(total, len(rows)), "value": value, "elapsed_ms": elapsed}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def terminate_backends(dsn: str, *, application_name: str, limit: int, timeout_s: float) -> int:
    """Terminate up to ``limit`` client backends of the database (never this session); how many were."""
    with _connect(dsn) as conn:
        conn.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM (SELECT pid FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
            "AND (%s = '' OR application_name = %s) ORDER BY pid LIMIT %s) AS chosen",
            (application_name, application_name, limit)).fetchall()
    return sum(1 for (done,) in rows if done)


class Background:
    """Sessions that hold a lock or run slow statements in daemon threads, bounded by ``seconds``."""

    def __init__(self, dsn: str, seconds: float, sessions: int, statements: list[str], label: str) -> None:
        self.dsn = dsn
        self.seconds = seconds
        self.label = label
        self.statements = statements
        self.sessions = sessions
        self.ready = threading.Barrier(sessions + 1)
        self.errors: list[str] = []
        self.pids: list[int] = []
        self._done = threading.Event()
        self._conns: list[Any] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, wait_s: float) -> Background:
        """Start the sessions; return once each holds what it should (or raise naming why not)."""
        for n in range(self.sessions):
            thread = threading.Thread(target=self._session, name=f"poet-chaos-pg-{self.label}-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        try:
            self.ready.wait(timeout=wait_s)
        except threading.BrokenBarrierError:
            self.stop()
            raise EnvironmentProblem(f"{self.label}: the database sessions did not start within {wait_s:g} s"
                                     + (f": {self.errors[0]}" if self.errors else "")) from None
        if self.errors:
            self.stop()
            raise EnvironmentProblem(f"{self.label}: {self.errors[0]}")
        return self

    def _session(self) -> None:
        import psycopg

        try:
            conn = psycopg.connect(self.dsn, autocommit=False)
        except psycopg.Error as exc:
            self.errors.append(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            self.ready.abort()
            return
        with self._lock:
            self._conns.append(conn)
            self.pids.append(conn.info.backend_pid)
        try:
            conn.execute(f"SET LOCAL statement_timeout = {int((self.seconds + 5) * 1000)}")
            for statement in self.statements[:-1]:
                conn.execute(statement)  # type: ignore[arg-type]  # built from validated names only
            with_sleep = self.statements[-1]
            try:
                self.ready.wait(timeout=CONNECT_TIMEOUT_S + 5)
            except threading.BrokenBarrierError:
                return
            if with_sleep:
                conn.execute(with_sleep, (self.seconds,))  # type: ignore[arg-type]
            else:
                self._done.wait(self.seconds)
        except psycopg.Error as exc:
            if not self._done.is_set():
                self.errors.append(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                self.ready.abort()
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            conn.close()

    def stop(self, join_s: float = 5.0) -> None:
        """Cancel what still runs, close the sessions and join the threads (bounded)."""
        self._done.set()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(Exception):  # a session already gone needs no cancel
                conn.cancel_safe(timeout=2) if hasattr(conn, "cancel_safe") else conn.cancel()
        deadline = time.monotonic() + join_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)


def hold_lock(dsn: str, table: str, mode: str, seconds: float) -> Background:
    """A session holding ``LOCK TABLE table IN mode MODE`` for ``seconds`` (names validated by the schema)."""
    return Background(dsn, seconds, 1, [f'LOCK TABLE "{table}" IN {mode} MODE', ""], "hold-lock").start(
        CONNECT_TIMEOUT_S + 10)


def slow_statements(dsn: str, sessions: int, seconds: float, table: str | None) -> Background:
    """``sessions`` sessions, each in one slow statement (reading ``table`` first when given)."""
    first = [f'SELECT 1 FROM "{table}" LIMIT 1'] if table else []
    return Background(dsn, seconds, sessions, [*first, "SELECT pg_sleep(%s)"], "slow-statements").start(
        CONNECT_TIMEOUT_S + 10)


def restart(timeout_s: float) -> float:
    """Restart the service tier's PostgreSQL; the seconds it took."""
    from poetkb.demo.service.tier import load_service_state, restart_database

    state = load_service_state()
    if state is None:
        raise EnvironmentProblem("pg_restart needs the service tier, and it is not running",
                                 hint="start it with `poet demo up --tier service`")
    t0 = time.monotonic()
    restart_database(state)
    return round(time.monotonic() - t0, 3)
