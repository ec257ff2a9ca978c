"""Segments in the store (backend.store_segments): the aggregate counts sales as the
reports do, the run replaces the club's rows, counts are kept per day. Both engines."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from backend import segments, store, store_segments
from backend.engine import Connection
from backend.store import PurchaseRecord
from protocols.persian import TEHRAN

TODAY = date(2026, 12, 1)
CLUB = 1


def _at(day: date, hour: int = 12) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=TEHRAN).timestamp())


def member(conn: Connection, n: int, enrolled: date, club_id: int = CLUB) -> int:
    with store.transaction(conn):
        m = store.insert_member(
            conn, phone=f"0912{n:07d}", referrer_id=None, tier="base",
            now=datetime.fromtimestamp(_at(enrolled), UTC), club_id=club_id,
        )
    return m.id


def buy(conn: Connection, mid: int, day: date, amount: int, *, key: str, approved: bool = True,
        reversed_: bool = False, hour: int = 12) -> None:
    with store.transaction(conn):
        store.insert_purchase(conn, PurchaseRecord(
            key=key, member_id=mid, terminal_id="T0000001", quote_id=None, amount=amount,
            gross=amount + 1000, approved=approved, redeemed=0, earned=0, recovered=0,
            earn_lot=None, occurred_at=_at(day, hour), reversed=reversed_,
        ))


def test_aggregate_counts_settled_purchases_only(conn: Connection) -> None:
    a = member(conn, 1, TODAY - timedelta(days=100))
    b = member(conn, 2, TODAY - timedelta(days=50))
    buy(conn, a, TODAY - timedelta(days=10), 5000, key="k1")
    buy(conn, a, TODAY - timedelta(days=3), 7000, key="k2")
    buy(conn, a, TODAY - timedelta(days=1), 9000, key="k3", reversed_=True)
    buy(conn, a, TODAY - timedelta(days=1), 9000, key="k4", approved=False)
    # 01:00 Tehran is 21:30 UTC of the day before: the day counted is Tehran's
    buy(conn, b, TODAY - timedelta(days=2), 100, key="k5", hour=1)
    rows = {r.member_id: r for r in store_segments.aggregates(conn, CLUB)}
    assert rows[a] == segments.MemberAggregate(a, TODAY - timedelta(days=100),
                                               TODAY - timedelta(days=3), 2, 12000)
    assert rows[b] == segments.MemberAggregate(b, TODAY - timedelta(days=50),
                                               TODAY - timedelta(days=2), 1, 100)


def test_aggregate_is_per_club_and_members_without_purchases_count(conn: Connection) -> None:
    from backend import store_registry

    with store.transaction(conn):
        other = store_registry.add_club(conn, "دیگری", datetime.now(UTC)).id
    a = member(conn, 1, TODAY - timedelta(days=40))
    c = member(conn, 3, TODAY - timedelta(days=40), club_id=other)
    buy(conn, c, TODAY - timedelta(days=1), 5000, key="k1")
    assert [(r.member_id, r.purchases) for r in store_segments.aggregates(conn, CLUB)] == [(a, 0)]
    assert [r.member_id for r in store_segments.aggregates(conn, other)] == [c]


def test_compute_writes_every_member_and_replaces_the_last_run(conn: Connection) -> None:
    ids = [member(conn, i, TODAY - timedelta(days=200 + i)) for i in range(10)]
    for i, mid in enumerate(ids):
        for k in range(i):
            buy(conn, mid, TODAY - timedelta(days=1 + 20 * (9 - i) + k), 1000 * (i + 1),
                key=f"k{i}-{k}")
    with store.transaction(conn):
        counts = store_segments.compute(conn, CLUB, TODAY)
    expected = segments.segment_club(store_segments.aggregates(conn, CLUB), TODAY)
    assert counts == segments.counts(expected)
    assert sum(counts.values()) == 10
    for s in expected:
        got = store_segments.member_segment(conn, s.member_id)
        assert got is not None
        assert (got.segment, got.length, got.recency, got.frequency, got.monetary) == (
            s.segment, s.scores.length, s.scores.recency, s.scores.frequency,
            s.scores.monetary)
        assert got.computed_on == TODAY
    assert counts["lost"] >= 1 and counts["champion"] >= 1
    # a second run the same day replaces rows and counts, not adds to them
    with store.transaction(conn):
        store_segments.compute(conn, CLUB, TODAY)
    n = conn.execute("SELECT COUNT(*) FROM member_segments").fetchone()[0]
    assert n == 10
    got = store_segments.counts_with_change(conn, CLUB)
    assert got.day == TODAY and got.counts == counts and got.change is None


def test_change_since_a_month_ago(conn: Connection) -> None:
    mid = member(conn, 1, TODAY - timedelta(days=40))
    assert store_segments.member_segment(conn, mid) is None
    assert store_segments.counts_with_change(conn, CLUB).day is None
    early = TODAY - timedelta(days=35)
    buy(conn, mid, early - timedelta(days=1), 1000, key="k1")
    with store.transaction(conn):
        store_segments.compute(conn, CLUB, early)
    with store.transaction(conn):
        store_segments.compute(conn, CLUB, TODAY - timedelta(days=10))  # too recent
    with store.transaction(conn):
        store_segments.compute(conn, CLUB, TODAY)
    got = store_segments.counts_with_change(conn, CLUB)
    assert got.month_ago == early
    assert got.change is not None
    # new a month ago (5 days a member), not new now: one member moved
    assert got.change == {**dict.fromkeys(segments.SEGMENTS, 0), "new": -1,
                          got_segment(conn, mid): 1}


def got_segment(conn: Connection, mid: int) -> str:
    s = store_segments.member_segment(conn, mid)
    assert s is not None and s.segment != "new"
    return s.segment


def test_offer_for_a_segment_goes_to_its_members_only(conn: Connection) -> None:
    from backend import ledger
    from backend.handlers import Handler
    from backend.program import Offer, Program
    from backend.segments import MemberSegment, Scores
    from tests.backend.core_helpers import FakeClock, advice, phone, request

    clock = FakeClock()
    offer = Offer(name="برگرد", amount=7000, until=date(2026, 12, 31), target="segment:at_risk")
    h = Handler(conn, Program(), offers=[offer], clock=clock)
    for n in (1, 2, 3):
        assert h.handle(request("enroll", {"phone": phone(n), "referrer": None})).code == "00"
    ids = [store.member_by_phone(conn, phone(n), club_id=CLUB).id for n in (1, 2, 3)]
    with store.transaction(conn):  # member 3: not scored yet (enrolled after the run)
        store_segments.write(conn, CLUB, TODAY, [
            MemberSegment(ids[0], Scores(3, 1, 4, 3), "at_risk"),
            MemberSegment(ids[1], Scores(3, 5, 4, 3), "loyal"),
        ])
    before = [ledger.balance(conn, m) for m in ids]
    for n in (1, 2, 3):
        resp = h.handle(advice(amount=1_000_000, occurred_at=clock.iso(), phone=phone(n)))
        assert resp.code == "00", resp
    earned = [ledger.balance(conn, m) - b for m, b in zip(ids, before, strict=True)]
    assert earned[0] == earned[1] + 7000 and earned[1] == earned[2] > 0
    receipts = [h.handle(request("inquiry", {"phone": phone(n), "gross": 40_000})).body["receipt"]
                for n in (1, 2)]
    assert "برگرد" in str(receipts[0]) and "برگرد" not in str(receipts[1])
    with pytest.raises(ValueError, match="segment:NAME"):
        Offer(name="x", amount=1, until=date(2026, 12, 31), target="segment:gone")
