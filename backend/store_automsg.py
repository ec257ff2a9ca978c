"""Automatic messages per club (birthday, occasions, win-back, ...) and the facts about
members they are computed from; the SQL of backend.automsg's daily job.

`auto_messages` holds each club's messages (its key, e.g. `birthday` or `occasion:yalda`,
on/off, template, gift, segment, N days, date offset); `automsg_runs` the last Tehran day
the job ran for a club, so that one of N processes runs it once a day and a process
that was down catches up (occasions.due_messages' grace days).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from backend import store_tiers
from backend.engine import Connection
from backend.occasions import AutoMessage, MemberFacts
from protocols.persian import TEHRAN

SCHEMA = (
    "CREATE TABLE auto_messages (club_id INTEGER NOT NULL REFERENCES clubs(id), "
    "key TEXT NOT NULL, kind TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1, "
    "template TEXT NOT NULL, days INTEGER NOT NULL DEFAULT 0, "
    "offset_days INTEGER NOT NULL DEFAULT 0, occasion TEXT, segment TEXT, "
    "gift_credit INTEGER NOT NULL DEFAULT 0 CHECK (gift_credit >= 0), "
    "gift_days INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (club_id, key))",
    "CREATE TABLE automsg_runs (club_id INTEGER NOT NULL PRIMARY KEY REFERENCES clubs(id), "
    "last_day TEXT NOT NULL)",
)
#: days back the tier rises are read (more than the job's grace days: a catch-up finds them)
TIER_UP_DAYS = 7
_COLS = "key, kind, template, days, offset_days, occasion, segment, gift_credit, gift_days"


@dataclass(frozen=True, slots=True)
class Stored:
    message: AutoMessage
    enabled: bool


def messages(conn: Connection, club_id: int) -> list[Stored]:
    rows = conn.execute(
        f"SELECT {_COLS}, enabled FROM auto_messages WHERE club_id = ? ORDER BY key",
        (club_id,),
    ).fetchall()
    return [Stored(AutoMessage(*r[:9]), bool(r[9])) for r in rows]


def save(conn: Connection, club_id: int, msg: AutoMessage, enabled: bool = True) -> None:
    """Create or replace the club's message `msg.key` (the caller checked the template)."""
    conn.execute(
        f"INSERT INTO auto_messages (club_id, {_COLS}, enabled)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (club_id, key) DO UPDATE SET"
        " kind = excluded.kind, template = excluded.template, days = excluded.days,"
        " offset_days = excluded.offset_days, occasion = excluded.occasion,"
        " segment = excluded.segment, gift_credit = excluded.gift_credit,"
        " gift_days = excluded.gift_days, enabled = excluded.enabled",
        (club_id, msg.key, msg.kind, msg.template, msg.days, msg.offset_days, msg.occasion,
         msg.segment, msg.gift_credit, msg.gift_days, int(enabled)),
    )


def set_enabled(conn: Connection, club_id: int, key: str, enabled: bool) -> bool:
    return conn.execute(
        "UPDATE auto_messages SET enabled = ? WHERE club_id = ? AND key = ?",
        (int(enabled), club_id, key),
    ).rowcount == 1


def clubs_with_messages(conn: Connection) -> list[int]:
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT club_id FROM auto_messages WHERE enabled = 1 ORDER BY club_id")]


def last_run(conn: Connection, club_id: int) -> date | None:
    row = conn.execute("SELECT last_day FROM automsg_runs WHERE club_id = ?",
                       (club_id,)).fetchone()
    return date.fromisoformat(row[0]) if row else None


def mark_run(conn: Connection, club_id: int, day: date) -> None:
    conn.execute(
        "INSERT INTO automsg_runs (club_id, last_day) VALUES (?, ?)"
        " ON CONFLICT (club_id) DO UPDATE SET last_day = excluded.last_day",
        (club_id, day.isoformat()),
    )


@dataclass(frozen=True, slots=True)
class Recipient:
    facts: MemberFacts
    phone: str
    name: str | None


def _tehran(ts: int) -> date:
    return datetime.fromtimestamp(ts, UTC).astimezone(TEHRAN).date()


def _birthday(text: str | None, today: date) -> date | None:
    """The stored birthday (YYYY-MM-DD, or MM-DD without a year) as a Gregorian date."""
    if not text:
        return None
    try:
        if len(text) == 5:
            month, day = int(text[:2]), int(text[3:])
            return date(today.year if (month, day) != (2, 29) else 2000, month, day)
        return date.fromisoformat(text)
    except ValueError:
        return None


def recipients(
    conn: Connection, club_id: int, today: date, expiring_days: Iterable[int] = ()
) -> list[Recipient]:
    """The club's members with marketing consent, with the facts the messages need:
    birthday, enrolment, last settled purchase, credit lots expiring within the longest
    `expiring_days` (plus a week of grace) of `today`, tier rises of the last week
    (store_tiers.recent_ups: each member's latest change, if it went up)."""
    out: dict[int, list] = {}
    # last_visit is the member's running total (store_member_stats), the segment the
    # nightly run's (store_segments): no scan of the purchases
    for mid, phone, name, birthday, enrolled, last, segment in conn.execute(
        "SELECT m.id, m.phone, m.name, m.birthday, m.enrolled_at, m.last_visit, s.segment"
        " FROM members m LEFT JOIN member_segments s ON s.member_id = m.id"
        " WHERE m.club_id = ? AND m.marketing_consent = 1 ORDER BY m.id", (club_id,),
    ):
        out[mid] = [phone, name, _birthday(birthday, today), _tehran(enrolled),
                    None if last is None else _tehran(last), [], segment, []]
    if not out:
        return []
    horizon = max(expiring_days, default=0)
    if horizon:
        start = datetime(today.year, today.month, today.day, tzinfo=TEHRAN) - timedelta(days=7)
        end = start + timedelta(days=horizon + 9)
        for mid, expires, remaining in conn.execute(
            "SELECT l.member_id, l.expires_at, l.remaining FROM lots l JOIN members m"
            " ON m.id = l.member_id WHERE m.club_id = ? AND l.remaining > 0"
            " AND l.expires_at >= ? AND l.expires_at < ?",
            (club_id, int(start.timestamp()), int(end.timestamp())),
        ):
            if mid in out:
                out[mid][5].append((_tehran(expires), remaining))
    for up in store_tiers.recent_ups(conn, club_id, today, TIER_UP_DAYS):
        if up.member_id in out:
            out[up.member_id][7].append((up.tehran_date, up.to_tier, up.next_threshold))
    return [
        Recipient(MemberFacts(mid, enrolled, birthday_gregorian=bd, last_purchase_on=last,
                              segment=segment, expiring=tuple(exp), tier_ups=tuple(ups)),
                  phone, name)
        for mid, (phone, name, bd, enrolled, last, exp, segment, ups) in out.items()
    ]
