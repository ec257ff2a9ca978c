"""What the panel's SMS page reads of a club's outbox, and its retry of a failed message.

The outbox's own writers (enqueue, the worker's claim and marks) stay in
backend.sms.outbox; this module only reads per club and puts a failed message back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from backend.engine import Connection
from backend.sms import outbox


@dataclass(frozen=True, slots=True)
class OutboxCount:
    status: str
    kind: str
    count: int


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    phone: str
    kind: str
    status: str
    attempts: int
    created_at: datetime
    finished_at: datetime | None
    last_error: str | None


def _when(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(value), UTC)


_COLS = "id, phone, kind, status, attempts, created_at, finished_at, last_error"


def _message(row: tuple) -> Message:
    return Message(int(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]),
                   _when(row[5]) or datetime.fromtimestamp(0, UTC), _when(row[6]), row[7])


def counts(conn: Connection, club_id: int) -> list[OutboxCount]:
    """The club's outbox by status and kind."""
    rows = conn.execute(
        "SELECT status, kind, COUNT(*) FROM sms_outbox WHERE club_id = ? "
        "GROUP BY status, kind ORDER BY status, kind", (club_id,)).fetchall()
    return [OutboxCount(str(s), str(k), int(n)) for s, k, n in rows]


def recent(conn: Connection, club_id: int, limit: int = 50) -> list[Message]:
    """The club's last messages, newest first."""
    rows = conn.execute(
        f"SELECT {_COLS} FROM sms_outbox WHERE club_id = ? ORDER BY id DESC LIMIT ?",
        (club_id, limit)).fetchall()
    return [_message(r) for r in rows]


def failures(conn: Connection, club_id: int, limit: int = 50) -> list[Message]:
    rows = conn.execute(
        f"SELECT {_COLS} FROM sms_outbox WHERE club_id = ? AND status = ? "
        "ORDER BY id DESC LIMIT ?", (club_id, outbox.FAILED, limit)).fetchall()
    return [_message(r) for r in rows]


def message(conn: Connection, club_id: int, sms_id: int) -> Message | None:
    """One message of the club (another club's id: None, as one that does not exist)."""
    row = conn.execute(f"SELECT {_COLS} FROM sms_outbox WHERE id = ? AND club_id = ?",
                       (sms_id, club_id)).fetchone()
    return _message(row) if row else None


def retry(conn: Connection, club_id: int, sms_id: int, now: datetime) -> bool:
    """Put a failed message of the club back in the queue, due now; False when it is not
    failed (already retried, sent, or not the club's): pressing twice queues it once.
    Its attempts and last error are kept, so the page still says why it failed before."""
    cur = conn.execute(
        "UPDATE sms_outbox SET status = ?, next_attempt_at = ?, finished_at = NULL, "
        "claimed_by = NULL, claimed_until = NULL WHERE id = ? AND club_id = ? AND status = ?",
        (outbox.PENDING, outbox.timestamp(now), sms_id, club_id, outbox.FAILED))
    return cur.rowcount == 1
