"""The backend's SQLite database: schema, transactions, members, cards, quotes, offers.

Money lives in backend.ledger; this module holds everything around it. Times are stored
as integer Unix seconds (UTC) so that ranges compare as numbers.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from backend.program import Offer, parse_hours, parse_weekdays

log = logging.getLogger(__name__)
SCHEMA_VERSION = 3
# 2: requests is a rowid table with a unique key index
# 3: the SMS outbox takes the kind "reversal"
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read aloud safely
CODE_LENGTH = 7

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    id INTEGER PRIMARY KEY,
    phone TEXT NOT NULL UNIQUE,
    code TEXT NOT NULL UNIQUE,
    referrer_id INTEGER REFERENCES members(id),
    birthday TEXT,
    enrolled_at INTEGER NOT NULL,
    tier TEXT NOT NULL,
    debt INTEGER NOT NULL DEFAULT 0 CHECK (debt >= 0)
);
CREATE TABLE IF NOT EXISTS cards (
    number TEXT PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members(id),
    active INTEGER NOT NULL DEFAULT 1,
    linked_at INTEGER NOT NULL,
    replaced_by TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lots (
    id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members(id),
    earned_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    remaining INTEGER NOT NULL CHECK (remaining >= 0 AND remaining <= amount)
);
CREATE INDEX IF NOT EXISTS lots_open ON lots(member_id, expires_at) WHERE remaining > 0;
CREATE INDEX IF NOT EXISTS lots_expiring ON lots(expires_at) WHERE remaining > 0;
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members(id),
    kind TEXT NOT NULL,
    amount INTEGER NOT NULL,
    key TEXT NOT NULL UNIQUE,
    at INTEGER NOT NULL,
    ref TEXT
);
CREATE INDEX IF NOT EXISTS ledger_member ON ledger(member_id, amount);
CREATE INDEX IF NOT EXISTS ledger_at ON ledger(at);
CREATE TABLE IF NOT EXISTS lot_uses (
    ledger_id INTEGER NOT NULL REFERENCES ledger(id),
    lot_id INTEGER NOT NULL REFERENCES lots(id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    PRIMARY KEY (ledger_id, lot_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quotes (
    id TEXT PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members(id),
    terminal_id TEXT NOT NULL,
    gross INTEGER NOT NULL,
    discount INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    advice_key TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS quotes_held ON quotes(expires_at) WHERE status = 'held';
CREATE INDEX IF NOT EXISTS quotes_member_held ON quotes(member_id) WHERE status = 'held';
CREATE TABLE IF NOT EXISTS purchases (
    key TEXT PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members(id),
    terminal_id TEXT NOT NULL,
    quote_id TEXT,
    amount INTEGER NOT NULL,
    gross INTEGER NOT NULL,
    approved INTEGER NOT NULL,
    redeemed INTEGER NOT NULL DEFAULT 0,
    earned INTEGER NOT NULL DEFAULT 0,
    recovered INTEGER NOT NULL DEFAULT 0,
    earn_lot INTEGER REFERENCES lots(id),
    occurred_at INTEGER NOT NULL,
    reversed INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS purchases_member ON purchases(member_id, occurred_at);
CREATE INDEX IF NOT EXISTS purchases_at ON purchases(occurred_at);
CREATE TABLE IF NOT EXISTS reversals (
    original_key TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    member_id INTEGER REFERENCES members(id),
    received_at INTEGER NOT NULL,
    applied INTEGER NOT NULL DEFAULT 0,
    restored INTEGER NOT NULL DEFAULT 0,
    taken_back INTEGER NOT NULL DEFAULT 0,
    shortfall INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    body TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_at ON requests(at);
CREATE TABLE IF NOT EXISTS otps (
    id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members(id),
    salt TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    tries_left INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS otps_member ON otps(member_id, id);
CREATE TABLE IF NOT EXISTS offers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    percent REAL NOT NULL DEFAULT 0,
    amount INTEGER NOT NULL DEFAULT 0,
    start TEXT,
    until TEXT NOT NULL,
    weekdays TEXT NOT NULL DEFAULT '',
    hours TEXT,
    min_purchase INTEGER NOT NULL DEFAULT 0,
    target TEXT NOT NULL DEFAULT 'everyone',
    created_at INTEGER NOT NULL,
    ended_at INTEGER
);
"""


class StoreError(Exception):
    """The database cannot be used (wrong schema version, not a database)."""


def ts(when: datetime) -> int:
    return int(when.timestamp())


def from_ts(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def connect(path: str | Path, *, autocheckpoint: bool = True) -> sqlite3.Connection:
    """A connection with the backend's settings; the schema is created on first use.

    Autocommit mode (isolation_level=None): transactions are explicit BEGIN IMMEDIATE, so
    two processes on one file serialise their writes instead of failing to upgrade locks.
    `autocheckpoint=False` leaves WAL checkpoints to a `Checkpointer` thread, so that no
    request's commit pays for copying the WAL into the database (milliseconds at p99).
    """
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
        _migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path}: {exc}") from exc
    except StoreError:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    from backend.sms import outbox  # the SMS engineer's table lives in the same file

    with transaction(conn):
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            conn.execute("INSERT INTO schema_version(version) VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] == 2:
            outbox.widen_kinds(conn)
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {row[0]}, this backend knows {SCHEMA_VERSION}"
            )
        outbox.create_schema(conn)


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


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (a failed COMMIT too)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


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
