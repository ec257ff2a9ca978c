"""The databases the backend's tests run on: a SQLite file, or a fresh PostgreSQL database.

One PostgreSQL server per test process (each pytest-xdist worker starts its own, on a
free loopback port, and stops it by its pid at the end of the session); a database with
the current schema is made once and every test gets its own copy of it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from backend import store, store_registry
from demo.postgres import Postgres

ENGINES = ("sqlite", "postgresql")
#: the terminals the tests' requests come from, registered in every test database's one
#: club (branch main) with the tests' merchant id
TEST_TERMINALS = tuple(f"T{n:07d}" for n in range(1, 17))
TEST_MERCHANT = "M00000000000001"
TEMPLATE = "loyalty_template"
_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    server = Postgres().start()
    try:
        register_test_terminals(server.create_database(TEMPLATE))
        yield server
    finally:
        server.stop()


def register_test_terminals(db: str | Path, terminals: tuple[str, ...] = TEST_TERMINALS) -> None:
    """Make `db` (a new database when missing) and register `terminals` (those not yet
    registered) in its first club's branch main: the requests of the tests that are not
    about the registry come from them."""
    from datetime import UTC, datetime

    conn = store.connect(db)
    try:
        club = min(store_registry.list_clubs(conn), key=lambda c: c.id)  # the database's own
        branch = store_registry.find_branch(conn, club.id, "main")
        assert branch is not None
        with store.transaction(conn):
            for tid in terminals:
                if store_registry.terminal(conn, tid) is None:
                    store_registry.add_terminal(
                        conn, tid, TEST_MERCHANT, branch.id, datetime.now(UTC)
                    )
    finally:
        conn.close()


def fresh_database_name() -> str:
    return f"t{os.getpid()}_{next(_names)}"


@pytest.fixture
def pg_url(postgres_server: Postgres) -> Iterator[str]:
    """A new PostgreSQL database with the current schema, dropped after the test."""
    name = fresh_database_name()
    url = postgres_server.create_database(name, template=TEMPLATE)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture
def empty_pg_url(postgres_server: Postgres) -> Iterator[str]:
    """A new PostgreSQL database with nothing in it, dropped after the test."""
    name = fresh_database_name()
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(params=ENGINES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """`--db` of a new database with the current schema, once per engine."""
    if request.param == "sqlite":
        path = tmp_path / "loyalty.db"
        register_test_terminals(path)
        return str(path)
    return request.getfixturevalue("pg_url")


#: children before parents, so that deleting breaks no foreign key
_WIPE_ORDER = (
    "transfers", "tier_changes", "member_segments", "segment_counts", "offer_uses",
    "audit_log", "panel_users", "lot_uses", "purchases", "reversals", "quotes",
    "otps", "cards", "ledger", "lots", "requests", "offers", "sms_outbox", "members",
    "unknown_terminals",
)  # fmt: skip


def wipe(url: str) -> None:
    """Every row of the backend's tables gone (the schema stays): a new database in a few
    milliseconds, for tests that need hundreds of them (the state machines)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in _WIPE_ORDER:
            conn.execute(f"DELETE FROM {table}")


#: for a test of SQLite's own plans or pages: the `db` fixture on SQLite only
sqlite_only = pytest.mark.parametrize("db", ["sqlite"], indirect=True)
