"""The store: one stored-response row per key, other schema versions refused, and the WAL
checkpointed into the database (by the checkpointer thread and after a commit)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backend import engine, store
from backend.engine import Connection
from tests.backend.core_helpers import phone


def test_backend_store_response_key_unique_and_compact(conn: Connection) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    args = {"type": "advice", "code": "00", "message": "", "now": now}
    store.store_response(conn, key="T1:0200:1", body={"earned": 5, "name": "علی"}, **args)
    with pytest.raises(engine.IntegrityError), store.transaction(conn):
        store.store_response(conn, key="T1:0200:1", body={}, **args)
    assert store.stored_response(conn, "T1:0200:1") == store.StoredResponse(
        "advice", "00", "", {"earned": 5, "name": "علی"}
    )
    (text,) = conn.execute("SELECT body FROM requests").fetchone()
    assert text == '{"earned":5,"name":"علی"}'


def test_backend_store_other_schema_version_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store.connect(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE schema_version SET version = ?", (1,))
    raw.commit()
    raw.close()
    with pytest.raises(store.StoreError, match="schema version"):
        store.connect(path)


def test_backend_checkpointer_copies_the_wal_into_the_database(tmp_path: Path) -> None:
    db = tmp_path / "loyalty.db"
    conn = store.connect(db, autocheckpoint=False)
    with store.transaction(conn):
        conn.executemany(
            "INSERT INTO members(phone, code, enrolled_at, tier, club_id) "
                "VALUES (?, ?, 0, 'bronze', 1)",
            ((phone(i), f"C{i:06d}") for i in range(3000)),
        )
    before = db.stat().st_size  # the rows are only in the WAL: no request checkpoints
    cp = store.Checkpointer(db, interval=60).start()
    cp.stop()  # a final checkpoint on the way out
    assert db.stat().st_size > before + 50_000
    conn.close()


def test_backend_catch_up_checkpoint_lets_the_wal_start_over(tmp_path: Path) -> None:
    db = tmp_path / "loyalty.db"
    conn = store.connect(db, autocheckpoint=False)

    def write(first: int) -> None:
        with store.transaction(conn):
            conn.executemany(
                "INSERT INTO members(phone, code, enrolled_at, tier, club_id) "
                "VALUES (?, ?, 0, 'bronze', 1)",
                ((phone(i), f"C{i:06d}") for i in range(first, first + 500)),
            )

    def wal_frames() -> int:
        return (db.with_name(db.name + "-wal").stat().st_size - 32) // (4096 + 24)

    write(0)
    write(500)
    grown = wal_frames()
    write(1000)
    assert wal_frames() > grown  # nothing checkpoints this connection's WAL by itself
    store.catch_up_checkpoint(conn)
    size = db.with_name(db.name + "-wal").stat().st_size
    write(1500)  # starts the WAL over: its file does not grow past where it was
    assert db.with_name(db.name + "-wal").stat().st_size <= size
    conn.close()
