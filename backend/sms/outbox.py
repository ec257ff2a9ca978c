"""The SMS outbox: a table in the ledger's own SQLite database.

`enqueue` writes inside the caller's transaction and never commits, so a purchase and its
SMS are durable together or not at all. The worker's side (claim, mark) lives here too, as
plain SQL on a connection it owns, so the rules are testable without threads.

Times are stored as Unix seconds (UTC); a naive datetime is taken as UTC.
Delivery is at least once: a process that dies after the gateway accepted an SMS but before
`mark_sent_many` leaves a claim that another worker takes over when its lease runs out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from backend import engine, store_marketing
from backend.engine import Connection
from backend.marketing_rules import KIND_CLASS, MARKETING, Delivery, Dropped, Message, Release
from backend.store import transaction
from protocols.identity import normalize_phone
from protocols.persian import TEHRAN

#: every kind the outbox takes: marketing_rules.KIND_CLASS says which are marketing
KINDS = tuple(KIND_CLASS)
MARKETING_KINDS = store_marketing.MARKETING_KINDS
PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
_ERROR_CHARS = 300
_NORMAL_PHONE = re.compile(r"09[0-9]{9}")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sms_outbox (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    phone TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN {KINDS!r}),
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    claimed_by TEXT,
    claimed_until REAL,
    finished_at REAL,
    last_error TEXT,
    club_id INTEGER,
    member_id INTEGER
);
CREATE INDEX IF NOT EXISTS sms_outbox_due ON sms_outbox (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS sms_outbox_member ON sms_outbox (member_id, created_at);
"""


@dataclass(frozen=True)
class Claimed:
    """One SMS a worker holds the claim on; `attempts` counts this one."""

    id: int
    key: str
    phone: str
    text: str
    kind: str
    attempts: int
    #: whose gateway sends it: the club's own, or the provider's (None)
    club_id: int | None = None
    #: the member it is for, where the sender named one (marketing rules need it)
    member_id: int | None = None


def timestamp(when: datetime) -> float:
    if not isinstance(when, datetime):
        raise ValueError("time must be a datetime")
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()


def create_schema(conn: Connection) -> None:
    """Create the outbox table if missing; statement by statement, so no implicit commit."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def enqueue(
    conn: Connection,
    *,
    key: str,
    phone: str,
    text: str,
    kind: str,
    now: datetime,
    club_id: int | None = None,
    member_id: int | None = None,
    not_before: datetime | None = None,
) -> bool:
    """Queue one SMS in the caller's open transaction; False when `key` is already queued.
    `club_id`: sent through that club's gateway (None: the provider's default);
    `member_id`: whose consent and daily limit a marketing SMS answers to;
    `not_before`: not sent before then (a scheduled campaign; default now)."""
    return _insert(
        conn, key=key, phone=phone, text=text, kind=kind, now=now, club_id=club_id,
        member_id=member_id, not_before=not_before,
    ).rowcount == 1


def put(
    conn: Connection,
    *,
    key: str,
    phone: str,
    text: str,
    kind: str,
    now: datetime,
    club_id: int | None = None,
    member_id: int | None = None,
) -> None:
    """`enqueue` for a caller that need not know whether `key` was queued already: in a
    pipelined transaction on PostgreSQL it waits for nothing."""
    _insert(conn, key=key, phone=phone, text=text, kind=kind, now=now, club_id=club_id,
            member_id=member_id, not_before=None)


def _insert(
    conn: Connection,
    *,
    key: str,
    phone: str,
    text: str,
    kind: str,
    now: datetime,
    club_id: int | None,
    member_id: int | None,
    not_before: datetime | None,
) -> Any:
    if not isinstance(key, str) or not key:
        raise ValueError("key must be a non-empty string")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    # The core passes normalised numbers: check those cheaply, normalise anything else.
    number = phone if isinstance(phone, str) and _NORMAL_PHONE.fullmatch(phone) else None
    if number is None:
        number = normalize_phone(phone)
    at = timestamp(now)
    due = at if not_before is None else max(at, timestamp(not_before))
    return conn.execute(
        "INSERT INTO sms_outbox (key, phone, text, kind, created_at, next_attempt_at, club_id,"
        " member_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
        (key, number, text, kind, at, due, club_id, member_id),
    )


def counts(
    conn: Connection,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    club_id: int | None = None,
    due_by: datetime | None = None,
) -> dict[str, int]:
    """SMS queued in [since, until), by where they are now; an SMS in flight is pending.
    With `due_by`, only those due by then (not one the marketing rules put off to the
    morning, say).

    An operator's report: a scan of the table, so that enqueue maintains no extra index.
    """
    sql = "SELECT status, COUNT(*) FROM sms_outbox WHERE 1 = 1"
    args: list[float] = []
    if club_id is not None:
        sql += " AND club_id = ?"
        args.append(club_id)
    if since is not None:
        sql += " AND created_at >= ?"
        args.append(timestamp(since))
    if until is not None:
        sql += " AND created_at < ?"
        args.append(timestamp(until))
    if due_by is not None:
        sql += " AND next_attempt_at <= ?"
        args.append(timestamp(due_by))
    result = {SENT: 0, PENDING: 0, FAILED: 0}
    for status, n in conn.execute(sql + " GROUP BY status", args):
        result[PENDING if status == SENDING else status] += n
    return result


# --- the worker's side: each call is one short transaction of its own ---------------------


def claim_due(
    conn: Connection, *, owner: str, now: float, lease: float, limit: int = 1
) -> list[Claimed]:
    """Atomically take up to `limit` due SMS (or ones whose claim lapsed) for `owner`.

    BEGIN IMMEDIATE takes SQLite's write lock before the rows are chosen, so two processes
    never pick the same row; on PostgreSQL the rows are claimed FOR UPDATE SKIP LOCKED,
    so two processes take different rows at the same moment. `conn` must be in autocommit
    mode (isolation_level=None). Marketing SMS the rules hold back are handed back in the
    same transaction (`_gate_marketing`); when a whole batch was held back, the next is
    claimed, so that SMS behind a night's queue of marketing ones are not kept waiting.
    """
    while True:
        claimed, taken = _claim_batch(conn, owner=owner, now=now, lease=lease, limit=limit)
        if claimed or not taken:
            return claimed


def _claim_batch(
    conn: Connection, *, owner: str, now: float, lease: float, limit: int
) -> tuple[list[Claimed], int]:
    """One claim transaction: (the SMS that may go, how many rows were taken)."""
    with transaction(conn):
        rows = conn.execute(
            "UPDATE sms_outbox SET status = 'sending', claimed_by = ?, claimed_until = ?,"
            " attempts = attempts + 1"
            " WHERE id IN (SELECT id FROM sms_outbox"
            "   WHERE (status = 'pending' AND next_attempt_at <= ?)"
            "      OR (status = 'sending' AND claimed_until <= ?)"
            "   ORDER BY next_attempt_at, id LIMIT ?" + engine.skip_locked(conn) + ")"
            " RETURNING next_attempt_at, id, key, phone, text, kind, attempts, club_id,"
            " member_id",
            (owner, now + lease, now, now, limit),
        ).fetchall()
        # RETURNING has no defined order: oldest due first.
        claimed = [Claimed(*row[1:]) for row in sorted(rows)]
        if any(KIND_CLASS[c.kind] == MARKETING for c in claimed):
            claimed = _gate_marketing(conn, claimed, owner=owner, now=now, lease=lease)
    return claimed, len(rows)


def _gate_marketing(
    conn: Connection, claimed: list[Claimed], *, owner: str, now: float, lease: float
) -> list[Claimed]:
    """Keep the claimed SMS that may go now by marketing_rules.Delivery; in the claim's
    transaction, the others are dropped (no consent: failed, with the reason) or handed
    back due when the rules next let them go (quiet hours, daily limits: not a try).

    The counts are of marketing SMS sent or being sent today (Tehran) in the club: on
    PostgreSQL one lock serialises this step, so two workers' claims of one member's
    SMS are counted one after the other (read committed: the second sees the first's).
    """
    engine.exclusive(conn, "sms-marketing-gate")
    marketing = [c for c in claimed if KIND_CLASS[c.kind] == MARKETING]
    at = datetime.fromtimestamp(now, UTC)
    by_club: dict[int | None, list[Claimed]] = {}
    for c in marketing:
        by_club.setdefault(c.club_id, []).append(c)
    rules = store_marketing.settings_of(conn, by_club)
    consent = store_marketing.consents(conn, [c.member_id for c in marketing if c.member_id])
    batch_ids = {c.id for c in claimed}
    blocked: set[int] = set()
    for club_id, group in by_club.items():
        settings = rules.get(club_id) or rules[None]
        day_start = _tehran_day_start(at)
        delivery = Delivery(
            settings, consent,
            [(m, t) for sid, m, t in _marketing_today(conn, club_id, day_start, lease)
             if sid not in batch_ids],
        )
        for c in group:
            delivery.submit(Message(str(c.id), c.member_id or 0, c.kind, at), at)
        ids = {str(c.id): c for c in group}
        for ev in delivery.poll(at):
            if isinstance(ev, Dropped):
                sms = ids[ev.message.id]
                blocked.add(sms.id)
                conn.execute(
                    "UPDATE sms_outbox SET status = 'failed', finished_at = ?, claimed_by = NULL,"
                    " claimed_until = NULL, last_error = ? WHERE id = ? AND claimed_by = ?",
                    (now, f"dropped: {ev.reason}", sms.id, owner),
                )
            else:
                assert isinstance(ev, Release)
        when = delivery.schedule(at) if delivery.pending else {}
        for msg in delivery.pending:
            sms = ids[msg.id]
            blocked.add(sms.id)
            due = when.get(msg.id) or settings.morning_after(at.astimezone(TEHRAN).date())
            conn.execute(
                "UPDATE sms_outbox SET status = 'pending', attempts = attempts - 1,"
                " next_attempt_at = ?, claimed_by = NULL, claimed_until = NULL"
                " WHERE id = ? AND claimed_by = ?",
                (max(now, due.timestamp()), sms.id, owner),
            )
    return [c for c in claimed if c.id not in blocked]


def _tehran_day_start(at: datetime) -> float:
    local = at.astimezone(TEHRAN)
    return datetime.combine(local.date(), time(0), TEHRAN).timestamp()


def _marketing_today(
    conn: Connection, club_id: int | None, day_start: float, lease: float
) -> list[tuple[int, int, datetime]]:
    """(id, member, when) of the club's marketing SMS sent, or claimed to be sent, since
    `day_start`; a claim's time is its lease's end less the lease."""
    marks = ", ".join("?" * len(MARKETING_KINDS))
    club = "club_id IS NULL AND ? IS NULL" if club_id is None else "club_id = ?"
    # two parts, each on an index: the sent ones on store_marketing's partial index of
    # marketing rows, the few being sent on sms_outbox_due (status first)
    rows = conn.execute(
        f"SELECT id, member_id, finished_at FROM sms_outbox WHERE kind IN {MARKETING_KINDS!r}"
        f" AND {club} AND status = 'sent' AND finished_at >= ?"
        " UNION ALL SELECT id, member_id, claimed_until - ? FROM sms_outbox"
        f" WHERE status = 'sending' AND kind IN ({marks}) AND {club} AND claimed_until >= ?",
        (club_id, day_start, lease, *MARKETING_KINDS, club_id, day_start),
    ).fetchall()
    return [(sid, member or 0, datetime.fromtimestamp(max(t, day_start), UTC))
            for sid, member, t in rows]


def release(conn: Connection, ids: list[int], *, owner: str) -> int:
    """Hand claimed but untried SMS back to the queue at once, as if never claimed."""
    if not ids:
        return 0
    with transaction(conn):
        n = 0
        for sms_id in ids:
            n += conn.execute(
                "UPDATE sms_outbox SET status = 'pending', attempts = attempts - 1,"
                " claimed_by = NULL, claimed_until = NULL"
                " WHERE id = ? AND status = 'sending' AND claimed_by = ?",
                (sms_id, owner),
            ).rowcount
    return n


def _finish(conn: Connection, sql: str, args: tuple[object, ...]) -> bool:
    with transaction(conn):
        changed = conn.execute(sql, args).rowcount
    return changed == 1


def mark_sent_many(conn: Connection, ids: list[int], *, owner: str, now: float) -> int:
    """Record several deliveries in one transaction (one write lock, not one per SMS);
    how many were still ours."""
    if not ids:
        return 0
    with transaction(conn):
        # one executemany (its rowcount is the sum): the write lock is held for less time
        n = conn.executemany(
            "UPDATE sms_outbox SET status = 'sent', finished_at = ?, claimed_by = NULL,"
            " claimed_until = NULL, last_error = NULL"
            " WHERE id = ? AND status = 'sending' AND claimed_by = ?",
            [(now, sms_id, owner) for sms_id in ids],
        ).rowcount
    return n


def mark_retry(conn: Connection, sms_id: int, *, owner: str, at: float, error: str) -> bool:
    """Put the SMS back in the queue, due at `at`."""
    return _finish(
        conn,
        "UPDATE sms_outbox SET status = 'pending', next_attempt_at = ?, claimed_by = NULL,"
        " claimed_until = NULL, last_error = ?"
        " WHERE id = ? AND status = 'sending' AND claimed_by = ?",
        (at, error[:_ERROR_CHARS], sms_id, owner),
    )


def mark_failed(
    conn: Connection, sms_id: int, *, owner: str, now: float, error: str
) -> bool:
    """Give the SMS up for good."""
    return _finish(
        conn,
        "UPDATE sms_outbox SET status = 'failed', finished_at = ?, claimed_by = NULL,"
        " claimed_until = NULL, last_error = ?"
        " WHERE id = ? AND status = 'sending' AND claimed_by = ?",
        (now, error[:_ERROR_CHARS], sms_id, owner),
    )


# --- a group of SMS by key prefix (a campaign's `campaign:{id}:`) --------------------------


def _like(prefix: str) -> str:
    if not prefix or any(c in prefix for c in "%_\\"):
        raise ValueError(f"a key prefix without LIKE wildcards, not {prefix!r}")
    return prefix + "%"


def cancel_pending(conn: Connection, prefix: str, *, now: datetime, reason: str) -> int:
    """In the caller's transaction, give up the pending SMS whose key starts with `prefix`
    (failed, with `reason`); sent ones and ones a worker holds are left alone."""
    return conn.execute(
        "UPDATE sms_outbox SET status = 'failed', finished_at = ?, last_error = ?"
        " WHERE key LIKE ? AND status = 'pending'",
        (timestamp(now), reason[:_ERROR_CHARS], _like(prefix)),
    ).rowcount


def counts_by_prefix(conn: Connection, prefix: str) -> dict[str, int]:
    """sent, pending (in flight included) and failed SMS whose key starts with `prefix`."""
    result = {SENT: 0, PENDING: 0, FAILED: 0}
    for status, n in conn.execute(
        "SELECT status, COUNT(*) FROM sms_outbox WHERE key LIKE ? GROUP BY status",
        (_like(prefix),),
    ):
        result[PENDING if status == SENDING else status] += int(n)
    return result


def members_by_prefix(conn: Connection, prefix: str, status: str | None = None) -> set[int]:
    """The members of the SMS whose key starts with `prefix` (in `status`, or any)."""
    sql = "SELECT member_id FROM sms_outbox WHERE key LIKE ? AND member_id IS NOT NULL"
    args: list[object] = [_like(prefix)]
    if status is not None:
        sql += " AND status = ?"
        args.append(status)
    return {int(r[0]) for r in conn.execute(sql, args)}
