"""The member page's tokens in the database: only SHA-256 of each token is kept.

The raw token exists once, in the SMS it was issued for (backend.member_tokens explains
why a fast unsalted hash is right for 128 random bits). A token is bound to one member of
one club; the owner's revocation ends every token of the member at once.
"""

from __future__ import annotations

from datetime import UTC, datetime

from backend import member_tokens
from backend.engine import Connection
from backend.member_tokens import TokenRecord

TABLES = ("member_tokens",)

SCHEMA = (
    "CREATE TABLE member_tokens (token_hash TEXT NOT NULL PRIMARY KEY, "
    "member_id INTEGER NOT NULL REFERENCES members(id), "
    "club_id INTEGER NOT NULL REFERENCES clubs(id), created_at INTEGER NOT NULL, "
    "expires_at INTEGER NOT NULL, revoked_at INTEGER) WITHOUT ROWID",
    "CREATE INDEX member_tokens_member ON member_tokens(member_id, revoked_at)",
)


# store.ts/from_ts, written here: backend.store imports the migrations, which import this
def _ts(when: datetime) -> int:
    return int(when.timestamp())


def _at(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def issue(conn: Connection, member_id: int, club_id: int, now: datetime, *,
          days: int | None = None) -> str:
    """A new page token for the member; the raw token is returned once and never stored."""
    token, record = member_tokens.issue(member_tokens.PAGE, member_id, club_id, now, days=days)
    conn.execute(
        "INSERT INTO member_tokens(token_hash, member_id, club_id, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (record.token_hash, member_id, club_id, _ts(now), _ts(record.expires_at)))
    return token


def find(conn: Connection, token_hash: str) -> TokenRecord | None:
    """The record stored under this hash (member_tokens.check decides if it opens)."""
    row = conn.execute(
        "SELECT member_id, club_id, expires_at, revoked_at FROM member_tokens "
        "WHERE token_hash = ?", (token_hash,)).fetchone()
    if row is None:
        return None
    return TokenRecord(token_hash, member_tokens.PAGE, int(row[0]), int(row[1]),
                       _at(int(row[2])), None,
                       _at(int(row[3])) if row[3] is not None else None)


def revoke_all(conn: Connection, member_id: int, now: datetime) -> int:
    """End every live token of the member; how many were live."""
    cur = conn.execute(
        "UPDATE member_tokens SET revoked_at = ? WHERE member_id = ? AND revoked_at IS NULL "
        "AND expires_at > ?", (_ts(now), member_id, _ts(now)))
    return int(cur.rowcount or 0)


def live_count(conn: Connection, member_id: int, now: datetime) -> int:
    """The member's tokens that still open the page (for the owner's member page)."""
    row = conn.execute(
        "SELECT COUNT(*) FROM member_tokens WHERE member_id = ? AND revoked_at IS NULL "
        "AND expires_at > ?", (member_id, _ts(now))).fetchone()
    return int(row[0])


def expiring_lots(conn: Connection, member_id: int, *, limit: int = 12
                  ) -> list[tuple[int, datetime]]:
    """The member's open credit as (rials left, expiry), soonest first: what expires when."""
    rows = conn.execute(
        "SELECT remaining, expires_at FROM lots WHERE member_id = ? AND remaining > 0 "
        "ORDER BY expires_at, id LIMIT ?", (member_id, limit))
    return [(int(r), _at(int(e))) for r, e in rows]
