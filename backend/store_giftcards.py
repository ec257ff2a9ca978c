"""Gift cards in the database: batches, cards, their movements and their holds at the till.

Every change of a card's balance is one row of `gift_movements` under a UNIQUE key (the
keys backend.giftcards makes), written with ON CONFLICT DO NOTHING: the same advice or
reversal carried out twice moves the card once. A card's balance is the sum of its rows.
The numbers come from `giftcards.card_number(key, serial)`: the club's key is a random
secret made with its first batch (`gift_keys`), the serials a counter per club.

`gift_holds` is a gift card's quote: the inquiry's hold, found again by the advice (its
quote_id), the release, and the reversal (its advice_key).
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from datetime import date, datetime

from backend import engine, giftcards
from backend.engine import Connection
from backend.giftcards import GiftCard, Movement
from protocols.persian import TEHRAN

TABLES = ("gift_keys", "gift_batches", "gift_cards", "gift_movements", "gift_holds")

SCHEMA = (
    "CREATE TABLE gift_keys (club_id INTEGER NOT NULL PRIMARY KEY REFERENCES clubs(id), "
    "secret BLOB NOT NULL, next_serial INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE gift_batches (id INTEGER PRIMARY KEY, "
    "club_id INTEGER NOT NULL REFERENCES clubs(id), value INTEGER NOT NULL CHECK (value > 0), "
    "expires_on TEXT NOT NULL, count INTEGER NOT NULL CHECK (count > 0), "
    "first_serial INTEGER NOT NULL, issued_at INTEGER NOT NULL)",
    "CREATE TABLE gift_cards (number TEXT NOT NULL PRIMARY KEY, "
    "batch_id INTEGER NOT NULL REFERENCES gift_batches(id), serial INTEGER NOT NULL, "
    "sold_at INTEGER) WITHOUT ROWID",
    "CREATE INDEX gift_cards_batch ON gift_cards(batch_id)",
    "CREATE TABLE gift_movements (id INTEGER PRIMARY KEY, "
    "number TEXT NOT NULL REFERENCES gift_cards(number), kind TEXT NOT NULL, "
    "amount INTEGER NOT NULL, key TEXT NOT NULL UNIQUE, ref TEXT NOT NULL DEFAULT '', "
    "at INTEGER NOT NULL)",
    "CREATE INDEX gift_movements_card ON gift_movements(number)",
    "CREATE TABLE gift_holds (quote_id TEXT NOT NULL PRIMARY KEY, "
    "number TEXT NOT NULL REFERENCES gift_cards(number), club_id INTEGER NOT NULL, "
    "terminal_id TEXT NOT NULL, gross INTEGER NOT NULL, amount INTEGER NOT NULL, "
    "status TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, "
    "advice_key TEXT UNIQUE) WITHOUT ROWID",
    "CREATE INDEX gift_holds_card ON gift_holds(number, status)",
    # the sweep's two reads, by index (tests/backend/test_backend_handlers.py)
    "CREATE INDEX gift_holds_lapse ON gift_holds(status, expires_at)",
    "CREATE INDEX gift_batches_expiry ON gift_batches(expires_on)",
)


@dataclass(frozen=True, slots=True)
class Batch:
    id: int
    club_id: int
    value: int
    expires_on: date
    count: int
    issued_at: int


@dataclass(frozen=True, slots=True)
class Hold:
    quote_id: str
    number: str
    club_id: int
    terminal_id: str
    gross: int
    amount: int
    status: str
    created_at: int
    expires_at: int
    advice_key: str | None


@dataclass(frozen=True, slots=True)
class BatchReport:
    """One batch's figures (rials unless named count): what the panel and the CLI print."""

    batch: Batch
    issued: int  # count of cards
    sold: int  # count of cards marked sold
    used: int  # rials redeemed at tills (reversals subtracted)
    expired: int  # rials gone at expiry
    outstanding: int  # rials still on cards (holds included)


def _key(conn: Connection, club_id: int) -> tuple[bytes, int]:
    """The club's secret and next serial, made on first use; locked for the caller."""
    row = conn.execute(
        "SELECT secret, next_serial FROM gift_keys WHERE club_id = ?"
        + engine.row_lock(conn, True), (club_id,)).fetchone()
    if row is None:
        conn.execute("INSERT INTO gift_keys(club_id, secret, next_serial) VALUES (?, ?, 0) "
                     "ON CONFLICT (club_id) DO NOTHING", (club_id, secrets.token_bytes(32)))
        return _key(conn, club_id)
    return bytes(row[0]), int(row[1])


def issue(conn: Connection, club_id: int, value: int, expires_on: date, count: int,
          now: datetime) -> tuple[Batch, list[GiftCard]]:
    """A new batch of `count` cards, each with its issue movement; in the caller's
    transaction (a refused batch raises GiftCardError before any row is written)."""
    engine.exclusive(conn, f"giftcards:{club_id}")
    key, first = _key(conn, club_id)
    cards = giftcards.issue_batch(key, 0, first, count, value, expires_on,
                                  now.astimezone(TEHRAN).date())
    at = int(now.timestamp())
    batch_id = int(conn.execute(
        "INSERT INTO gift_batches(club_id, value, expires_on, count, first_serial, issued_at) "
        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (club_id, value, expires_on.isoformat(), count, first, at)).fetchone()[0])
    cards = [dataclasses.replace(c, batch_id=batch_id) for c in cards]
    insert = ("INSERT INTO gift_cards(number, batch_id, serial) VALUES (?, ?, ?) "
              "ON CONFLICT (number) DO NOTHING")
    conn.executemany(insert, [(c.number, batch_id, first + i) for i, c in enumerate(cards)])
    # One club's numbers never collide (a bijection); another club's key may have made
    # a number already: that serial is skipped and the batch takes the next ones.
    ours = {r[0] for r in conn.execute("SELECT number FROM gift_cards WHERE batch_id = ?",
                                       (batch_id,)).fetchall()}
    cards = [c for c in cards if c.number in ours]
    serial = first + count
    while len(cards) < count:
        if serial >= giftcards.SERIALS:
            raise giftcards.GiftCardError("the club's gift card numbers are used up")
        c = GiftCard(giftcards.card_number(key, serial), batch_id, value, expires_on)
        if conn.execute(insert, (c.number, batch_id, serial)).rowcount:
            cards.append(c)
        serial += 1
    conn.execute("UPDATE gift_keys SET next_serial = ? WHERE club_id = ?", (serial, club_id))
    conn.executemany(
        "INSERT INTO gift_movements(number, kind, amount, key, ref, at) VALUES (?, ?, ?, ?, ?, ?)",
        [(c.number, m.kind, m.amount, m.key, m.ref, at)
         for c in cards for m in giftcards.issued(c)])
    return Batch(batch_id, club_id, value, expires_on, count, at), cards


def _batch(row: tuple) -> Batch:
    return Batch(int(row[0]), int(row[1]), int(row[2]), date.fromisoformat(row[3]),
                 int(row[4]), int(row[5]))


_BATCH_COLS = "id, club_id, value, expires_on, count, issued_at"


def batches(conn: Connection, club_id: int) -> list[Batch]:
    rows = conn.execute(f"SELECT {_BATCH_COLS} FROM gift_batches WHERE club_id = ? "
                        "ORDER BY id", (club_id,)).fetchall()
    return [_batch(r) for r in rows]


def batch_cards(conn: Connection, batch_id: int) -> list[GiftCard]:
    rows = conn.execute(
        "SELECT c.number, b.id, b.value, b.expires_on FROM gift_cards c JOIN gift_batches b "
        "ON b.id = c.batch_id WHERE c.batch_id = ? ORDER BY c.serial", (batch_id,)).fetchall()
    return [GiftCard(r[0], int(r[1]), int(r[2]), date.fromisoformat(r[3])) for r in rows]


def card(conn: Connection, number: str, club_id: int, *, lock: bool = False) -> GiftCard | None:
    """The card of this club with `number` (another club's card is no card here);
    `lock`: for the caller's transaction, one movement of a card at a time."""
    if lock:
        engine.exclusive(conn, f"giftcard:{number}")
    row = conn.execute(
        "SELECT c.number, b.id, b.value, b.expires_on FROM gift_cards c JOIN gift_batches b "
        "ON b.id = c.batch_id WHERE c.number = ? AND b.club_id = ?", (number, club_id)
    ).fetchone()
    return None if row is None else GiftCard(row[0], int(row[1]), int(row[2]),
                                             date.fromisoformat(row[3]))


def movements(conn: Connection, number: str) -> list[Movement]:
    rows = conn.execute("SELECT key, kind, amount, ref FROM gift_movements WHERE number = ? "
                        "ORDER BY id", (number,)).fetchall()
    return [Movement(r[0], r[1], int(r[2]), r[3]) for r in rows]


def record(conn: Connection, number: str, before: list[Movement], after: list[Movement],
           now: datetime) -> list[Movement]:
    """Write the movements `after` has beyond `before` (a pure function's result); a key
    already stored is skipped. The rows actually written."""
    written = []
    for m in after[len(before):]:
        cur = conn.execute(
            "INSERT INTO gift_movements(number, kind, amount, key, ref, at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            (number, m.kind, m.amount, m.key, m.ref, int(now.timestamp())))
        if cur.rowcount:
            written.append(m)
    return written


def mark_sold(conn: Connection, number: str, now: datetime) -> bool:
    cur = conn.execute("UPDATE gift_cards SET sold_at = ? WHERE number = ? AND sold_at IS NULL",
                       (int(now.timestamp()), number))
    return bool(cur.rowcount)


# --- holds (a gift card's quote) -------------------------------------------------------

_HOLD_COLS = ("quote_id, number, club_id, terminal_id, gross, amount, status, created_at, "
              "expires_at, advice_key")


def insert_hold(conn: Connection, h: Hold) -> None:
    conn.execute(f"INSERT INTO gift_holds({_HOLD_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (h.quote_id, h.number, h.club_id, h.terminal_id, h.gross, h.amount, h.status,
                  h.created_at, h.expires_at, h.advice_key))


def hold(conn: Connection, quote_id: str) -> Hold | None:
    row = conn.execute(f"SELECT {_HOLD_COLS} FROM gift_holds WHERE quote_id = ?",
                       (quote_id,)).fetchone()
    return None if row is None else Hold(*row)


def hold_of_advice(conn: Connection, advice_key: str) -> Hold | None:
    row = conn.execute(f"SELECT {_HOLD_COLS} FROM gift_holds WHERE advice_key = ?",
                       (advice_key,)).fetchone()
    return None if row is None else Hold(*row)


def open_holds(conn: Connection, number: str) -> list[Hold]:
    rows = conn.execute(f"SELECT {_HOLD_COLS} FROM gift_holds WHERE number = ? AND status = ?",
                        (number, "held")).fetchall()
    return [Hold(*r) for r in rows]


def set_hold(conn: Connection, quote_id: str, status: str, advice_key: str | None = None) -> None:
    conn.execute("UPDATE gift_holds SET status = ?, advice_key = COALESCE(?, advice_key) "
                 "WHERE quote_id = ?", (status, advice_key, quote_id))


# --- reports -------------------------------------------------------------------------------


def report(conn: Connection, club_id: int, now: datetime) -> list[BatchReport]:
    """Per batch: cards issued and sold, rials used, expired, outstanding. A batch past
    its date counts its free rest as expired even before `expire_due` has written it."""
    today = now.astimezone(TEHRAN).date()
    out = []
    for b in batches(conn, club_id):
        sold = conn.execute("SELECT COUNT(*) FROM gift_cards WHERE batch_id = ? AND "
                            "sold_at IS NOT NULL", (b.id,)).fetchone()[0]
        sums = dict(conn.execute(
            "SELECT m.kind, SUM(m.amount) FROM gift_movements m JOIN gift_cards c "
            "ON c.number = m.number WHERE c.batch_id = ? GROUP BY m.kind", (b.id,)).fetchall())
        used = -int(sums.get("gc_redeem") or 0) - int(sums.get("gc_reversal") or 0)
        expired = -int(sums.get("gc_expiry") or 0)
        held = -int(sums.get("gc_hold") or 0) - int(sums.get("gc_release") or 0)
        outstanding = sum(int(v or 0) for v in sums.values()) + held
        if today > b.expires_on:
            expired += outstanding - held
            outstanding = held
        out.append(BatchReport(b, b.count, int(sold), used, expired, outstanding))
    return out


def lapsed_holds(conn: Connection, now: datetime) -> list[Hold]:
    rows = conn.execute(f"SELECT {_HOLD_COLS} FROM gift_holds WHERE status = ? AND "
                        "expires_at <= ?", ("held", int(now.timestamp()))).fetchall()
    return [Hold(*r) for r in rows]


def expire_due(conn: Connection, club_id: int | None, now: datetime) -> int:
    """Write the expiry movement of every card of the club (None: of every club) past
    its date with a free rest (idempotent: a card emptied has none left); the rials
    expired."""
    today = now.astimezone(TEHRAN).date().isoformat()
    of_club = "" if club_id is None else " AND b.club_id = ?"
    rows = conn.execute(
        "SELECT c.number, b.club_id FROM gift_cards c JOIN gift_batches b "
        "ON b.id = c.batch_id WHERE b.expires_on < ?" + of_club +
        " AND (SELECT COALESCE(SUM(amount), 0) FROM gift_movements m "
        "WHERE m.number = c.number) > 0",
        (today,) if club_id is None else (today, club_id)).fetchall()
    total = 0
    for number, club in rows:
        c = card(conn, number, int(club), lock=True)
        assert c is not None
        before = movements(conn, number)
        total += -sum(m.amount for m in record(conn, number, before,
                                               giftcards.expire(c, before, now), now))
    return total
