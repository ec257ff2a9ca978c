"""The stored-responses table keeps one row per key; other schema versions are refused."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backend import store


def test_backend_store_response_key_unique_and_compact(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "db.sqlite")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    args = {"type": "advice", "code": "00", "message": "", "now": now}
    store.store_response(conn, key="T1:0200:1", body={"earned": 5, "name": "علی"}, **args)
    with pytest.raises(sqlite3.IntegrityError):
        store.store_response(conn, key="T1:0200:1", body={}, **args)
    assert store.stored_response(conn, "T1:0200:1") == (
        "advice",
        "00",
        "",
        {"earned": 5, "name": "علی"},
    )
    (text,) = conn.execute("SELECT body FROM requests").fetchone()
    assert text == '{"earned":5,"name":"علی"}'
    conn.close()


def test_backend_store_other_schema_version_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store.connect(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE schema_version SET version = ?", (store.SCHEMA_VERSION - 1,))
    raw.commit()
    raw.close()
    with pytest.raises(store.StoreError, match="schema version"):
        store.connect(path)
