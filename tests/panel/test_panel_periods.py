"""Periods over Tehran days: Saturday weeks, Jalali months, Nowruz, leap Esfand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import jdatetime
import pytest
from hypothesis import given
from hypothesis import strategies as st

from panel import periods as p
from panel.forms import FieldError


def g(y: int, m: int, d: int) -> date:
    """The Gregorian date of a Jalali one."""
    return jdatetime.date(y, m, d).togregorian()


def test_tehran_day_changes_at_tehran_midnight_not_utc() -> None:
    assert p.tehran_day(datetime(2026, 3, 20, 20, 29, tzinfo=UTC)) == date(2026, 3, 20)
    assert p.tehran_day(datetime(2026, 3, 20, 20, 31, tzinfo=UTC)) == date(2026, 3, 21)
    assert p.tehran_day(datetime(2026, 3, 20, 20, 31)) == date(2026, 3, 21)  # naive = UTC


def test_week_starts_on_saturday() -> None:
    friday, saturday = date(2026, 11, 27), date(2026, 11, 28)
    assert p.this_week(friday).first == date(2026, 11, 21) and p.this_week(friday).days == 7
    assert p.this_week(saturday) == p.Period(p.PeriodKind.WEEK, saturday, saturday)
    assert p.this_week(date(2026, 12, 1)).first == saturday  # a Tuesday


def test_month_around_nowruz_and_leap_esfand() -> None:
    # 1403 is a leap year: Esfand 1403 has 30 days; 1404 is not: 29.
    assert p.month_length(1403, 12) == 30 and p.month_length(1404, 12) == 29
    nowruz_1405 = g(1405, 1, 1)
    assert p.this_month(nowruz_1405) == p.today(nowruz_1405).__class__(
        p.PeriodKind.MONTH, nowruz_1405, nowruz_1405)
    last_of_esfand = nowruz_1405 - timedelta(days=1)
    assert last_of_esfand == g(1404, 12, 29)
    assert p.this_month(last_of_esfand).first == g(1404, 12, 1)
    assert p.this_month(last_of_esfand).days == 29
    assert p.this_month(g(1403, 12, 30)).days == 30
    # the previous period of Nowruz day is the last day of Esfand
    assert p.previous(p.today(nowruz_1405)).first == last_of_esfand


@pytest.mark.parametrize(("month", "days"), [(1, 31), (6, 31), (7, 30), (11, 30)])
def test_whole_jalali_months(month: int, days: int) -> None:
    period = p.jalali_range((1405, month, 1), (1405, month, p.month_length(1405, month)))
    assert period.days == days
    assert jdatetime.date.fromgregorian(date=period.last + timedelta(days=1)).day == 1


def test_month_ends_31_to_30() -> None:
    # the last day of Shahrivar (31) and the first of Mehr (30 days)
    end_6 = g(1405, 6, 31)
    assert p.this_month(end_6).days == 31
    assert p.this_month(end_6 + timedelta(days=1)).first == g(1405, 7, 1)
    with pytest.raises(ValueError):
        p.jalali_range((1405, 7, 1), (1405, 7, 31))  # Mehr has no 31st
    with pytest.raises(ValueError):
        p.jalali_range((1404, 12, 1), (1404, 12, 30))  # 1404 is not a leap year


def test_previous_of_this_month_so_far_crosses_nowruz() -> None:
    day = g(1405, 1, 10)
    month = p.this_month(day)
    prev = p.previous(month)
    assert prev.days == 10 and prev.last == g(1404, 12, 29) and prev.first == g(1404, 12, 20)


def test_last_30_days_and_range_errors() -> None:
    period = p.last_30_days(date(2026, 3, 21))
    assert period.days == 30 and period.last == date(2026, 3, 21)
    with pytest.raises(ValueError):
        p.jalali_range((1405, 2, 1), (1405, 1, 1))


def test_utc_bounds_are_tehran_midnights() -> None:
    start, end = p.today(date(2026, 3, 21)).utc_bounds()
    assert start == datetime(2026, 3, 20, 20, 30, tzinfo=UTC)
    assert end - start == timedelta(days=1)
    # 2021, when Iran still kept summer time: Tehran midnight was 19:30 UTC
    start, _ = p.today(date(2021, 6, 1)).utc_bounds()
    assert start == datetime(2021, 5, 31, 19, 30, tzinfo=UTC)


def test_label_is_jalali_with_persian_digits() -> None:
    assert p.today(g(1405, 1, 1)).label() == "۱۴۰۵/۰۱/۰۱"
    assert p.this_month(g(1405, 1, 3)).label() == "۱۴۰۵/۰۱/۰۱ تا ۱۴۰۵/۰۱/۰۳"


days = st.dates(date(2000, 1, 1), date(2060, 12, 31))


@given(days, st.sampled_from([p.today, p.this_week, p.this_month, p.last_30_days]))
def test_every_period_ends_on_its_day_and_the_previous_one_abuts_it(day, make) -> None:
    period = make(day)
    prev = p.previous(period)
    assert period.last == day and period.first <= day
    assert prev.days == period.days and prev.last + timedelta(days=1) == period.first
    assert len(period.each_day()) == period.days
    if make is p.this_week:
        assert period.first.weekday() == 5 and period.days <= 7
    if make is p.this_month:
        assert jdatetime.date.fromgregorian(date=period.first).day == 1
        assert period.days <= 31


def test_period_from_the_dashboard_query() -> None:
    day = g(1405, 9, 10)
    assert p.from_query({}, day) == p.today(day)
    assert p.from_query({"period": "week"}, day) == p.this_week(day)
    assert p.from_query({"period": "last30"}, day) == p.last_30_days(day)
    chosen = p.from_query({"period": "range", "from": "۱۴۰۴/۱۲/۲۵", "to": "1405/01/05"}, day)
    assert (chosen.first, chosen.last, chosen.days) == (g(1404, 12, 25), g(1405, 1, 5), 10)
    for bad, message in [({"period": "year"}, "نمی‌شناسیم"),
                         ({"period": "previous"}, "نمی‌شناسیم"),
                         ({"period": "range", "from": "1405/01/01"}, "آغاز و پایان"),
                         ({"period": "range", "from": "1405/02/01", "to": "1405/01/01"},
                          "پیش از آغاز"),
                         ({"period": "range", "from": "1405/07/31", "to": "1405/08/01"},
                          "چنین روزی"),
                         ({"period": "range", "from": "1390/01/01", "to": "1405/01/01"},
                          "بیش از")]:
        with pytest.raises(FieldError, match=message):
            p.from_query(bad, day)
