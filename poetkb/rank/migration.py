"""Read SQL migrations: the lock each DDL statement takes and whether old code keeps working.

A migration is risky in two ways a release owner must prove safe: the lock it
holds while it runs (a table rewrite under ACCESS EXCLUSIVE blocks every read
and write for as long as it takes; ``CREATE INDEX`` without ``CONCURRENTLY``
blocks writes), and backward compatibility (a dropped or renamed column breaks
the version of the application still running during the rollout). This module
reads the SQL a diff adds, one statement at a time, and says both for each,
following PostgreSQL's documented lock levels (11 and later: adding a column
with a constant default does not rewrite the table). It is a reading aid, not a
SQL parser: a statement it does not recognise is reported as ``unknown``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from poetkb.models import PoetModel

Lock = Literal["ACCESS EXCLUSIVE", "EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE", "SHARE UPDATE EXCLUSIVE",
               "ROW EXCLUSIVE", "none", "unknown"]

#: what each lock level blocks, in words
BLOCKS: dict[str, str] = {
    "ACCESS EXCLUSIVE": "blocks reads and writes",
    "EXCLUSIVE": "blocks writes",
    "SHARE ROW EXCLUSIVE": "blocks writes",
    "SHARE": "blocks writes",
    "SHARE UPDATE EXCLUSIVE": "reads and writes go on",
    "ROW EXCLUSIVE": "row locks only",
    "none": "no table lock",
    "unknown": "not recognised",
}
_VOLATILE = re.compile(r"\b(now|clock_timestamp|random|gen_random_uuid|uuid_generate_v[14]|nextval|"
                       r"statement_timestamp|timeofday)\s*\(", re.I)
_TABLE = r"(?:ONLY\s+)?(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(?P<table>[\w.\"]+)"
MAX_STATEMENTS = 200


class MigrationStatement(PoetModel):
    """One SQL statement a migration adds, with the lock it takes and what it means for a rolling release."""

    file: str
    line: int
    statement: str
    table: str | None = None
    lock: Lock
    rewrites_table: bool = False
    scans_table: bool = False
    backward_compatible: bool = True
    notes: list[str] = Field(default_factory=list)

    def describe(self) -> str:
        what = [f"{self.lock} lock ({BLOCKS[self.lock]})"]
        if self.rewrites_table:
            what.append("rewrites the table")
        elif self.scans_table:
            what.append("scans the table")
        if not self.backward_compatible:
            what.append("not backward compatible")
        shown = self.statement if len(self.statement) <= 70 else self.statement[:67] + "..."
        return f"{shown} ({self.file}:{self.line}): {', '.join(what)}"

    def words(self) -> str:
        """Words for ranking: what the statement risks, in the catalog's vocabulary."""
        out = ["schema migration", "ddl", self.lock.lower(), "lock"]
        if self.lock in ("ACCESS EXCLUSIVE", "EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE"):
            out.append("migration lock blocks writes table lock timeout")
        if self.rewrites_table:
            out.append("table rewrite")
        if not self.backward_compatible:
            out.append("backward compatible breaking schema change old application version expand contract")
        return " ".join(out)


def is_migration(path: str) -> bool:
    """A SQL file, or a file under a migrations directory (Alembic, Django, Flyway, ...)."""
    lower = path.lower()
    return lower.endswith(".sql") or "/migrations/" in f"/{lower}" or "/migrate/" in f"/{lower}" \
        or "alembic/versions/" in lower


def split_statements(text: str, first_line: int = 1) -> list[tuple[int, str]]:
    """(line, statement) for each ``;``-separated statement, comments dropped, whitespace folded."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start: int | None = None
    quote = False
    for offset, raw in enumerate(text.splitlines()):
        line = raw if quote else re.sub(r"--.*$", "", raw)
        for ch in line:
            if ch == "'":
                quote = not quote
            if ch == ";" and not quote:
                if buf or ch:
                    stmt = " ".join("".join(buf).split())
                    if stmt and start is not None:
                        out.append((start, stmt))
                buf, start = [], None
                continue
            if start is None and not ch.isspace():
                start = first_line + offset
            buf.append(ch)
        buf.append(" ")
        if len(out) >= MAX_STATEMENTS:
            break
    stmt = " ".join("".join(buf).split())
    if stmt and start is not None and len(out) < MAX_STATEMENTS:
        out.append((start, stmt))
    return out


def classify(statement: str, file: str, line: int) -> MigrationStatement | None:
    """The lock and compatibility of one statement; None for statements that are not schema or data changes."""
    s = statement.strip()
    upper = s.upper()

    def make(lock: Lock, table: str | None = None, **kw: object) -> MigrationStatement:
        return MigrationStatement(file=file, line=line, statement=s, table=table, lock=lock, **kw)  # type: ignore[arg-type]

    m = re.match(r"CREATE\s+(UNIQUE\s+)?INDEX\s+(CONCURRENTLY\s+)?.*?\bON\s+" + _TABLE, s, re.I | re.S)
    if m:
        if m.group(2):
            return make("SHARE UPDATE EXCLUSIVE", m.group("table"), scans_table=True,
                        notes=["built concurrently: reads and writes go on; it cannot run inside a transaction"])
        return make("SHARE", m.group("table"), scans_table=True,
                    notes=["without CONCURRENTLY the index build blocks every write to the table until it ends"])
    m = re.match(r"DROP\s+INDEX\s+(CONCURRENTLY\s+)?", s, re.I)
    if m:
        return make("SHARE UPDATE EXCLUSIVE" if m.group(1) else "ACCESS EXCLUSIVE",
                    notes=[] if m.group(1) else ["without CONCURRENTLY it takes ACCESS EXCLUSIVE on the table"])
    m = re.match(r"ALTER\s+TABLE\s+" + _TABLE + r"\s+(?P<rest>.*)$", s, re.I | re.S)
    if m:
        return _alter_table(m.group("table"), m.group("rest"), make)
    m = re.match(r"DROP\s+TABLE\s+" + _TABLE, s, re.I)
    if m:
        return make("ACCESS EXCLUSIVE", m.group("table"), backward_compatible=False,
                    notes=["the running application still reads this table"])
    m = re.match(r"(?:CREATE|ALTER)\s+TABLE\s+" + _TABLE, s, re.I)
    if m and upper.startswith("CREATE"):
        return make("none", m.group("table"), notes=["a new table: no existing rows are locked"])
    m = re.match(r"LOCK\s+(?:TABLE\s+)?" + _TABLE + r"(?:\s+IN\s+(?P<mode>[\w ]+?)\s+MODE)?", s, re.I)
    if m:
        mode = (m.group("mode") or "ACCESS EXCLUSIVE").upper()
        lock: Lock = mode if mode in BLOCKS else "unknown"  # type: ignore[assignment]
        return make(lock, m.group("table"), notes=["an explicit table lock"])
    if re.match(r"VACUUM\s+FULL|CLUSTER\b", s, re.I):
        return make("ACCESS EXCLUSIVE", rewrites_table=True, notes=["rewrites the table under ACCESS EXCLUSIVE"])
    if re.match(r"REINDEX\b", s, re.I):
        concurrently = "CONCURRENTLY" in upper
        return make("SHARE UPDATE EXCLUSIVE" if concurrently else "ACCESS EXCLUSIVE")
    m = re.match(r"(UPDATE|DELETE\s+FROM)\s+" + _TABLE, s, re.I)
    if m:
        notes = ["a data migration in the same release as the schema change"]
        if " WHERE " not in f" {upper} ":
            notes.append("no WHERE: every row is locked until the statement commits; batch it")
        return make("ROW EXCLUSIVE", m.group("table"), scans_table=" WHERE " not in f" {upper} ", notes=notes)
    if re.match(r"(ALTER|DROP)\s+(TYPE|FUNCTION|VIEW|SEQUENCE|SCHEMA|TRIGGER)\b", s, re.I):
        return make("ACCESS EXCLUSIVE", backward_compatible=not upper.startswith("DROP"))
    if re.match(r"(CREATE|ALTER|DROP|TRUNCATE|RENAME)\b", s, re.I):
        return make("unknown", notes=["a schema statement poetkb does not recognise: check its lock by hand"])
    return None


def _alter_table(table: str, rest: str, make: object) -> MigrationStatement:
    """ALTER TABLE: the strongest lock and rewrite among its actions."""
    build = make  # the closure from classify
    upper = " ".join(rest.upper().split())
    notes: list[str] = []
    lock: Lock = "ACCESS EXCLUSIVE"
    rewrites = scans = False
    compatible = True
    if re.search(r"\bVALIDATE\s+CONSTRAINT\b", upper) and upper.count(",") == 0:
        lock = "SHARE UPDATE EXCLUSIVE"
        scans = True
        notes.append("validating scans the table without blocking reads or writes")
    elif re.search(r"\bADD\s+(CONSTRAINT\s+\S+\s+)?(FOREIGN\s+KEY|CHECK|UNIQUE|PRIMARY\s+KEY)", upper):
        if "NOT VALID" in upper:
            notes.append("NOT VALID: existing rows are not checked now; validate later")
            lock = "SHARE ROW EXCLUSIVE" if "FOREIGN KEY" in upper else "ACCESS EXCLUSIVE"
        else:
            scans = True
            lock = "SHARE ROW EXCLUSIVE" if "FOREIGN KEY" in upper else "ACCESS EXCLUSIVE"
            notes.append("checks every existing row while the lock is held; add it NOT VALID, then VALIDATE")
            if "UNIQUE" in upper or "PRIMARY KEY" in upper:
                notes.append("builds an index under the lock; build it CONCURRENTLY first and add it USING INDEX")
    else:
        for action in re.split(r",\s*(?=(?:ADD|DROP|ALTER|RENAME|SET|VALIDATE)\b)", upper):
            if action.startswith("ADD") and not action.startswith("ADD CONSTRAINT"):
                has_default = " DEFAULT " in f" {action} "
                if has_default and _VOLATILE.search(action):
                    rewrites = True
                    notes.append("a volatile default fills every row: the table is rewritten under the lock")
                elif " NOT NULL" in action and not has_default:
                    compatible = False
                    notes.append("NOT NULL without a default fails on existing rows, and old code inserting "
                                 "without it breaks")
                elif has_default:
                    notes.append("a constant default is stored in the catalog (PostgreSQL 11+): no rewrite")
                else:
                    notes.append("a nullable column without default: a brief catalog change")
            elif action.startswith("DROP"):
                compatible = False
                notes.append("old code still reads what is dropped: drop it a release after the code stops")
            elif action.startswith("RENAME"):
                compatible = False
                notes.append("old code still uses the old name: add the new one, copy, switch, then drop")
            elif re.search(r"\bTYPE\b", action):
                rewrites = True
                compatible = False
                notes.append("changing a column's type rewrites the table (and its indexes) under the lock")
            elif "SET NOT NULL" in action:
                scans = True
                notes.append("SET NOT NULL scans every row under ACCESS EXCLUSIVE; add a CHECK NOT VALID first")
            elif re.search(r"\bSET\s+(LOGGED|UNLOGGED|TABLESPACE)\b", action):
                rewrites = True
    return build(lock, table, rewrites_table=rewrites, scans_table=scans or rewrites,  # type: ignore[operator]
                 backward_compatible=compatible, notes=notes)


def read_statements(text: str, file: str, first_line: int = 1) -> list[MigrationStatement]:
    """Every recognised schema or data statement in ``text`` (SQL, or the SQL strings of a Python migration)."""
    if not file.lower().endswith(".sql"):
        text = "\n".join(_sql_in_code(text))
    out = []
    for line, stmt in split_statements(text, first_line):
        found = classify(stmt, file, line)
        if found is not None:
            out.append(found)
    return out


def _sql_in_code(text: str) -> list[str]:
    """SQL inside a code migration: op.execute("..."), RunSQL("..."), op.create_index(...) read as DDL."""
    out = []
    for m in re.finditer(r"""(?:execute|RunSQL)\(\s*(?:sa\.text\()?\s*[rbuf]*(\"\"\"|'''|"|')(.+?)\1""", text, re.S):
        out.append(m.group(2).strip().rstrip(";") + ";")
    for m in re.finditer(r"op\.create_index\(([^)]*)\)", text):
        args = m.group(1)
        names = re.findall(r"""["']([\w.]+)["']""", args)
        concurrently = "postgresql_concurrently=True" in args.replace(" ", "")
        if len(names) >= 2:
            out.append(f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}{names[0]} ON {names[1]} (x);")
    for m in re.finditer(r"op\.(drop_column|alter_column|add_column)\(\s*[\"']([\w.]+)[\"']\s*,\s*([^\n]*)", text):
        kind, table, rest = m.groups()
        if kind == "drop_column":
            out.append(f"ALTER TABLE {table} DROP COLUMN x;")
        elif kind == "add_column":
            nullable = "nullable=False" not in rest.replace(" ", "")
            default = "server_default" in rest
            out.append(f"ALTER TABLE {table} ADD COLUMN x int{'' if nullable else ' NOT NULL'}"
                       f"{' DEFAULT 0' if default else ''};")
        elif "new_column_name" in rest:
            out.append(f"ALTER TABLE {table} RENAME COLUMN x TO y;")
        elif "type_" in rest:
            out.append(f"ALTER TABLE {table} ALTER COLUMN x TYPE text;")
        elif "nullable=False" in rest.replace(" ", ""):
            out.append(f"ALTER TABLE {table} ALTER COLUMN x SET NOT NULL;")
    return out
