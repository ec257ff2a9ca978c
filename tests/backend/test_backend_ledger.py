"""The ledger's queries: the look-up of expired lots finds each member once, by the index
made for it (checked on the SQL the ledger really runs)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from backend import ledger, store
from tests.backend.core_helpers import plan, traced
from tests.backend.engines import sqlite_only

T0 = datetime(2026, 3, 21, 8, 0, tzinfo=UTC)


def _member(conn: sqlite3.Connection, phone: str) -> int:
    return store.insert_member(
        conn, phone=phone, referrer_id=None, tier="bronze", now=T0, club_id=1
    ).id


@sqlite_only
def test_members_with_expired_lots_once_each_by_the_expiry_index(conn: sqlite3.Connection) -> None:
    with store.transaction(conn):
        a, b, c = (_member(conn, f"0912000000{i}") for i in range(3))
        for n, (mid, days) in enumerate([(a, 1), (a, 2), (b, 3), (c, 400)]):
            ledger.credit(
                conn, mid, "earn", 1000, f"k{n}", earned_at=T0,
                expires_at=T0 + timedelta(days=days),
            )  # fmt: skip
    later = T0 + timedelta(days=10)
    found, ran = traced(conn, lambda: ledger.members_with_expired_lots(conn, later))
    assert sorted(found) == [a, b] and len(found) == 2  # a has two lots: a once
    assert ledger.members_with_expired_lots(conn, T0) == []
    queries = [sql for sql in ran if sql.lstrip().upper().startswith("SELECT")]
    assert queries, ran
    for sql in queries:
        used = plan(conn, sql)
        assert "USING INDEX lots_expiring" in used and "SCAN" not in used, (sql, used)
