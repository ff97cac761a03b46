"""The service's data: migrations, a bounded connection pool, and the account and order operations.

Every operation is written the right way (row locks in id order, one
transaction per transfer with deadlock retries, numbers from a sequence under a
unique index) unless the service runs a seeded-fault variant, whose flaws are
written here next to the right code so the difference is plain to read.
Runtime faults (slow queries, a held table lock, dropped connections) are
injected here too, through :class:`Faults`.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from poetkb.demo.service.variants import Flaws

MIGRATIONS: list[tuple[str, str]] = [
    ("001_accounts_orders", """
        CREATE TABLE accounts (
            id bigserial PRIMARY KEY,
            owner text NOT NULL,
            balance bigint NOT NULL CHECK (balance >= 0),
            counter bigint NOT NULL DEFAULT 0
        );
        CREATE TABLE orders (
            id bigserial PRIMARY KEY,
            number bigint NOT NULL,
            account_id bigint NOT NULL REFERENCES accounts (id),
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE SEQUENCE order_number_seq;
    """),
    ("002_order_number_unique", "CREATE UNIQUE INDEX orders_number_key ON orders (number);"),
    ("006_outbox", """
        CREATE TABLE outbox (
            id bigserial PRIMARY KEY,
            event_id text NOT NULL UNIQUE,
            payload jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            published_at timestamptz
        );
        CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
    """),
]

#: migrations applied while the service runs (``POST /__poet/migrate``), each under a bounded lock wait
ONLINE_MIGRATIONS: dict[str, str] = {
    "003_accounts_note": "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS note text",
}
#: the longest an online migration waits for its lock before it gives up (and is tried again later)
MIGRATION_LOCK_TIMEOUT = "1s"
#: how long a racy flaw computes between its read and its write. Wide enough that concurrent requests overlap
#: even on a loaded two-core machine, so the seeded race shows every time rather than by luck.
RACE_WINDOW_S = 0.03


@dataclass(frozen=True)
class StagedMigration:
    """An online migration of several steps, with the statements that undo it (a gate applies, then reverts it).

    ``flawed_steps`` is the form a seeded-fault variant ships instead (empty: the same steps).
    """

    steps: tuple[str, ...]
    down: tuple[str, ...]
    flawed_steps: tuple[str, ...] = ()
    flawed_down: tuple[str, ...] = ()


#: staged online migrations (``POST /__poet/migrate``, ``POST /__poet/migrate/down``)
STAGED_MIGRATIONS: dict[str, StagedMigration] = {
    # expand only: a new nullable column; the running (previous) code never names it, so it keeps working
    "004_accounts_display_name": StagedMigration(
        steps=("ALTER TABLE accounts ADD COLUMN display_name text",),
        down=("ALTER TABLE accounts DROP COLUMN IF EXISTS display_name",),
        # the flaw: a contract step shipped with the expand: the column the running code reads is renamed
        flawed_steps=("ALTER TABLE accounts RENAME COLUMN owner TO display_name",),
        flawed_down=("ALTER TABLE accounts RENAME COLUMN display_name TO owner",)),
    # four steps, so a gate can interrupt it between any two
    "005_orders_status": StagedMigration(
        steps=("ALTER TABLE orders ADD COLUMN status text",
               "UPDATE orders SET status = 'placed'",
               "ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'placed'",
               "CREATE INDEX orders_status_idx ON orders (status)"),
        down=("DROP INDEX IF EXISTS orders_status_idx", "ALTER TABLE orders DROP COLUMN IF EXISTS status")),
}

#: how often a transfer that hit a deadlock or serialization failure is tried in all
TRANSFER_TRIES = 4


class PoolTimeout(Exception):
    """No database connection became free in time."""


class NotFound(Exception):
    """An account the request names does not exist."""


class Refused(Exception):
    """The request cannot be done (not enough money, a bad amount)."""


@dataclass
class Faults:
    """Runtime faults of the database layer, set through the admin API."""

    slow_query_ms: int = 0


def _migration_sql(name: str, flaws: Flaws) -> str:
    """The statements of the migration called ``name`` as this variant applies them."""
    if name == "002_order_number_unique" and flaws.duplicate_ids:
        return "SELECT 1"  # the flaw: numbers are computed by the application and never constrained
    if name in ONLINE_MIGRATIONS:
        return ONLINE_MIGRATIONS[name]
    if name in STAGED_MIGRATIONS:
        staged = STAGED_MIGRATIONS[name]
        flawed = flaws.migration_incompatible and staged.flawed_steps
        return ";\n".join(staged.flawed_steps if flawed else staged.steps)
    return dict(MIGRATIONS)[name]


def migrate(dsn: str, flaws: Flaws) -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction; return the names applied."""
    import psycopg

    applied: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            sql = _migration_sql(name, flaws)
            with conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '2s'")
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
            applied.append(name)
    return applied


class Pool:
    """A fixed number of connections; a request waits at most ``timeout_s`` for one (:class:`PoolTimeout`).

    A pooled connection is validated (``SELECT 1``) before each use; one that
    broke (the database restarted, a backend was terminated) is closed and
    replaced by a new one, so the service recovers by itself once the database
    is back.
    """

    def __init__(self, dsn: str, size: int, timeout_s: float, *, unbounded_wait: bool = False,
                 no_reconnect: bool = False, deadline_s: float | None = None) -> None:
        self.dsn = dsn
        self.deadline_s = deadline_s
        self.leases: dict[int, tuple[float, Any]] = {}
        self.severed = 0
        if deadline_s is not None:
            threading.Thread(target=self._watchdog, name="poet-pool-watchdog", daemon=True).start()
        self.no_reconnect = no_reconnect
        self.size = size
        self.timeout_s = timeout_s
        self.unbounded_wait = unbounded_wait
        self.free: queue.LifoQueue[Any] = queue.LifoQueue()
        for _ in range(size):
            self.free.put(None)  # a slot without a connection yet
        self.lock = threading.Lock()
        self.in_use = 0
        self.waiting = 0
        self.timeouts = 0
        self.replaced = 0

    def _open(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, autocommit=False, connect_timeout=2)

    def _lease(self, lease: int, conn: Any) -> None:
        if self.deadline_s is not None and conn is not None:
            with self.lock:
                deadline = self.leases.get(lease, (time.monotonic() + self.deadline_s, None))[0]
                self.leases[lease] = (deadline, conn)

    def _watchdog(self) -> None:
        """Sever a connection whose lease outlived the deadline, so a query into a silent network fails.

        Shutting the socket down makes the blocked read return at once; the
        request fails (503) and the broken connection is replaced on next use.
        Runs for the life of the process, waking every 0.1 s.
        """
        import os
        import socket

        while True:
            time.sleep(0.1)
            now = time.monotonic()
            with self.lock:
                # a severed lease is dropped: a connection opened to replace it gets a deadline of its own
                late = [self.leases.pop(key)[1] for key, (deadline, _) in list(self.leases.items()) if deadline < now]
            for conn in late:
                with contextlib.suppress(Exception):
                    dup = os.dup(conn.pgconn.socket)
                    with socket.socket(fileno=dup) as sock:
                        sock.shutdown(socket.SHUT_RDWR)
                    with self.lock:
                        self.severed += 1

    @staticmethod
    def _usable(conn: Any) -> bool:
        """Validate a pooled connection before use: the server may have restarted while it sat idle."""
        import psycopg

        try:
            conn.execute("SELECT 1")
            conn.rollback()
        except psycopg.Error:
            return False
        return True

    @contextmanager
    def connection(self) -> Iterator[Any]:
        import psycopg

        with self.lock:
            self.waiting += 1
        try:
            # the flaw: wait as long as it takes (a minute here, so even the flawed demo ends)
            slot = self.free.get(timeout=60.0 if self.unbounded_wait else self.timeout_s)
        except queue.Empty:
            with self.lock:
                self.timeouts += 1
            raise PoolTimeout(f"no database connection free within {self.timeout_s:g} s") from None
        finally:
            with self.lock:
                self.waiting -= 1
        with self.lock:
            self.in_use += 1
        conn = slot
        lease = id(threading.current_thread())
        try:
            self._lease(lease, conn)  # the deadline covers the validation too: it may meet a silent network
            if conn is None:
                conn = self._open()
            elif not self.no_reconnect and (conn.closed or conn.broken or not self._usable(conn)):
                # a connection that broke (database restarted, backend terminated) is replaced
                self.replaced += 1
                conn.close()
                conn = None
                with self.lock:
                    self.leases.pop(lease, None)  # a fresh connection, a fresh deadline (its connect has its own)
                conn = self._open()
            self._lease(lease, conn)
            yield conn
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
        except BaseException:
            if conn is not None and not conn.closed:
                try:
                    conn.rollback()
                except psycopg.Error:
                    if not self.no_reconnect:
                        conn.close()
            raise
        finally:
            with self.lock:
                self.in_use -= 1
                self.leases.pop(lease, None)
            if self.no_reconnect:
                self.free.put(conn)  # the flaw: a broken connection goes back into the pool, forever
            else:
                self.free.put(conn if conn is not None and not conn.closed and not conn.broken else None)

    def stats(self) -> dict[str, int | float]:
        with self.lock:
            return {"size": self.size, "in_use": self.in_use, "waiting": self.waiting, "timeouts": self.timeouts,
                    "replaced": self.replaced, "timeout_s": self.timeout_s, "severed": self.severed}

    def close(self) -> None:
        while True:
            try:
                conn = self.free.get_nowait()
            except queue.Empty:
                return
            if conn is not None:
                conn.close()


class Store:
    """The service's operations on accounts and orders."""

    def __init__(self, pool: Pool, flaws: Flaws, faults: Faults,
                 publish: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.publish = publish
        self.pool = pool
        self.flaws = flaws
        self.faults = faults

    def _slow(self, conn: Any) -> None:
        if self.faults.slow_query_ms:
            conn.execute("SELECT pg_sleep(%s)", (self.faults.slow_query_ms / 1000,))

    def ping(self) -> None:
        with self.pool.connection() as conn:
            conn.execute("SELECT 1")
            conn.commit()

    def create_account(self, owner: str, balance: int) -> dict[str, Any]:
        if balance < 0:
            raise Refused("balance must not be negative")
        with self.pool.connection() as conn:
            self._slow(conn)
            row = conn.execute("INSERT INTO accounts (owner, balance) VALUES (%s, %s) RETURNING id, balance",
                               (owner, balance)).fetchone()
            conn.commit()
        return {"id": row[0], "balance": row[1]}

    def account(self, account_id: int) -> dict[str, Any]:
        with self.pool.connection() as conn:
            self._slow(conn)
            row = conn.execute("SELECT id, owner, balance, counter FROM accounts WHERE id = %s",
                               (account_id,)).fetchone()
            conn.commit()
        if row is None:
            raise NotFound(f"account {account_id} does not exist")
        return {"id": row[0], "owner": row[1], "balance": row[2], "counter": row[3]}

    def increment(self, account_id: int) -> int:
        with self.pool.connection() as conn:
            self._slow(conn)
            if self.flaws.lost_update:
                # the flaw: read, compute in the application, write back; a concurrent increment is lost
                row = conn.execute("SELECT counter FROM accounts WHERE id = %s", (account_id,)).fetchone()
                conn.commit()
                if row is None:
                    raise NotFound(f"account {account_id} does not exist")
                time.sleep(RACE_WINDOW_S)
                conn.execute("UPDATE accounts SET counter = %s WHERE id = %s", (row[0] + 1, account_id))
                conn.commit()
                return int(row[0] + 1)
            row = conn.execute("UPDATE accounts SET counter = counter + 1 WHERE id = %s RETURNING counter",
                               (account_id,)).fetchone()
            conn.commit()
        if row is None:
            raise NotFound(f"account {account_id} does not exist")
        return int(row[0])

    def transfer(self, source: int, dest: int, amount: int) -> dict[str, Any]:
        """Move ``amount`` from ``source`` to ``dest`` atomically (retried on deadlock)."""
        import psycopg

        if amount <= 0:
            raise Refused("amount must be positive")
        tries = 1 if self.flaws.deadlock_unretried else TRANSFER_TRIES
        for attempt in range(1, tries + 1):
            try:
                with self.pool.connection() as conn:
                    self._slow(conn)
                    if self.flaws.partial_write:
                        return self._transfer_autocommit(conn, source, dest, amount)
                    if self.flaws.lost_update:
                        return self._transfer_unlocked(conn, source, dest, amount)
                    return self._transfer(conn, source, dest, amount) | {"attempts": attempt}
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == tries:
                    raise
                time.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    def _transfer(self, conn: Any, source: int, dest: int, amount: int) -> dict[str, Any]:
        with conn.transaction():
            if not self.flaws.deadlock_unretried:
                # lock both rows in id order, so two opposite transfers never wait on each other in a cycle
                conn.execute("SELECT id FROM accounts WHERE id = ANY(%s) ORDER BY id FOR UPDATE", ([source, dest],))
            cur = conn.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s AND balance >= %s "
                               "RETURNING balance", (amount, source, amount))
            if cur.fetchone() is None:
                exists = conn.execute("SELECT 1 FROM accounts WHERE id = %s", (source,)).fetchone()
                raise Refused("not enough money") if exists else NotFound(f"account {source} does not exist")
            if self.flaws.deadlock_unretried:
                # the flaw: rows locked in request order, so opposite transfers wait in a cycle
                time.sleep(RACE_WINDOW_S)
            cur = conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s RETURNING balance",
                               (amount, dest))
            if cur.fetchone() is None:
                raise NotFound(f"account {dest} does not exist")  # rolls the debit back with the transaction
        conn.commit()
        return {"from": source, "to": dest, "amount": amount}

    def _transfer_autocommit(self, conn: Any, source: int, dest: int, amount: int) -> dict[str, Any]:
        # the flaw: each statement commits on its own, so the debit stays when the credit fails
        conn.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s", (amount, source))
        conn.commit()
        cur = conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s RETURNING balance",
                           (amount, dest))
        if cur.fetchone() is None:
            conn.commit()
            raise NotFound(f"account {dest} does not exist")
        conn.commit()
        return {"from": source, "to": dest, "amount": amount, "attempts": 1}

    def _transfer_unlocked(self, conn: Any, source: int, dest: int, amount: int) -> dict[str, Any]:
        # the flaw: balances read, computed and written back without row locks
        rows = dict(conn.execute("SELECT id, balance FROM accounts WHERE id = ANY(%s)", ([source, dest],)).fetchall())
        conn.commit()
        if source not in rows or dest not in rows:
            raise NotFound("account does not exist")
        if rows[source] < amount:
            raise Refused("not enough money")
        time.sleep(RACE_WINDOW_S)
        conn.execute("UPDATE accounts SET balance = %s WHERE id = %s", (rows[source] - amount, source))
        conn.execute("UPDATE accounts SET balance = %s WHERE id = %s", (rows[dest] + amount, dest))
        conn.commit()
        return {"from": source, "to": dest, "amount": amount, "attempts": 1}

    def create_order(self, account_id: int) -> dict[str, Any]:
        with self.pool.connection() as conn:
            self._slow(conn)
            if self.flaws.duplicate_ids:
                # the flaw: the next number computed by the application, racing every other request
                number = conn.execute("SELECT coalesce(max(number), 0) + 1 FROM orders").fetchone()[0]
                time.sleep(RACE_WINDOW_S)
                row = conn.execute("INSERT INTO orders (number, account_id) VALUES (%s, %s) RETURNING id, number",
                                   (number, account_id)).fetchone()
            else:
                row = conn.execute("INSERT INTO orders (number, account_id) VALUES (nextval('order_number_seq'), "
                                   "%s) RETURNING id, number", (account_id,)).fetchone()
            event = {"event_id": f"order-{row[0]}", "order_id": row[0], "account_id": account_id}
            if not self.flaws.outbox_dual_write:
                # the event is committed with the order (the outbox); the relay publishes it, at least once
                conn.execute("INSERT INTO outbox (event_id, payload) VALUES (%s, %s)",
                             (event["event_id"], json.dumps(event)))
            conn.commit()
        if self.flaws.outbox_dual_write and self.publish is not None:
            # the flaw: published after the commit, straight to the broker; if that fails the event is gone
            self.publish(event)
        return {"id": row[0], "number": row[1]}

    def drop_connections(self) -> int:
        """Terminate every other backend of the database (the pool's idle connections break)."""
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                                "current_database() AND pid <> pg_backend_pid()").fetchall()
            conn.commit()
        return len(rows)


def online_migration(dsn: str, name: str, flaws: Flaws) -> dict[str, Any]:
    """Apply one online migration, waiting at most MIGRATION_LOCK_TIMEOUT for its lock; say what happened."""
    import psycopg

    sql = ONLINE_MIGRATIONS.get(name)
    if sql is None:
        raise NotFound(f"no online migration {name!r}")
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM schema_migrations WHERE name = %s", (name,)).fetchone():
            return {"name": name, "applied": True, "already": True, "elapsed_ms": 0.0}
        try:
            with conn.transaction():
                # the flaw: no lock_timeout, so the ALTER queues behind any reader and every query behind it
                timeout = "0" if flaws.migration_no_lock_timeout else MIGRATION_LOCK_TIMEOUT
                conn.execute(f"SET LOCAL lock_timeout = '{timeout}'")
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
        except psycopg.errors.LockNotAvailable:
            return {"name": name, "applied": False, "reason": f"lock not acquired within {MIGRATION_LOCK_TIMEOUT}",
                    "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}
    return {"name": name, "applied": True, "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}


def hold_lock(dsn: str, seconds: float, *, mode: str = "ACCESS EXCLUSIVE") -> threading.Thread:
    """Hold a lock on ``accounts`` for ``seconds`` (at most 30) in a thread of its own (ACCESS SHARE: a long
    read, which an ALTER TABLE must wait for)."""
    import psycopg

    if mode not in ("ACCESS EXCLUSIVE", "ACCESS SHARE"):
        raise ValueError(mode)

    def hold() -> None:
        with psycopg.connect(dsn) as conn, conn.transaction():
            conn.execute(f"LOCK TABLE accounts IN {mode} MODE")
            time.sleep(min(seconds, 30.0))

    thread = threading.Thread(target=hold, daemon=True, name="poet-held-lock")
    thread.start()
    return thread


def staged_migration(dsn: str, name: str, flaws: Flaws, *, interrupt_after: int = 0) -> dict[str, Any]:
    """Apply a staged online migration; with ``interrupt_after`` k its session is killed after step k.

    The right way runs every step and the version record in one transaction, so a
    migration killed at any step leaves nothing behind and running it again
    completes it. The interruption is real: the session terminates its own
    backend (``pg_terminate_backend``), as a killed deploy job's would end.
    """
    import psycopg

    staged = STAGED_MIGRATIONS.get(name)
    if staged is None:
        raise NotFound(f"no staged migration {name!r}")
    steps = staged.flawed_steps if flaws.migration_incompatible and staged.flawed_steps else staged.steps
    started = time.monotonic()
    done = 0

    def result(**extra: Any) -> dict[str, Any]:
        return {"name": name, "steps": len(steps), "steps_run": done,
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1), **extra}

    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            if conn.execute("SELECT 1 FROM schema_migrations WHERE name = %s", (name,)).fetchone():
                return result(applied=True, already=True)
            # the flaw: each step commits on its own, so an interrupted run leaves the steps before it
            atomic = not flaws.migration_not_atomic
            with conn.transaction() if atomic else contextlib.nullcontext():
                if atomic:
                    conn.execute(f"SET LOCAL lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'")
                else:
                    conn.execute(f"SET lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'")
                for index, step in enumerate(steps, start=1):
                    conn.execute(step)
                    done = index
                    if interrupt_after and index == interrupt_after:
                        conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
    except psycopg.Error as exc:
        return result(applied=False, error=f"{type(exc).__name__}: {str(exc).strip()[:200]}")
    return result(applied=True)


def revert_staged(dsn: str, name: str, flaws: Flaws) -> dict[str, Any]:
    """Undo a staged migration (whatever part of it is there) and forget its version record."""
    import psycopg

    staged = STAGED_MIGRATIONS.get(name)
    if staged is None:
        raise NotFound(f"no staged migration {name!r}")
    down = staged.flawed_down if flaws.migration_incompatible and staged.flawed_down else staged.down
    undone = []
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        for statement in down:
            try:
                with conn.transaction():
                    conn.execute(statement)
                undone.append(statement)
            except psycopg.Error:
                continue  # that part was never applied
        conn.execute("DELETE FROM schema_migrations WHERE name = %s", (name,))
    return {"name": name, "reverted": undone}


def _schema_shape(conn: Any, schema: str) -> set[str]:
    """Tables, columns (type, nullability, default), indexes and constraints of ``schema``, as comparable lines.

    Read with ``search_path`` set to the schema alone, so names print unqualified in both schemas compared.
    """
    conn.execute(f"SET LOCAL search_path = {schema}")
    shape: set[str] = set()
    for table, column, kind, nullable, default in conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name <> 'schema_migrations'", (schema,)):
        shape.add(f"table {table}")
        shape.add(f"column {table}.{column} {kind} {'null' if nullable == 'YES' else 'not null'} default {default}")
    for name, definition in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename <> 'schema_migrations'",
            (schema,)):
        shape.add(f"index {name}: {definition.replace(f' ON {schema}.', ' ON ')}")
    for table, name, definition in conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = %s::regnamespace AND conrelid <> 0 AND conrelid::regclass::text <> "
            "'schema_migrations'", (schema,)):
        shape.add(f"constraint {table}.{name}: {definition}")
    conn.execute("SET LOCAL search_path = public")
    return shape


def schema_drift(dsn: str, flaws: Flaws) -> dict[str, Any]:
    """Compare the live schema with the one the applied migrations produce; list every difference.

    The expected schema is made for real: the migrations the version table names
    are applied, in order, to a scratch schema inside a transaction that is then
    rolled back, and both schemas are read back from the catalog.
    """
    import secrets

    import psycopg

    scratch = f"poet_expected_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=False, connect_timeout=5) as conn:
        applied = [row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY applied_at, name")]
        conn.execute(f"CREATE SCHEMA {scratch}")
        conn.execute(f"SET LOCAL search_path = {scratch}")
        for name in applied:
            try:
                conn.execute(_migration_sql(name, flaws))
            except KeyError:
                conn.rollback()
                return {"drift": [f"unknown migration {name} in schema_migrations"], "applied": applied}
        expected = _schema_shape(conn, scratch)
        live = _schema_shape(conn, "public")
        conn.rollback()
    if flaws.drift_tables_only:
        # the flaw: only table names are compared, so an extra column or index goes unnoticed
        expected = {line for line in expected if line.startswith("table ")}
        live = {line for line in live if line.startswith("table ")}
    drift = [f"unexpected {line}" for line in sorted(live - expected)]
    drift += [f"missing {line}" for line in sorted(expected - live)]
    return {"drift": drift, "applied": applied}


def relay_outbox(dsn: str, publish: Callable[[dict[str, Any]], bool], stop: threading.Event) -> None:
    """Publish unpublished outbox rows in order, marking each published only after the broker acknowledged it.

    Runs until ``stop`` is set, every 0.2 s (up to 2 s while the broker or the
    database fails), at most 100 rows a round, on a connection of its own.
    A row whose publish fails stays for the next round: at least once, never lost.
    """
    import psycopg

    pause = 0.2
    conn = None
    while not stop.wait(pause):
        try:
            if conn is None or conn.closed or conn.broken:
                conn = psycopg.connect(dsn, autocommit=True, connect_timeout=2)
            rows = conn.execute("SELECT id, payload FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 100"
                                ).fetchall()
            pause = 0.2
            for row_id, payload in rows:
                if not publish(payload):
                    pause = min(2.0, pause * 4)
                    break
                conn.execute("UPDATE outbox SET published_at = now() WHERE id = %s", (row_id,))
        except psycopg.Error:
            pause = 2.0
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
            conn = None
