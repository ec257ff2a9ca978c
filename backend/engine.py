"""Where SQLite and PostgreSQL differ, and nowhere else: the `--db` argument, connecting,
placeholders, DDL types, errors, locks.

The backend's SQL is written once, in the dialect both engines share (SQLite's `?`
placeholders, `?1` for a parameter used twice, `RETURNING`, `ON CONFLICT`, partial
indexes). On SQLite the `sqlite3` connection is used as it is (no wrapper on the hot
path); on PostgreSQL `PgConnection` gives psycopg 3 the same small interface (`execute`,
`executemany`, `in_transaction`, `close`) and rewrites each statement once (cached).

Passwords: a URL may carry one, or libpq finds it in `PGPASSWORD` or the pgpass file
(`~/.pgpass`, `PGPASSFILE`); every text this module makes from a URL masks it.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import psycopg

SQLITE, POSTGRESQL = "sqlite", "postgresql"
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"]+")
_PASSWORD_PARAM = re.compile(r"(password=)[^&\s'\"]*", re.IGNORECASE)

#: Tables whose key is an integer `id` the database assigns (their INSERTs report it).
ROWID_TABLES = frozenset({
    "members", "lots", "ledger", "requests", "otps", "offers", "sms_outbox", "clubs", "branches",
    "audit_log",
})


def __getattr__(name: str) -> Any:
    """`DatabaseError` and `IntegrityError`: either engine's errors, for `except` clauses
    that must catch both. Looked up when needed, so that a SQLite-only command does not
    import psycopg (half a second)."""
    if name == "DatabaseError":
        import psycopg

        return (sqlite3.Error, psycopg.Error)
    if name == "IntegrityError":
        import psycopg

        return (sqlite3.IntegrityError, psycopg.IntegrityError)
    raise AttributeError(name)


class Connection(Protocol):
    """What the store layer needs of a connection: `sqlite3.Connection` has it as is."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...

    def close(self) -> None: ...

    @property
    def in_transaction(self) -> bool: ...


def mask(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***`."""
    return _URL.sub(lambda m: _mask_url(m.group(0)), text)


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{hostport}"
    query = _PASSWORD_PARAM.sub(r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True)
class Target:
    """A parsed `--db`: a SQLite file, or a PostgreSQL URL."""

    dialect: str
    path: Path | None = None
    url: str | None = None

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else mask(self.url or "")

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == POSTGRESQL


def parse_target(text: str | Path | Target) -> Target:
    """`postgresql://user@host:port/dbname` (or `postgres://`) or a SQLite file path."""
    if isinstance(text, Target):
        return text
    if isinstance(text, Path):
        return Target(SQLITE, path=text)
    if text.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(text)
        if not parts.path.strip("/"):
            raise ValueError(f"{mask(text)}: the URL names no database (…/dbname)")
        return Target(POSTGRESQL, url=text)
    if "://" in text:
        raise ValueError(f"{mask(text)}: only a file path or a postgresql:// URL is accepted")
    if not text:
        raise ValueError("--db is empty")
    return Target(SQLITE, path=Path(text))


def dialect_of(conn: Connection) -> str:
    return SQLITE if isinstance(conn, sqlite3.Connection) else POSTGRESQL


# --- PostgreSQL ------------------------------------------------------------------------


@cache
def _int_numeric() -> type:
    from psycopg.adapt import Loader

    class IntNumeric(Loader):
        """SUM() of BIGINT is NUMERIC: read it as int (money is whole rials), as SQLite."""

        def load(self, data: Any) -> int | float:
            text = bytes(data).decode()
            return float(text) if "." in text else int(text)

    return IntNumeric


_INSERT = re.compile(r"\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)


def _translate(sql: str) -> tuple[str, tuple[int, ...] | None, bool]:
    """(psycopg text, the order of numbered parameters or None, whether RETURNING id was
    added so that `lastrowid` works as on SQLite)."""
    out: list[str] = []
    order: list[int] = []
    numbered = False
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "'":
            j = sql.index("'", i + 1)
            while j + 1 < n and sql[j + 1] == "'":  # '' inside a literal
                j = sql.index("'", j + 2)
            out.append(sql[i : j + 1].replace("%", "%%"))
            i = j + 1
            continue
        if ch == "?":
            j = i + 1
            while j < n and sql[j].isdigit():
                j += 1
            if j > i + 1:
                numbered = True
                order.append(int(sql[i + 1 : j]) - 1)
            else:
                order.append(len(order))
            out.append("%s")
            i = j
            continue
        out.append("%%" if ch == "%" else ch)
        i += 1
    text = "".join(out)
    if text.strip().upper() == "BEGIN IMMEDIATE":
        text = "BEGIN"
    returning = False
    m = _INSERT.match(text)
    if m and m.group(1).lower() in ROWID_TABLES and "RETURNING" not in text.upper():
        text += " RETURNING id"
        returning = True
    return text, (tuple(order) if numbered else None), returning


class PgCursor:
    """The part of a sqlite3 cursor the backend reads, over a psycopg cursor."""

    __slots__ = ("_cur", "lastrowid")

    def __init__(self, cur: psycopg.Cursor[Any], lastrowid: int | None) -> None:
        self._cur = cur
        self.lastrowid = lastrowid

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def description(self) -> Any:
        return self._cur.description

    def fetchone(self) -> Any:
        return self._cur.fetchone() if self._cur.description else None

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall() if self._cur.description else []

    def __iter__(self) -> Any:
        return iter(self.fetchall())


class PgConnection:
    """A psycopg 3 connection in autocommit mode (transactions are explicit, as on SQLite)."""

    dialect = POSTGRESQL

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        #: locks are not waited for (see `nowait`)
        self.nowait = False
        from psycopg.pq import TransactionStatus

        self._idle = TransactionStatus.IDLE
        raw.adapters.register_loader("numeric", _int_numeric())
        self._cache: dict[str, tuple[str, tuple[int, ...] | None, bool]] = {}

    def _prepare(self, sql: str, params: Any) -> tuple[str, Any, bool]:
        found = self._cache.get(sql)
        if found is None:
            found = self._cache[sql] = _translate(sql)
        text, order, returning = found
        if order is not None:
            params = tuple(params[k] for k in order)
        return text, params, returning

    def execute(self, sql: str, parameters: Any = (), /) -> PgCursor:
        text, params, returning = self._prepare(sql, parameters)
        cur = self.raw.execute(text, params or None)
        if returning:
            row = cur.fetchone()
            return PgCursor(cur, int(row[0]) if row else None)
        return PgCursor(cur, None)

    def executemany(self, sql: str, parameters: Any, /) -> PgCursor:
        seq = list(parameters)
        if not seq:
            return PgCursor(self.raw.cursor(), None)
        text, _, _ = self._prepare(sql, seq[0])
        text = text.removesuffix(" RETURNING id")
        order = self._cache[sql][1]
        if order is not None:
            seq = [tuple(p[k] for k in order) for p in seq]
        cur = self.raw.cursor()
        cur.executemany(text, seq)
        return PgCursor(cur, None)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != self._idle

    def close(self) -> None:
        self.raw.close()


def connect_postgresql(target: Target) -> PgConnection:
    """A connection to `target`; errors name the database with its password masked."""
    import psycopg

    try:
        raw = psycopg.connect(target.url or "", autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise ConnectError(f"{target}: cannot connect: {mask(str(exc)).strip()}") from None
    return PgConnection(raw)


class ConnectError(Exception):
    """The database cannot be reached (its message never holds a password)."""


# --- DDL and locks ---------------------------------------------------------------------

_DDL_PG = (
    (re.compile(r"\bINTEGER PRIMARY KEY\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),  # rials exceed 2**31; SQLite's INTEGER is 64-bit
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),  # PostgreSQL's REAL is 4 bytes
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\)\s*WITHOUT ROWID"), ")"),
)


def ddl(dialect: str, sql: str) -> str:
    """A CREATE/ALTER statement written for SQLite, in `dialect`."""
    if dialect == SQLITE:
        return sql
    for pattern, repl in _DDL_PG:
        sql = pattern.sub(repl, sql)
    return sql


def table_names(conn: Connection) -> set[str]:
    if dialect_of(conn) == SQLITE:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    else:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    return {r[0] for r in rows}


def reset_id_sequence(conn: Connection, table: str) -> None:
    """After rows were inserted with explicit ids: the next assigned id follows the largest."""
    if dialect_of(conn) == POSTGRESQL:
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
        )


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """BEGIN ... COMMIT, or ROLLBACK on any exception (a failed COMMIT too).

    On SQLite BEGIN IMMEDIATE: the write lock is taken first, so two processes on one
    file serialise their writes instead of failing to upgrade a read lock.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _lock_id(name: str) -> int:
    """A stable signed 64-bit advisory-lock number for `name` (the same in every process)."""
    digest = hashlib.blake2b(f"loyalty:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class LockBusy(Exception):
    """A lock another transaction holds, in `nowait` mode: do this work in a later one."""

    sqlstate = "55P03"


@contextmanager
def nowait(conn: Connection, on: bool = True) -> Iterator[None]:
    """While on, a lock another transaction holds is not waited for: LockBusy (or
    PostgreSQL's lock_not_available) instead. A transaction that waits only while it
    holds no other lock can never be part of a deadlock: the group commit waits in its
    first request only and leaves a busy request to the next transaction."""
    if not isinstance(conn, PgConnection):
        yield
        return
    was, conn.nowait = conn.nowait, on
    try:
        yield
    finally:
        conn.nowait = was


def exclusive(conn: Connection, name: str) -> None:
    """Wait for the lock `name` until the transaction ends; one process at a time.

    SQLite's BEGIN IMMEDIATE already excludes every other writer; on PostgreSQL a
    transaction-scoped advisory lock (released by COMMIT, ROLLBACK, or a dead session).
    """
    if isinstance(conn, PgConnection):
        if conn.nowait:
            if not try_exclusive(conn, name):
                raise LockBusy(name)
        else:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_lock_id(name),))


def try_exclusive(conn: Connection, name: str) -> bool:
    """Take the lock `name` for this transaction if no one holds it; whether it was taken."""
    if dialect_of(conn) == SQLITE:
        return True
    row = conn.execute("SELECT pg_try_advisory_xact_lock(?)", (_lock_id(name),)).fetchone()
    return bool(row[0])


def bulk_insert(
    conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Insert many rows as they are (ids included); how many. PostgreSQL: one COPY."""
    cols = ", ".join(columns)
    if isinstance(conn, PgConnection):
        n = 0
        with conn.raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
        return n
    batch = list(rows)
    marks = ", ".join("?" for _ in columns)
    conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", batch)
    return len(batch)


def row_lock(conn: Connection, lock: bool = True, *, of: str | None = None) -> str:
    """The clause that locks the rows a SELECT reads until COMMIT: PostgreSQL's
    FOR NO KEY UPDATE (it leaves foreign-key checks by other transactions unblocked),
    NOWAIT in `nowait` mode; nothing on SQLite, where BEGIN IMMEDIATE has excluded every
    other writer already."""
    if not lock or not isinstance(conn, PgConnection):
        return ""
    clause = f" FOR NO KEY UPDATE OF {of}" if of else " FOR NO KEY UPDATE"
    return clause + " NOWAIT" if conn.nowait else clause


def skip_locked(conn: Connection) -> str:
    """Rows another transaction has claimed are passed over, not waited for (PostgreSQL)."""
    return "" if dialect_of(conn) == SQLITE else " FOR UPDATE SKIP LOCKED"


def is_race(exc: BaseException) -> bool:
    """An error that means another process got there first or that two transactions
    crossed (unique key taken meanwhile, deadlock, serialisation failure): doing the
    work again after the other one's commit gives the right answer. Never on SQLite,
    whose BEGIN IMMEDIATE lets one writer at a time see and change the file."""
    sqlstate = getattr(exc, "sqlstate", None)
    return sqlstate in ("23505", "40P01", "40001", "55P03")


def is_busy(exc: BaseException) -> bool:
    """A lock was busy in `nowait` mode: nothing went wrong, the work just waits its turn."""
    return getattr(exc, "sqlstate", None) == "55P03"
