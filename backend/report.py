"""The operator's period report: the figures, from the ledger (rendering: report_render).

Every figure is defined in docs/backend.md ("Report"); this module only computes them, so
the queries can move to the store layer and the wording change without touching each other.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from backend.engine import Connection
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
    conn: Connection,
    *,
    since: datetime | None,
    until: datetime | None,
    club_id: int | None = None,
    branch_id: int | None = None,
    terminal_id: str | None = None,
) -> Figures:
    """The period's figures of one club (None: every club), or of one of its branches or
    terminals. Cut by branch or terminal, the members and credit figures are those of the
    purchases made there: members who bought there, credit earned and redeemed there."""
    lo = ts(since) if since is not None else -_FAR_FUTURE
    hi = ts(until) if until is not None else _FAR_FUTURE
    # purchases of the scope: p.* filtered by club (through the member), branch, terminal
    where, args = ["p.occurred_at >= ?", "p.occurred_at < ?"], [lo, hi]
    if club_id is not None:
        where.append("p.member_id IN (SELECT id FROM members WHERE club_id = ?)")
        args.append(club_id)
    if branch_id is not None:
        where.append("p.branch_id = ?")
        args.append(branch_id)
    if terminal_id is not None:
        where.append("p.terminal_id = ?")
        args.append(terminal_id)
    scope = " AND ".join(where)
    out: dict[str, int] = {}
    out["purchases"], out["sales"] = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(p.amount), 0) FROM purchases p "
        f"WHERE p.approved = 1 AND p.reversed = 0 AND {scope}",
        args,
    ).fetchone()
    out["declined"] = conn.execute(
        f"SELECT COUNT(*) FROM purchases p WHERE p.approved = 0 AND {scope}", args
    ).fetchone()[0]
    out["reversed"] = conn.execute(
        f"SELECT COUNT(*) FROM purchases p WHERE p.approved = 1 AND p.reversed = 1 AND {scope}",
        args,
    ).fetchone()[0]
    members_sql = "SELECT COUNT(*) FROM members WHERE enrolled_at >= ? AND enrolled_at < ?"
    members_args: list[object] = [lo, hi]
    if club_id is not None:
        members_sql += " AND club_id = ?"
        members_args.append(club_id)
    if branch_id is not None or terminal_id is not None:
        # enrolled in the period and bought in this branch (or at this terminal)
        members_sql += f" AND id IN (SELECT p.member_id FROM purchases p WHERE {scope})"
        members_args += [-_FAR_FUTURE, _FAR_FUTURE, *args[2:]]
    out["new_members"] = conn.execute(members_sql, members_args).fetchone()[0]
    # returning: bought in the period and had bought before (earlier in it, or before it)
    out["returning_members"] = conn.execute(
        "SELECT COUNT(DISTINCT p.member_id) FROM purchases p WHERE p.approved = 1 "
        f"AND p.reversed = 0 AND {scope} AND EXISTS ("
        "SELECT 1 FROM purchases q WHERE q.member_id = p.member_id AND q.approved = 1 "
        "AND q.reversed = 0 AND q.occurred_at < p.occurred_at)",
        args,
    ).fetchone()[0]
    ledger_sql = (
        "SELECT kind, COALESCE(SUM(amount), 0) FROM ledger WHERE at >= ? AND at < ?"
    )
    ledger_args: list[object] = [lo, hi]
    if club_id is not None:
        ledger_sql += " AND member_id IN (SELECT id FROM members WHERE club_id = ?)"
        ledger_args.append(club_id)
    if branch_id is not None or terminal_id is not None:
        # the credit moved by the scope's purchases (their earnings, redemptions, undoing)
        ledger_sql += (
            " AND (ref IN (SELECT p.key FROM purchases p WHERE "
            f"{scope}) OR ref IN (SELECT p.quote_id FROM purchases p WHERE {scope}))"
        )
        ledger_args += [-_FAR_FUTURE, _FAR_FUTURE, *args[2:]] * 2
    sums = dict(conn.execute(ledger_sql + " GROUP BY kind", ledger_args).fetchall())
    out["credit_issued"] = sum(sums.get(k, 0) for k in ("earn", "referral", "welcome"))
    out["credit_redeemed"] = -sums.get("redeem", 0)
    out["credit_expired"] = -sums.get("expiry", 0)
    out["credit_reversed"] = sums.get("reversal", 0) + sums.get("recovery", 0)
    out["credit_adjusted"] = sums.get("adjustment", 0)
    sms = outbox.counts(conn, since=since, until=until, club_id=club_id)
    out["sms_sent"], out["sms_pending"], out["sms_failed"] = (
        sms["sent"],
        sms["pending"],
        sms["failed"],
    )
    return Figures(since=since, until=until, **out)
