"""The per-day pre-aggregates stay equal to the raw rows, on both engines.

The ledger's state machine (random enrolments, quotes, advices, declines, reversals before
and after their advice, late advices, repeats, clock jumps, expiry sweeps) gains manual
adjustments and an invariant: after every step, what store_daily kept in the requests'
own transactions equals what it computes again from the raw rows. And the dashboard's
reads equal the operator's report for the same days.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule, run_state_machine_as_test

from backend import daily_rules, ledger, report, store, store_daily, store_dashboard, store_rollups
from backend.daily_rules import day_number, from_day_number
from protocols.persian import TEHRAN
from tests.backend.core_helpers import FakeClock, advice, phone, request
from tests.backend.engines import ENGINES, register_test_terminals, wipe
from tests.backend.test_backend_ledger_stateful import (
    PHONES,
    SETTINGS,
    LedgerMachine,
    NewDb,
    _sqlite_db,
)


class DailyMachine(LedgerMachine):
    @rule(i=st.integers(0, 4), amount=st.integers(-300_000, 300_000))
    def adjust(self, i: int, amount: int) -> None:
        """A manual adjustment, as `loyalty-backend adjust` and the panel make it."""
        m = store.member_by_phone(self.conn, PHONES[i], club_id=1)
        if m is None or amount == 0:
            return
        now = self.clock()
        with store.transaction(self.conn):
            key = f"adjustment:{m.id}:{now.timestamp():.6f}:{amount}"
            if ledger.has_row(self.conn, key):
                return
            if amount > 0:
                ledger.credit(self.conn, m.id, "adjustment", amount, key, earned_at=now,
                              expires_at=now + timedelta(days=90))
            elif -amount <= ledger.balance(self.conn, m.id):
                ledger.debit(self.conn, m.id, "adjustment", -amount, key, now)

    @rule(i=st.integers(0, 4), hours=st.integers(0, 60), amount=st.integers(1, 400_000))
    def advice_from_the_past(self, i: int, hours: int, amount: int) -> None:
        """An advice the terminal forwards late: its purchase is older than the member's
        latest (the aggregates read the history then), or of the same second (hours 0:
        the running totals' path, a tie with the latest)."""
        when = (self.clock() - timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
        req = advice(amount=amount, occurred_at=when, phone=PHONES[i])
        resp = self._do(req)
        if PHONES[i] in self.members:
            assert resp.code == "00" and resp.body["balance"] == self._balance(PHONES[i])
            self.advices.append(req)
            if resp.body["earned"] > 0:
                self.approved_earning.add(req.key)

    @rule(i=st.integers(0, 4), tier=st.sampled_from(("bronze", "silver", "gold", "vip")))
    def tier_moves(self, i: int, tier: str) -> None:
        """A tier set as retier sets it (the members-per-tier count follows)."""
        m = store.member_by_phone(self.conn, PHONES[i], club_id=1)
        if m is not None:
            with store.transaction(self.conn):
                store.set_tier(self.conn, m.id, tier)

    @rule(hours=st.integers(1, 23))
    def wait_hours(self, hours: int) -> None:
        """Days and hours of the week move, so purchases fall on many Tehran days."""
        self.clock.jump(hours=hours)

    @invariant()
    def aggregates_equal_raw_rows(self) -> None:
        kept = store_daily.kept(self.conn)
        raw = store_daily.from_raw(self.conn)
        assert kept.purchases == raw.purchases
        assert kept.credit == raw.credit
        assert kept.members == raw.members
        assert kept.intervals == raw.intervals
        assert kept.buyers == raw.buyers
        assert kept.monthly == raw.monthly
        # the roll-ups: per week, per month's weekday and hour, members per tier
        assert kept.dekads == raw.dekads
        assert kept.weekly == raw.weekly
        assert kept.weekly_credit == raw.weekly_credit
        assert kept.weekly_intervals == raw.weekly_intervals
        assert kept.hours == raw.hours
        assert kept.tiers == raw.tiers
        assert store_dashboard.tiers(self.conn, 1) == sorted(
            (t, n) for (c, t), n in raw.tiers.items() if c == 1)

    @invariant()
    def days_equal_the_report(self) -> None:
        rows = store_dashboard.days(self.conn, 1, 0, 99_999_999)
        if not rows:
            return
        first, last = from_day_number(rows[0].day), from_day_number(rows[-1].day)
        since = datetime.combine(first, datetime.min.time(), TEHRAN)
        until = datetime.combine(last + timedelta(days=1), datetime.min.time(), TEHRAN)
        f = report.summary(self.conn, since=since, until=until)
        assert f.purchases == sum(r.settled for r in rows)
        assert f.sales == sum(r.sales for r in rows)
        assert f.declined == sum(r.declined for r in rows)
        assert f.reversed == sum(r.reversed for r in rows)
        assert f.new_members == sum(r.enrolled for r in rows)
        assert f.credit_issued == sum(r.credit_of("earn", "referral", "welcome") for r in rows)
        assert f.credit_redeemed == -sum(r.credit_of("redeem") for r in rows)
        assert f.credit_expired == -sum(r.credit_of("expiry") for r in rows)
        assert f.credit_adjusted == sum(r.credit_of("adjustment") for r in rows)
        b = store_dashboard.buyers(self.conn, 1, rows[0].day, rows[-1].day)
        assert b.returning == f.returning_members
        assert b == store_dashboard.buyers_from_purchases(self.conn, 1, store.ts(since),
                                                      store.ts(until))
        if len(rows) > 2:  # a period that starts after the first day
            mid = rows[len(rows) // 2].day
            start = datetime.combine(from_day_number(mid), datetime.min.time(), TEHRAN)
            assert store_dashboard.buyers(self.conn, 1, mid, rows[-1].day) == \
                store_dashboard.buyers_from_purchases(self.conn, 1, store.ts(start),
                                                  store.ts(until))
        settled = self.conn.execute(
            "SELECT member_id, occurred_at FROM purchases WHERE approved = 1 AND reversed = 0"
        ).fetchall()
        first_day: dict[int, int] = {}
        for mid, at in settled:
            d = daily_rules.tehran_day(at)
            first_day[mid] = min(d, first_day.get(mid, d))
        for r in rows:
            on_day = {mid for mid, at in settled if daily_rules.tehran_day(at) == r.day}
            assert r.came_back == sum(1 for mid in on_day if first_day[mid] < r.day)
            assert r.first_visits == sum(1 for mid in on_day if first_day[mid] == r.day)
        lots = self.conn.execute("SELECT COALESCE(SUM(remaining), 0) FROM lots").fetchone()[0]
        assert store_dashboard.outstanding(self.conn, 1) == lots
        self.one_query_reads_agree(rows)

    def one_query_reads_agree(self, rows: list[store_dashboard.DayFigures]) -> None:
        """The dashboard's merged reads (one round trip each) equal the plain ones."""
        first, mid, last = rows[0].day, rows[len(rows) // 2].day, rows[-1].day
        got = store_dashboard.period_reads(self.conn, 1, mid, last, first, mid)
        assert got.days == store_dashboard.days(self.conn, 1, mid, last)
        assert got.members == store_dashboard.enrolled_through(self.conn, 1, last)
        assert got.outstanding == store_dashboard.outstanding(self.conn, 1)
        before = store_dashboard.days(self.conn, 1, first, mid)
        assert got.before == store_dashboard.totals(self.conn, 1, first, mid)
        assert got.before.settled == sum(r.settled for r in before)
        assert got.before.sales == sum(r.sales for r in before)
        assert got.before.enrolled == sum(r.enrolled for r in before)
        assert got.before.members == store_dashboard.enrolled_through(self.conn, 1, mid)
        for kind in daily_rules.CREDIT_KINDS:
            assert got.before.credit_of(kind) == sum(r.credit_of(kind) for r in before)
        assert store_dashboard.buyers_of(self.conn, 1, [(mid, last), (first, mid)]) == [
            store_dashboard.buyers(self.conn, 1, mid, last),
            store_dashboard.buyers(self.conn, 1, first, mid)]
        self.roll_up_reads_agree(first, mid, last)

    def roll_up_reads_agree(self, first: int, mid: int, last: int) -> None:
        """The reads that take whole weeks and months from the roll-ups equal the day
        rows summed alike."""
        for a, b in ((first, last), (mid, last), (first, mid)):
            plain = store_dashboard.days(self.conn, 1, a, b)
            assert _per_week(store_dashboard.days(self.conn, 1, a, b, weeks=True)) == \
                _per_week(plain)
            got = store_dashboard.period_reads(self.conn, 1, a, b, first, mid, weeks=True)
            assert _per_week(got.days) == _per_week(plain)
            assert got.before == store_dashboard.totals(self.conn, 1, first, mid)
            assert got.outstanding == store_dashboard.outstanding(self.conn, 1)
            bins: Counter[int] = Counter()
            for (c, d, bin_), n in store_daily.kept(self.conn).intervals.items():
                if c == 1 and a <= d <= b:
                    bins[bin_] += n
            assert store_dashboard.intervals(self.conn, 1, a, b) == {k: v for k, v in bins.items()
                                                                 if v}
            heat: Counter[tuple[int, int]] = Counter()
            for d, hour, n in store_dashboard.hours(self.conn, 1, a, b):
                heat[(daily_rules.weekday_index(d), hour)] += n
            assert store_dashboard.weekday_hours(self.conn, 1, a, b) == sorted(
                (w, h, n) for (w, h), n in heat.items() if n)


def _per_week(rows: list[store_dashboard.DayFigures]) -> dict[int, tuple]:
    """Day rows (or whole weeks' rows) summed per week: what a weekly chart shows."""
    acc: dict[int, list] = {}
    for r in rows:
        got = acc.setdefault(daily_rules.week_of(r.day), [0] * 8 + [Counter()])
        for i, name in enumerate(("settled", "sales", "gross", "declined", "reversed",
                                  "enrolled", "first_visits", "came_back")):
            got[i] += getattr(r, name)
        got[8].update(dict(r.credit))
    return {w: (*v[:8], {k: n for k, n in v[8].items() if n}) for w, v in acc.items()
            if any(v[:8]) or any(v[8].values())}


def _wipe_daily(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table in (*store_daily.TABLES, *store_rollups.TABLES):
            conn.execute(f"DELETE FROM {table}")


def _registered_sqlite_db() -> tuple[str, Callable[[], None]]:
    path, drop = _sqlite_db()
    register_test_terminals(path)
    return path, drop


@pytest.mark.parametrize("engine", ENGINES)
def test_store_daily_machine(engine: str, request: pytest.FixtureRequest) -> None:
    new_db: NewDb = _registered_sqlite_db
    if engine == "postgresql":
        url: str = request.getfixturevalue("pg_url")

        def new_db() -> tuple[str, Callable[[], None]]:
            wipe(url)
            _wipe_daily(url)
            return url, lambda: None

    run_state_machine_as_test(lambda: DailyMachine(new_db), settings=SETTINGS)


def test_store_daily_rules() -> None:
    # 20:29:59 UTC is 23:59:59 in Tehran (+3:30); a second later it is the next day
    late = int(datetime(2026, 11, 23, 20, 29, 59, tzinfo=UTC).timestamp())
    assert daily_rules.tehran_day_hour(late) == (20261123, 23)
    assert daily_rules.tehran_day_hour(late + 1) == (20261124, 0)
    assert daily_rules.interval_bin(None, late) == daily_rules.FIRST_VISIT
    assert daily_rules.interval_bin(late - 86_000, late) == 0  # the same Tehran day
    assert daily_rules.interval_bin(late, late + 1) == 1  # one second, but the next day
    assert daily_rules.interval_bin(late, late + 86_400 * 10) == daily_rules.INTERVAL_EDGES.index(7)
    last_bin = len(daily_rules.INTERVAL_EDGES) - 1
    assert daily_rules.interval_bin(late, late + 86_400 * 5000) == last_bin
    assert daily_rules.interval_labels()[7] == "7–13"
    assert daily_rules.weekday_index(day_number(date(2026, 11, 28))) == 0  # a Saturday
    assert from_day_number(day_number(date(2027, 3, 21))) == date(2027, 3, 21)
    assert daily_rules.split_days(20261115, 20270210) == (
        [(20261115, 20261130), (20270201, 20270210)], [202612, 202701])
    assert daily_rules.split_days(20261201, 20261231) == ([], [202612])
    assert daily_rules.split_days(20261203, 20261203) == ([(20261203, 20261203)], [])
    # 2026-11-28 and 2026-12-05 are Saturdays: the weeks between are read whole
    assert daily_rules.week_of(20261204) == 20261128
    assert daily_rules.week_of(20261128) == 20261128
    assert daily_rules.split_weeks(20261125, 20261216) == (
        [(20261125, 20261127), (20261212, 20261216)], (20261128, 20261205))
    assert daily_rules.split_weeks(20261128, 20261211) == ([], (20261128, 20261205))
    assert daily_rules.split_weeks(20261129, 20261210) == ([(20261129, 20261210)], None)
    assert [daily_rules.dekad_of(d) for d in (20261201, 20261210, 20261211, 20261231)] == [
        2026120, 2026120, 2026121, 2026122]
    assert daily_rules.split_dekads(20251202, 20261201) == (
        [(20251202, 20251210), (20261201, 20261201)], [2025121, 2025122],
        [202601 + i for i in range(11)])
    assert daily_rules.split_dekads(20260205, 20260228) == (
        [(20260205, 20260210)], [2026021, 2026022], [])
    assert daily_rules.split_dekads(20260212, 20260219) == ([(20260212, 20260219)], [], [])


def test_store_daily_deltas_follow_savepoints_and_rollbacks(db: str) -> None:
    """The aggregates are written at the end of the transaction (engine.deferred): a
    request rolled back to its savepoint, or a transaction rolled back, takes its share
    with it; what commits is counted once, summed per row."""
    from backend import engine
    from backend.handlers import Handler

    conn = store.connect(db)
    clock = FakeClock()
    assert Handler(conn, clock=clock).handle(request("enroll", {"phone": phone(1)})).code == "00"
    m = store.member_by_phone(conn, phone(1), club_id=1)
    assert m is not None
    now = clock()

    def adjust(amount: int, key: str) -> None:
        ledger.credit(conn, m.id, "adjustment", amount, key, earned_at=now,
                      expires_at=now + timedelta(days=90))

    with store.transaction(conn):
        adjust(100, "a1")
        engine.savepoint(conn, "request")
        adjust(20_000, "a2")
        engine.savepoint(conn, "nested")
        adjust(3_000, "a3")
        engine.rollback_to(conn, "request")  # a2 and a3 gone, in the database and here
        engine.release(conn, "request")
        adjust(400, "a4")
        assert store_daily.kept(conn).credit == {}  # not written yet: at COMMIT
    with pytest.raises(ZeroDivisionError), store.transaction(conn):
        adjust(50_000, "a5")
        raise ZeroDivisionError
    with store.transaction(conn):
        pass
    kept = store_daily.kept(conn)
    assert kept == store_daily.from_raw(conn)
    assert kept.credit == {(1, daily_rules.tehran_day(int(now.timestamp())), "adjustment"): 500}
    conn.close()


def test_store_daily_migration_fills_existing_rows(db: str) -> None:
    """Rows written before the aggregates existed (emptied here) come back by rebuild."""
    from backend.handlers import Handler

    conn = store.connect(db)
    clock = FakeClock()
    handler = Handler(conn, clock=clock)
    assert handler.handle(request("enroll", {"phone": phone(1)})).code == "00"
    for n in range(5):
        handler.handle(advice(amount=100_000 + n, phone=phone(1), occurred_at=clock.iso()))
        clock.jump(hours=7)
    before = store_daily.kept(conn)
    assert sum(v[0] for v in before.purchases.values()) == 5
    with store.transaction(conn):
        for table in (*store_daily.TABLES, *store_rollups.TABLES):
            conn.execute(f"DELETE FROM {table}")
        store_daily.rebuild(conn)
    assert store_daily.kept(conn) == before
    assert before.weekly and before.hours and before.tiers
    with store.transaction(conn):  # migration 22: the roll-ups alone
        for table in store_rollups.TABLES:
            conn.execute(f"DELETE FROM {table}")
        store_daily.rebuild(conn, store_rollups.TABLES)
    assert store_daily.kept(conn) == before
    conn.close()


def test_store_daily_engines_agree_on_sqlite_types(tmp_path) -> None:
    """A guard that SQLite's integer division is what from_raw assumes."""
    conn = sqlite3.connect(tmp_path / "x.db")
    assert conn.execute("SELECT 3599 / 1800").fetchone()[0] == 1


@settings(max_examples=300, deadline=None)
@given(half=st.one_of(st.integers(0, 1_200_000),
                      # around Tehran's changes of offset (1977-1980; the DST years to 2022)
                      st.integers(122_000, 184_000), st.integers(911_000, 928_000)),
       into=st.sampled_from((0, 1, 1799)))
def test_daily_rules_tehran_day_hour_per_half_hour_is_exact(half: int, into: int) -> None:
    """The day and hour computed once per UTC half hour are those of the moment itself
    (at the half hour's edges too)."""
    at = half * 1800 + into
    local = datetime.fromtimestamp(at, UTC).astimezone(TEHRAN)
    assert daily_rules.tehran_day_hour(at) == (day_number(local.date()), local.hour)
