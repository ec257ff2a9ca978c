"""Fixtures of the backend's tests: a fake clock, a real SQLite file, a handler on both."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend import store
from backend.handlers import Handler
from backend.program import Program
from tests.backend.core_helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """The backend's database in a fresh file, with the schema; closed afterwards."""
    c = store.connect(tmp_path / "loyalty.db")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def handler(conn: sqlite3.Connection, clock: FakeClock) -> Handler:
    """The request handler on `conn`, its time from `clock`, the default program."""
    return Handler(conn, Program(), shop_name="فروشگاه نمونه", clock=clock)
