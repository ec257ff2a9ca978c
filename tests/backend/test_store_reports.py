"""The report queries on both engines, and the report's arithmetic on their values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backend import ledger, report, store, store_reports
from backend.engine import Connection
from backend.handlers import Handler
from tests.backend.core_helpers import FakeClock, advice, phone, request, reversal


def _period(conn: Connection, since: datetime | None, until: datetime | None) -> tuple:
    kw = {"since": since, "until": until}
    return (
        store_reports.purchase_figures(conn, **kw),
        store_reports.member_figures(conn, **kw),
        store_reports.ledger_totals(conn, **kw),
        store_reports.sms_figures(conn, **kw),
    )


def test_store_reports_count_a_day_on_both_engines(
    conn: Connection, handler: Handler, clock: FakeClock
) -> None:
    start = clock()
    handler.handle(request("enroll", {"phone": phone(1)}))
    handler.handle(request("enroll", {"phone": phone(2), "referrer": phone(1)}))
    handler.handle(advice(amount=2_000_000, occurred_at=clock.iso(), phone=phone(2)))
    handler.handle(advice(amount=900_000, occurred_at=clock.iso(), phone=phone(2), bank_code="51"))
    clock.jump(minutes=30)
    sold = advice(amount=400_000, occurred_at=clock.iso(), phone=phone(1))
    handler.handle(sold)
    handler.handle(reversal(sold, occurred_at=clock.iso()))
    clock.jump(minutes=30)
    handler.handle(advice(amount=300_000, occurred_at=clock.iso(), phone=phone(2)))
    end = clock() + timedelta(seconds=1)

    purchases, members, totals, sms = _period(conn, start, end)
    assert purchases == store_reports.PurchaseFigures(
        settled=2, sales=2_300_000, declined=1, reversed=1
    )
    assert members == store_reports.MemberFigures(new=2, returning=1)
    # every rial of the period's ledger is in one of the kinds, and adds up to the balances
    balances = sum(
        ledger.balance(conn, m.id)
        for m in (store.member_by_phone(conn, phone(n)) for n in (1, 2))
        if m is not None
    )
    assert sum(total for _, total in totals.by_kind) == balances > 0
    assert totals.of("earn") > 0 and totals.of("reversal") < 0
    assert sms.sent + sms.pending + sms.failed >= 2  # two welcomes at least

    # half-open: `until` is not counted, `since` is
    first, _, _, _ = _period(conn, start, start + timedelta(minutes=30))
    assert (first.settled, first.declined, first.reversed) == (1, 1, 0)
    later, members_later, _, _ = _period(conn, start + timedelta(minutes=30), None)
    assert (later.settled, later.reversed, members_later) == (
        1,
        1,
        store_reports.MemberFigures(new=0, returning=1),
    )
    before = _period(conn, None, start)
    assert before == (
        store_reports.PurchaseFigures(0, 0, 0, 0),
        store_reports.MemberFigures(0, 0),
        store_reports.LedgerTotals(()),
        store_reports.SmsFigures(0, 0, 0),
    )
    # the report is exactly the arithmetic on these values
    assert report.summary(conn, since=start, until=end) == report.figures(
        *_period(conn, start, end), since=start, until=end
    )


def test_report_figures_take_each_ledger_kind_once() -> None:
    totals = store_reports.LedgerTotals(
        (
            ("adjustment", -7),
            ("earn", 100),
            ("expiry", -3),
            ("hold", -50),
            ("recovery", 4),
            ("redeem", -20),
            ("referral", 10),
            ("release", 50),
            ("reversal", -30),
            ("welcome", 5),
        )
    )
    f = report.figures(
        store_reports.PurchaseFigures(settled=3, sales=900, declined=1, reversed=2),
        store_reports.MemberFigures(new=4, returning=1),
        totals,
        store_reports.SmsFigures(sent=6, pending=1, failed=2),
        since=None,
        until=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert dict(f.items()) == {
        "purchases": 3,
        "sales": 900,
        "declined": 1,
        "reversed": 2,
        "new_members": 4,
        "returning_members": 1,
        "credit_issued": 115,
        "credit_redeemed": 20,
        "credit_expired": 3,
        "credit_reversed": -26,
        "credit_adjusted": -7,
        "sms_sent": 6,
        "sms_pending": 1,
        "sms_failed": 2,
    }


def test_backend_report_counts_returning_members(conn: Connection) -> None:
    """A member who buys again is returning, also in an unbounded report."""
    clock = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    h = Handler(conn, clock=clock)
    for n in (1, 2):
        h.handle(request("enroll", {"phone": phone(n)}))
    h.handle(advice(amount=500_000, occurred_at=clock.iso(), phone=phone(1)))
    h.handle(advice(amount=700_000, occurred_at=clock.iso(), phone=phone(2)))
    assert report.summary(conn, since=None, until=None).returning_members == 0
    clock.jump(hours=1)
    h.handle(advice(amount=300_000, occurred_at=clock.iso(), phone=phone(1)))
    figures = report.summary(conn, since=None, until=None)
    assert figures.returning_members == 1 and figures.purchases == 3
    later = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    assert report.summary(conn, since=later, until=None).returning_members == 1
