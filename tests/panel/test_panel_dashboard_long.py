"""Long periods on the dashboard: charted per week, the heat map summed by the database,
every point equal to the per-day aggregates it stands for (both engines)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import date, timedelta

import jdatetime

from backend import daily_rules, store, store_daily, store_dashboard, store_rollups
from backend.daily_rules import day_number
from panel import dashboard_data, periods

FIRST = date(2024, 11, 20)
DAYS = 800  # 2024-11-20 .. 2027-01-28, so two Januaries and Februaries (Zeller's months 13, 14)


def _fill(conn: store.Connection) -> dict[int, int]:
    """Settled purchases straight into daily_purchases (the dashboard reads only these),
    then their roll-ups per week and month as the day rows sum to."""
    settled: dict[int, int] = {}
    with store.transaction(conn):
        for i in range(DAYS):
            d = day_number(FIRST + timedelta(days=i))
            for hour in (9, 13, 20):
                n = (i * 7 + hour) % 11
                settled[d] = settled.get(d, 0) + n
                conn.execute(
                    "INSERT INTO daily_purchases(club_id, branch_id, day, hour, settled, sales) "
                    "VALUES (1, 1, ?, ?, ?, ?)", (d, hour, n, n * 1000))
        snap = store_daily.kept(conn)
        snap.roll_up()
        store_rollups.write(conn, snap.weekly, snap.weekly_credit, snap.weekly_intervals,
                            snap.hours, snap.tiers)
    return settled


def _table(figure: dashboard_data.Figure) -> list[list[str]]:
    return list(csv.reader(io.StringIO(figure.csv)))[1:]


def test_weekday_hours_sums_in_the_database(db: str) -> None:
    conn = store.connect(db)
    _fill(conn)
    first, last = day_number(FIRST), day_number(FIRST + timedelta(days=DAYS - 1))
    want: Counter[tuple[int, int]] = Counter()
    for d, hour, n in store_dashboard.hours(conn, 1, first, last):
        want[(daily_rules.weekday_index(d), hour)] += n
    got = {(w, h): n for w, h, n in store_dashboard.weekday_hours(conn, 1, first, last)}
    assert got == dict(want) and len(got) == 7 * 3
    assert store_dashboard.weekday_hours(conn, 2, first, last) == []  # another club's
    conn.close()


def test_long_period_is_charted_per_week(db: str) -> None:
    conn = store.connect(db)
    settled = _fill(conn)
    j_first = jdatetime.date.fromgregorian(date=FIRST + timedelta(days=10))
    j_last = jdatetime.date.fromgregorian(date=FIRST + timedelta(days=10 + 729))
    period = periods.jalali_range((j_first.year, j_first.month, j_first.day),
                                  (j_last.year, j_last.month, j_last.day))
    board = dashboard_data.build(conn, 1, period, "en")
    rows = _table(board.chart("purchases").figure)
    days = period.each_day()
    # points start on each Saturday (and on the period's first day)
    starts = [d for d in days if d == days[0] or d.weekday() == 5]
    assert len(rows) == len(starts) < 110
    for i, (start, row) in enumerate(zip(starts, rows, strict=True)):
        end = starts[i + 1] if i + 1 < len(starts) else days[-1] + timedelta(days=1)
        want = sum(settled.get(day_number(start + timedelta(days=k)), 0)
                   for k in range((end - start).days))
        assert int(row[-1]) == want, start
    sales = _table(board.chart("sales").figure)
    assert sum(int(r[-1]) for r in sales) == 1000 * sum(int(r[-1]) for r in rows)
    assert board.chart("purchases").title == "Purchases per week"
    short = dashboard_data.build(conn, 1, periods.last_30_days(days[-1]), "en")
    assert len(_table(short.chart("purchases").figure)) == 30
    assert short.chart("purchases").title == "Purchases per day"
    heat = _table(board.chart("heat").figure)
    assert sum(int(v) for r in heat for v in r[1:]) == sum(
        settled[day_number(d)] for d in days)
    conn.close()
