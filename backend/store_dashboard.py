"""What the dashboard reads from the per-day pre-aggregates (backend.store_daily) and
their roll-ups (backend.store_rollups): a period's days, or for a long one its whole
weeks and the days at its ends; the previous period's sums; the distinct members from the
buyers' bitmaps; the heat map, visit intervals and members per tier.

Each read is one statement (on PostgreSQL each statement is a round trip); the tests check
that a read through the roll-ups equals the day rows summed alike.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from backend import daily_rules, store_rollups
from backend.daily_rules import CREDIT_KINDS
from backend.engine import Connection


@dataclass(frozen=True, slots=True)
class DayFigures:
    """One Tehran day of one club (optionally one branch for the purchase figures)."""

    day: int
    settled: int = 0
    sales: int = 0
    gross: int = 0
    declined: int = 0
    reversed: int = 0
    enrolled: int = 0
    #: members whose first purchase ever was this day
    first_visits: int = 0
    #: members who bought this day and had bought on an earlier day
    came_back: int = 0
    credit: tuple[tuple[str, int], ...] = ()

    def credit_of(self, *kinds: str) -> int:
        return sum(a for k, a in self.credit if k in kinds)


def _n(expr: str) -> str:
    """A sum as a plain integer: PostgreSQL's SUM of a bigint is numeric, which a UNION
    would then give the column in every part, read as Decimal (twice the client's time)."""
    return f"CAST({expr} AS BIGINT)"


#: the width of the merged reads' rows: (tag, day, then one value per credit kind, the
#: widest part; the others padded with zeros)
_WIDTH = len(CREDIT_KINDS)


def _values(*exprs: str) -> str:
    return ", ".join([*exprs, *("0" for _ in range(_WIDTH - len(exprs)))])


#: the credit of each kind in CREDIT_KINDS' order, one row per day (not a row per kind)
_CREDIT_SUMS = _values(*(_n(f"SUM(CASE WHEN kind = '{k}' THEN amount ELSE 0 END)")
                         for k in CREDIT_KINDS))


#: the reads of one span as parts of one UNION ALL, each row (tag, day, values): tag 0
#: purchases, 1 enrolments, 2 intervals, 3 credit per kind of one day; 4 purchases and
#: enrolments, 2 intervals and 3 credit of one whole week (its roll-ups), `day` its
#: Saturday. A part's tag is `base` plus these, so two spans share one query.
_SUMS = _values(*(_n(f"SUM({c})") for c in ("settled", "sales", "gross", "declined",
                                              "reversed")))
_VISITS = _values(_n("SUM(CASE WHEN bin = ? THEN visits ELSE 0 END)"),
                  _n("SUM(CASE WHEN bin >= 1 THEN visits ELSE 0 END)"))
_DAYS = "WHERE club_id = ? AND day >= ? AND day <= ?"
_WEEKS = "WHERE club_id = ? AND week >= ? AND week <= ?"


def _day_parts(base: int, branch: bool) -> list[str]:
    return [
        f"SELECT {base}, day, {_SUMS} FROM daily_purchases "
        f"{_DAYS}{' AND branch_id = ?' if branch else ''} GROUP BY day",
        f"SELECT {base + 1}, day, {_values('enrolled')} FROM daily_members {_DAYS}",
        f"SELECT {base + 2}, day, {_VISITS} FROM daily_intervals {_DAYS} GROUP BY day",
        f"SELECT {base + 3}, day, {_CREDIT_SUMS} FROM daily_credit {_DAYS} GROUP BY day",
    ]


def _week_parts(base: int) -> list[str]:
    return [
        f"SELECT {base + 4}, week, "
        f"{_values('settled', 'sales', 'gross', 'declined', 'reversed', 'enrolled')} "
        f"FROM weekly_figures {_WEEKS}",
        f"SELECT {base + 2}, week, {_VISITS} FROM weekly_intervals {_WEEKS} GROUP BY week",
        f"SELECT {base + 3}, week, {_CREDIT_SUMS} FROM weekly_credit {_WEEKS} GROUP BY week",
    ]


def _span(club_id: int, first: int, last: int, *, base: int = 0, weeks: bool = False,
          branch_id: int | None = None) -> tuple[list[str], list]:
    """The parts and arguments reading days [first, last]: every day, or (`weeks`) the
    whole weeks' roll-ups and the days at the ends (daily_rules.split_weeks)."""
    ranges, whole = (daily_rules.split_weeks(first, last) if weeks and branch_id is None
                     else ([(first, last)], None))
    parts: list[str] = []
    args: list = []
    for a, b in ranges:
        span = [club_id, a, b]
        parts += _day_parts(base, branch_id is not None)
        args += [*span, *([branch_id] if branch_id is not None else []), *span,
                 daily_rules.FIRST_VISIT, *span, *span]
    if whole is not None:
        span = [club_id, *whole]
        parts += _week_parts(base)
        args += [*span, daily_rules.FIRST_VISIT, *span, *span]
    return parts, args


def _credit_of(values: tuple) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((k, int(v)) for k, v in zip(CREDIT_KINDS, values, strict=True) if v))


_PURCHASE_FIELDS = ("settled", "sales", "gross", "declined", "reversed")


def _days_of(rows: list) -> list[DayFigures]:
    acc: dict[int, dict] = {}
    for tag, d, *v in rows:
        day, kind = int(d), int(tag) % 10
        if kind == 0:
            acc.setdefault(day, {}).update(zip(_PURCHASE_FIELDS, map(int, v[:5]), strict=True))
        elif kind == 1:
            acc.setdefault(day, {})["enrolled"] = int(v[0])
        elif kind == 2:
            acc.setdefault(day, {}).update(first_visits=int(v[0]), came_back=int(v[1]))
        elif kind == 3:
            acc.setdefault(day, {})["credit"] = _credit_of(v)
        elif kind == 4:
            got = acc.setdefault(day, {})
            got.update(zip(_PURCHASE_FIELDS, map(int, v[:5]), strict=True))
            got["enrolled"] = int(v[5])
    return [DayFigures(day=d, **acc[d]) for d in sorted(acc)]


def days(conn: Connection, club_id: int, first: int, last: int,
         branch_id: int | None = None, *, weeks: bool = False) -> list[DayFigures]:
    """Every day of [first, last] (YYYYMMDD) that has anything, in order (one query: on
    PostgreSQL each statement is a round trip). `weeks`: each whole week (Saturday to
    Friday) inside the span as one row on its Saturday, from the roll-ups (for what sums
    per week or over the span: a long period's charts and totals)."""
    parts, args = _span(club_id, first, last, weeks=weeks, branch_id=branch_id)
    return _days_of(conn.execute(" UNION ALL ".join(parts), args).fetchall())


@dataclass(frozen=True, slots=True)
class Totals:
    """A span's sums (the previous period's figures need no per-day rows)."""

    settled: int = 0
    sales: int = 0
    enrolled: int = 0
    #: members enrolled on or before the span's last day
    members: int = 0
    credit: tuple[tuple[str, int], ...] = ()

    def credit_of(self, *kinds: str) -> int:
        return sum(a for k, a in self.credit if k in kinds)


def _totals_of(rows: list[DayFigures], members: int) -> Totals:
    credit: Counter[str] = Counter()
    for r in rows:
        for k, a in r.credit:
            credit[k] += a
    return Totals(settled=sum(r.settled for r in rows), sales=sum(r.sales for r in rows),
                  enrolled=sum(r.enrolled for r in rows), members=members,
                  credit=tuple(sorted((k, a) for k, a in credit.items() if a)))


#: members enrolled through a day (tag 30 + n) and the club's outstanding credit (tag 20):
#: every credit movement, summed from the weekly roll-up (a seventh of the day rows)
_MEMBERS_PART = (f"SELECT {{tag}}, 0, {_values(_n('COALESCE(SUM(enrolled), 0)'))} "
                 "FROM daily_members WHERE club_id = ? AND day <= ?")
_OUTSTANDING_PART = (f"SELECT 20, 0, {_values(_n('COALESCE(SUM(amount), 0)'))} "
                     "FROM weekly_credit WHERE club_id = ?")


def totals(conn: Connection, club_id: int, first: int, last: int) -> Totals:
    """The sums of [first, last] (YYYYMMDD) in one query (whole weeks from the roll-ups)."""
    parts, args = _span(club_id, first, last, weeks=True)
    rows = conn.execute(" UNION ALL ".join([*parts, _MEMBERS_PART.format(tag=30)]),
                        [*args, club_id, last]).fetchall()
    return _totals_of(_days_of([r for r in rows if r[0] < 10]),
                      next(int(r[2]) for r in rows if r[0] == 30))


@dataclass(frozen=True, slots=True)
class PeriodReads:
    #: the period's days (whole weeks as one row on their Saturday when read `weeks`)
    days: list[DayFigures]
    #: members enrolled on or before the period's last day
    members: int
    before: Totals
    outstanding: int


def period_reads(conn: Connection, club_id: int, first: int, last: int,
                 before_first: int, before_last: int, *, weeks: bool = False
                 ) -> PeriodReads:
    """The dashboard's sums in one round trip: the period's days (`weeks`: see `days`),
    its members, the previous period's sums (from the roll-ups) and the outstanding
    credit."""
    now_parts, now_args = _span(club_id, first, last, weeks=weeks)
    before_parts, before_args = _span(club_id, before_first, before_last, base=10,
                                      weeks=True)
    sql = " UNION ALL ".join([*now_parts, *before_parts, _OUTSTANDING_PART,
                              _MEMBERS_PART.format(tag=30), _MEMBERS_PART.format(tag=31)])
    rows = conn.execute(sql, [*now_args, *before_args, club_id, club_id, last, club_id,
                              before_last]).fetchall()
    extra = {int(r[0]): int(r[2]) for r in rows if r[0] >= 20}
    return PeriodReads(
        days=_days_of([r for r in rows if r[0] < 10]), members=extra[30],
        before=_totals_of(_days_of([r for r in rows if 10 <= r[0] < 20]), extra[31]),
        outstanding=extra[20])


def hours(conn: Connection, club_id: int, first: int, last: int) -> list[tuple[int, int, int]]:
    """(day, hour, settled purchases) of [first, last]."""
    return [(int(d), int(h), int(n)) for d, h, n in conn.execute(
        "SELECT day, hour, SUM(settled) FROM daily_purchases WHERE club_id = ? AND day >= ? "
        "AND day <= ? GROUP BY day, hour", (club_id, first, last)).fetchall()]


#: the weekday (0 = Saturday .. 6 = Friday, as daily_rules.weekday_index) of a YYYYMMDD
#: `day` by Zeller's congruence, in integer arithmetic both engines share; `mm` and `yy`
#: count January and February as months 13 and 14 of the year before
_WEEKDAY_SQL = ("(day % 100 + 13 * (mm + 1) / 5 + yy % 100 + (yy % 100) / 4 + (yy / 100) / 4 "
                "+ 5 * (yy / 100)) % 7")


_WEEKDAY_HOURS_OF_DAYS = (
    f"SELECT {_WEEKDAY_SQL} AS weekday, hour, {_n('SUM(settled)')} FROM (SELECT day, hour, "
    "settled, CASE WHEN day / 100 % 100 < 3 THEN day / 100 % 100 + 12 "
    "ELSE day / 100 % 100 END AS mm, CASE WHEN day / 100 % 100 < 3 THEN day / 10000 - 1 "
    "ELSE day / 10000 END AS yy FROM daily_purchases WHERE club_id = ? AND day >= ? "
    "AND day <= ?) AS d GROUP BY 1, hour")
_WEEKDAY_HOURS_OF_MONTHS = (
    f"SELECT weekday, hour, {_n('SUM(settled)')} FROM monthly_hours WHERE club_id = ? "
    "AND month >= ? AND month <= ? GROUP BY weekday, hour")


def weekday_hours(conn: Connection, club_id: int, first: int, last: int
                  ) -> list[tuple[int, int, int]]:
    """(weekday, hour, settled purchases) of [first, last], summed in the database: at
    most 168 rows for a period of any length (the heat map); whole months from their
    roll-up (monthly_hours), the days at the ends from the day rows."""
    ranges, months = daily_rules.split_days(first, last)
    parts = [_WEEKDAY_HOURS_OF_DAYS] * len(ranges)
    args = [x for a, b in ranges for x in (club_id, a, b)]
    if months:
        parts.append(_WEEKDAY_HOURS_OF_MONTHS)
        args += [club_id, months[0], months[-1]]
    got: Counter[tuple[int, int]] = Counter()
    for w, h, n in conn.execute(" UNION ALL ".join(parts), args).fetchall():
        got[(int(w), int(h))] += int(n)
    return [(w, h, n) for (w, h), n in sorted(got.items()) if n]


def intervals(conn: Connection, club_id: int, first: int, last: int) -> dict[int, int]:
    """Settled purchases of [first, last] per visit-interval bin (FIRST_VISIT included):
    whole weeks from their roll-up, the days at the ends from the day rows."""
    ranges, whole = daily_rules.split_weeks(first, last)
    parts = [f"SELECT bin, {_n('SUM(visits)')} FROM daily_intervals {_DAYS} GROUP BY bin"
             ] * len(ranges)
    args = [x for a, b in ranges for x in (club_id, a, b)]
    if whole is not None:
        parts.append(f"SELECT bin, {_n('SUM(visits)')} FROM weekly_intervals {_WEEKS} "
                     "GROUP BY bin")
        args += [club_id, *whole]
    if not parts:
        return {}
    got: Counter[int] = Counter()
    for b, n in conn.execute(" UNION ALL ".join(parts), args).fetchall():
        got[int(b)] += int(n)
    return {b: n for b, n in got.items() if n}


def enrolled_through(conn: Connection, club_id: int, last: int) -> int:
    """Members of the club enrolled on or before day `last`."""
    row = conn.execute("SELECT COALESCE(SUM(enrolled), 0) FROM daily_members "
                       "WHERE club_id = ? AND day <= ?", (club_id, last)).fetchone()
    return int(row[0])


def outstanding(conn: Connection, club_id: int) -> int:
    """The credit the club owes its members now: every credit movement summed (held
    credit included: it is still theirs until a purchase settles it)."""
    row = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM daily_credit WHERE club_id = ?",
                       (club_id,)).fetchone()
    return int(row[0])


@dataclass(frozen=True, slots=True)
class Buyers:
    """Distinct members who bought in a period: exact, so read from the purchases."""

    buyers: int  # bought at least once in the period
    repeat: int  # bought at least twice in it
    returning: int  # bought in it and had bought before (the report's returning members)


def buyers(conn: Connection, club_id: int, first: int, last: int) -> Buyers:
    """Days [first, last] (YYYYMMDD), from the bitmaps (see buyers_of)."""
    return buyers_of(conn, club_id, [(first, last)])[0]


def buyers_of(conn: Connection, club_id: int, spans: list[tuple[int, int]]) -> list[Buyers]:
    """Each span of days [first, last] (YYYYMMDD), from the bitmaps: the whole months'
    rows and the days' rows at the ends, merged per chunk of members
    (daily_rules.merge_flags); all spans in one query (one round trip)."""
    parts: list[str] = []
    args: list[int] = []
    for i, (first, last) in enumerate(spans):
        ranges, dekads, months = daily_rules.split_dekads(first, last)
        for a, b in ranges:
            parts.append(f"SELECT {i}, chunk, bought, twice, earlier FROM daily_buyers "
                         "WHERE club_id = ? AND day >= ? AND day <= ?")
            args += [club_id, a, b]
        for d in dekads:
            parts.append(f"SELECT {i}, chunk, bought, twice, earlier FROM dekad_buyers "
                         "WHERE club_id = ? AND dekad = ?")
            args += [club_id, d]
        if months:
            parts.append(f"SELECT {i}, chunk, bought, twice, earlier FROM monthly_buyers "
                         "WHERE club_id = ? AND month >= ? AND month <= ?")
            args += [club_id, months[0], months[-1]]
    acc: list[dict[int, tuple[int, int, int]]] = [{} for _ in spans]
    if parts:
        for i, c, *maps in conn.execute(" UNION ALL ".join(parts), args):
            ints = (int.from_bytes(maps[0], "little"), int.from_bytes(maps[1], "little"),
                    int.from_bytes(maps[2], "little"))
            got = acc[int(i)]
            got[c] = daily_rules.merge_flags(got[c], ints) if c in got else ints
    return [Buyers(buyers=sum(v[0].bit_count() for v in got.values()),
                   repeat=sum(v[1].bit_count() for v in got.values()),
                   returning=sum(v[2].bit_count() for v in got.values())) for got in acc]


def buyers_from_purchases(conn: Connection, club_id: int, since: int, until: int) -> Buyers:
    """The same figures by their definition, over the purchases of [since, until) in Unix
    seconds (for the tests: the bitmaps must agree). A member is returning when one of
    their purchases in the period had a purchase strictly before it."""
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN b.n >= 2 THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN b.mx > b.mn OR EXISTS (SELECT 1 FROM purchases q "
        "WHERE q.member_id = b.member_id AND q.approved = 1 AND q.reversed = 0 "
        "AND q.occurred_at < b.mn) THEN 1 ELSE 0 END), 0) FROM ("
        "SELECT p.member_id, COUNT(*) AS n, MIN(p.occurred_at) AS mn, MAX(p.occurred_at) AS mx "
        "FROM purchases p JOIN members m ON m.id = p.member_id WHERE m.club_id = ? "
        "AND p.approved = 1 AND p.reversed = 0 AND p.occurred_at >= ? AND p.occurred_at < ? "
        "GROUP BY p.member_id) AS b",
        (club_id, since, until),
    ).fetchone()
    return Buyers(buyers=int(row[0]), repeat=int(row[1]), returning=int(row[2]))


def tiers(conn: Connection, club_id: int) -> list[tuple[str, int]]:
    """Members of the club per tier now (kept as counts: store_rollups.tiers)."""
    return store_rollups.tiers(conn, club_id)
