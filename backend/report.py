"""The operator's period report: purchases, members, credit and SMS, from the ledger."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from backend.sms import outbox
from backend.store import ts
from protocols.persian import TEHRAN

_FAR_FUTURE = 2**62


def summary(
    conn: sqlite3.Connection, *, since: datetime | None, until: datetime | None
) -> dict[str, int]:
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
    return out


_LABELS = {
    "purchases": "purchases",
    "sales": "sales (rials charged)",
    "declined": "declined payments",
    "reversed": "reversed purchases",
    "new_members": "new members",
    "returning_members": "returning members",
    "credit_issued": "credit issued",
    "credit_redeemed": "credit redeemed",
    "credit_expired": "credit expired",
    "credit_reversed": "credit moved by reversals",
    "credit_adjusted": "manual adjustments",
    "sms_sent": "SMS sent",
    "sms_pending": "SMS pending",
    "sms_failed": "SMS failed",
}


def _local(when: datetime) -> str:
    """Shop time: an operator reads the report's bounds in Tehran time, not UTC."""
    return f"{when.astimezone(TEHRAN):%Y-%m-%d %H:%M} Tehran time"


def render(figures: dict[str, int], *, since: datetime | None, until: datetime | None) -> str:
    period = _local(since) if since else "the beginning"
    end = _local(until) if until else "now"
    lines = [f"report from {period} to {end}"]
    lines += [f"  {_LABELS[k]:<27} {v:>16,}" for k, v in figures.items()]
    return "\n".join(lines)
