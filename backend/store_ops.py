"""The SQL of the operator's commands and the metrics: backups, restores, health, gauges.

Kept out of the request path's store: nothing here runs while a request is handled. The
metrics' gauges are read at scrape time, on a connection of their own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from backend import engine
from backend.engine import Connection
from backend.sms.outbox import timestamp

#: The outbox's statuses, every one exported even at 0 (an alert on a missing series
#: would never fire).
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed")


# --- SQLite backups -------------------------------------------------------------------


def sqlite_backup(source: Path, dest: Path) -> None:
    """A consistent copy of the SQLite file `source` into the new file `dest`, made with
    SQLite's online backup API while other processes write: all pages in one step, in
    one read transaction (WAL mode lets the writers go on meanwhile; a step-by-step copy
    would start over at each of their commits and might never end). The copy is a
    single file (rollback journal, not WAL), ready to be moved elsewhere."""
    src = sqlite3.connect(f"file:{source}?mode=rw", uri=True, timeout=30.0)
    try:
        dst = sqlite3.connect(str(dest))
        try:
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def open_sqlite_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to a backup file: reading it changes nothing (not even its
    journal mode, which `store.connect` would set to WAL)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)


def sqlite_integrity(path: Path) -> str:
    """`ok`, or the first problem SQLite's `PRAGMA integrity_check` finds in `path`."""
    try:
        conn = open_sqlite_readonly(path)
    except sqlite3.DatabaseError as exc:
        return str(exc)
    try:
        row = conn.execute("PRAGMA integrity_check(1)").fetchone()
        return str(row[0]) if row else "no answer"
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()


# --- PostgreSQL ---------------------------------------------------------------------


def server_major(conn: Connection) -> int:
    """The PostgreSQL server's major version (15 for 15.8): pg_dump must be at least it."""
    return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


@contextmanager
def exported_snapshot(conn: Connection) -> Iterator[str]:
    """A repeatable-read, read-only transaction on `conn` and its exported snapshot's id:
    `pg_dump --snapshot=ID` dumps exactly what this transaction sees, so the figures read
    in it describe the dump. Ends (COMMIT) when the block does."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])
        yield snapshot
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def drop_tables(conn: Connection) -> None:
    """Every table of `conn`'s schema gone: a restore that did not verify is taken back
    from a target that held no tables before it."""
    names = sorted(engine.table_names(conn))
    if names:
        conn.execute(f"DROP TABLE IF EXISTS {', '.join(names)} CASCADE")


# --- gauges and health --------------------------------------------------------------


def open_holds(conn: Connection) -> int:
    """Quotes holding a member's credit, not yet settled nor released (partial index)."""
    return int(conn.execute("SELECT COUNT(*) FROM quotes WHERE status = 'held'").fetchone()[0])


def outbox_by_status(conn: Connection) -> dict[str, int]:
    """SMS rows by status, every status present (an index scan of sms_outbox_due)."""
    out = dict.fromkeys(OUTBOX_STATUSES, 0)
    for status, n in conn.execute("SELECT status, COUNT(*) FROM sms_outbox GROUP BY status"):
        out[str(status)] = int(n)
    return out


@dataclass(frozen=True)
class OutboxHealth:
    waiting: int  # pending or being sent
    failed_recently: int  # given up since the time asked
    oldest_waiting_at: float | None  # created_at of the oldest waiting, seconds since epoch


def outbox_health(conn: Connection, since: datetime) -> OutboxHealth:
    waiting, oldest = conn.execute(
        "SELECT COUNT(*), MIN(created_at) FROM sms_outbox WHERE status IN ('pending', 'sending')"
    ).fetchone()
    failed = conn.execute(
        "SELECT COUNT(*) FROM sms_outbox WHERE status = 'failed' AND finished_at >= ?",
        (timestamp(since),),
    ).fetchone()[0]
    return OutboxHealth(int(waiting), int(failed), None if oldest is None else float(oldest))
