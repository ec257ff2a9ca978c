"""The credit ledger, either engine: one row per movement, credit kept in lots for FIFO expiry.

Invariants (checked by the stateful test): the balance is the sum of the member's ledger
rows and never negative; the sum of open lots minus open holds equals the balance; every
row has a unique idempotency key. Callers hold an open transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backend import ledger_rules, member_tokens, store_daily
from backend.engine import Connection
from backend.store import add_debt, from_ts, ts


class LedgerError(Exception):
    """A movement that would break an invariant (a programming error, never a request's)."""


def balance(conn: Connection, member_id: int) -> int:
    row = conn.execute(
        "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE member_id = ?", (member_id,)
    ).fetchone()
    return int(row[0])


def held(conn: Connection, member_id: int) -> int:
    row = conn.execute(
        "SELECT COALESCE(SUM(discount), 0) FROM quotes WHERE member_id = ? AND status = 'held'",
        (member_id,),
    ).fetchone()
    return int(row[0])


@dataclass(frozen=True, slots=True)
class LedgerRow:
    kind: str
    amount: int
    at: int
    key: str


def recent(conn: Connection, member_id: int, limit: int) -> list[LedgerRow]:
    """The member's last `limit` movements, newest first."""
    rows = conn.execute(
        "SELECT kind, amount, at, key FROM ledger WHERE member_id = ? ORDER BY id DESC LIMIT ?",
        (member_id, limit),
    )
    return [LedgerRow(*r) for r in rows]


def has_row(conn: Connection, key: str) -> bool:
    return conn.execute("SELECT 1 FROM ledger WHERE key = ?", (key,)).fetchone() is not None


def _row(
    conn: Connection,
    member_id: int,
    kind: str,
    amount: int,
    key: str,
    at: datetime,
    ref: str | None = None,
) -> Any:
    """One ledger row; the cursor of its insert. Its id is read from it only once a later
    result has been waited for anyway (on PostgreSQL's pipeline reading it at once would
    wait for the server)."""
    if kind not in ledger_rules.KINDS:
        raise LedgerError(f"unknown ledger kind {kind!r}")
    at_ts = ts(at)
    cur = conn.execute(
        "INSERT INTO ledger(member_id, kind, amount, key, at, ref) VALUES (?, ?, ?, ?, ?, ?)",
        (member_id, kind, amount, key, at_ts, ref),
    )
    store_daily.credit_moved(conn, member_id, kind, amount, at_ts)
    return cur


def _record_uses(conn: Connection, ledger_id: int, uses: list[tuple[int, int]]) -> None:
    """Which lots the ledger row `ledger_id` took credit from, and how much from each."""
    conn.executemany(
        "INSERT INTO lot_uses(ledger_id, lot_id, amount) VALUES (?, ?, ?)",
        [(ledger_id, lot_id, part) for lot_id, part in uses],
    )


def credit(
    conn: Connection,
    member_id: int,
    kind: str,
    amount: int,
    key: str,
    *,
    earned_at: datetime,
    expires_at: datetime,
    ref: str | None = None,
) -> int | None:
    """Add credit as a new lot; returns the lot id (None for 0)."""
    if amount < 0:
        raise LedgerError("credit of a negative amount")
    if amount == 0:
        return None
    _row(conn, member_id, kind, amount, key, earned_at, ref)
    cur = conn.execute(
        "INSERT INTO lots(member_id, earned_at, expires_at, amount, remaining) "
        "VALUES (?, ?, ?, ?, ?)",
        (member_id, ts(earned_at), ts(expires_at), amount, amount),
    )
    return int(cur.lastrowid or 0)


class AdjustmentRefused(ValueError):
    """A manual adjustment that cannot be made (0, or more than the free balance)."""


def adjust(
    conn: Connection,
    member_id: int,
    amount: int,
    key: str,
    *,
    reason: str,
    now: datetime,
    expires_at: datetime,
) -> bool:
    """A manual adjustment (+ credit as a new lot, - taken FIFO), for `loyalty-backend
    adjust` and the panel alike; False when `key` was applied already (a form sent twice
    moves the money once). The free balance never goes below zero."""
    if amount == 0:
        raise AdjustmentRefused("an adjustment of 0 changes nothing")
    if has_row(conn, key):
        return False
    if amount > 0:
        credit(conn, member_id, "adjustment", amount, key, earned_at=now,
               expires_at=expires_at, ref=reason)
        return True
    if -amount > balance(conn, member_id):
        raise AdjustmentRefused("the adjustment would make the balance negative")
    debit(conn, member_id, "adjustment", -amount, key, now, ref=reason)
    return True


def _open_lots(
    conn: Connection, member_id: int, *, first: int | None = None
) -> list[tuple[int, int]]:
    lots = conn.execute(
        "SELECT id, remaining FROM lots WHERE member_id = ? AND remaining > 0 "
        "ORDER BY expires_at, id",
        (member_id,),
    ).fetchall()
    if first is not None:
        lots.sort(key=lambda lot: lot[0] != first)  # stable: that lot first, then FIFO
    return [(int(a), int(b)) for a, b in lots]


def debit(
    conn: Connection,
    member_id: int,
    kind: str,
    amount: int,
    key: str,
    at: datetime,
    *,
    ref: str | None = None,
    first_lot: int | None = None,
    record_uses: bool = False,
    available: int | None = None,
    lots: list[tuple[int, int]] | None = None,
) -> None:
    """Take credit from the lots, oldest to expire first.

    `available` is the balance when the caller has just read it (saves a query); `lots`
    the member's open lots in FIFO order when the caller has read them under the
    member's lock and nothing changed them since (saves a read, and on PostgreSQL's
    pipeline its wait)."""
    if amount <= 0:
        raise LedgerError("debit of a non-positive amount")
    if amount > (balance(conn, member_id) if available is None else available):
        raise LedgerError(f"{kind} of {amount} exceeds the credit of member {member_id}")
    row = _row(conn, member_id, kind, -amount, key, at, ref)
    if lots is None or first_lot is not None:
        lots = _open_lots(conn, member_id, first=first_lot)
        read = True
    else:
        read = False
    uses = ledger_rules.fifo_take(lots, amount)
    _take(conn, uses)
    if record_uses and read:  # the row's id: the lots' read above has waited for its insert
        _record_uses(conn, int(row.lastrowid), uses)
    elif record_uses:  # nothing has waited for the insert: the row found by its key
        conn.executemany(
            "INSERT INTO lot_uses(ledger_id, lot_id, amount) "
            "SELECT id, ?, ? FROM ledger WHERE key = ?",
            [(lot_id, part, key) for lot_id, part in uses],
        )


def transfer(
    conn: Connection,
    sender_id: int,
    receiver_id: int,
    amount: int,
    out_key: str,
    in_key: str,
    at: datetime,
) -> list[tuple[int, datetime]]:
    """Move `amount` of the sender's free credit to the receiver: a transfer_out row
    taking the sender's lots FIFO (recorded in lot_uses), a transfer_in row, and the
    receiver's new lots with the expiries of the lots the credit came from
    (member_tokens.received_lots). Both members are locked by the caller, whose
    transaction makes the two rows one movement; returns the receiver's (amount, expiry)."""
    if amount <= 0:
        raise LedgerError("transfer of a non-positive amount")
    if amount > balance(conn, sender_id):
        raise LedgerError(f"transfer of {amount} exceeds the credit of member {sender_id}")
    row = _row(conn, sender_id, "transfer_out", -amount, out_key, at, in_key)
    lots = conn.execute(
        "SELECT id, remaining, expires_at FROM lots WHERE member_id = ? AND remaining > 0 "
        "ORDER BY expires_at, id",
        (sender_id,),
    ).fetchall()
    uses = ledger_rules.fifo_take([(int(i), int(r)) for i, r, _ in lots], amount)
    _take(conn, uses)
    _record_uses(conn, int(row.lastrowid), uses)
    expiry_of = {int(i): from_ts(int(e)) for i, _, e in lots}
    parts = member_tokens.received_lots(uses, expiry_of)
    _row(conn, receiver_id, "transfer_in", amount, in_key, at, out_key)
    conn.executemany(
        "INSERT INTO lots(member_id, earned_at, expires_at, amount, remaining) "
        "VALUES (?, ?, ?, ?, ?)",
        [(receiver_id, ts(at), ts(exp), part, part) for part, exp in parts],
    )
    return parts


def _take(conn: Connection, uses: list[tuple[int, int]]) -> None:
    conn.executemany(
        "UPDATE lots SET remaining = remaining - ? WHERE id = ?",
        [(part, lot_id) for lot_id, part in uses],
    )


def restore(
    conn: Connection, member_id: int, used_row_key: str, key: str, at: datetime
) -> int:
    """Give back what a recorded debit took, into the very lots it came from (so the
    restored credit keeps its original expiry); returns the amount restored."""
    row = conn.execute("SELECT id FROM ledger WHERE key = ?", (used_row_key,)).fetchone()
    if row is None:
        return 0
    uses = conn.execute(
        "SELECT lot_id, amount FROM lot_uses WHERE ledger_id = ?", (row[0],)
    ).fetchall()
    total = sum(a for _, a in uses)
    if total == 0:
        return 0
    _row(conn, member_id, "reversal", total, key, at, used_row_key)
    for lot_id, part in uses:
        conn.execute("UPDATE lots SET remaining = remaining + ? WHERE id = ?", (part, lot_id))
    return total


def hold(
    conn: Connection,
    member_id: int,
    quote_id: str,
    amount: int,
    at: datetime,
    *,
    available: int | None = None,
) -> None:
    """Hold `amount` for a quote; `available` is the balance the caller has just read."""
    if amount <= 0:
        return
    if amount > (balance(conn, member_id) if available is None else available):
        raise LedgerError("hold exceeds the balance")
    _row(conn, member_id, "hold", -amount, f"hold:{quote_id}", at, quote_id)


def release(
    conn: Connection, member_id: int, quote_id: str, amount: int, at: datetime
) -> int:
    """End a hold of `amount`; the rials given back to the balance."""
    if amount <= 0:
        return 0
    _row(conn, member_id, "release", amount, f"release:{quote_id}", at, quote_id)
    return amount


def redeem(
    conn: Connection,
    member_id: int,
    quote_id: str,
    amount: int,
    at: datetime,
    *,
    available: int | None = None,
    lots: list[tuple[int, int]] | None = None,
) -> None:
    """Make a redemption final (its hold already released in the same transaction);
    `lots` as for `debit`."""
    if amount > 0:
        debit(
            conn,
            member_id,
            "redeem",
            amount,
            f"redeem:{quote_id}",
            at,
            ref=quote_id,
            record_uses=True,
            available=available,
            lots=lots,
        )


def take_back(
    conn: Connection,
    member_id: int,
    amount: int,
    key: str,
    at: datetime,
    *,
    first_lot: int | None,
) -> tuple[int, int]:
    """Take back earned credit; what is already spent becomes a debt. (taken, shortfall)."""
    taken, shortfall = ledger_rules.take_back(amount, balance(conn, member_id))
    if taken:
        debit(conn, member_id, "reversal", taken, key, at, first_lot=first_lot)
    if shortfall:
        add_debt(conn, member_id, shortfall)
    return taken, shortfall


def expire(conn: Connection, member_id: int, now: datetime) -> int:
    """Expire the member's lots past their date, except what an open hold still covers."""
    lots = conn.execute(
        "SELECT id, remaining FROM lots WHERE member_id = ? AND remaining > 0 "
        "AND expires_at <= ? ORDER BY expires_at, id",
        (member_id, ts(now)),
    ).fetchall()
    if not lots:
        return 0
    amount = ledger_rules.expirable(sum(r for _, r in lots), balance(conn, member_id))
    if amount == 0:
        return 0
    key = f"expiry:{member_id}:{ts(now)}:{secrets.token_hex(4)}"
    row = _row(conn, member_id, "expiry", -amount, key, now)
    uses = ledger_rules.fifo_take(lots, amount)
    _take(conn, uses)
    _record_uses(conn, int(row.lastrowid), uses)
    return amount


def members_with_expired_lots(conn: Connection, now: datetime) -> list[int]:
    # No DISTINCT in SQL: for it the planner walks all of lots_open (member order, tens of
    # ms on a million lots, holding up every request behind the sweep) instead of
    # searching lots_expiring for the few lots that have expired.
    rows = conn.execute(
        "SELECT member_id FROM lots WHERE remaining > 0 AND expires_at <= ?", (ts(now),)
    )
    return list(dict.fromkeys(int(r[0]) for r in rows))


def check(conn: Connection, member_id: int) -> None:
    """Assert the ledger invariants for one member (used by tests and `member`)."""
    bal = balance(conn, member_id)
    lots = conn.execute(
        "SELECT COALESCE(SUM(remaining), 0) FROM lots WHERE member_id = ?", (member_id,)
    ).fetchone()[0]
    hd = held(conn, member_id)
    if bal < 0 or lots - hd != bal:
        raise LedgerError(
            f"member {member_id}: balance {bal}, lots {lots}, held {hd}: invariant broken"
        )
