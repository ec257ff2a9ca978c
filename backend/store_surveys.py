"""After-purchase surveys in the database: one row per purchase that was asked.

The row is made in the purchase's own transaction (the settled advice), so the SMS that
carries the link and the row it opens commit together or not at all. It keeps only
SHA-256 of the link's token (backend.member_tokens); the token is bound to that one row,
hence to that purchase, member and club. A row is answered once: the UPDATE names
`answered_at IS NULL`, so a second answer (or two at once) changes nothing.

`survey_keys` holds each club's sampling secret (backend.surveys.should_survey), made with
the club's first survey, so which purchases are asked cannot be told from outside.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from backend import member_tokens, surveys
from backend.engine import Connection
from backend.member_tokens import SURVEY, TokenRecord
from protocols.persian import TEHRAN

TABLES = ("survey_keys", "surveys")

SCHEMA = (
    "CREATE TABLE survey_keys (club_id INTEGER NOT NULL PRIMARY KEY REFERENCES clubs(id), "
    "secret BLOB NOT NULL)",
    "CREATE TABLE surveys (id INTEGER PRIMARY KEY, "
    "club_id INTEGER NOT NULL REFERENCES clubs(id), "
    "member_id INTEGER NOT NULL REFERENCES members(id), "
    "purchase_key TEXT NOT NULL UNIQUE, branch_id INTEGER NOT NULL DEFAULT 0, "
    "terminal_id TEXT NOT NULL DEFAULT '', token_hash TEXT NOT NULL UNIQUE, "
    "asked_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, "
    "rating INTEGER CHECK (rating BETWEEN 1 AND 5), comment TEXT NOT NULL DEFAULT '', "
    "answered_at INTEGER)",
    "CREATE INDEX surveys_member ON surveys(member_id, asked_at)",
    "CREATE INDEX surveys_answered ON surveys(club_id, answered_at)",
)


@dataclass(frozen=True, slots=True)
class Survey:
    id: int
    club_id: int
    member_id: int
    purchase_key: str
    branch_id: int
    terminal_id: str
    token_hash: str
    asked_at: datetime
    expires_at: datetime
    rating: int | None
    comment: str
    answered_at: datetime | None

    def token_record(self) -> TokenRecord:
        """What member_tokens.check checks: the token bound to this one purchase."""
        return TokenRecord(self.token_hash, SURVEY, self.member_id, self.club_id,
                           self.expires_at, purchase_id=self.id)


_COLS = ("id, club_id, member_id, purchase_key, branch_id, terminal_id, token_hash, "
         "asked_at, expires_at, rating, comment, answered_at")


def ts(when: datetime) -> int:
    return int(when.timestamp())


def from_ts(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _survey(row: tuple) -> Survey:
    return Survey(int(row[0]), int(row[1]), int(row[2]), row[3], int(row[4]), row[5], row[6],
                  from_ts(row[7]), from_ts(row[8]), None if row[9] is None else int(row[9]),
                  row[10], None if row[11] is None else from_ts(row[11]))


def _seed(conn: Connection, club_id: int) -> bytes:
    conn.execute("INSERT INTO survey_keys(club_id, secret) VALUES (?, ?) "
                 "ON CONFLICT (club_id) DO NOTHING", (club_id, secrets.token_bytes(32)))
    row = conn.execute("SELECT secret FROM survey_keys WHERE club_id = ?", (club_id,)).fetchone()
    return bytes(row[0])


def last_asked_on(conn: Connection, member_id: int) -> date | None:
    row = conn.execute("SELECT MAX(asked_at) FROM surveys WHERE member_id = ?",
                       (member_id,)).fetchone()
    return None if row is None or row[0] is None else from_ts(row[0]).astimezone(TEHRAN).date()


def ask(conn: Connection, *, club_id: int, member_id: int, purchase_key: str, branch_id: int,
        terminal_id: str, share: float, now: datetime,
        days: int = member_tokens.DEFAULT_DAYS[SURVEY]) -> str | None:
    """The survey token for this purchase if it is one of those asked, else None.

    Call inside the purchase's transaction, with the member locked (the advice does): the
    30-day gap is read and the row written under that lock. A purchase asked already (an
    advice carried out again) gets None: its SMS went out with the first."""
    if share <= 0:
        return None
    today = now.astimezone(TEHRAN).date()
    if not surveys.should_survey(_seed(conn, club_id), purchase_key, share,
                                 last_asked_on(conn, member_id), today):
        return None
    token = member_tokens.new_token()
    cur = conn.execute(
        "INSERT INTO surveys(club_id, member_id, purchase_key, branch_id, terminal_id, "
        "token_hash, asked_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (purchase_key) DO NOTHING",
        (club_id, member_id, purchase_key, branch_id, terminal_id,
         member_tokens.hash_token(token), ts(now), ts(now + timedelta(days=days))))
    return token if cur.rowcount == 1 else None


def by_token(conn: Connection, token: str) -> Survey | None:
    row = conn.execute(f"SELECT {_COLS} FROM surveys WHERE token_hash = ?",
                       (member_tokens.hash_token(token),)).fetchone()
    return _survey(row) if row else None


def answer(conn: Connection, survey_id: int, rating: int, comment: str, now: datetime) -> bool:
    """Record the answer; False if this survey was answered already (nothing changed)."""
    if rating not in (1, 2, 3, 4, 5) or len(comment) > surveys.MAX_COMMENT:
        raise surveys.SurveyError("a rating 1..5 and a short comment")
    cur = conn.execute(
        "UPDATE surveys SET rating = ?, comment = ?, answered_at = ? "
        "WHERE id = ? AND answered_at IS NULL", (rating, comment, ts(now), survey_id))
    return cur.rowcount == 1


@dataclass(frozen=True, slots=True)
class AnswerRow:
    answer: surveys.Answer
    answered_at: datetime
    branch_name: str


def answers(conn: Connection, club_id: int, since: datetime | None = None) -> list[AnswerRow]:
    """The club's answered surveys, newest first, with their branch's name."""
    rows = conn.execute(
        "SELECT s.id, s.answered_at, s.rating, s.comment, s.terminal_id, "
        "COALESCE(b.name, '') FROM surveys s LEFT JOIN branches b ON b.id = s.branch_id "
        "WHERE s.club_id = ? AND s.answered_at IS NOT NULL AND s.answered_at >= ? "
        "ORDER BY s.answered_at DESC, s.id DESC",
        (club_id, ts(since) if since else 0)).fetchall()
    out = []
    for r in rows:
        at = from_ts(r[1])
        out.append(AnswerRow(surveys.Answer(int(r[0]), at.astimezone(TEHRAN).date(), int(r[2]),
                                            r[3], r[5], r[4]), at, r[5]))
    return out


def asked_count(conn: Connection, club_id: int) -> int:
    row = conn.execute("SELECT COUNT(*) FROM surveys WHERE club_id = ?", (club_id,)).fetchone()
    return int(row[0])
