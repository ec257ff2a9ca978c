"""Fixtures of the backend's tests: a fake clock, the database on each engine (SQLite file
and PostgreSQL, tests/backend/engines.py), a handler on it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend import store
from backend.engine import Connection
from backend.handlers import Handler
from backend.program import Program
from tests.backend.core_helpers import FakeClock
from tests.backend.engines import (  # noqa: F401
    db,
    empty_pg_url,
    pg_url,
    postgres_server,
    register_test_terminals,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def conn(db: str) -> Iterator[Connection]:  # noqa: F811
    """The backend's database with the schema, once per engine; closed afterwards."""
    c = store.connect(db)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def sqlite_conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A SQLite file only: for tests of SQLite's own plans and pages."""
    register_test_terminals(tmp_path / "loyalty.db")
    c = store.connect(tmp_path / "loyalty.db")
    assert isinstance(c, sqlite3.Connection)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def handler(conn: Connection, clock: FakeClock) -> Handler:
    """The request handler on `conn`, its time from `clock`, the default program."""
    return Handler(conn, Program(), clock=clock)
