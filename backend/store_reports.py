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
