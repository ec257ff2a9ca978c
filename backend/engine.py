"""Where SQLite and PostgreSQL differ, and nowhere else: the `--db` argument, connecting,
placeholders, DDL types, errors, locks.

The backend's SQL is written once, in the dialect both engines share (SQLite's `?`
placeholders, `?1` for a parameter used twice, `RETURNING`, `ON CONFLICT`, partial
indexes). On SQLite the `sqlite3` connection is used as it is (no wrapper on the hot
path); on PostgreSQL `PgConnection` gives a psycopg 3 session the same small interface
(`execute`, `executemany`, `in_transaction`, `close`), rewrites each statement once
(cached) and runs it through libpq directly, pipelined in a group commit's transaction.

Passwords: a URL may carry one, or libpq finds it in `PGPASSWORD` or the pgpass file
(`~/.pgpass`, `PGPASSFILE`); every text this module makes from a URL masks it.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    import psycopg

SQLITE, POSTGRESQL = "sqlite", "postgresql"
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"]+")
_PASSWORD_PARAM = re.compile(r"(password=)[^&\s'\"]*", re.IGNORECASE)

#: Tables whose key is an integer `id` the database assigns (their INSERTs report it).
ROWID_TABLES = frozenset({
    "members", "lots", "ledger", "requests", "otps", "offers", "sms_outbox", "clubs", "branches",
    "audit_log", "gift_batches", "gift_movements", "draws", "surveys", "tier_changes",
    "campaigns", "transfers",
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


def split_password(url: str) -> tuple[str, str | None]:
    """`url` without its password (in the user part or a `password=` parameter), and the
    password: for a program (pg_dump) that must get it through PGPASSWORD, never on its
    command line where `ps` shows it."""
    parts = urlsplit(url)
    password: str | None = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            user, _, secret = userinfo.partition(":")
            password = unquote(secret)
            netloc = f"{user}@{hostport}"
    query = []
    for item in parts.query.split("&") if parts.query else []:
        name, _, value = item.partition("=")
        if name.lower() == "password":
            password = unquote(value)
        else:
            query.append(item)
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(query), parts.fragment)), password


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


def _translate(sql: str) -> tuple[str, bool]:
    """(PostgreSQL text with `$n` parameters, whether RETURNING id was added so that
    `lastrowid` works as on SQLite). `?` is numbered as SQLite numbers it (one more than
    the largest so far), so the parameters are passed as they are, never reordered."""
    out: list[str] = []
    largest = 0
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "'":
            j = sql.index("'", i + 1)
            while j + 1 < n and sql[j + 1] == "'":  # '' inside a literal
                j = sql.index("'", j + 2)
            out.append(sql[i : j + 1])
            i = j + 1
            continue
        if ch == "?":
            j = i + 1
            while j < n and sql[j].isdigit():
                j += 1
            number = int(sql[i + 1 : j]) if j > i + 1 else largest + 1
            largest = max(largest, number)
            out.append(f"${number}")
            i = j
            continue
        out.append(ch)
        i += 1
    text = "".join(out)
    if text.strip().upper() == "BEGIN IMMEDIATE":
        text = "BEGIN"
    returning = False
    m = _INSERT.match(text)
    if m and m.group(1).lower() in ROWID_TABLES and "RETURNING" not in text.upper():
        text += " RETURNING id"
        returning = True
    return text, returning


# libpq result statuses (psycopg.pq.ExecStatus), without importing psycopg at start-up
_COMMAND_OK, _TUPLES_OK, _FATAL_ERROR, _PIPELINE_SYNC, _PIPELINE_ABORTED = 1, 2, 7, 10, 11
_SQLSTATE = ord("C")  # libpq's PG_DIAG_SQLSTATE
#: a statement is prepared on the server from its second use, up to this many per session
_PREPARE_AT, _MAX_PREPARED = 2, 400


def _load_numeric(data: bytes) -> int | float:
    """SUM() of BIGINT is NUMERIC: read it as int (money is whole rials), as SQLite."""
    return float(data) if b"." in data or b"N" in data else int(data)


def _load_text(data: bytes) -> str:
    return data.decode()


def _load_bool(data: bytes) -> bool:
    return data == b"t"


def _load_bytea(data: bytes) -> bytes:
    """BYTEA in the text format: `\\x` and hex digits (the server's default output)."""
    return bytes.fromhex(data[2:].decode()) if data.startswith(b"\\x") else data


_LOADERS: dict[int, Callable[[bytes], Any]] = {
    20: int, 21: int, 23: int, 26: int, 28: int,  # int8, int2, int4, oid, xid
    700: float, 701: float, 1700: _load_numeric, 16: _load_bool, 17: _load_bytea,
}  # fmt: skip


def _int_text(value: int) -> bytes:
    return str(value).encode()


def _float_text(value: float) -> bytes:
    return repr(value).encode()


def _bytes(value: bytes) -> bytes:
    """BYTEA's text input form: raw bytes would be cut at a NUL and read as escapes."""
    return b"\\x" + value.hex().encode()


#: how each Python type is sent, in PostgreSQL's text format; any other type goes through
#: psycopg's own adaptation (outside pipelines)
_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    str: str.encode, int: _int_text, float: _float_text, bytes: _bytes, bytearray: _bytes,
    bool: lambda v: b"t" if v else b"f",
}  # fmt: skip


def _params(parameters: Any) -> list[bytes | None]:
    """The parameters in PostgreSQL's text format (KeyError: a type the lean path does
    not send)."""
    enc = _ENCODERS
    return [None if v is None else enc[type(v)](v) for v in parameters]


def _param_type(value: Any) -> int:
    """The type a parameter is declared with, as psycopg would (0: what the SQL implies)."""
    if isinstance(value, bool):
        return 16
    if isinstance(value, int):
        return 20
    return 701 if isinstance(value, float) else 0


class _Statement:
    """One SQL text of the backend: its PostgreSQL form and its prepared name, if any."""

    __slots__ = ("loaders", "name", "returning", "text", "types", "uses")

    def __init__(self, text: str, returning: bool) -> None:
        self.text = text.encode()
        self.returning = returning
        self.name: bytes | None = None  # prepared on the server under this name
        self.uses = 0
        self.loaders: tuple[Callable[[bytes], Any], ...] | None = None
        self.types: list[int] | None = None


class _Prepare:
    """A PREPARE sent in a pipeline, whose answer is still to come."""

    __slots__ = ("stmt",)

    def __init__(self, stmt: _Statement) -> None:
        self.stmt = stmt


class PgCursor:
    """The part of a sqlite3 cursor the backend reads, over one libpq result.

    In a pipelined transaction (see `transaction`) the statement has only been sent: its
    result is waited for when it is first read, together with everything sent before."""

    __slots__ = ("_conn", "_failed", "_pos", "_res", "_stmt")

    def __init__(self, conn: PgConnection, stmt: _Statement, res: Any = None) -> None:
        self._conn = conn
        self._stmt = stmt
        self._res = res
        self._pos = 0
        self._failed = False

    def _result(self) -> Any:
        if self._res is None:
            if not self._failed:
                self._conn._wait()
            if self._res is None:
                import psycopg

                raise psycopg.errors.PipelineAborted("an earlier statement failed")
        return self._res

    def _rows(self, limit: int | None) -> list[tuple[Any, ...]]:
        res = self._result()
        if res.status != _TUPLES_OK:
            return []
        end = res.ntuples if limit is None else min(res.ntuples, self._pos + limit)
        stmt = self._stmt
        loaders = stmt.loaders
        if loaders is None or len(loaders) != res.nfields:
            loaders = stmt.loaders = tuple(
                _LOADERS.get(res.ftype(i), _load_text) for i in range(res.nfields)
            )
        get = res.get_value
        rows = []
        for r in range(self._pos, end):
            rows.append(
                tuple(
                    None if (v := get(r, c)) is None else load(v) for c, load in enumerate(loaders)
                )
            )
        self._pos = end
        return rows

    @property
    def lastrowid(self) -> int | None:
        if not self._stmt.returning:
            return None
        res = self._result()
        if res.status != _TUPLES_OK or res.ntuples == 0:
            return None
        return int(res.get_value(0, 0))

    @property
    def rowcount(self) -> int:
        count = self._result().command_tuples
        return count if count is not None else -1

    @property
    def description(self) -> Any:
        res = self._result()
        if res.status != _TUPLES_OK:
            return None
        return [(res.fname(i).decode(), None, None, None, None, None, None)
                for i in range(res.nfields)]  # fmt: skip

    def fetchone(self) -> Any:
        rows = self._rows(1)
        return rows[0] if rows else None

    def fetchall(self) -> list[Any]:
        return self._rows(None)

    def __iter__(self) -> Any:
        return iter(self.fetchall())


class _PsycopgCursor:
    """A statement with a parameter the lean path does not encode (a date, say): run by
    psycopg itself, outside pipelines."""

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

    def _has_rows(self) -> bool:
        res = self._cur.pgresult
        return res is not None and res.status == _TUPLES_OK

    def fetchone(self) -> Any:
        return self._cur.fetchone() if self._has_rows() else None

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall() if self._has_rows() else []

    def __iter__(self) -> Any:
        return iter(self.fetchall())


class _Many:
    """The cursors of an `executemany`: its rowcount is the sum, as sqlite3's."""

    __slots__ = ("_cursors",)

    def __init__(self, cursors: list[Any]) -> None:
        self._cursors = cursors

    @property
    def rowcount(self) -> int:
        return sum(max(c.rowcount, 0) for c in self._cursors)


class PgConnection:
    """A PostgreSQL session in autocommit mode (transactions are explicit, as on SQLite).

    psycopg 3 connects (URL, PGPASSWORD, pgpass) and does COPY; statements go straight
    through its libpq binding with text parameters and results: psycopg's own execute
    costs several times the CPU of the round trip on a statement this small. A statement
    used twice is prepared on the server. In a transaction opened with
    `transaction(conn, pipeline=True)` statements are pipelined: sent without waiting,
    and waited for only when a result is read, at `flush` or at the end of the
    transaction, so a request's writes cost no round trip of their own.
    """

    dialect = POSTGRESQL

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        import select

        from psycopg.pq import TransactionStatus

        self.raw = raw
        self._pq = raw.pgconn
        #: locks are not waited for (see `nowait`)
        self.nowait = False
        self._idle = TransactionStatus.IDLE
        raw.adapters.register_loader("numeric", _int_numeric())
        self._stmts: dict[str, _Statement] = {}
        self._prepared = 0
        self._encoding = raw.info.encoding
        self._readable = select.poll()
        self._readable.register(self._pq.socket, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(self._pq.socket, select.POLLIN | select.POLLOUT)
        #: in pipeline mode: what was sent and is waiting for its answer
        self._queue: list[PgCursor | _Prepare] | None = None
        #: advisory locks tried in the pipeline whose answer is not read yet
        self._guards: list[tuple[PgCursor, str]] = []
        #: a pipelined statement failed and its pipeline is not synced yet
        self._broken = False

    def _statement(self, sql: str) -> _Statement:
        stmt = self._stmts.get(sql)
        if stmt is None:
            stmt = self._stmts[sql] = _Statement(*_translate(sql))
        stmt.uses += 1
        return stmt

    def _error(self, res: Any) -> Exception:
        from psycopg.errors import error_from_result

        return error_from_result(res, encoding=self._encoding)

    def _ready_to_prepare(self, stmt: _Statement, parameters: Any) -> bool:
        if stmt.name is not None or stmt.uses < _PREPARE_AT or self._prepared >= _MAX_PREPARED:
            return False
        self._prepared += 1
        stmt.name = f"lo_{self._prepared}".encode()
        stmt.types = [_param_type(v) for v in parameters]
        return True

    def execute(self, sql: str, parameters: Any = (), /) -> PgCursor | _PsycopgCursor:
        stmt = self._statement(sql)
        try:
            values = _params(parameters)
        except KeyError:
            if self._queue is not None:
                raise TypeError("a pipelined statement takes str, int, float, bytes") from None
            return self._execute_psycopg(stmt, parameters)
        if self._queue is not None:
            return self._send(stmt, values, parameters)
        pq = self._pq
        if self._ready_to_prepare(stmt, parameters):
            res = pq.prepare(stmt.name, stmt.text, stmt.types)
            if res.status != _COMMAND_OK:
                stmt.name = None
                raise self._error(res)
        if stmt.name is not None:
            res = pq.exec_prepared(stmt.name, values)
        else:
            res = pq.exec_params(stmt.text, values, [_param_type(v) for v in parameters])
        if res.status not in (_TUPLES_OK, _COMMAND_OK):
            if stmt.name is not None and res.error_field(_SQLSTATE) == b"26000":
                stmt.name = None  # the session lost it (DISCARD ALL): prepared again later
            raise self._error(res)
        return PgCursor(self, stmt, res)

    def _execute_psycopg(self, stmt: _Statement, parameters: Any) -> _PsycopgCursor:
        from psycopg import RawCursor

        cur = RawCursor(self.raw)
        cur.execute(stmt.text.decode(), parameters)
        lastrowid = None
        if stmt.returning and cur.pgresult and cur.pgresult.status == _TUPLES_OK:
            row = cur.fetchone()
            lastrowid = int(row[0]) if row else None
        return _PsycopgCursor(cur, lastrowid)

    def executemany(self, sql: str, parameters: Any, /) -> _Many:
        """Each row's statement; outside a pipelined transaction they go out together too
        (one round trip)."""
        seq = list(parameters)
        if self._queue is None and len(seq) > 1:
            with self._pipeline_mode():
                cursors = [self.execute(sql, params) for params in seq]
                self._wait()
            return _Many(cursors)
        return _Many([self.execute(sql, params) for params in seq])

    # --- pipelining ---------------------------------------------------------------------

    def _send(self, stmt: _Statement, values: list[bytes | None], parameters: Any) -> PgCursor:
        assert self._queue is not None
        if self._broken or stmt.text.startswith(b"ROLLBACK"):
            self._resync()  # a failed pipeline runs nothing more until it is synced
        pq = self._pq
        if self._ready_to_prepare(stmt, parameters):
            pq.send_prepare(stmt.name, stmt.text, stmt.types)
            self._queue.append(_Prepare(stmt))
        if stmt.name is not None:
            pq.send_query_prepared(stmt.name, values)
        else:
            pq.send_query_params(stmt.text, values, [_param_type(v) for v in parameters])
        cur = PgCursor(self, stmt)
        self._queue.append(cur)
        return cur

    def _next_result(self) -> Any:
        pq = self._pq
        while pq.is_busy():
            self._readable.poll()  # waits without the GIL: the MQTT thread runs meanwhile
            pq.consume_input()
        return pq.get_result()

    def _wait(self) -> None:
        """Wait for every statement sent so far; raise the first one's error, or LockBusy
        for an advisory lock another transaction holds (`exclusive` in `nowait` mode)."""
        assert self._queue is not None
        pq = self._pq
        pq.pipeline_sync()
        while pq.flush():
            self._writable.poll()
            pq.consume_input()
        queue, self._queue = self._queue, []
        error = None
        for entry in queue:
            res = self._next_result()
            while self._next_result() is not None:  # each statement's results end in NULL
                pass
            ok = res is not None and res.status in (_TUPLES_OK, _COMMAND_OK)
            if isinstance(entry, _Prepare):
                if not ok:
                    entry.stmt.name = None  # not prepared after all: the next use will
            elif ok:
                entry._res = res
            else:
                entry._failed = True
                if error is None and res is not None and res.status != _PIPELINE_ABORTED:
                    error = res
        sync = self._next_result()
        if sync is None or sync.status != _PIPELINE_SYNC:
            raise self._error(sync) if sync is not None else RuntimeError("pipeline lost")
        guards, self._guards = self._guards, []
        if error is not None:
            raise self._error(error)
        for cur, name in guards:
            row = cur.fetchone()
            if not (row and row[0]):
                raise LockBusy(name)

    def _resync(self) -> None:
        """After an error: the pipeline synced, the errors of what it still held dropped
        (the caller is rolling back past them)."""
        self._broken = False
        self._guards.clear()
        if self._queue:
            try:
                self._wait()
            except Exception:
                pass

    @contextmanager
    def _pipeline_mode(self) -> Iterator[None]:
        self._pq.enter_pipeline_mode()
        self._queue = []
        try:
            yield
        finally:
            if self._queue:
                self._resync()
            self._queue = None
            self._guards.clear()
            self._broken = False
            self._pq.exit_pipeline_mode()

    @contextmanager
    def _pipelined(self) -> Iterator[PgConnection]:
        self._pq.enter_pipeline_mode()
        self._queue = []
        try:
            self.execute("BEGIN")
            try:
                yield self
                self.execute("COMMIT")
                self._wait()
            except BaseException:
                self._broken = True
                self._resync()
                if self._pq.transaction_status != self._idle:
                    self.execute("ROLLBACK")
                    self._wait()
                raise
        finally:
            self._queue = None
            self._guards.clear()
            self._broken = False
            self._pq.exit_pipeline_mode()

    @property
    def in_transaction(self) -> bool:
        return self._pq.transaction_status != self._idle

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


class Deferred:
    """Writes a store module keeps for the end of the transaction (`transaction` hands
    them to the `before_commit` hooks just before COMMIT, in the same transaction, and
    drops them on ROLLBACK). Why: rows every request changes (the per-day aggregates),
    written once per group, summed, in one order, hold their locks only for the commit.
    A savepoint's share is dropped by `rollback_to`, as the database drops its rows."""

    __slots__ = ("entries", "marks")

    def __init__(self) -> None:
        self.entries: list[Any] = []
        self.marks: list[tuple[str, int]] = []


_deferred: dict[int, Deferred] = {}  # id(conn) -> its open transaction's deferred writes
#: called with (conn, entries) before COMMIT when a transaction kept entries
_before_commit: list[Callable[[Connection, list[Any]], None]] = []


def before_commit(hook: Callable[[Connection, list[Any]], None]) -> None:
    """`hook(conn, entries)` is called before every COMMIT of `transaction` with entries."""
    if hook not in _before_commit:
        _before_commit.append(hook)


def deferred(conn: Connection) -> list[Any] | None:
    """The open `transaction`'s list of deferred entries to append to, or None outside
    one (the caller then writes at once)."""
    d = _deferred.get(id(conn))
    return d.entries if d is not None else None


def savepoint(conn: Connection, name: str) -> None:
    conn.execute(f"SAVEPOINT {name}")
    d = _deferred.get(id(conn))
    if d is not None:
        d.marks.append((name, len(d.entries)))


def rollback_to(conn: Connection, name: str) -> None:
    """ROLLBACK TO the savepoint (which stays open), its deferred entries dropped too."""
    conn.execute(f"ROLLBACK TO {name}")
    d = _deferred.get(id(conn))
    if d is not None:
        for i in range(len(d.marks) - 1, -1, -1):
            if d.marks[i][0] == name:
                del d.entries[d.marks[i][1]:]
                del d.marks[i + 1:]
                break


def release(conn: Connection, name: str) -> None:
    conn.execute(f"RELEASE {name}")
    d = _deferred.get(id(conn))
    if d is not None:
        for i in range(len(d.marks) - 1, -1, -1):
            if d.marks[i][0] == name:
                del d.marks[i:]
                break


def _run_deferred(conn: Connection) -> None:
    d = _deferred.get(id(conn))
    if d is None or not d.entries:
        return
    entries, d.entries, d.marks = d.entries, [], []
    for hook in _before_commit:
        hook(conn, entries)


@contextmanager
def _deferring(conn: Connection) -> Iterator[None]:
    outer = _deferred.get(id(conn))
    _deferred[id(conn)] = Deferred()
    try:
        yield
    finally:
        if outer is None:
            _deferred.pop(id(conn), None)
        else:
            _deferred[id(conn)] = outer


@contextmanager
def transaction(conn: Connection, *, pipeline: bool = False) -> Iterator[Connection]:
    """BEGIN ... COMMIT, or ROLLBACK on any exception (a failed COMMIT too).

    On SQLite BEGIN IMMEDIATE: the write lock is taken first, so two processes on one
    file serialise their writes instead of failing to upgrade a read lock.

    `pipeline` (PostgreSQL; nothing changes on SQLite): statements are sent without
    waiting for their results (PgConnection). An error then surfaces when a later result
    is read or at `flush`; code that must know a statement's own error calls `flush`.
    """
    if pipeline and isinstance(conn, PgConnection):
        with _deferring(conn), conn._pipelined():
            yield conn
            _run_deferred(conn)
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        with _deferring(conn):
            yield conn
            _run_deferred(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def pipelined(conn: Connection) -> bool:
    """Whether statements are only sent for now, carried out in order and read later (a
    pipelined transaction on PostgreSQL): a store function may then send the statements
    it needs before it reads any of them."""
    return isinstance(conn, PgConnection) and conn._queue is not None


def flush(conn: Connection) -> None:
    """Every statement sent so far has been carried out: its error, if any, is raised
    here (in a pipelined transaction on PostgreSQL; on SQLite they ran one by one)."""
    if isinstance(conn, PgConnection) and conn._queue is not None:
        conn._wait()


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
    In a pipeline the lock costs no round trip of its own: a wait for it delays the
    statements sent after it, which see what its holder committed; in `nowait` mode its
    answer is read with the next result, and LockBusy raised then, before that result.
    """
    if isinstance(conn, PgConnection):
        if not conn.nowait:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_lock_id(name),))
        elif conn._queue is not None:
            cur = conn.execute("SELECT pg_try_advisory_xact_lock(?)", (_lock_id(name),))
            conn._guards.append((cur, name))
        elif not try_exclusive(conn, name):
            raise LockBusy(name)


def try_exclusive_later(conn: Connection, name: str) -> Callable[[], bool]:
    """`try_exclusive`, its answer read when called for (in a pipelined transaction the
    tries of a whole group go out together)."""
    if dialect_of(conn) == SQLITE:
        return lambda: True
    cur = conn.execute("SELECT pg_try_advisory_xact_lock(?)", (_lock_id(name),))
    return lambda: bool(cur.fetchone()[0])


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
