"""The audit log: who changed what, when, and the values before and after.

`record` is called inside the transaction that makes the change, so a change without its
row (or a row without its change) cannot be committed. Values are JSON objects of what the
change touched, small and readable; secrets (password hashes) are never put in them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backend.engine import Connection
from backend.store import from_ts, ts


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    user: str
    club_id: int | None
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def _dump(value: dict[str, Any] | None) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def record(conn: Connection, *, user: str, club_id: int | None, action: str, target: str,
           before: dict[str, Any] | None, after: dict[str, Any] | None,
           now: datetime) -> int:
    """One row; the caller holds the change's transaction open. Its id."""
    if not conn.in_transaction:
        raise RuntimeError("an audit row is written in the transaction of its change")
    cur = conn.execute(
        "INSERT INTO audit_log(at, user_name, club_id, action, target, before_json, "
        "after_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (ts(now), user, club_id, action, target, _dump(before), _dump(after)))
    return int(cur.lastrowid or 0)


def entries(conn: Connection, club_id: int | None, *, limit: int = 100,
            before_id: int | None = None) -> list[AuditEntry]:
    """Newest first: one club's rows, or (club_id None, for a provider) everyone's."""
    where, args = [], []
    if club_id is not None:
        where.append("club_id = ?")
        args.append(club_id)
    if before_id is not None:
        where.append("id < ?")
        args.append(before_id)
    sql = ("SELECT id, at, user_name, club_id, action, target, before_json, after_json "
           "FROM audit_log")
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
    return [AuditEntry(int(i), from_ts(at), u, c, a, t,
                       json.loads(b) if b else None, json.loads(f) if f else None)
            for i, at, u, c, a, t, b, f in rows]
