"""The report queries: a period's purchases, members, ledger movements and SMS, as values.

The operator's report (backend.report) and the panel's dashboard both read these, so the
figures agree wherever they are shown. Each function takes a half-open period
[since, until) (None: unbounded on that side), built in `_period`, and a `Scope`: one club
(None: every club), optionally one of its branches or terminals, built in `_purchases_of`.
Cut by branch or terminal, the members and credit figures are those of the purchases made
there: members who bought there, credit earned and redeemed there.
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


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose figures: one club (None: every club), one branch or one terminal of it."""

    club_id: int | None = None
    branch_id: int | None = None
    terminal_id: str | None = None

    @property
    def narrowed(self) -> bool:
        """Cut below the club: figures through the purchases made there."""
        return self.branch_id is not None or self.terminal_id is not None


EVERYWHERE = Scope()


def _purchases_of(scope: Scope, alias: str) -> tuple[str, tuple[object, ...]]:
    """The conditions on purchases `alias` of the scope (none: "1 = 1") and their args."""
    where: list[str] = []
    args: list[object] = []
    if scope.club_id is not None:
        where.append(f"{alias}.member_id IN (SELECT id FROM members WHERE club_id = ?)")
        args.append(scope.club_id)
    if scope.branch_id is not None:
        where.append(f"{alias}.branch_id = ?")
        args.append(scope.branch_id)
    if scope.terminal_id is not None:
        where.append(f"{alias}.terminal_id = ?")
        args.append(scope.terminal_id)
    return (" AND ".join(where) or "1 = 1"), tuple(args)


def _period(
    column: str, since: datetime | None, until: datetime | None
) -> tuple[str, tuple[int, int]]:
    """The WHERE condition of the period on `column` (integer Unix seconds) and its args."""
    lo = ts(since) if since is not None else -_FAR_FUTURE
    hi = ts(until) if until is not None else _FAR_FUTURE
    return f"{column} >= ? AND {column} < ?", (lo, hi)


def purchase_figures(
    conn: Connection,
    *,
    since: datetime | None,
    until: datetime | None,
    scope: Scope = EVERYWHERE,
) -> PurchaseFigures:
    period, period_args = _period("p.occurred_at", since, until)
    of, of_args = _purchases_of(scope, "p")
    where, args = f"{period} AND {of}", (*period_args, *of_args)
    row = conn.execute(
        "SELECT "
        "COALESCE(SUM(CASE WHEN approved = 1 AND reversed = 0 THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN approved = 1 AND reversed = 0 THEN amount ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN approved = 0 THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN approved = 1 AND reversed = 1 THEN 1 ELSE 0 END), 0) "
        f"FROM purchases p WHERE {where}",
        args,
    ).fetchone()
    settled, sales, declined, reversed_ = (int(v) for v in row)
    return PurchaseFigures(settled=settled, sales=sales, declined=declined, reversed=reversed_)


def member_figures(
    conn: Connection,
    *,
    since: datetime | None,
    until: datetime | None,
    scope: Scope = EVERYWHERE,
) -> MemberFigures:
    where, period_args = _period("enrolled_at", since, until)
    args: tuple[object, ...] = period_args
    if scope.club_id is not None:
        where += " AND club_id = ?"
        args += (scope.club_id,)
    if scope.narrowed:  # enrolled in the period and bought there (at any time)
        of, of_args = _purchases_of(scope, "p")
        where += f" AND id IN (SELECT p.member_id FROM purchases p WHERE {of})"
        args += of_args
    new = conn.execute(f"SELECT COUNT(*) FROM members WHERE {where}", args).fetchone()[0]
    period, period_args = _period("p.occurred_at", since, until)
    of, of_args = _purchases_of(scope, "p")
    where, args = f"{period} AND {of}", (*period_args, *of_args)
    returning = conn.execute(
        "SELECT COUNT(DISTINCT p.member_id) FROM purchases p "
        f"WHERE p.approved = 1 AND p.reversed = 0 AND {where} AND EXISTS ("
        "SELECT 1 FROM purchases q WHERE q.member_id = p.member_id AND q.approved = 1 "
        "AND q.reversed = 0 AND q.occurred_at < p.occurred_at)",
        args,
    ).fetchone()[0]
    return MemberFigures(new=int(new), returning=int(returning))


def ledger_totals(
    conn: Connection,
    *,
    since: datetime | None,
    until: datetime | None,
    scope: Scope = EVERYWHERE,
) -> LedgerTotals:
    where, period_args = _period("at", since, until)
    args: tuple[object, ...] = period_args
    if scope.club_id is not None:
        where += " AND member_id IN (SELECT id FROM members WHERE club_id = ?)"
        args += (scope.club_id,)
    if scope.narrowed:  # the credit the scope's purchases moved (earned, redeemed, undone)
        of, of_args = _purchases_of(scope, "p")
        where += (
            f" AND (ref IN (SELECT p.key FROM purchases p WHERE {of})"
            f" OR ref IN (SELECT p.quote_id FROM purchases p WHERE {of}))"
        )
        args += of_args * 2
    rows = conn.execute(
        f"SELECT kind, COALESCE(SUM(amount), 0) FROM ledger WHERE {where} "
        "GROUP BY kind ORDER BY kind",
        args,
    ).fetchall()
    return LedgerTotals(by_kind=tuple((str(kind), int(total)) for kind, total in rows))


def sms_figures(
    conn: Connection,
    *,
    since: datetime | None,
    until: datetime | None,
    scope: Scope = EVERYWHERE,
) -> SmsFigures:
    """The club's SMS (not cut by branch or terminal: an SMS records only its club)."""
    counts = outbox.counts(conn, since=since, until=until, club_id=scope.club_id)
    return SmsFigures(
        sent=counts[outbox.SENT], pending=counts[outbox.PENDING], failed=counts[outbox.FAILED]
    )
