"""The panel's fixtures: an app over an in-memory user directory, with a clock we move."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from panel.app import PanelSettings, create_app
from panel.roles import Role
from panel.users import InMemoryUserDirectory
from tests.backend.engines import db, pg_url, postgres_server  # noqa: F401
from tests.panel.world import World, make_world

PASSWORDS = {"ali": "نان-و-پنیر-۱۴۰۵", "sara": "staff pass", "boss": "provider pass"}


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def users_template() -> InMemoryUserDirectory:
    """Hashed once per session: Argon2id at 64 MiB is meant to be slow."""
    users = InMemoryUserDirectory()
    users.add("ali", PASSWORDS["ali"], Role.OWNER, club="نانوایی")
    users.add("sara", PASSWORDS["sara"], Role.STAFF, club="نانوایی")
    users.add("boss", PASSWORDS["boss"], Role.PROVIDER)
    return users


@pytest.fixture
def users(users_template: InMemoryUserDirectory) -> InMemoryUserDirectory:
    fresh = InMemoryUserDirectory()
    fresh._users = dict(users_template._users)
    return fresh


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(users: InMemoryUserDirectory, clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(PanelSettings(db="test.db", idle_timeout=600), users, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def world(db: str) -> World:  # noqa: F811
    """Two clubs, their members and users, in a new database of each engine."""
    return make_world(db)
