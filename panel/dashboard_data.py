"""The dashboard's figures and charts for one club and period, from the store's reads.

Sums come from the per-day pre-aggregates and their roll-ups (backend.store_daily,
store_rollups, read through backend.store_dashboard), so any period costs a few hundred
small rows; the distinct-member figures (buying, returning, repeat) come exactly from the
buyers' bitmaps. Every figure here equals the operator's report
(`loyalty-backend report`) for the same days wherever the report has it (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import jdatetime

from backend import daily_rules, store_dashboard, store_segments
from backend.daily_rules import day_number, from_day_number
from backend.engine import Connection
from backend.segments import SEGMENTS
from panel.charts import WEEKDAYS_FA, ChartData, ChartKind, Figure, Series, render
from panel.periods import Period, previous
from panel.texts import TEXTS
from protocols.persian import format_rials, persian_digits

WEEKDAYS_EN = ("Sat", "Sun", "Mon", "Tue", "Wed", "Thu", "Fri")
ISSUED = ("earn", "referral", "welcome")  # as the report's credit_issued


@dataclass(frozen=True, slots=True)
class PeriodFigures:
    """One period's figures; rials and counts as whole numbers, shares as fractions."""

    sales: int
    purchases: int
    members: int
    new: int
    buyers: int
    returning: int
    repeat: int
    issued: int
    redeemed: int
    expired: int

    @property
    def basket(self) -> int | None:
        return self.sales // self.purchases if self.purchases else None

    @property
    def return_rate(self) -> float | None:
        return self.repeat / self.buyers if self.buyers else None

    @property
    def visits(self) -> float | None:
        return self.purchases / self.buyers if self.buyers else None

    @property
    def breakage(self) -> float | None:
        ended = self.expired + self.redeemed
        return self.expired / ended if ended else None


def period_figures(conn: Connection, club_id: int, period: Period
                   ) -> tuple[PeriodFigures, list[store_dashboard.DayFigures]]:
    first, last = day_number(period.first), day_number(period.last)
    rows = store_dashboard.days(conn, club_id, first, last)
    b = store_dashboard.buyers(conn, club_id, first, last)
    return _figures(rows, store_dashboard.enrolled_through(conn, club_id, last), b), rows


def _figures(rows: list[store_dashboard.DayFigures], members: int,
             b: store_dashboard.Buyers) -> PeriodFigures:
    """A period's figures from its per-day rows."""
    return PeriodFigures(
        sales=sum(r.sales for r in rows),
        purchases=sum(r.settled for r in rows),
        members=members,
        new=sum(r.enrolled for r in rows),
        buyers=b.buyers, returning=b.returning, repeat=b.repeat,
        issued=sum(r.credit_of(*ISSUED) for r in rows),
        redeemed=-sum(r.credit_of("redeem") for r in rows),
        expired=-sum(r.credit_of("expiry") for r in rows),
    )


def _totals_figures(t: store_dashboard.Totals, b: store_dashboard.Buyers) -> PeriodFigures:
    """A period's figures from its sums (the previous period: no per-day rows needed)."""
    return PeriodFigures(
        sales=t.sales, purchases=t.settled, members=t.members, new=t.enrolled,
        buyers=b.buyers, returning=b.returning, repeat=b.repeat,
        issued=t.credit_of(*ISSUED), redeemed=-t.credit_of("redeem"),
        expired=-t.credit_of("expiry"))


@dataclass(frozen=True, slots=True)
class FigureRow:
    key: str
    value: str
    previous: str
    change: str
    direction: str  # "up", "down" or "" (for the arrow's colour)


@dataclass(frozen=True, slots=True)
class Chart:
    name: str  # also the CSV's name: /dashboard/NAME.csv
    title: str
    figure: Figure
    definition: str = ""


@dataclass(frozen=True, slots=True)
class Dashboard:
    period: Period
    previous: Period
    rows: tuple[FigureRow, ...]
    outstanding: str
    charts: tuple[Chart, ...]

    def chart(self, name: str) -> Chart | None:
        return next((c for c in self.charts if c.name == name), None)


class Formats:
    """Numbers as the reader's language writes them."""

    def __init__(self, lang: str) -> None:
        self.lang = lang

    def count(self, n: int | None) -> str:
        if n is None:
            return TEXTS[self.lang]["no_value"]
        return persian_digits(f"{n:,}".replace(",", "٬")) if self.lang == "fa" else f"{n:,}"

    def money(self, n: int | None) -> str:
        if n is None:
            return TEXTS[self.lang]["no_value"]
        return format_rials(n) if self.lang == "fa" else f"{n:,}"

    def share(self, x: float | None) -> str:
        if x is None:
            return TEXTS[self.lang]["no_value"]
        text = f"{100 * x:.1f}%"
        return persian_digits(text.replace(".", "٫").replace("%", "٪")) if self.lang == "fa" \
            else text

    def ratio(self, x: float | None) -> str:
        if x is None:
            return TEXTS[self.lang]["no_value"]
        text = f"{x:.2f}"
        return persian_digits(text.replace(".", "٫")) if self.lang == "fa" else text

    def change(self, now: float | None, before: float | None) -> tuple[str, str]:
        if now is None or before is None or before == 0:
            return TEXTS[self.lang]["no_value"], ""
        delta = (now - before) / abs(before)
        sign = "+" if delta > 0 else ""
        text = f"{sign}{100 * delta:.1f}%"
        if self.lang == "fa":
            text = persian_digits(text.replace(".", "٫").replace("%", "٪"))
        return text, "up" if delta > 0 else "down" if delta < 0 else ""


#: (text key, value of PeriodFigures, how it is written), in the page's order
_ROWS = (
    ("sales", "sales", "money"), ("purchases", "purchases", "count"),
    ("basket", "basket", "money"), ("members", "members", "count"), ("new", "new", "count"),
    ("buyers", "buyers", "count"), ("returning", "returning", "count"),
    ("return_rate", "return_rate", "share"), ("visits", "visits", "ratio"),
    ("issued", "issued", "money"), ("redeemed", "redeemed", "money"),
    ("expired", "expired", "money"), ("breakage", "breakage", "share"),
)


@lru_cache(maxsize=8192)
def _label(day: date, long: bool) -> str:
    """A day's Jalali label (cached: jdatetime checks the locale on every conversion)."""
    j = jdatetime.date.fromgregorian(date=day)
    return j.strftime("%Y/%m/%d" if long else "%m/%d")


#: periods longer than this many days are charted per week (Saturday to Friday), so a
#: year's chart has 53 points, not 365
WEEKLY_AFTER = 92


def _weekly(period: Period) -> bool:
    """Charted per week: then whole weeks are read from the roll-ups, one row each."""
    return (period.last - period.first).days + 1 > WEEKLY_AFTER


def _saturday(d: date) -> date:
    """The Saturday the day's Iranian week starts on."""
    return d - timedelta(days=(d.weekday() + 2) % 7)


def _saturdays(period: Period) -> list[date]:
    """The Saturdays of the weeks the period touches (the first may be before it)."""
    first, last = _saturday(period.first), period.last
    return [first + timedelta(days=7 * i) for i in range((last - first).days // 7 + 1)]


def _per_week(period: Period, rows: list[store_dashboard.DayFigures]
              ) -> dict[date, list[store_dashboard.DayFigures]]:
    """The rows (days, or whole weeks on their Saturday) of each week the period touches,
    every week present (an empty one: no rows), in order."""
    weeks: dict[date, list[store_dashboard.DayFigures]] = {s: [] for s in _saturdays(period)}
    for r in rows:
        weeks[from_day_number(daily_rules.week_of(r.day))].append(r)
    return weeks


def _points(period: Period, rows: list[store_dashboard.DayFigures], weekly: bool
            ) -> tuple[list[date], list[list[store_dashboard.DayFigures]]]:
    """The chart's points: each day alone, or the rows of each week together (a period's
    first and last week may be partial); each point labelled by its first day."""
    if not weekly:
        by_day = {r.day: r for r in rows}
        days = period.each_day()
        return days, [[by_day[n]] if (n := day_number(d)) in by_day else [] for d in days]
    weeks = _per_week(period, rows)
    return [max(s, period.first) for s in weeks], list(weeks.values())


def build(conn: Connection, club_id: int, period: Period, lang: str) -> Dashboard:
    """The whole dashboard: the sums of both periods in one query, their distinct
    members in another, then the charts' own reads."""
    t = TEXTS[lang]
    fmt = Formats(lang)
    before_period = previous(period)
    first, last = day_number(period.first), day_number(period.last)
    got = store_dashboard.period_reads(conn, club_id, first, last,
                                   day_number(before_period.first),
                                   day_number(before_period.last), weeks=_weekly(period))
    b_now, b_before = store_dashboard.buyers_of(conn, club_id, [
        (first, last), (day_number(before_period.first), day_number(before_period.last))])
    now = _figures(got.days, got.members, b_now)
    before = _totals_figures(got.before, b_before)
    figure_rows = []
    for key, attr, kind in _ROWS:
        a, b = getattr(now, attr), getattr(before, attr)
        write = getattr(fmt, kind)
        change, direction = fmt.change(a, b)
        figure_rows.append(FigureRow(key, write(a), write(b), change, direction))
    return Dashboard(
        period=period, previous=before_period, rows=tuple(figure_rows),
        outstanding=fmt.money(got.outstanding),
        charts=charts(conn, club_id, period, got.days, lang, t))


#: every chart's name (its CSV: /dashboard/NAME.csv), in the page's order
CHART_NAMES = ("sales", "purchases", "members", "tiers", "segments", "heat", "credit",
               "intervals")
#: the charts drawn from the period's per-day rows
_DAY_CHARTS = frozenset({"sales", "purchases", "members", "credit"})


def chart(conn: Connection, club_id: int, period: Period, name: str, lang: str
          ) -> Chart | None:
    """One chart alone (its CSV download): only the reads it needs, the same numbers as
    on the page."""
    if name not in CHART_NAMES:
        return None
    rows = store_dashboard.days(conn, club_id, day_number(period.first),
                            day_number(period.last), weeks=_weekly(period)
                            ) if name in _DAY_CHARTS else []
    return charts(conn, club_id, period, rows, lang, TEXTS[lang], only=name)[0]


def segments_chart(conn: Connection, club_id: int, lang: str, t: dict[str, str]) -> Chart:
    """Members per segment on the latest nightly run, beside the run a month before it
    (the period chosen does not apply: segments are "now", like the tiers)."""
    got = store_segments.counts_with_change(conn, club_id)
    fmt = Formats(lang)
    series = [Series(t["series_segment_now"], tuple(got.counts[s] for s in SEGMENTS))]
    if got.day is None:
        definition = t["def_chart_segments_none"]
    elif got.change is None or got.month_ago is None:
        definition = t["def_chart_segments_new"].format(day=_label(got.day, True))
    else:
        before = {s: got.counts[s] - got.change[s] for s in SEGMENTS}
        series.append(Series(t["series_segment_month_ago"], tuple(before[s] for s in SEGMENTS)))
        change = "، ".join(
            f"{t['seg_' + s]} {'+' if got.change[s] > 0 else ''}{fmt.count(got.change[s])}"
            for s in SEGMENTS)
        definition = t["def_chart_segments"].format(
            day=_label(got.day, True), before=_label(got.month_ago, True), change=change)
    if lang == "fa":
        definition = persian_digits(definition)
    return Chart("segments", t["chart_segments"], render(ChartData(
        t["chart_segments"], ChartKind.BARS, tuple(t["seg_" + s] for s in SEGMENTS),
        tuple(series))), definition)


def charts(conn: Connection, club_id: int, period: Period,
           rows: list[store_dashboard.DayFigures], lang: str, t: dict[str, str],
           only: str | None = None) -> tuple[Chart, ...]:
    """The period's charts (`rows`: its per-day rows; a weekly period's whole weeks as one
    row on their Saturday, which every chart of it sums per week), or only the one named
    `only` (the others' reads are not made)."""
    long = jdatetime.date.fromgregorian(date=period.first).year != \
        jdatetime.date.fromgregorian(date=period.last).year
    weekly = _weekly(period)
    starts, points = _points(period, rows, weekly)
    labels = tuple(_label(d, long) for d in starts)
    k = "_weekly" if weekly else ""
    first, last = day_number(period.first), day_number(period.last)

    def of(field: str) -> tuple[int, ...]:
        return tuple(sum(getattr(r, field) for r in point) for point in points)

    def sales() -> Chart:
        return Chart("sales", t["chart_sales" + k], render(ChartData(
            t["chart_sales" + k], ChartKind.LINE, labels,
            (Series(t["series_sales"], of("sales")),))),
            t["def_weekly"] if weekly else "")

    def purchases() -> Chart:
        return Chart("purchases", t["chart_purchases" + k], render(ChartData(
            t["chart_purchases" + k], ChartKind.BARS, labels,
            (Series(t["series_purchases"], of("settled")),))),
            t["def_weekly"] if weekly else "")

    def members() -> Chart:
        return Chart("members", t["chart_members" + k], render(ChartData(
            t["chart_members" + k], ChartKind.BARS, labels,
            (Series(t["series_new"], of("enrolled")),
             Series(t["series_came_back"], of("came_back"))))),
            t["def_chart_members" + k])

    def tiers() -> Chart:
        got = store_dashboard.tiers(conn, club_id) or [("—", 0)]
        return Chart("tiers", t["chart_tiers"], render(ChartData(
            t["chart_tiers"], ChartKind.BARS, tuple(name for name, _ in got),
            (Series(t["series_members"], tuple(n for _, n in got)),))))

    def segments() -> Chart:
        return segments_chart(conn, club_id, lang, t)

    def heat() -> Chart:
        grid = [[0] * 24 for _ in range(7)]
        for weekday, hour, n in store_dashboard.weekday_hours(conn, club_id, first, last):
            grid[weekday][hour] += n
        names = WEEKDAYS_FA if lang == "fa" else WEEKDAYS_EN
        return Chart("heat", t["chart_heat"], render(ChartData(
            t["chart_heat"], ChartKind.HEAT_MAP, tuple(str(h) for h in range(24)),
            tuple(Series(names[w], tuple(grid[w])) for w in range(7)))), t["def_chart_heat"])

    def credit() -> Chart:
        weeks = {s: [sum(r.credit_of(*ISSUED) for r in week),
                     -sum(r.credit_of("redeem") for r in week)]
                 for s, week in _per_week(period, rows).items()}
        week_starts = list(weeks)
        return Chart("credit", t["chart_credit"], render(ChartData(
            t["chart_credit"], ChartKind.BARS, tuple(_label(s, long) for s in week_starts),
            (Series(t["series_issued"], tuple(weeks[s][0] for s in week_starts)),
             Series(t["series_redeemed"], tuple(weeks[s][1] for s in week_starts))))),
            t["def_chart_credit"])

    def intervals() -> Chart:
        bins = store_dashboard.intervals(conn, club_id, first, last)
        counts = tuple(bins.get(i, 0) for i in range(len(daily_rules.INTERVAL_EDGES)))
        return Chart("intervals", t["chart_intervals"], render(ChartData(
            t["chart_intervals"], ChartKind.HISTOGRAM, daily_rules.interval_labels(),
            (Series(t["series_visits"], counts),))), t["def_chart_intervals"])

    builders = {"sales": sales, "purchases": purchases, "members": members, "tiers": tiers,
                "segments": segments, "heat": heat, "credit": credit,
                "intervals": intervals}
    return tuple(builders[name]() for name in CHART_NAMES if only in (None, name))
