"""The backend's database, SQLite or PostgreSQL: connecting, members, cards, quotes, offers.

Money lives in backend.ledger; this module holds everything around it. Times are stored
as integer Unix seconds (UTC) so that ranges compare as numbers.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from backend import engine, migrations
from backend.engine import Connection
from backend.program import Offer, parse_hours, parse_weekdays

log = logging.getLogger(__name__)
SCHEMA_VERSION = migrations.LATEST
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read aloud safely
CODE_LENGTH = 7


class StoreError(Exception):
    """The database cannot be used (wrong schema version, not a database)."""


def ts(when: datetime) -> int:
    return int(when.timestamp())


def from_ts(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def connect(
    db: str | Path | engine.Target,
    *,
    autocheckpoint: bool = True,
    check_schema: bool = True,
    create: bool = True,
) -> Connection:
    """A connection to `db` (a SQLite path or a PostgreSQL URL) with the backend's settings.

    A database with no schema yet gets the current one (unless `create` is false); one of
    another version is refused (StoreError saying how to migrate) unless `check_schema`
    is false (for `migrate`).

    SQLite: autocommit mode (isolation_level=None), transactions are explicit BEGIN
    IMMEDIATE, so two processes on one file serialise their writes instead of failing to
    upgrade locks. `autocheckpoint=False` leaves WAL checkpoints to a `Checkpointer`
    thread, so that no request's commit pays for copying the WAL into the database.
    """
    try:
        target = engine.parse_target(db)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    if target.is_postgresql:
        try:
            conn: Connection = engine.connect_postgresql(target)
        except engine.ConnectError as exc:
            raise StoreError(str(exc)) from None
    else:
        conn = _connect_sqlite(target.path or Path(), autocheckpoint=autocheckpoint)
    try:
        if migrations.current_version(conn) is None:
            if create:
                migrations.migrate(conn, datetime.now(UTC))
        elif check_schema:
            migrations.check(conn, target)
    except engine.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{target}: {engine.mask(str(exc))}") from exc
    except migrations.SchemaError as exc:
        conn.close()
        raise StoreError(str(exc)) from None
    return conn


def _connect_sqlite(path: Path, *, autocheckpoint: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=30.0, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{path}: cannot switch the database to WAL (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # a ledger of millions of rows: keep the hot pages in memory, read the rest by mmap
        conn.execute("PRAGMA cache_size = -65536")
        conn.execute("PRAGMA mmap_size = 268435456")
        # each request runs in a savepoint: its sub-journal stays in memory, not a temp file
        conn.execute("PRAGMA temp_store = MEMORY")
        if not autocheckpoint:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        # a restarted WAL is cut back to this size instead of keeping its largest
        conn.execute("PRAGMA journal_size_limit = 67108864")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path}: {exc}") from exc
    except StoreError:
        conn.close()
        raise
    return conn


class Checkpointer:
    """Copies the WAL into the database now and then, on its own connection and thread.

    PASSIVE checkpoints never block writers; durability is the WAL's (each money commit
    fsyncs it), the checkpoint only keeps the WAL file from growing without end.
    """

    def __init__(self, path: str | Path, *, interval: float = 1.0) -> None:
        self.path = Path(path)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Checkpointer:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA synchronous = FULL")
            while not self._stop.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # another process's checkpoint, say: next time
                    log.warning("WAL checkpoint failed: %s", exc)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)
        finally:
            conn.close()


def catch_up_checkpoint(conn: sqlite3.Connection) -> None:
    """A PASSIVE checkpoint on the writing connection itself, between transactions: the
    Checkpointer has copied nearly everything, and with no write of ours running meanwhile
    the checkpoint completes, so our next write starts the WAL from its beginning."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


#: BEGIN ... COMMIT on either engine (see engine.transaction)
transaction = engine.transaction


# --- members and cards ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    phone: str
    code: str
    referrer_id: int | None
    birthday: str | None
    enrolled_at: int
    tier: str
    debt: int


_MEMBER_COLS = "id, phone, code, referrer_id, birthday, enrolled_at, tier, debt"
#: the same columns of `members m`, for joins that read a member along with something else
MEMBER_COLS_M = ", ".join("m." + c.strip() for c in _MEMBER_COLS.split(","))


def member_by_phone(conn: sqlite3.Connection, phone: str) -> Member | None:
    row = conn.execute(f"SELECT {_MEMBER_COLS} FROM members WHERE phone = ?", (phone,)).fetchone()
    return Member(*row) if row else None


def member_by_id(conn: sqlite3.Connection, member_id: int) -> Member:
    row = conn.execute(f"SELECT {_MEMBER_COLS} FROM members WHERE id = ?", (member_id,)).fetchone()
    return Member(*row)


def member_by_card(conn: sqlite3.Connection, card: str) -> Member | None:
    row = conn.execute(
        f"SELECT {MEMBER_COLS_M} "
        "FROM cards c JOIN members m ON m.id = c.member_id WHERE c.number = ? AND c.active = 1",
        (card,),
    ).fetchone()
    return Member(*row) if row else None


def new_member_code(conn: sqlite3.Connection) -> str:
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if conn.execute("SELECT 1 FROM members WHERE code = ?", (code,)).fetchone() is None:
            return code


def insert_member(
    conn: sqlite3.Connection, *, phone: str, referrer_id: int | None, tier: str, now: datetime
) -> Member:
    code = new_member_code(conn)
    cur = conn.execute(
        "INSERT INTO members(phone, code, referrer_id, enrolled_at, tier) VALUES (?, ?, ?, ?, ?)",
        (phone, code, referrer_id, ts(now), tier),
    )
    return member_by_id(conn, int(cur.lastrowid or 0))


def set_tier(conn: sqlite3.Connection, member_id: int, tier: str) -> None:
    conn.execute("UPDATE members SET tier = ? WHERE id = ?", (tier, member_id))


def add_debt(conn: sqlite3.Connection, member_id: int, delta: int) -> None:
    conn.execute("UPDATE members SET debt = debt + ? WHERE id = ?", (delta, member_id))


def set_birthday(conn: sqlite3.Connection, member_id: int, birthday: str | None) -> None:
    conn.execute("UPDATE members SET birthday = ? WHERE id = ?", (birthday, member_id))


def card_owner(conn: sqlite3.Connection, card: str) -> tuple[int, bool] | None:
    row = conn.execute("SELECT member_id, active FROM cards WHERE number = ?", (card,)).fetchone()
    return (row[0], bool(row[1])) if row else None


def link_card(conn: sqlite3.Connection, member_id: int, card: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO cards(number, member_id, linked_at) VALUES (?, ?, ?)",
        (card, member_id, ts(now)),
    )


def retire_card(conn: sqlite3.Connection, old: str, new: str) -> None:
    conn.execute("UPDATE cards SET active = 0, replaced_by = ? WHERE number = ?", (new, old))


def cards_of(conn: sqlite3.Connection, member_id: int) -> list[tuple[str, bool]]:
    rows = conn.execute(
        "SELECT number, active FROM cards WHERE member_id = ? ORDER BY linked_at", (member_id,)
    )
    return [(r[0], bool(r[1])) for r in rows]


# --- stored responses (idempotency) --------------------------------------------------


def stored_response(conn: sqlite3.Connection, key: str) -> tuple[str, str, str, dict] | None:
    """(type, code, message, body) of a request already answered under `key`."""
    row = conn.execute(
        "SELECT type, code, message, body FROM requests WHERE key = ?", (key,)
    ).fetchone()
    return (row[0], row[1], row[2], json.loads(row[3])) if row else None


def store_response(
    conn: sqlite3.Connection,
    *,
    key: str,
    type: str,
    code: str,
    message: str,
    body: dict,
    now: datetime,
) -> None:
    # Rows go to the end of the rowid table; only the small key index is written in key
    # order. The key starts with the terminal id, so the terminal is not stored again.
    body_text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    conn.execute(
        "INSERT INTO requests(key, type, code, message, body, at) VALUES (?, ?, ?, ?, ?, ?)",
        (key, type, code, message, body_text, ts(now)),
    )


def prune_responses(conn: sqlite3.Connection, before: datetime, *, limit: int = 500) -> int:
    """Forget up to `limit` stored responses older than `before`; how many went.

    Small batches keep the write lock short. A request repeated after its response is gone
    still has no second effect (purchases, ledger rows and reversals keep their own unique
    keys); it is only no longer answered word for word.
    """
    cur = conn.execute(
        "DELETE FROM requests WHERE id IN "
        "(SELECT id FROM requests WHERE at < ? ORDER BY at LIMIT ?)",
        (ts(before), limit),
    )
    return cur.rowcount


# --- offers --------------------------------------------------------------------------


def _offer_from_row(row: sqlite3.Row | tuple) -> Offer:
    (oid, name, percent, amount, start, until, weekdays, hours, min_purchase, target, ended) = row
    return Offer(
        id=oid,
        name=name,
        percent=percent,
        amount=amount,
        start=date.fromisoformat(start) if start else None,
        until=date.fromisoformat(until),
        weekdays=parse_weekdays(weekdays) if weekdays else frozenset(),
        hours=parse_hours(hours) if hours else None,
        min_purchase=min_purchase,
        target=target,
        ended=ended is not None,
    )


_OFFER_COLS = (
    "id, name, percent, amount, start, until, weekdays, hours, min_purchase, target, ended_at"
)


def offers(conn: sqlite3.Connection, *, include_ended: bool = False) -> list[Offer]:
    where = "" if include_ended else " WHERE ended_at IS NULL"
    rows = conn.execute(f"SELECT {_OFFER_COLS} FROM offers{where} ORDER BY id")
    return [_offer_from_row(r) for r in rows]


def add_offer(conn: sqlite3.Connection, offer: Offer, now: datetime) -> int:
    from backend.program import WEEKDAYS

    cur = conn.execute(
        "INSERT INTO offers(name, percent, amount, start, until, weekdays, hours, min_purchase, "
        "target, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            offer.name,
            offer.percent,
            offer.amount,
            offer.start.isoformat() if offer.start else None,
            offer.until.isoformat(),
            ",".join(WEEKDAYS[d] for d in sorted(offer.weekdays)),
            f"{offer.hours[0]}-{offer.hours[1]}" if offer.hours else None,
            offer.min_purchase,
            offer.target,
            ts(now),
        ),
    )
    return int(cur.lastrowid or 0)


def end_offer(conn: sqlite3.Connection, offer_id: int, now: datetime) -> bool:
    cur = conn.execute(
        "UPDATE offers SET ended_at = ? WHERE id = ? AND ended_at IS NULL", (ts(now), offer_id)
    )
    return cur.rowcount == 1
