"""Members' LRFM scores and segments in the database, and the per-day counts behind the
dashboard's "change since last month".

Why a table: the scores are quintiles within the club, so one member's segment needs the
whole club; computing it per inquiry or per page would scan the club's purchases each
time. The nightly run (backend/segment_job.py) writes every member's row in one
transaction; readers make one primary-key lookup. docs/segments.md has the rules.

Tables (SCHEMA, one migration step):
- `member_segments(member_id PK, club_id, l, r, f, m, segment, computed_on)`: the latest
  run's scores (1-5) and segment of each member; `computed_on` the Tehran day (YYYYMMDD).
- `segment_counts(club_id, day, segment, members)`: members per segment after each run,
  one row per segment (zeros included), kept so any day can be compared with a month
  before it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from backend import engine, segments
from backend.daily_rules import day_number, from_day_number
from backend.engine import Connection
from backend.segments import MemberAggregate, MemberSegment
from protocols.persian import TEHRAN

if TYPE_CHECKING:
    from backend.program import Offer

TABLES = ("member_segments", "segment_counts")

SCHEMA = (
    "CREATE TABLE member_segments (member_id INTEGER NOT NULL PRIMARY KEY "
    "REFERENCES members(id), club_id INTEGER NOT NULL, l INTEGER NOT NULL, "
    "r INTEGER NOT NULL, f INTEGER NOT NULL, m INTEGER NOT NULL, segment TEXT NOT NULL, "
    "computed_on INTEGER NOT NULL)",
    "CREATE INDEX member_segments_club ON member_segments(club_id, segment)",
    "CREATE TABLE segment_counts (club_id INTEGER NOT NULL, day INTEGER NOT NULL, "
    "segment TEXT NOT NULL, members INTEGER NOT NULL, "
    "PRIMARY KEY (club_id, day, segment)) WITHOUT ROWID",
)

#: How far back "a month ago" looks: the newest run at least this many days older.
MONTH_DAYS = 30


def _tehran_date(at: int) -> date:
    return datetime.fromtimestamp(at, UTC).astimezone(TEHRAN).date()


def aggregates_by_club(conn: Connection, club_ids: Iterable[int] | None = None
                       ) -> dict[int, list[MemberAggregate]]:
    """One row per member of each club (every club, or those given): settled purchases
    (approved, not reversed, as the reports count sales), their rials charged, the last
    one's Tehran date, the enrolment's.

    One grouped scan of all the purchases, split by club here: a join with members (or a
    GROUP BY the index can order) makes SQLite walk purchases_member and look each
    purchase up by its key, 5-10x slower than the scan and sort (`member_id + 0` keeps the
    index out; benchmarks/segments.py)."""
    wanted = None if club_ids is None else set(club_ids)
    bought = {
        int(mid): (int(n), int(spend), int(last))
        for mid, n, spend, last in conn.execute(
            "SELECT member_id + 0 AS mid, COUNT(*), SUM(amount), MAX(occurred_at) "
            "FROM purchases WHERE approved = 1 AND reversed = 0 GROUP BY mid"
        )
    }
    out: dict[int, list[MemberAggregate]] = {c: [] for c in wanted or ()}
    dates: dict[int, date] = {}  # a day's seconds share their date: convert each once

    def local(at: int) -> date:
        # Tehran's offsets (+3:30, +4:30) are whole half hours: a UTC half hour is one date
        key = at // 1800
        d = dates.get(key)
        if d is None:
            d = dates[key] = _tehran_date(at)
        return d

    for mid, club_id, enrolled_at in conn.execute(
        "SELECT id, club_id, enrolled_at FROM members ORDER BY id"
    ):
        if wanted is not None and club_id not in wanted:
            continue
        n, spend, last = bought.get(int(mid), (0, 0, None))
        out.setdefault(int(club_id), []).append(MemberAggregate(
            member_id=int(mid), enrolled_on=local(int(enrolled_at)),
            last_purchase_on=None if last is None else local(last),
            purchases=n, spend=spend,
        ))
    return out


def aggregates(conn: Connection, club_id: int) -> list[MemberAggregate]:
    """One club's rows of `aggregates_by_club`."""
    return aggregates_by_club(conn, [club_id])[club_id]


def write(conn: Connection, club_id: int, today: date, result: list[MemberSegment]) -> None:
    """Replace the club's rows with `result` and record its counts for `today` (in the
    caller's transaction: readers see the old run or the new one, never half)."""
    day = day_number(today)
    conn.execute("DELETE FROM member_segments WHERE club_id = ?", (club_id,))
    engine.bulk_insert(  # PostgreSQL: one COPY
        conn, "member_segments",
        ("member_id", "club_id", "l", "r", "f", "m", "segment", "computed_on"),
        ((s.member_id, club_id, s.scores.length, s.scores.recency, s.scores.frequency,
          s.scores.monetary, s.segment, day) for s in result),
    )
    conn.execute("DELETE FROM segment_counts WHERE club_id = ? AND day = ?", (club_id, day))
    conn.executemany(
        "INSERT INTO segment_counts(club_id, day, segment, members) VALUES (?, ?, ?, ?)",
        [(club_id, day, name, n) for name, n in segments.counts(result).items()],
    )


def compute(conn: Connection, club_id: int, today: date) -> dict[str, int]:
    """Score the whole club as of `today` and store it; members per segment."""
    result = segments.segment_club(aggregates(conn, club_id), today)
    write(conn, club_id, today, result)
    return segments.counts(result)


def computed_on(conn: Connection, club_id: int) -> date | None:
    """The Tehran day of the club's latest run (None: never computed)."""
    row = conn.execute(
        "SELECT MAX(day) FROM segment_counts WHERE club_id = ?", (club_id,)
    ).fetchone()
    return None if row is None or row[0] is None else from_day_number(int(row[0]))


@dataclass(frozen=True, slots=True)
class MemberScores:
    segment: str
    length: int
    recency: int
    frequency: int
    monetary: int
    computed_on: date


def member_segment(conn: Connection, member_id: int) -> MemberScores | None:
    """One member's latest scores: one primary-key lookup (None: not computed yet)."""
    row = conn.execute(
        "SELECT segment, l, r, f, m, computed_on FROM member_segments WHERE member_id = ?",
        (member_id,),
    ).fetchone()
    if row is None:
        return None
    return MemberScores(str(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]),
                        from_day_number(int(row[5])))


def segment_of(conn: Connection, member_id: int) -> str | None:
    """The member's segment for an offer's `segment:NAME`: one primary-key lookup."""
    row = conn.execute(
        "SELECT segment FROM member_segments WHERE member_id = ?", (member_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def wants_segment(offers: Iterable[Offer]) -> bool:
    """Whether any offer targets a segment (else the lookup is skipped)."""
    return any(o.target.startswith("segment:") for o in offers)


def _counts_on(conn: Connection, club_id: int, day: int) -> dict[str, int]:
    out = dict.fromkeys(segments.SEGMENTS, 0)
    for name, n in conn.execute(
        "SELECT segment, members FROM segment_counts WHERE club_id = ? AND day = ?",
        (club_id, day),
    ):
        out[str(name)] = int(n)
    return out


@dataclass(frozen=True, slots=True)
class SegmentCounts:
    """Members per segment on the latest run, and the change since the run a month
    before it (None: no run that old yet)."""

    day: date | None
    counts: dict[str, int]
    month_ago: date | None
    change: dict[str, int] | None


def counts_with_change(conn: Connection, club_id: int) -> SegmentCounts:
    latest = computed_on(conn, club_id)
    if latest is None:
        return SegmentCounts(None, dict.fromkeys(segments.SEGMENTS, 0), None, None)
    now = _counts_on(conn, club_id, day_number(latest))
    row = conn.execute(
        "SELECT MAX(day) FROM segment_counts WHERE club_id = ? AND day <= ?",
        (club_id, day_number(latest - timedelta(days=MONTH_DAYS))),
    ).fetchone()
    if row is None or row[0] is None:
        return SegmentCounts(latest, now, None, None)
    before = _counts_on(conn, club_id, int(row[0]))
    return SegmentCounts(latest, now, from_day_number(int(row[0])),
                         segments.changes(now, before))
