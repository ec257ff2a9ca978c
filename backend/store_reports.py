"""The report queries: a period's purchases, members, ledger movements and SMS, as values.

The operator's report (backend.report) and the panel's dashboard both read these, so the
figures agree wherever they are shown. Each function takes a half-open period
[since, until) (None: unbounded on that side) and builds its filter in `_period`, so a
later narrowing (one club, one terminal) is one more condition in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from backend.engine import Connection
from backend.sms import outbox
from backend.store import ts

_FAR_FUTURE = 2**62


@dataclass(frozen=True, slots=True)
class PurchaseFigures:
    """Purchases that occurred in the period; `sales` in rials, of the settled ones."""

    settled: int  # approved and not reversed
    sales: int
    declined: int
    reversed: int  # approved, then reversed


@dataclass(frozen=True, slots=True)
class MemberFigures:
    new: int  # enrolled in the period
    returning: int  # bought in the period and had bought before (in it or before it)


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    """The signed sum of the ledger's amounts in the period, per kind (absent: none)."""

    by_kind: tuple[tuple[str, int], ...]

    def of(self, *kinds: str) -> int:
        wanted = set(kinds)
        return sum(total for kind, total in self.by_kind if kind in wanted)


@dataclass(frozen=True, slots=True)
class SmsFigures:
    """SMS queued in the period, by where they are now (one in flight counts as pending)."""

    sent: int
    pending: int
    failed: int


def _period(
    column: str, since: datetime | None, until: datetime | None
) -> tuple[str, tuple[int, int]]:
    """The WHERE condition of the period on `column` (integer Unix seconds) and its args."""
    lo = ts(since) if since is not None else -_FAR_FUTURE
    hi = ts(until) if until is not None else _FAR_FUTURE
    return f"{column} >= ? AND {column} < ?", (lo, hi)


def purchase_figures(
    conn: Connection, *, since: datetime | None, until: datetime | None
) -> PurchaseFigures:
    where, args = _period("occurred_at", since, until)
    row = conn.execute(
        "SELECT "
        "COALESCE(SUM(CASE WHEN approved = 1 AND reversed = 0 THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN approved = 1 AND reversed = 0 THEN amount ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN approved = 0 THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN approved = 1 AND reversed = 1 THEN 1 ELSE 0 END), 0) "
        f"FROM purchases WHERE {where}",
        args,
    ).fetchone()
    settled, sales, declined, reversed_ = (int(v) for v in row)
    return PurchaseFigures(settled=settled, sales=sales, declined=declined, reversed=reversed_)


def member_figures(
    conn: Connection, *, since: datetime | None, until: datetime | None
) -> MemberFigures:
    where, args = _period("enrolled_at", since, until)
    new = conn.execute(f"SELECT COUNT(*) FROM members WHERE {where}", args).fetchone()[0]
    where, args = _period("p.occurred_at", since, until)
    returning = conn.execute(
        "SELECT COUNT(DISTINCT p.member_id) FROM purchases p "
        f"WHERE p.approved = 1 AND p.reversed = 0 AND {where} AND EXISTS ("
        "SELECT 1 FROM purchases q WHERE q.member_id = p.member_id AND q.approved = 1 "
        "AND q.reversed = 0 AND q.occurred_at < p.occurred_at)",
        args,
    ).fetchone()[0]
    return MemberFigures(new=int(new), returning=int(returning))


def ledger_totals(
    conn: Connection, *, since: datetime | None, until: datetime | None
) -> LedgerTotals:
    where, args = _period("at", since, until)
    rows = conn.execute(
        f"SELECT kind, COALESCE(SUM(amount), 0) FROM ledger WHERE {where} "
        "GROUP BY kind ORDER BY kind",
        args,
    ).fetchall()
    return LedgerTotals(by_kind=tuple((str(kind), int(total)) for kind, total in rows))


def sms_figures(conn: Connection, *, since: datetime | None, until: datetime | None) -> SmsFigures:
    counts = outbox.counts(conn, since=since, until=until)
    return SmsFigures(
        sent=counts[outbox.SENT], pending=counts[outbox.PENDING], failed=counts[outbox.FAILED]
    )


def scoped_figures(
    conn: Connection,
    *,
    since: datetime | None,
    until: datetime | None,
    club_id: int | None,
    branch_id: int | None = None,
    terminal_id: str | None = None,
) -> tuple[PurchaseFigures, MemberFigures, LedgerTotals, SmsFigures]:
    """The four figures of one club, or of one of its branches or terminals: purchases
    by the member's club (and the branch or terminal they were made at); members and
    credit of the club, or, cut by branch or terminal, those of its purchases there."""
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
    out["settled"], out["sales"] = conn.execute(
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
    counts = outbox.counts(conn, since=since, until=until, club_id=club_id)
    return (
        PurchaseFigures(settled=int(out["settled"]), sales=int(out["sales"]),
                        declined=int(out["declined"]), reversed=int(out["reversed"])),
        MemberFigures(new=int(out["new_members"]), returning=int(out["returning_members"])),
        LedgerTotals(by_kind=tuple(sorted((str(k), int(v)) for k, v in sums.items()))),
        SmsFigures(sent=counts[outbox.SENT], pending=counts[outbox.PENDING],
                   failed=counts[outbox.FAILED]),
    )  # fmt: skip
