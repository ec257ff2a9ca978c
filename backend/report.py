"""The operator's period report: the figures, from the ledger (rendering: report_render).

Every figure is defined in docs/backend.md ("Report"). The queries are in the store layer
(backend.store_reports); this module only says which of their values make which figure.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from backend import store_reports
from backend.engine import Connection


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


def summary(conn: Connection, *, since: datetime | None, until: datetime | None) -> Figures:
    """The period's figures from the store's report queries (backend.store_reports)."""
    period = {"since": since, "until": until}
    return figures(
        store_reports.purchase_figures(conn, **period),
        store_reports.member_figures(conn, **period),
        store_reports.ledger_totals(conn, **period),
        store_reports.sms_figures(conn, **period),
        since=since,
        until=until,
    )


def figures(
    purchases: store_reports.PurchaseFigures,
    members: store_reports.MemberFigures,
    ledger: store_reports.LedgerTotals,
    sms: store_reports.SmsFigures,
    *,
    since: datetime | None,
    until: datetime | None,
) -> Figures:
    """The report's figures from the queries' values: which ledger kinds make which figure.

    Pure, so the definitions in docs/backend.md are tested without a database.
    """
    return Figures(
        since=since,
        until=until,
        purchases=purchases.settled,
        sales=purchases.sales,
        declined=purchases.declined,
        reversed=purchases.reversed,
        new_members=members.new,
        returning_members=members.returning,
        credit_issued=ledger.of("earn", "referral", "welcome"),
        credit_redeemed=-ledger.of("redeem"),
        credit_expired=-ledger.of("expiry"),
        credit_reversed=ledger.of("reversal", "recovery"),
        credit_adjusted=ledger.of("adjustment"),
        sms_sent=sms.sent,
        sms_pending=sms.pending,
        sms_failed=sms.failed,
    )
