"""The operator's period report: the figures, from the ledger (rendering: report_render).

Every figure is defined in docs/backend.md ("Report"); this module only computes them, so
the queries can move to the store layer and the wording change without touching each other.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from datetime import datetime

from backend.sms import outbox
from backend.store import ts

_FAR_FUTURE = 2**62


@dataclass(frozen=True, slots=True)
class Figures:
    """One period's figures; amounts in rials (signed where credit moves both ways)."""

    since: datetime | None  # first instant counted; None: from the beginning
    until: datetime | None  # first instant no longer counted; None: up to now
    purchases: int
    sales: int
    declined: int
    reversed: int
    new_members: int
    returning_members: int
    credit_issued: int
    credit_redeemed: int
    credit_expired: int
    credit_reversed: int
    credit_adjusted: int
    sms_sent: int
    sms_pending: int
    sms_failed: int

    def items(self) -> list[tuple[str, int]]:
        """(name, value) of every figure, in report order, without the period."""
        return [(f.name, getattr(self, f.name)) for f in fields(self) if f.name not in _PERIOD]


_PERIOD = frozenset({"since", "until"})
#: The figures that are amounts of rials; the others are counts.
MONEY = frozenset(
    {
        "sales",
        "credit_issued",
        "credit_redeemed",
        "credit_expired",
        "credit_reversed",
        "credit_adjusted",
    }
)


def summary(
    conn: sqlite3.Connection, *, since: datetime | None, until: datetime | None
) -> Figures:
    lo = ts(since) if since is not None else -_FAR_FUTURE
    hi = ts(until) if until is not None else _FAR_FUTURE
    out: dict[str, int] = {}
    out["purchases"], out["sales"] = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM purchases "
        "WHERE approved = 1 AND reversed = 0 AND occurred_at >= ? AND occurred_at < ?",
        (lo, hi),
    ).fetchone()
    out["declined"] = conn.execute(
        "SELECT COUNT(*) FROM purchases WHERE approved = 0 "
        "AND occurred_at >= ? AND occurred_at < ?",
        (lo, hi),
    ).fetchone()[0]
    out["reversed"] = conn.execute(
        "SELECT COUNT(*) FROM purchases WHERE approved = 1 AND reversed = 1 "
        "AND occurred_at >= ? AND occurred_at < ?",
        (lo, hi),
    ).fetchone()[0]
    out["new_members"] = conn.execute(
        "SELECT COUNT(*) FROM members WHERE enrolled_at >= ? AND enrolled_at < ?", (lo, hi)
    ).fetchone()[0]
    # returning: bought in the period and had bought before (earlier in it, or before it)
    out["returning_members"] = conn.execute(
        "SELECT COUNT(DISTINCT p.member_id) FROM purchases p WHERE p.approved = 1 "
        "AND p.reversed = 0 AND p.occurred_at >= ? AND p.occurred_at < ? AND EXISTS ("
        "SELECT 1 FROM purchases q WHERE q.member_id = p.member_id AND q.approved = 1 "
        "AND q.reversed = 0 AND q.occurred_at < p.occurred_at)",
        (lo, hi),
    ).fetchone()[0]
    sums = dict(
        conn.execute(
            "SELECT kind, COALESCE(SUM(amount), 0) FROM ledger WHERE at >= ? AND at < ? "
            "GROUP BY kind",
            (lo, hi),
        ).fetchall()
    )
    out["credit_issued"] = sum(sums.get(k, 0) for k in ("earn", "referral", "welcome"))
    out["credit_redeemed"] = -sums.get("redeem", 0)
    out["credit_expired"] = -sums.get("expiry", 0)
    out["credit_reversed"] = sums.get("reversal", 0) + sums.get("recovery", 0)
    out["credit_adjusted"] = sums.get("adjustment", 0)
    sms = outbox.counts(conn, since=since, until=until)
    out["sms_sent"], out["sms_pending"], out["sms_failed"] = (
        sms["sent"],
        sms["pending"],
        sms["failed"],
    )
    return Figures(since=since, until=until, **out)
