"""Members' tier history: one row per change of `members.tier`, written in the change's
own transaction (handling.context.retier), so the history and the tier never disagree.

Why a table: the automatic `tier_up` message is dated by the change (occasions'
`MemberFacts.tier_ups`) and the member's panel page shows the history; the tier column
alone keeps only the present. Each row records what caused it (`CAUSES`) and, fixed at
the change from the program then in force, whether it went up and the next tier's
threshold: a program edited later does not rewrite what the member was told.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from backend.engine import Connection
from backend.program import Program
from protocols.persian import TEHRAN

TABLES = ("tier_changes",)
#: a settled purchase, its reversal, an owner's adjustment, a program change
CAUSES = ("purchase", "reversal", "adjust", "program")

SCHEMA = (
    "CREATE TABLE tier_changes (id INTEGER PRIMARY KEY, "
    "member_id INTEGER NOT NULL REFERENCES members(id), "
    "club_id INTEGER NOT NULL REFERENCES clubs(id), "
    "from_tier TEXT NOT NULL, to_tier TEXT NOT NULL, at INTEGER NOT NULL, "
    "cause TEXT NOT NULL CHECK (cause IN ('purchase', 'reversal', 'adjust', 'program')), "
    "upward INTEGER NOT NULL, next_threshold INTEGER)",
    "CREATE INDEX tier_changes_member ON tier_changes(member_id, at)",
    "CREATE INDEX tier_changes_club ON tier_changes(club_id, at)",
)


@dataclass(frozen=True, slots=True)
class TierChange:
    member_id: int
    club_id: int
    from_tier: str
    to_tier: str
    at: datetime
    cause: str
    #: the new tier is above the old one (by the program's thresholds at the change)
    upward: bool
    #: rials of the tier after the new one, None when the new one is the top
    next_threshold: int | None

    @property
    def tehran_date(self) -> date:
        return self.at.astimezone(TEHRAN).date()


def change(
    program: Program, *, member_id: int, club_id: int, from_tier: str, to_tier: str,
    at: datetime, cause: str,
) -> TierChange:
    """The change as it is recorded: up or down and the next threshold, by `program`."""
    if cause not in CAUSES:
        raise ValueError(f"tier change cause must be one of {', '.join(CAUSES)}")
    above = program.tier_after(to_tier)
    return TierChange(
        member_id, club_id, from_tier, to_tier, at, cause,
        upward=program.tier(to_tier).min_spend > program.tier(from_tier).min_spend,
        next_threshold=None if above is None else above.min_spend,
    )


def record(conn: Connection, c: TierChange) -> None:
    """One row, in the caller's transaction (the one that changes `members.tier`)."""
    conn.execute(
        "INSERT INTO tier_changes (member_id, club_id, from_tier, to_tier, at, cause, upward,"
        " next_threshold) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (c.member_id, c.club_id, c.from_tier, c.to_tier, int(c.at.timestamp()), c.cause,
         int(c.upward), c.next_threshold),
    )


_COLS = "member_id, club_id, from_tier, to_tier, at, cause, upward, next_threshold"


def _change(row: tuple) -> TierChange:
    mid, club, src, dst, at, cause, up, nxt = row
    return TierChange(int(mid), int(club), str(src), str(dst), datetime.fromtimestamp(at, UTC),
                      str(cause), bool(up), None if nxt is None else int(nxt))


def history(conn: Connection, member_id: int, limit: int = 100) -> list[TierChange]:
    """The member's changes, newest first (the panel's member page)."""
    rows = conn.execute(
        f"SELECT {_COLS} FROM tier_changes WHERE member_id = ? ORDER BY at DESC, id DESC"
        " LIMIT ?", (member_id, limit),
    ).fetchall()
    return [_change(r) for r in rows]


def recent_ups(conn: Connection, club_id: int, today: date, days: int) -> list[TierChange]:
    """The club's upward changes from `days` Tehran days before `today` to its end that
    are still each member's latest change: one undone since (a reversal) or overtaken (a
    further tier) is not announced, the change after it is."""
    start = datetime(today.year, today.month, today.day, tzinfo=TEHRAN) - timedelta(days=days)
    end = start + timedelta(days=days + 1)
    rows = conn.execute(
        f"SELECT {_COLS} FROM tier_changes t WHERE t.club_id = ? AND t.upward = 1"
        " AND t.at >= ? AND t.at < ? AND NOT EXISTS (SELECT 1 FROM tier_changes n"
        " WHERE n.member_id = t.member_id AND n.id > t.id) ORDER BY t.member_id",
        (club_id, int(start.timestamp()), int(end.timestamp())),
    ).fetchall()
    return [_change(r) for r in rows]
