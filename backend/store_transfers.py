"""Credit transfers in the database: one row per transfer, from asked for to done.

A member asks (`pending`, with the one-time code sent for it), confirms with the code
(`done`: the two ledger rows `transfer:<key>:out` and `:in` written in the same
transaction), or the transfer ends unmade (`refused`: the code expired or was wrong too
often, or the rules refused it at confirmation). `key` is random and names the ledger
rows: a second confirmation finds the row done and changes nothing. The day's sum of a
sender's done transfers is the program's per-day limit's measure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from backend.engine import Connection

TABLES = ("transfers",)

PENDING, DONE, REFUSED = "pending", "done", "refused"
#: who made it: the member on the page (with a code), or an operator's command (audited)
BY_MEMBER, BY_OPERATOR = "member", "operator"

SCHEMA = (
    "CREATE TABLE transfers (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, "
    "club_id INTEGER NOT NULL REFERENCES clubs(id), "
    "sender_id INTEGER NOT NULL REFERENCES members(id), to_phone TEXT NOT NULL, "
    "amount INTEGER NOT NULL CHECK (amount > 0), otp_id INTEGER REFERENCES otps(id), "
    "status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'refused')), "
    "receiver_id INTEGER REFERENCES members(id), "
    "via TEXT NOT NULL CHECK (via IN ('member', 'operator')), "
    "created_at INTEGER NOT NULL, done_at INTEGER, reason TEXT)",
    # the per-day limit's sum: a sender's done transfers since the day began
    "CREATE INDEX transfers_sender ON transfers(sender_id, status, done_at)",
    "CREATE INDEX transfers_receiver ON transfers(receiver_id)",
)


@dataclass(frozen=True, slots=True)
class Transfer:
    id: int
    key: str
    club_id: int
    sender_id: int
    to_phone: str
    amount: int
    otp_id: int | None
    status: str
    receiver_id: int | None
    via: str
    created_at: int
    done_at: int | None
    reason: str | None


def ts(when: datetime) -> int:
    """store.ts (not imported: backend.store imports the migrations, which import this)."""
    return int(when.timestamp())


_COLS = ("id, key, club_id, sender_id, to_phone, amount, otp_id, status, receiver_id, via, "
         "created_at, done_at, reason")


def insert(conn: Connection, *, key: str, club_id: int, sender_id: int, to_phone: str,
           amount: int, now: datetime, via: str = BY_MEMBER) -> int:
    """A new pending transfer; its id."""
    row = conn.execute(
        "INSERT INTO transfers(key, club_id, sender_id, to_phone, amount, status, via, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (key, club_id, sender_id, to_phone, amount, PENDING, via, ts(now)),
    ).fetchone()
    return int(row[0])


def set_otp(conn: Connection, transfer_id: int, otp_id: int) -> None:
    conn.execute("UPDATE transfers SET otp_id = ? WHERE id = ?", (otp_id, transfer_id))


def get(conn: Connection, transfer_id: int) -> Transfer | None:
    row = conn.execute(f"SELECT {_COLS} FROM transfers WHERE id = ?", (transfer_id,)).fetchone()
    return Transfer(*row) if row else None


def sent_since(conn: Connection, sender_id: int, since: datetime) -> int:
    """Rials the member has given away in done transfers since `since` (the day's start)."""
    row = conn.execute(
        "SELECT COALESCE(SUM(amount), 0) FROM transfers WHERE sender_id = ? AND status = ? "
        "AND done_at >= ?",
        (sender_id, DONE, ts(since)),
    ).fetchone()
    return int(row[0])


def mark_done(conn: Connection, transfer_id: int, receiver_id: int, now: datetime) -> None:
    conn.execute(
        "UPDATE transfers SET status = ?, receiver_id = ?, done_at = ? WHERE id = ? "
        "AND status = ?",
        (DONE, receiver_id, ts(now), transfer_id, PENDING),
    )


def mark_refused(conn: Connection, transfer_id: int, reason: str, now: datetime) -> None:
    conn.execute(
        "UPDATE transfers SET status = ?, reason = ?, done_at = ? WHERE id = ? AND status = ?",
        (REFUSED, reason, ts(now), transfer_id, PENDING),
    )


def refuse_pending(conn: Connection, sender_id: int, reason: str, now: datetime) -> None:
    """End the member's pending transfers (a new one is asked for: their codes are void)."""
    conn.execute(
        "UPDATE transfers SET status = ?, reason = ?, done_at = ? WHERE sender_id = ? "
        "AND status = ?",
        (REFUSED, reason, ts(now), sender_id, PENDING),
    )


def of_member(conn: Connection, member_id: int, limit: int = 20) -> list[Transfer]:
    """The member's transfers made, given or received, newest first (the member's page)."""
    rows = conn.execute(
        f"SELECT {_COLS} FROM transfers WHERE (sender_id = ? OR receiver_id = ?) "
        "AND status = ? ORDER BY id DESC LIMIT ?",
        (member_id, member_id, DONE, limit),
    ).fetchall()
    return [Transfer(*r) for r in rows]
