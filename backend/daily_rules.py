"""The per-day pre-aggregates' rules, pure: which Tehran day and hour a moment falls in,
which visit-interval bin a gap falls in, and what one member's purchases contribute.

The store (backend.store_daily) keeps the sums; these functions say what is summed, so
the rebuild from raw rows and the in-transaction updates cannot disagree.
"""

from __future__ import annotations

from calendar import monthrange
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from protocols.persian import TEHRAN

#: Ledger kinds the aggregates keep; holds and releases only reserve credit for a quote
#: and always come back out, so no figure reads them.
CREDIT_KINDS = ("earn", "redeem", "expiry", "referral", "welcome", "reversal", "adjustment",
                "recovery", "transfer_out", "transfer_in")
#: Lower edges (days) of the visit-interval bins; the last bin is open.
INTERVAL_EDGES = (0, 1, 2, 3, 4, 5, 6, 7, 14, 30, 60, 90, 180, 365)
#: The bin of a member's first purchase (no interval before it).
FIRST_VISIT = -1


def day_number(day: date) -> int:
    """A date as the integer YYYYMMDD the tables key on (ordered as the dates are)."""
    return day.year * 10_000 + day.month * 100 + day.day


def from_day_number(n: int) -> date:
    return date(n // 10_000, n // 100 % 100, n % 100)


def tehran_day_hour(at: int) -> tuple[int, int]:
    """(YYYYMMDD, hour) in Tehran of Unix seconds `at` (zoneinfo: the old DST included)."""
    if at >= 0:
        return _half_hour_day_hour(at // _HALF_HOUR)
    return _day_hour(at)


#: Since 1970 Tehran's offsets (+3:30, +4:30, +4:00, +5:00) and its changes of offset all
#: fall on whole half hours: a UTC half hour lies in one Tehran hour, so the day and hour
#: are computed once per half hour (a purchase's, its ledger rows', its visits' again).
_HALF_HOUR = 1800


@lru_cache(maxsize=8192)
def _half_hour_day_hour(half: int) -> tuple[int, int]:
    return _day_hour(half * _HALF_HOUR)


def _day_hour(at: int) -> tuple[int, int]:
    local = datetime.fromtimestamp(at, UTC).astimezone(TEHRAN)
    return day_number(local.date()), local.hour


def tehran_day(at: int) -> int:
    return tehran_day_hour(at)[0]


def interval_bin(prev_at: int | None, at: int) -> int:
    """The bin of a visit at `at` after the member's previous one at `prev_at` (None:
    the first): by Tehran calendar days between them, so 0 is "again the same day"."""
    if prev_at is None:
        return FIRST_VISIT
    days = max(0, (from_day_number(tehran_day(at)) - from_day_number(tehran_day(prev_at))).days)
    return max(i for i, edge in enumerate(INTERVAL_EDGES) if days >= edge)


def interval_labels() -> tuple[str, ...]:
    """`0`, `1`, ... `7–13`, ..., `365+` (ASCII digits; the page makes them Persian)."""
    out = []
    for i, edge in enumerate(INTERVAL_EDGES):
        if i + 1 == len(INTERVAL_EDGES):
            out.append(f"{edge}+")
        else:
            top = INTERVAL_EDGES[i + 1] - 1
            out.append(str(edge) if top == edge else f"{edge}–{top}")
    return tuple(out)


def visit_bins(visits: Sequence[tuple[int, str]]) -> Counter[tuple[int, int]]:
    """One member's settled purchases as (occurred_at, key) -> Counter of (day, bin).

    Purchases are ordered by time, then key (two at one second still have an order); each
    one falls in the bin of its days since the one before, the first in FIRST_VISIT."""
    out: Counter[tuple[int, int]] = Counter()
    previous: int | None = None
    for at, _key in sorted(visits):
        out[(tehran_day(at), interval_bin(previous, at))] += 1
        previous = at
    return out


#: Members per row of the buyers' bitmaps: bit i of chunk c is the member of id
#: c * CHUNK + i; 4096 members make 512-byte bitmaps (one database page for the three).
CHUNK = 4096
BOUGHT, TWICE, EARLIER = 1, 2, 4


def dekad_of(day: int) -> int:
    """The tenth of its month a day (YYYYMMDD) falls in, as YYYYMMk: k = 0 for days 1-10,
    1 for 11-20, 2 for 21 to the month's end (the buyers' bitmaps between day and month)."""
    return day // 100 * 10 + min((day % 100 - 1) // 10, 2)


def month_of(day: int) -> int:
    return day // 100


def member_flags(visits: Sequence[tuple[int, str]], *, monthly: bool = False,
                 of: Callable[[int], int] | None = None) -> dict[int, int]:
    """One member's settled purchases as (occurred_at, key) -> {day: flags} (or {month:
    flags}, month = YYYYMM; or {of(day): flags}): BOUGHT in it, TWICE (two or more in it),
    EARLIER (one in it had a purchase strictly before it: the report's "returning")."""
    if not visits:
        return {}
    if of is None:
        of = month_of if monthly else _same
    first = min(at for at, _ in visits)
    count: Counter[int] = Counter()
    latest: dict[int, int] = {}
    for at, _key in visits:
        bucket = of(tehran_day(at))
        count[bucket] += 1
        latest[bucket] = max(at, latest.get(bucket, at))
    return {b: BOUGHT | (TWICE if n >= 2 else 0) | (EARLIER if latest[b] > first else 0)
            for b, n in count.items()}


def merge_flags(acc: tuple[int, int, int], maps: tuple[int, int, int]) -> tuple[int, int, int]:
    """Two spans' (bought, twice, earlier) bitmaps as one span's: bought in either; twice
    in either or bought in both; earlier in either."""
    once, twice, earlier = acc
    b, t, e = maps
    return once | b, twice | t | (once & b), earlier | e


def _same(day: int) -> int:
    return day


def split_dekads(first: int, last: int
                 ) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Days [first, last] (YYYYMMDD) as the day ranges at the ends, the whole tenths of
    months (dekad_of) and the whole months between: at most ten days at each end."""
    ranges: list[tuple[int, int]] = []
    dekads: list[int] = []
    parts, months = split_days(first, last)
    for a, b in parts:  # each within one month
        month, length = a // 100, monthrange(a // 10_000, a // 100 % 100)[1]
        d = a % 100
        while d <= b % 100:
            k = min((d - 1) // 10, 2)
            top = length if k == 2 else 10 * (k + 1)
            if d == 10 * k + 1 and top <= b % 100:
                dekads.append(month * 10 + k)
            elif ranges and ranges[-1][1] == month * 100 + d - 1:
                ranges[-1] = (ranges[-1][0], month * 100 + min(top, b % 100))
            else:
                ranges.append((month * 100 + d, month * 100 + min(top, b % 100)))
            d = min(top, b % 100) + 1
    return ranges, dekads, months


def split_days(first: int, last: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Days [first, last] (YYYYMMDD) as the day ranges at its ends and the whole
    (Gregorian) months between, whose rolled-up rows are read instead of their days."""
    ranges: list[tuple[int, int]] = []
    months: list[int] = []
    day = from_day_number(first)
    end = from_day_number(last)
    while day <= end:
        month_end = (date(day.year + day.month // 12, day.month % 12 + 1, 1)
                     - timedelta(days=1))
        if day.day == 1 and month_end <= end:
            months.append(day.year * 100 + day.month)
        else:
            ranges.append((day_number(day), day_number(min(month_end, end))))
        day = month_end + timedelta(days=1)
    return ranges, months


def neighbours_change(prev_at: int | None, at: int, next_at: int | None
                      ) -> Counter[tuple[int, int]]:
    """What one purchase at `at`, between the member's purchases `prev_at` and `next_at`
    (None: none), adds to the (day, bin) counts; negate it for its reversal."""
    change: Counter[tuple[int, int]] = Counter()
    change[(tehran_day(at), interval_bin(prev_at, at))] += 1
    if next_at is not None:
        day = tehran_day(next_at)
        change[(day, interval_bin(prev_at, next_at))] -= 1
        change[(day, interval_bin(at, next_at))] += 1
    return change


def weekday_index(day: int) -> int:
    """0 = Saturday (the Iranian week's first day) ... 6 = Friday."""
    return (from_day_number(day).weekday() + 2) % 7


@lru_cache(maxsize=8192)
def week_of(day: int) -> int:
    """The Saturday (YYYYMMDD) the Iranian week of `day` (YYYYMMDD) starts on: the key of
    the weekly roll-ups."""
    d = from_day_number(day)
    return day_number(d - timedelta(days=(d.weekday() + 2) % 7))


def split_weeks(first: int, last: int) -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
    """Days [first, last] (YYYYMMDD) as the day ranges at its ends (each under a week)
    and the Saturdays of the first and last whole weeks between (None: no whole week),
    whose weekly rows are read instead of their days."""
    start, end = from_day_number(first), from_day_number(last)
    if start > end:
        return [], None
    sat = from_day_number(week_of(first))
    if sat < start:
        sat += timedelta(days=7)
    last_sat = from_day_number(week_of(last))
    if last_sat + timedelta(days=6) > end:
        last_sat -= timedelta(days=7)
    if last_sat < sat:
        return [(first, last)], None
    ranges: list[tuple[int, int]] = []
    if sat > start:
        ranges.append((first, day_number(sat - timedelta(days=1))))
    after = last_sat + timedelta(days=7)
    if after <= end:
        ranges.append((day_number(after), last))
    return ranges, (day_number(sat), day_number(last_sat))


@lru_cache(maxsize=1024)
def month_bounds(month: int) -> tuple[int, int]:
    """The Unix seconds [since, until) of the Tehran days of Gregorian month `month`
    (YYYYMM): the moments whose tehran_day // 100 is `month`."""
    year, m = divmod(month, 100)
    start = datetime(year, m, 1, tzinfo=TEHRAN)
    end = datetime(year + m // 12, m % 12 + 1, 1, tzinfo=TEHRAN)
    return int(start.timestamp()), int(end.timestamp())


def bucket_flags(visits: Sequence[tuple[int, str]], first: int) -> int:
    """One day's (or month's) flags of a member (as member_flags gives them) from that
    bucket's purchases alone and the time of the member's first purchase: BOUGHT, TWICE
    when two or more, EARLIER when its latest is after the first; 0 when none."""
    if not visits:
        return 0
    return (BOUGHT | (TWICE if len(visits) >= 2 else 0)
            | (EARLIER if max(at for at, _ in visits) > first else 0))
