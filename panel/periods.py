"""The dashboard's periods as pure functions of a day in Tehran.

Every period is a run of whole days, `first` to `last` inclusive. "This week" (from
Saturday, the Iranian week's first day) and "this month" (Jalali) run to the given day, so
they compare with `previous()`: the same number of days just before, which is what an
owner means by "against last week so far".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

import jdatetime

from panel.forms import FieldError, jalali_date
from protocols.persian import TEHRAN, persian_digits

#: A custom range longer than this is refused: a dashboard of years is a report, not a page.
MAX_RANGE_DAYS = 366 * 3


class PeriodKind(StrEnum):
    TODAY = "today"
    WEEK = "week"
    MONTH = "month"
    LAST_30_DAYS = "last30"
    RANGE = "range"
    PREVIOUS = "previous"


@dataclass(frozen=True, slots=True)
class Period:
    kind: PeriodKind
    first: date
    last: date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"a period ends on or after it starts: {self.first} > {self.last}")

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def each_day(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range(self.days)]

    def utc_bounds(self) -> tuple[datetime, datetime]:
        """[start, end) in UTC: Tehran midnight of `first` to Tehran midnight after `last`."""
        start = datetime.combine(self.first, time(), TEHRAN).astimezone(UTC)
        end = datetime.combine(self.last + timedelta(days=1), time(), TEHRAN).astimezone(UTC)
        return start, end

    def label(self) -> str:
        """`۱۴۰۵/۰۹/۰۱ تا ۱۴۰۵/۰۹/۱۰` (one date for a single day)."""
        a, b = jalali_day(self.first), jalali_day(self.last)
        return a if self.first == self.last else f"{a} تا {b}"


def jalali_day(day: date) -> str:
    return persian_digits(jdatetime.date.fromgregorian(date=day).strftime("%Y/%m/%d"))


def tehran_day(now: datetime) -> date:
    """The calendar day in Tehran at `now` (a naive datetime is UTC, as every clock here)."""
    aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    return aware.astimezone(TEHRAN).date()


def today(day: date) -> Period:
    return Period(PeriodKind.TODAY, day, day)


def this_week(day: date) -> Period:
    # Monday is 0 in Python; Saturday is 5: days since Saturday = (weekday + 2) % 7.
    return Period(PeriodKind.WEEK, day - timedelta(days=(day.weekday() + 2) % 7), day)


def this_month(day: date) -> Period:
    j = jdatetime.date.fromgregorian(date=day)
    return Period(PeriodKind.MONTH, jdatetime.date(j.year, j.month, 1).togregorian(), day)


def last_30_days(day: date) -> Period:
    return Period(PeriodKind.LAST_30_DAYS, day - timedelta(days=29), day)


def jalali_range(first: tuple[int, int, int], last: tuple[int, int, int]) -> Period:
    """Any Jalali range, (year, month, day) to (year, month, day) inclusive."""
    try:
        a = jdatetime.date(*first).togregorian()
        b = jdatetime.date(*last).togregorian()
    except ValueError as exc:
        raise ValueError(f"not a Jalali date: {exc}") from None
    return Period(PeriodKind.RANGE, a, b)


def previous(period: Period) -> Period:
    """The period of the same length that ends the day before `period` starts."""
    last = period.first - timedelta(days=1)
    return Period(PeriodKind.PREVIOUS, last - timedelta(days=period.days - 1), last)


def month_length(year: int, month: int) -> int:
    """Days in a Jalali month: 31 for months 1-6, 30 for 7-11, Esfand 29 or 30 (leap)."""
    if month < 12:
        return 31 if month <= 6 else 30
    return 30 if jdatetime.date(year, 1, 1).isleap() else 29


def from_query(params: Mapping[str, str], day: date) -> Period:
    """The period a dashboard URL asks for: `?period=today|week|month|last30`, or
    `?period=range&from=1405/09/01&to=1405/09/10` (Persian digits too). Bad input raises
    `FieldError` with a Persian message, for the page to show beside the period picker."""
    kind = params.get("period", PeriodKind.TODAY.value)
    simple = {PeriodKind.TODAY: today, PeriodKind.WEEK: this_week,
              PeriodKind.MONTH: this_month, PeriodKind.LAST_30_DAYS: last_30_days}
    try:
        chosen = PeriodKind(kind)
    except ValueError:
        raise FieldError("این بازه را نمی‌شناسیم.") from None
    if chosen in simple:
        return simple[chosen](day)
    if chosen is not PeriodKind.RANGE:
        raise FieldError("این بازه را نمی‌شناسیم.")
    first = jalali_date(params.get("from", "")) if params.get("from") else None
    last = jalali_date(params.get("to", "")) if params.get("to") else None
    if first is None or last is None:
        raise FieldError("آغاز و پایان بازه را بنویسید.")
    if last < first:
        raise FieldError("پایان بازه پیش از آغاز آن است.")
    if (last - first).days >= MAX_RANGE_DAYS:
        raise FieldError(f"بازه بیش از {persian_digits(MAX_RANGE_DAYS)} روز است.")
    return Period(PeriodKind.RANGE, first, last)
