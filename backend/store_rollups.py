"""Roll-ups of the per-day pre-aggregates: per week, per month's weekday and hour, and the
members of each tier, so a dashboard of a year or two reads a few hundred rows, not the
~30,000 day rows (measured: the two-year dashboard spent most of its time there).

Kept exact in the same transaction as the day tables: store_daily's `_apply` (run just
before COMMIT) hands the day-level deltas it is about to write to `write_deltas`, which
adds them up per week and per month and writes them after the day tables, each table in
key order (the same lock order in every process). Members per tier follow
`store.insert_member` (store_daily.member_enrolled) and `store.set_tier`
(store_daily.tier_changed). `roll_up` computes the same tables from day-level sums, so
the rebuild from the raw rows (store_daily.rebuild) and the kept rows cannot disagree.

Tables (migration 22):
- `weekly_figures(club_id, week, ...)`: daily_purchases' settled, sales, gross, declined,
  reversed and daily_members' enrolled, summed per Iranian week (`week`: its Saturday,
  YYYYMMDD; daily_rules.week_of).
- `weekly_credit(club_id, week, kind)`: daily_credit per week.
- `weekly_intervals(club_id, week, bin)`: daily_intervals per week.
- `monthly_hours(club_id, month, weekday, hour)`: daily_purchases' settled per Gregorian
  month (YYYYMM), weekday (0 = Saturday) and hour: the heat map of whole months.
- `tier_counts(club_id, tier)`: members of each tier now.
- `dekad_buyers(club_id, dekad, chunk)`: store_daily's buyers' bitmaps per tenth of a
  month (YYYYMMk, daily_rules.dekad_of), written by store_daily with the day's and the
  month's: a period's ends read at most ten day rows each, not thirty.
"""

from __future__ import annotations

from collections import Counter

from backend.daily_rules import week_of, weekday_index
from backend.engine import Connection

TABLES = ("weekly_figures", "weekly_credit", "weekly_intervals", "monthly_hours",
          "tier_counts", "dekad_buyers")

SCHEMA = (
    "CREATE TABLE weekly_figures (club_id INTEGER NOT NULL, week INTEGER NOT NULL, "
    "settled INTEGER NOT NULL DEFAULT 0, sales INTEGER NOT NULL DEFAULT 0, "
    "gross INTEGER NOT NULL DEFAULT 0, declined INTEGER NOT NULL DEFAULT 0, "
    "reversed INTEGER NOT NULL DEFAULT 0, enrolled INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (club_id, week)) WITHOUT ROWID",
    "CREATE TABLE weekly_credit (club_id INTEGER NOT NULL, week INTEGER NOT NULL, "
    "kind TEXT NOT NULL, amount INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (club_id, week, kind)) WITHOUT ROWID",
    "CREATE TABLE weekly_intervals (club_id INTEGER NOT NULL, week INTEGER NOT NULL, "
    "bin INTEGER NOT NULL, visits INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (club_id, week, bin)) WITHOUT ROWID",
    "CREATE TABLE monthly_hours (club_id INTEGER NOT NULL, month INTEGER NOT NULL, "
    "weekday INTEGER NOT NULL, hour INTEGER NOT NULL, settled INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (club_id, month, weekday, hour)) WITHOUT ROWID",
    "CREATE TABLE tier_counts (club_id INTEGER NOT NULL, tier TEXT NOT NULL, "
    "members INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (club_id, tier)) WITHOUT ROWID",
    "CREATE TABLE dekad_buyers (club_id INTEGER NOT NULL, dekad INTEGER NOT NULL, "
    "chunk INTEGER NOT NULL, bought BLOB NOT NULL, twice BLOB NOT NULL, "
    "earlier BLOB NOT NULL, PRIMARY KEY (club_id, dekad, chunk)) WITHOUT ROWID",
)

#: (club, week) -> settled, sales, gross, declined, reversed, enrolled
Weekly = dict[tuple[int, int], tuple[int, int, int, int, int, int]]


def _upsert(table: str, key: tuple[str, ...], values: tuple[str, ...]) -> str:
    cols = (*key, *values)
    adds = ", ".join(f"{v} = {table}.{v} + excluded.{v}" for v in values)
    return (f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {adds}")


_FIGURES = ("settled", "sales", "gross", "declined", "reversed", "enrolled")
_SQL = {
    "weekly_figures": _upsert("weekly_figures", ("club_id", "week"), _FIGURES),
    "weekly_credit": _upsert("weekly_credit", ("club_id", "week", "kind"), ("amount",)),
    "weekly_intervals": _upsert("weekly_intervals", ("club_id", "week", "bin"), ("visits",)),
    "monthly_hours": _upsert("monthly_hours", ("club_id", "month", "weekday", "hour"),
                             ("settled",)),
    "tier_counts": _upsert("tier_counts", ("club_id", "tier"), ("members",)),
}


def roll_up(purchases: dict, credit: dict, members: dict, intervals: dict
            ) -> tuple[Weekly, dict, dict, dict]:
    """Day-level sums (keyed as the day tables: purchases (club, branch, day, hour) ->
    settled, sales, gross, declined, reversed; credit (club, day, kind); members (club,
    day); intervals (club, day, bin)) as the roll-ups: weekly figures, weekly credit,
    weekly intervals, monthly hours; zero sums left out."""
    weekly: dict[tuple[int, int], list[int]] = {}
    hours: Counter[tuple[int, int, int, int]] = Counter()
    for (club, _branch, day, hour), sums in purchases.items():
        acc = weekly.setdefault((club, week_of(day)), [0] * 6)
        for i, v in enumerate(sums):
            acc[i] += v
        hours[(club, day // 100, weekday_index(day), hour)] += sums[0]
    for (club, day), n in members.items():
        weekly.setdefault((club, week_of(day)), [0] * 6)[5] += n
    week_credit: Counter[tuple[int, int, str]] = Counter()
    for (club, day, kind), amount in credit.items():
        week_credit[(club, week_of(day), kind)] += amount
    week_intervals: Counter[tuple[int, int, int]] = Counter()
    for (club, day, bin_), n in intervals.items():
        week_intervals[(club, week_of(day), bin_)] += n
    return ({k: tuple(v) for k, v in weekly.items() if any(v)},  # type: ignore[misc]
            {k: v for k, v in week_credit.items() if v},
            {k: v for k, v in week_intervals.items() if v},
            {k: v for k, v in hours.items() if v})


def write_deltas(conn: Connection, purchases: dict, credit: dict, members: dict,
                 intervals: dict, tiers: dict) -> None:
    """Add the day tables' deltas (keyed as in roll_up) and the tier counts' (club, tier)
    deltas to the roll-ups, each table in key order."""
    weekly, week_credit, week_intervals, hours = roll_up(purchases, credit, members,
                                                         intervals)
    for table, rows in (("weekly_figures", weekly), ("weekly_credit", week_credit),
                        ("weekly_intervals", week_intervals), ("monthly_hours", hours),
                        ("tier_counts", {k: v for k, v in tiers.items() if v})):
        if rows:
            conn.executemany(_SQL[table], [(*k, *(v if isinstance(v, tuple) else (v,)))
                                           for k, v in sorted(rows.items())])


def tiers_from_raw(conn: Connection) -> dict[tuple[int, str], int]:
    return {(int(c), str(t)): int(n) for c, t, n in conn.execute(
        "SELECT club_id, tier, COUNT(*) FROM members GROUP BY club_id, tier").fetchall()}


def kept(conn: Connection) -> tuple[Weekly, dict, dict, dict, dict]:
    """What the roll-ups hold now (zero rows left out): as roll_up's, then the tiers."""
    weekly = {(int(c), int(w)): tuple(int(x) for x in rest) for c, w, *rest in conn.execute(
        "SELECT club_id, week, settled, sales, gross, declined, reversed, enrolled "
        "FROM weekly_figures").fetchall() if any(rest)}
    credit = {(int(c), int(w), str(k)): int(a) for c, w, k, a in conn.execute(
        "SELECT club_id, week, kind, amount FROM weekly_credit WHERE amount <> 0").fetchall()}
    intervals = {(int(c), int(w), int(b)): int(n) for c, w, b, n in conn.execute(
        "SELECT club_id, week, bin, visits FROM weekly_intervals WHERE visits <> 0"
    ).fetchall()}
    hours = {(int(c), int(m), int(d), int(h)): int(n) for c, m, d, h, n in conn.execute(
        "SELECT club_id, month, weekday, hour, settled FROM monthly_hours WHERE settled <> 0"
    ).fetchall()}
    tiers = {(int(c), str(t)): int(n) for c, t, n in conn.execute(
        "SELECT club_id, tier, members FROM tier_counts WHERE members <> 0").fetchall()}
    return weekly, credit, intervals, hours, tiers  # type: ignore[return-value]


def write(conn: Connection, weekly: Weekly, credit: dict, intervals: dict, hours: dict,
          tiers: dict) -> None:
    """Empty the roll-ups and fill them with the given sums (in the caller's transaction)."""
    for table in TABLES:
        conn.execute(f"DELETE FROM {table}")  # dekad_buyers too: store_daily fills it
    write_deltas(conn, {}, {}, {}, {}, tiers)
    for table, rows in (("weekly_figures", weekly), ("weekly_credit", credit),
                        ("weekly_intervals", intervals), ("monthly_hours", hours)):
        if rows:
            conn.executemany(_SQL[table], [(*k, *(v if isinstance(v, tuple) else (v,)))
                                           for k, v in sorted(rows.items())])


# --- what the dashboard reads (parts of store_daily's UNION ALL reads) --------------------

#: whole weeks [?, ?] of a club: one row per week, shaped as store_daily's day rows
WEEK_WHERE = "WHERE club_id = ? AND week >= ? AND week <= ?"


def tiers(conn: Connection, club_id: int) -> list[tuple[str, int]]:
    """Members of the club per tier now (the kept counts: no scan of the members)."""
    return [(str(t), int(n)) for t, n in conn.execute(
        "SELECT tier, members FROM tier_counts WHERE club_id = ? AND members <> 0 "
        "ORDER BY tier", (club_id,)).fetchall()]
